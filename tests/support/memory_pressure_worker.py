"""Worker of tests/ops/test_memory_pressure.py: updates under a capped
address space.

Usage: memory_pressure_worker.py SCENARIO [SCENARIO ...]

For each scenario: builds its variables (one large, tens of MiB), runs a small
step of the same op first (so TensorFlow's thread pools and the op's kernel
exist), fingerprints every variable, then lowers the soft RLIMIT_AS to the
address space in use plus `HEADROOM` and runs the update, which needs one
allocation of the large variable's size or more: a copy of a variable whose
buffer a read still holds (every op copies before writing, as TensorFlow's
own do), or Adafactor's scratch (about three times a wide variable's column
count). Then it lifts the cap again and prints one line

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

RESULT_PREFIX = "RESULT_JSON "
LARGE = 16 * 2**20  # elements of the large variable: 64 MiB of float32
HEADROOM = 32 * 2**20  # bytes of address space left to the update
SMALL = (3, 5)


def _variable(shape, seed):
  size = int(np.prod(shape))
  values = tf.cast((tf.range(size) + seed) % 251, tf.float32) / 251.0
  return tf.Variable(tf.reshape(values, shape))


def _zeros(shape):
  return tf.Variable(tf.zeros(shape))


# The hyperparameters of each algorithm's update (any valid ones do).
_MOMENTS = dict(learning_rate=0.1, beta_1=0.9, beta_2=0.999, step=1)
HYPERPARAMETERS = {
    "adamw":
        dict(_MOMENTS, epsilon=1e-7, weight_decay=0.01),
    "lamb":
        dict(_MOMENTS, epsilon=1e-6, weight_decay_rate=0.01),
    "lion":
        dict(learning_rate=0.1, beta_1=0.9, beta_2=0.99, weight_decay=0.01),
    "adafactor":
        dict(learning_rate=0.1,
             beta_2_decay=-0.8,
             epsilon_1=1e-30,
             epsilon_2=1e-3,
             clip_threshold=1.0,
             step=1),
}


def _multi(algorithm):
  """The multi-tensor op of `algorithm` over all the variables."""
  op = getattr(ops, "multi_tensor_apply_" + algorithm)

  def make(variables, slots, grads):
    slot_lists = [list(column) for column in zip(*slots)]
    return lambda: op(
        variables, *slot_lists, grads, fused=True, **HYPERPARAMETERS[algorithm])

  return make


def _single(algorithm):
  """The per-variable op of `algorithm` for one variable."""
  op = getattr(ops, "resource_apply_" + algorithm)

  def make(variables, slots, grads):
    (var,), (var_slots,), (grad,) = variables, slots, grads
    # Adafactor takes its accumulators as one list, the others one by one.
    slot_args = [var_slots] if algorithm == "adafactor" else var_slots
    return lambda: op(
        var, *slot_args, grad, fused=True, **HYPERPARAMETERS[algorithm])

  return make


# scenario: (slots per variable, update builder, shapes of the variables,
# whether a read holds the last variable's buffer). The large variable is
# the last: in a list, the small ones before it are validated (and, held by
# no read, not copied) before the large copy fails.
SCENARIOS = {
    "adamw": (2, _single("adamw"), [(LARGE,)], True),
    "lamb": (2, _single("lamb"), [(LARGE,)], True),
    "lion": (1, _single("lion"), [(LARGE,)], True),
    # One row: the factored scratch is 3 x LARGE, and nothing is copied.
    "adafactor_wide": ("factored", _single("adafactor"), [(1, LARGE)], False),
    "multi_tensor_adamw": (2, _multi("adamw"), [SMALL, (7,), (LARGE,)], True),
    "multi_tensor_lamb": (2, _multi("lamb"), [SMALL, (7,), (LARGE,)], True),
    "multi_tensor_lion": (1, _multi("lion"), [SMALL, (7,), (LARGE,)], True),
    # Controls: under the same cap, small updates (a copy included) run.
    "multi_tensor_adamw_small": (2, _multi("adamw"), [SMALL, (7,),
                                                      (1000,)], True),
    "adafactor_small": ("factored", _single("adafactor"), [(4, 1000)], False),
}


def _slots(kind, shape):
  if kind == "factored":
    return [_zeros(shape[:-1]), _zeros(shape[:-2] + shape[-1:])]
  return [_zeros(shape) for _ in range(kind)]


def _values(named):
  return {name: v.numpy().copy() for name, v in named}


def _address_space_in_use():
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmSize:"):
        return int(line.split()[1]) * 1024
  raise RuntimeError("no VmSize in /proc/self/status")


def run(name):
  kind, make_update, shapes, hold_read = SCENARIOS[name]
  # A small step of the same op: its kernel, TF's pools and buffers exist.
  small = [_variable(SMALL, 0)]
  make_update(small, [_slots(kind, SMALL)], [tf.ones(SMALL)])()
  variables = [_variable(shape, i + 1) for i, shape in enumerate(shapes)]
  slots = [_slots(kind, shape) for shape in shapes]
  grads = [tf.fill(shape, 1e-3) for shape in shapes]
  update = make_update(variables, slots, grads)
  named = [(f"var[{i}]", v) for i, v in enumerate(variables)]
  named += [(f"slot{k}[{i}]", s)
            for i, ss in enumerate(slots)
            for k, s in enumerate(ss)]
  before = _values(named)
  held = variables[-1].read_value() if hold_read else None  # shares the buffer
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
  result["scenario"] = name
  return result


def main(names):
  for name in names:
    print("START " + name, flush=True)
    result = run(name)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    gc.collect()


if __name__ == "__main__":
  main(sys.argv[1:] or list(SCENARIOS))
