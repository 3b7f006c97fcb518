"""Worker process of tests/ops/test_fuzz.py: runs fuzz cases, one per line.

Reads case descriptions (`fuzz_cases.py`), one JSON object per line on stdin,
and answers each with one `RESULT_JSON {...}` line on stdout:

  outcome   "ok" or "error"
  type      the exception's class (errors), with its module
  message   the exception's message (errors)
  written   the variables whose bytes changed although the call raised
  seconds   how long the case took

A crash kills this process; the parent sees the pipe close and reports the
case it was running. Two logical CPUs (/CPU:0, /CPU:1) give the cases
variables on different devices.
"""

import inspect
import json
import os
import sys
import time
import traceback
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)

import keras  # noqa: E402
from tensorflow.python.ops import resource_variable_ops  # noqa: E402

import tf_opt_plugin.ops as ops  # noqa: E402
import tf_opt_plugin.optimizers as optimizers  # noqa: E402

import algorithms as A  # noqa: E402
import fuzz_cases  # noqa: E402

RESULT_PREFIX = "RESULT_JSON "


# ----------------------------------------------------------------------------
# Values.
# ----------------------------------------------------------------------------
def _values(rng, shape, dtype, kind, nonnegative=False):
  """A numpy array of `kind` (fuzz_cases.VALUES) in float64 or int32."""
  shape = tuple(shape)
  if dtype in ("int32", "int64"):
    return rng.integers(-3, 4, size=shape).astype(dtype)
  x = rng.normal(size=shape)
  if kind == "zeros":
    x = np.zeros(shape)
  elif kind in ("nan", "inf", "-inf") and x.size:
    special = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[kind]
    mask = rng.random(shape) < 0.3
    mask.flat[rng.integers(x.size)] = True
    x = np.where(mask, special, x)
  elif kind == "huge":
    top = {"float16": 6e4, "bfloat16": 3e38, "float32": 3e38}.get(dtype, 1e307)
    x = x * top / 4
  elif kind == "tiny":
    x = x * 1e-40 if dtype != "float16" else x * 1e-7
  if nonnegative:
    x = np.abs(x)
  return x


def _tensor(rng, shape, dtype, kind, nonnegative=False):
  return tf.cast(tf.constant(_values(rng, shape, dtype, kind, nonnegative)),
                 dtype)


def _device(index):
  return f"/CPU:{index}"


def _variable(rng, shape, dtype, device, kind="normal", nonnegative=False,
              name=None):
  with tf.device(_device(device)):
    return tf.Variable(_tensor(rng, shape, dtype, kind, nonnegative), name=name)


def _other_shape(shape):
  """Another shape, which does not broadcast to `shape` either (optimizers
  broadcast a gradient whose shape does, as Keras's do)."""
  if not shape:
    return [2]
  return list(shape[:-1]) + [shape[-1] + 1 if shape[-1] else 2]


def _other_dtype(dtype):
  return "float32" if dtype == "float64" else "float64"


def _compute_dtype(dtype):
  return tf.float64 if dtype == "float64" else tf.float32


# ----------------------------------------------------------------------------
# The slots of each algorithm, and the call of each target.
# ----------------------------------------------------------------------------
def _slot_specs(algorithm, shape, options):
  """[(slot name, shape, nonnegative)] in the op's order, named as the op's
  argument is. Every slot but the first moment m holds squares."""
  spec = A.get(algorithm)
  switches = {k: options[k] for k in fuzz_cases.slot_options(algorithm)}
  return [(spec.slot_list or name, list(s), name != "m")
          for name, s in spec.slots(tuple(shape), **switches)]


def _slot_names(algorithm):
  """(the slots the op always takes, those a switch adds: AdamW's vhat) by
  the op's argument names; ([], []) where it takes one list of them."""
  if A.get(algorithm).slot_list:
    return [], []
  switches = fuzz_cases.slot_options(algorithm)
  off = _slot_specs(algorithm, [], {k: False for k in switches})
  on = _slot_specs(algorithm, [], {k: True for k in switches})
  required = [name for name, _, _ in off]
  return required, [name for name, _, _ in on if name not in required]


def _throwaway_slot(algorithm, shape, options):
  """One slot of the variable's shape: what the optimizer cases build and
  leave unused (the optimizer makes its own), so the values drawn after
  it stay as they were."""
  del algorithm, options
  return [("m", list(shape), False)]


class _Case:
  """The objects of one op case: variables, slots, gradients, arguments."""

  def __init__(self, case, slot_specs=_slot_specs):
    self.case = case
    self.rng = np.random.default_rng(zlib.crc32(case["id"].encode()))
    fault = case["fault"] or {}
    self.kind = fault.get("kind")
    self.index = fault.get("index")
    algorithm = case["algorithm"]
    self.variables, self.slots, self.gradients = [], [], []
    for i, (spec, gspec) in enumerate(zip(case["variables"],
                                          case["gradients"])):
      dtype, shape = spec["dtype"], spec["shape"]
      if i == self.index and self.kind == "integer_variable":
        dtype = "int32"
      if i == self.index and self.kind == "mixed_dtypes_in_one_op":
        dtype = _other_dtype(dtype)
      var = _variable(self.rng, shape, dtype, spec["device"], spec["values"],
                      name=f"var{i}")
      slots = []
      for k, (name, slot_shape, nonnegative) in enumerate(
          slot_specs(algorithm, shape, case["options"])):
        slot_dtype = dtype
        if i == self.index and k == 0:
          if self.kind in ("slot_shape", "accumulator_shape"):
            slot_shape = _other_shape(slot_shape)
          elif self.kind == "slot_dtype":
            slot_dtype = _other_dtype(dtype)
        if i == self.index and k == 0 and self.kind == "uninitialized_slot":
          with tf.device(_device(spec["device"])):
            slot = resource_variable_ops.UninitializedVariable(
                shape=slot_shape, dtype=slot_dtype, name=f"{name}{i}")
        elif i == self.index and k == 0 and self.kind == "slot_is_variable":
          slot = var
        else:
          slot = _variable(
              self.rng,
              slot_shape,
              slot_dtype,
              spec["device"],
              "zeros" if self.rng.random() < 0.5 else "normal",
              nonnegative,
              name=f"{name}{i}",
          )
        slots.append(slot)
      self.variables.append(var)
      self.slots.append(slots)
      self.gradients.append(self._gradient(i, gspec, dtype, shape))
    if self.kind == "variable_twice":
      self.variables[fault["other"]] = self.variables[self.index]
    if self.kind == "slot_of_another":
      self.slots[self.index][0] = self.variables[fault["other"]]
    self.step = fault.get("step", case["step"])

  def _gradient(self, i, spec, dtype, shape):
    kind = self.kind if i == self.index else None
    if kind == "grad_shape":
      shape = _other_shape(shape)
    if kind == "grad_dtype":
      dtype = _other_dtype(dtype)
    rows = spec["sparse_rows"]
    if rows is not None and shape:
      if kind == "sparse_index_out_of_range":
        rows = list(rows) + [shape[0] + 3]
      values = _tensor(self.rng, [len(rows)] + list(shape[1:]), dtype,
                       spec["values"])
      return tf.IndexedSlices(values, tf.constant(rows, tf.int64),
                              tf.constant(shape, tf.int64))
    return _tensor(self.rng, shape, dtype, spec["values"])

  def all_variables(self):
    named = []
    for i, (var, slots) in enumerate(zip(self.variables, self.slots)):
      named.append((f"var[{i}]", var))
      named.extend((f"slot{k}[{i}]", s) for k, s in enumerate(slots))
    return named

  def hyper(self, raw_dtype=None):
    """The hyperparameters: Python numbers, or tensors of `raw_dtype`."""
    hyper = {}
    for name, value in self.case["hyper"].items():
      value = float(value)
      if self.kind == "vector_hyperparameter" and (
          name == self.case["fault"]["argument"]):
        value = [value, value]
      if raw_dtype is not None:
        value = tf.constant(value, raw_dtype)
      hyper[name] = value
    return hyper


def _truncate(values, kind, which, name):
  if kind == "wrong_length" and which == name:
    return values[:-1]
  return values


def _call(c, op, arguments):
  """fn(step): `op(**arguments)`, with the case's options (but those that
  are slots: amsgrad is vhat) and its step for the algorithms that take
  one."""
  slot_options = fuzz_cases.slot_options(c.case["algorithm"])
  arguments.update(
      (k, v) for k, v in c.case["options"].items() if k not in slot_options)
  stepped = c.case["algorithm"] in fuzz_cases.STEPPED

  def call(step):
    op(**arguments, **({"step": step} if stepped else {}))

  return call


def _inputs(c, convert):
  """{argument name: input} of the variables, slots and gradients, as the
  wrappers and the raw ops name them; `convert` maps each variable (a
  handle for the raw ops)."""
  case = c.case
  algorithm = case["algorithm"]
  fault = case["fault"] or {}
  kind, which = fault.get("kind"), fault.get("list")
  variables = [convert(v) for v in c.variables]
  slots = [[convert(s) for s in var_slots] for var_slots in c.slots]
  slot_list = A.get(algorithm).slot_list
  if case["form"] == "single":
    inputs = {"var": variables[0], "grad": c.gradients[0]}
    if slot_list:
      inputs[slot_list] = slots[0]
      return inputs
    columns = [[s] for s in slots[0]]
  else:
    inputs = {
        "var": variables,
        "grad": _truncate(c.gradients, kind, which, "grads"),
    }
    columns = [list(column) for column in zip(*slots)]
    columns[0] = _truncate(columns[0], kind, which,
                           fuzz_cases.slot_list_name(algorithm))
  names = _slot_specs(algorithm, [], case["options"])
  inputs.update((name, column) for (name, _, _), column in zip(names, columns))
  _, optional = _slot_names(algorithm)
  inputs.update((name, []) for name in optional if name not in inputs)
  return inputs


def _first(values):
  return values[0] if values else None


def wrapper_call(c):
  """fn(step) calling tf_opt_plugin.ops.*."""
  case = c.case
  inputs = _inputs(c, lambda v: v)
  required, optional = _slot_names(case["algorithm"])
  if case["form"] == "single":
    op = getattr(ops, "resource_apply_" + case["algorithm"])
    # The wrappers take one variable and its slots, not lists of one; a slot
    # the options leave out is None.
    arguments = dict(inputs)
    arguments.update((name, _first(inputs[name])) for name in required)
    arguments.update((name, _first(inputs[name])) for name in optional)
  else:
    op = getattr(ops, "multi_tensor_apply_" + case["algorithm"])
    arguments = {"variables": inputs.pop("var"), "grads": inputs.pop("grad")}
    arguments.update((name + "s", value) for name, value in inputs.items())
    arguments.update((name + "s", inputs[name] or None) for name in optional)
  arguments.update(c.hyper(), fused=case["fused"])
  return _call(c, op, arguments)


_RAW_SCALARS = {
    "learning_rate": "lr",
}


def raw_call(c):
  """fn(step) calling the op library's generated wrapper directly."""
  case = c.case
  op = getattr(ops.load_library(),
               fuzz_cases.RAW_OPS[(case["algorithm"], case["form"])])
  arguments = _inputs(c, lambda v: v.handle)
  arguments["grad"] = tf.nest.map_structure(tf.convert_to_tensor,
                                            arguments["grad"])
  if case["form"] == "single":
    # The raw op takes a slot a switch adds as a list of none or one.
    required, _ = _slot_names(case["algorithm"])
    arguments.update((name, arguments[name][0]) for name in required)
  # Tscalar follows T, which the op takes from the gradients.
  arguments.update(
      (_RAW_SCALARS.get(k, k), v)
      for k, v in c.hyper(_compute_dtype(c.gradients[0].dtype.name)).items())
  if "absmax" in inspect.signature(op).parameters:
    arguments.update(absmax=[], rounding_key=[])  # no 8-bit slots, nearest
  return _call(c, op, dict(arguments, use_locking=True))


def _in_mode(call, mode, step):
  """Runs call(step) eagerly or traced; the step is a run-time tensor."""
  if mode == "eager":
    call(step)
    return
  fn = tf.function(call, autograph=False, jit_compile=(mode == "xla"))
  fn(tf.constant(step, tf.int64))


def run_op_case(case):
  c = _Case(case)
  call = wrapper_call(c) if case["target"] == "wrapper" else raw_call(c)
  named = c.all_variables()
  return _run(lambda: _in_mode(call, case["mode"], c.step), named)


# ----------------------------------------------------------------------------
# Optimizers.
# ----------------------------------------------------------------------------
def run_optimizer_case(case):
  c = _Case(case, _throwaway_slot)  # the variables and gradients
  fault = case["fault"] or {}
  kind = fault.get("kind")
  variables = []
  for i, (var, spec) in enumerate(zip(c.variables, case["variables"])):
    with tf.device(_device(spec["device"])):
      variables.append(keras.Variable(var.read_value(), name=f"v{i}"))
  if kind == "variable_twice":
    variables[fault["other"]] = variables[fault["index"]]
  grads = list(c.gradients)
  if kind == "wrong_length":
    grads = grads[:-1]
  optimizer = getattr(optimizers, case["algorithm"])(**case["options"])
  named = [(f"v{i}", v.value) for i, v in enumerate(variables)]

  def apply():
    optimizer.build(variables)  # raises here if it did below
    if case["mode"] == "eager":
      optimizer.apply(grads, variables)
    else:
      tf.function(lambda: optimizer.apply(grads, variables), autograph=False)()

  # Built outside the measured call where it can be, so the snapshot holds
  # the slots and `iterations` too.
  try:
    optimizer.build(variables)
    named += [(f"optimizer/{v.path}", v.value) for v in optimizer.variables]
  except Exception:  # pylint: disable=broad-except
    pass
  return _run(apply, named)


# ----------------------------------------------------------------------------
# Running and snapshots.
# ----------------------------------------------------------------------------
def _snapshot(named):
  snapshot = {}
  for name, variable in named:
    try:
      if not bool(variable.is_initialized()):
        continue
      snapshot[name] = variable.numpy().tobytes()
    except Exception:  # pylint: disable=broad-except
      continue
  return snapshot


def _run(fn, named):
  before = _snapshot(named)
  try:
    fn()
  except Exception as error:  # pylint: disable=broad-except
    after = _snapshot(named)
    written = sorted(
        name for name, value in before.items() if after.get(name) != value)
    message = getattr(error, "message", None) or str(error)
    return {
        "outcome": "error",
        "type": f"{type(error).__module__}.{type(error).__name__}",
        "mro": [f"{t.__module__}.{t.__name__}" for t in type(error).__mro__],
        "message": message[-20000:],
        "written": written,
    }
  return {"outcome": "ok"}


def run_case(case):
  if case["target"] == "crash":  # the harness's own test: die as a crash does
    os.abort()
  if case["target"] == "optimizer":
    return run_optimizer_case(case)
  return run_op_case(case)


def main():
  print("READY", flush=True)
  for line in sys.stdin:
    if not line.strip():
      continue
    case = json.loads(line)
    start = time.perf_counter()
    try:
      result = run_case(case)
    except Exception:  # pylint: disable=broad-except
      # The harness itself failed to build the case: report, do not die.
      result = {
          "outcome": "harness_error",
          "message": traceback.format_exc()[-4000:],
      }
    result["id"] = case["id"]
    result["seconds"] = time.perf_counter() - start
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
