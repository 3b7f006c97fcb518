"""Worker of tests/ops/test_memory_pressure.py: updates under a capped
address space.

Usage: memory_pressure_worker.py SCENARIO_JSON [SCENARIO_JSON ...]

A scenario (tests/ops/test_memory_pressure.py makes them) is a JSON object:

  name        its name in the results.
  algorithm   an algorithm with a fused op (tests/support/algorithms.py).
  form        "single" (its per-variable op) or "multi" (its multi-tensor
              op over all the variables).
  shapes      the variables' shapes; the large variable is the last.
  hold_read   whether a read holds the last variable's buffer.

For each scenario: builds its variables (one large, tens of MiB), runs a small
step of the same op first (so TensorFlow's thread pools and the op's kernel
exist), fingerprints every variable, then lowers the soft RLIMIT_AS to the
address space in use plus `HEADROOM` and runs the update, which needs one
allocation of the large variable's size or more: a copy of a variable whose
buffer a read still holds (every op copies before writing, as TensorFlow's
own do), or a factored algorithm's scratch (about three times a wide
variable's column count). Then it lifts the cap again and prints one line

  RESULT_JSON {"scenario", "outcome", "type", "message", "changed"}

outcome "ok" (the update ran: the cap did not bite) or "error", `changed`
the variables whose bytes differ from before. A crash (std::bad_alloc, a
null buffer) kills the process: the parent sees no RESULT line for that
scenario. "START <scenario>" comes first, so the parent knows which one.
"""

import gc
import json
import os
import resource
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN's CPU allocator keeps freed buffers in a pool, so whether an
# allocation needs new address space (and meets the cap) would depend on what
# ran before; TF's plain CPU allocator returns them to malloc, which unmaps
# buffers this large. The kernels allocate through either the same way.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_opt_plugin.ops as ops  # noqa: E402

import algorithms as A  # noqa: E402

RESULT_PREFIX = "RESULT_JSON "
HEADROOM = 32 * 2**20  # bytes of address space left to the update
WARMUP = (3, 5)  # the variable of the small first step


def _variable(shape, seed):
  size = int(np.prod(shape))
  values = tf.cast((tf.range(size) + seed) % 251, tf.float32) / 251.0
  return tf.Variable(tf.reshape(values, shape))


def _zeros(shape):
  return tf.Variable(tf.zeros(shape))


def _update(scenario, variables, slots, grads):
  """fn() running the scenario's op on `variables` (its hyperparameters: any
  valid ones do)."""
  spec = A.get(scenario["algorithm"])
  hyper = A.op_hp(spec.name, learning_rate=0.1)
  if scenario["form"] == "multi":
    op = getattr(ops, "multi_tensor_apply_" + spec.name)
    slot_lists = [list(column) for column in zip(*slots)]
    if spec.counts_steps:
      hyper["step"] = 1
    return lambda: op(variables, *slot_lists, grads, fused=True, **hyper)
  op = getattr(ops, spec.op)
  (var,), (var_slots,), (grad,) = variables, slots, grads
  return lambda: spec.call_op(op, var, var_slots, grad, step=1, fused=True, **
                              hyper)


def _slots(algorithm, shape):
  return [_zeros(s) for s in A.get(algorithm).slot_shapes(shape)]


def _values(named):
  return {name: v.numpy().copy() for name, v in named}


def _address_space_in_use():
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmSize:"):
        return int(line.split()[1]) * 1024
  raise RuntimeError("no VmSize in /proc/self/status")


def run(scenario):
  algorithm = scenario["algorithm"]
  shapes = [tuple(shape) for shape in scenario["shapes"]]
  # A small step of the same op: its kernel, TF's pools and buffers exist.
  small = [_variable(WARMUP, 0)]
  _update(scenario, small, [_slots(algorithm, WARMUP)], [tf.ones(WARMUP)])()
  variables = [_variable(shape, i + 1) for i, shape in enumerate(shapes)]
  slots = [_slots(algorithm, shape) for shape in shapes]
  grads = [tf.fill(shape, 1e-3) for shape in shapes]
  update = _update(scenario, variables, slots, grads)
  named = [(f"var[{i}]", v) for i, v in enumerate(variables)]
  named += [(f"slot{k}[{i}]", s)
            for i, ss in enumerate(slots)
            for k, s in enumerate(ss)]
  before = _values(named)
  held = variables[-1].read_value(
  ) if scenario["hold_read"] else None  # shares the buffer
  gc.collect()
  soft, hard = resource.getrlimit(resource.RLIMIT_AS)
  resource.setrlimit(resource.RLIMIT_AS,
                     (_address_space_in_use() + HEADROOM, hard))
  try:
    update()
    result = {"outcome": "ok"}
  except Exception as error:  # pylint: disable=broad-except
    result = {
        "outcome": "error",
        "type": type(error).__name__,
        "message": str(error)[-2000:],
    }
  finally:
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
  del held
  after = _values(named)
  result["changed"] = sorted(
      k for k in before if before[k].tobytes() != after[k].tobytes())
  result["scenario"] = scenario["name"]
  return result


def main(scenarios):
  for scenario in scenarios:
    print("START " + scenario["name"], flush=True)
    result = run(scenario)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    gc.collect()


if __name__ == "__main__":
  main([json.loads(arg) for arg in sys.argv[1:]])
