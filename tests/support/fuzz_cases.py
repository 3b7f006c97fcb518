"""The cases of tests/ops/test_fuzz.py, as plain data (no TensorFlow here).

`cases()` derives a fixed list of case descriptions from `SEED`: the pytest
process uses them for test ids and expectations, `fuzz_worker.py` builds and
runs each one from the same description. A description is a dict of JSON
values:

  id          "<target>-<algorithm>-<form>-<number>", unique and stable.
  target      "wrapper" (tf_opt_plugin.ops.resource_apply_* and
              multi_tensor_apply_*), "raw" (the op library's generated
              wrappers, called directly) or "optimizer"
              (tf_opt_plugin.optimizers.*, `apply`).
  algorithm   an algorithm with a fused op (algorithms.py); for optimizers
              the class name.
  form        "single" (one variable) or "multi" (lists).
  mode        "eager", "function" (tf.function, the step a run-time tensor)
              or "xla" (jit_compile=True).
  fused       None, True or False (wrapper cases).
  variables   [{"shape", "dtype", "device" (0 or 1: /CPU:0, /CPU:1),
              "values"}] where values is a `VALUES` kind.
  gradients   [{"shape", "dtype", "values", "sparse_rows"}], sparse_rows
              None (dense) or the row indices of an IndexedSlices gradient.
  options     the algorithm's options (its `options` in algorithms.py,
              per-variable flags, optimizer arguments).
  hyper       {argument: number}; the worker adds step.
  step        the 1-based step (0 or negative: a corruption).
  fault       None, or {"kind": one of `FAULTS`, ...}: the one thing wrong.
  expect      "ok" (must succeed), "error" (must raise a typed error naming
              one of `names`) or "either" (values the API may accept or
              reject, e.g. a learning rate of inf).
  names       the names an error message must contain one of.
"""

import random

import algorithms as A

SEED = 20261207
NUM_CASES = 420

DTYPES = ("float16", "bfloat16", "float32", "float64")
VALUES = (
    "normal",
    "normal",
    "normal",
    "zeros",
    "nan",
    "inf",
    "-inf",
    "huge",
    "tiny",
)
# The draws follow the registry's order: a new algorithm adds cases (and
# changes the seeded list), the others' stay as they were drawn.
ALGORITHMS = tuple(a.name for a in A.with_fused_op())
MULTI_ALGORITHMS = tuple(a.name for a in A.with_fused_op() if a.multi_tensor)
OPTIMIZERS = tuple(A.keras_classes())
STEPPED = tuple(a.name for a in A.with_fused_op() if a.counts_steps)

# The raw op wrappers of the loaded library, per algorithm and form.
RAW_OPS = {}
for _a in A.with_fused_op():
  RAW_OPS[_a.name, "single"] = A.raw_op_name(_a.op_type)
  if _a.multi_tensor:
    RAW_OPS[_a.name, "multi"] = A.raw_op_name(_a.multi_tensor_op_type)
del _a

# fault kind -> the targets it applies to ("wrapper", "raw", "optimizer").
FAULTS = {
    "grad_shape": ("wrapper", "raw", "optimizer"),
    "grad_dtype": ("wrapper", "raw", "optimizer"),
    "slot_shape": ("wrapper", "raw"),
    "slot_dtype": ("wrapper", "raw"),
    "integer_variable": ("wrapper", "raw", "optimizer"),
    "slot_is_variable": ("wrapper", "raw"),  # aliasing: var passed as a slot
    "variable_twice": ("wrapper", "raw", "optimizer"),  # multi only
    "slot_of_another": ("wrapper", "raw"),  # multi only: m[i] is var[j]
    "uninitialized_slot": ("wrapper", "raw"),
    "step_zero": ("wrapper", "raw"),  # stepped algorithms only
    "vector_hyperparameter": ("wrapper", "raw"),
    "wrong_length": ("wrapper", "raw", "optimizer"),  # multi only
    "sparse_index_out_of_range": ("wrapper", "optimizer"),
    "accumulator_shape": ("wrapper", "raw"),  # slots in one list only
    "mixed_dtypes_in_one_op": ("raw",),  # multi only
}


def _shape(rng):
  rank = rng.choice((0, 1, 1, 2, 2, 2, 3, 4))
  dims = []
  for _ in range(rank):
    dims.append(0 if rng.random() < 0.05 else rng.randint(1, 5))
  if rank == 2 and rng.random() < 0.1:
    dims = [rng.randint(1, 3), rng.randint(60, 300)]  # wide (factored slots)
  return dims


def _hyper(rng, algorithm):
  """Valid hyperparameters (the algorithm's `fuzz_hyper`), now and then an
  edge value."""
  hyper = dict(learning_rate=rng.choice((1e-3, 0.01, 0.1, 0.0, 1.0)))
  for name, values in A.get(algorithm).fuzz_hyper.items():
    hyper[name] = rng.choice(values)
  return hyper


def _variable(rng, dtype=None, device=0):
  return {
      "shape": _shape(rng),
      "dtype": dtype or rng.choice(DTYPES),
      "device": device,
      "values": rng.choice(VALUES),
  }


def _gradient(rng, variable):
  return {
      "shape": list(variable["shape"]),
      "dtype": variable["dtype"],
      "values": rng.choice(VALUES),
      "sparse_rows": None,
  }


def _names(form, index, *bases):
  """How messages name input `base`: "m" for one variable, "m[2]" in a
  list."""
  if form == "single":
    return list(bases)
  return [f"{base}[{index}]" for base in bases]


def slot_options(algorithm):
  """The options of `algorithm` that change its slots (AdamW's amsgrad adds
  vhat); the ops take the others as arguments."""
  spec = A.get(algorithm)
  return [
      name for name in spec.options
      if spec.slots((2, 3), **{name: True}) != spec.slots((2, 3))
  ]


def _options(rng, algorithm, form, n):
  """The algorithm's options, each its default more often than not; in a
  list, the ops' arguments are per variable, a slot's switch is one."""

  def draw(default):
    return rng.random() < (0.7 if default else 0.3)

  spec = A.get(algorithm)
  per_variable = {}
  options = {}
  for name, default in spec.options.items():
    if form == "single" or name in slot_options(algorithm):
      options[name] = draw(default)
    else:
      per_variable[name] = default
  if form == "multi":
    per_variable = dict(apply_weight_decay=True, **per_variable)
    for name, default in per_variable.items():
      options[name] = [draw(default) for _ in range(n)]
  return options


def _fault(rng, target, algorithm, form, variables):
  """A fault that applies to this case, with the names that must appear in
  its error, or (None, [])."""
  slot_list = A.get(algorithm).slot_list
  kinds = []
  for kind, targets in FAULTS.items():
    if target not in targets:
      continue
    if (kind in (
        "variable_twice",
        "wrong_length",
        "slot_of_another",
        "mixed_dtypes_in_one_op",
    ) and form != "multi"):
      continue
    if (kind == "variable_twice" and target != "optimizer" and
        len(variables) < 2):
      continue
    if (kind in ("slot_of_another", "mixed_dtypes_in_one_op") and
        len(variables) < 2):
      continue
    if kind == "step_zero" and algorithm not in STEPPED:
      continue
    if kind == "accumulator_shape" and not slot_list:
      continue
    if (kind in ("slot_shape", "slot_dtype", "slot_is_variable",
                 "uninitialized_slot") and slot_list and (target == "raw")):
      continue  # slots in one list (accumulators): accumulator_shape
    if kind == "sparse_index_out_of_range" and not variables[0]["shape"]:
      continue
    kinds.append(kind)
  kind = rng.choice(kinds)
  index = rng.randrange(len(variables))
  if kind == "mixed_dtypes_in_one_op":
    index = rng.randrange(1, len(variables))  # the op's T is the first one's
  slot = _slot_name(algorithm)
  fault = {"kind": kind, "index": index, "slot": slot}
  if kind in ("grad_shape", "sparse_index_out_of_range"):
    names = _names(form, index, "grad")
  elif kind == "grad_dtype":
    names = _names(form, index, "grad", "var")
  elif kind in ("slot_shape", "slot_dtype", "uninitialized_slot"):
    names = _names(form, index, slot)
  elif kind == "integer_variable":
    names = _names(form, index, "var", "grad")
  elif kind == "slot_is_variable":
    names = _names(form, index, slot, "var")
  elif kind == "variable_twice":
    other = (index + 1) % len(variables)
    fault["other"] = other
    names = (_names(form, index, "var") + _names(form, other, "var") +
             ["variable", "twice"])
  elif kind == "slot_of_another":
    other = (index + 1) % len(variables)
    fault["other"] = other
    names = _names(form, index, slot) + _names(form, other, "var")
  elif kind == "step_zero":
    fault["step"] = rng.choice((0, -1, -(2**40)))
    names = ["step"]
  elif kind == "vector_hyperparameter":
    fault["argument"] = rng.choice(("learning_rate", _second_scalar(algorithm)))
    raw_name = {"learning_rate": "lr"}.get(fault["argument"], fault["argument"])
    names = [fault["argument"], raw_name]
  elif kind == "wrong_length":
    fault["list"] = rng.choice(("grads", slot_list_name(algorithm)))
    names = [fault["list"], fault["list"][:-1], "grads_and_vars"]
  elif kind == "accumulator_shape":
    names = [slot_list]
  elif kind == "mixed_dtypes_in_one_op":
    names = ["grad", "var"]
  else:
    raise AssertionError(kind)
  if target == "raw" and form == "multi":
    # TF's generated wrapper checks the lists before the kernel runs, and
    # names a list ("grad"), not its element.
    names += [name.split("[")[0] for name in names]
  if target == "raw" and kind in (
      "integer_variable",
      "grad_dtype",
      "mixed_dtypes_in_one_op",
  ):
    # ... and T, the attr both take their dtype from, or the input's
    # position ("input #15").
    names += ["attr 'T'", "input"]
  return fault, names


def _slot_name(algorithm):
  """How messages name the first slot: its name, or the list's. SGD (an
  optimizer case only) has none without momentum; "m" stands in."""
  spec = A.get(algorithm)
  slots = spec.slots((2, 3))
  return spec.slot_list or (slots[0][0] if slots else "m")


def slot_list_name(algorithm):
  """The name the fault wrong_length gives the list of first slots."""
  return _slot_name(algorithm) + "s"


def _second_scalar(algorithm):
  """The scalar argument besides the learning rate that the fault
  vector_hyperparameter makes a vector: beta_1, or the first epsilon where
  the op takes no beta_1."""
  hyper = A.get(algorithm).op_defaults
  if "beta_1" in hyper:
    return "beta_1"
  return next(name for name in hyper if name.startswith("epsilon"))


def _values_hyper(rng, hyper):
  """Now and then a learning rate the API may accept or refuse (inf, NaN,
  negative): either a success or a typed error naming it."""
  if rng.random() < 0.06:
    hyper["learning_rate"] = rng.choice(("inf", "nan", -0.1))
    return ["learning_rate", "lr"]
  return None


def _op_case(rng, number, target):
  algorithm = rng.choice(ALGORITHMS)
  form = "single"
  if algorithm in MULTI_ALGORITHMS and rng.random() < 0.5:
    form = "multi"
  n = 1 if form == "single" else rng.randint(1, 5)
  mixed = form == "multi" and target == "wrapper" and rng.random() < 0.4
  dtype = rng.choice(DTYPES)
  variables = [
      _variable(rng, None if mixed else dtype,
                rng.choice((0, 1)) if mixed else 0) for _ in range(n)
  ]
  if target == "raw" and form == "multi":
    for v in variables:
      v["dtype"] = dtype  # one op takes one T
  gradients = [_gradient(rng, v) for v in variables]
  if target == "wrapper" and rng.random() < 0.15 and variables[0]["shape"]:
    # Sparse gradient of the first variable, repeated rows included.
    rows = variables[0]["shape"][0]
    if rows:
      gradients[0]["sparse_rows"] = [
          rng.randrange(rows) for _ in range(rng.randint(1, 4))
      ]
  mode = "eager"
  if target == "wrapper":
    mode = rng.choices(("eager", "function", "xla"), (0.62, 0.33, 0.05))[0]
  elif rng.random() < 0.2:
    mode = "function"
  if mode == "xla":
    # An XLA cluster runs on one device and cannot reach another's resources
    # (Keras's own optimizers fail the same way): one device.
    for v in variables:
      v["device"] = 0
  fused = None
  if target == "wrapper":
    fused = (rng.choice((None, False)) if mode == "xla" else rng.choice(
        (None, True, False)))
  case = {
      "target": target,
      "algorithm": algorithm,
      "form": form,
      "mode": mode,
      "fused": fused,
      "variables": variables,
      "gradients": gradients,
      "options": _options(rng, algorithm, form, n),
      "hyper": _hyper(rng, algorithm),
      "step": rng.choice((1, 2, 10**6)),
      "fault": None,
      "expect": "ok",
      "names": [],
  }
  if rng.random() < 0.55:
    fault, names = _fault(rng, target, algorithm, form, variables)
    if fault["kind"] == "sparse_index_out_of_range":
      # The fault needs a sparse gradient at `index`.
      index = fault["index"]
      if not variables[index]["shape"]:
        fault, names = (
            {
                "kind": "grad_shape",
                "index": index,
                "slot": fault["slot"]
            },
            _names(form, index, "grad"),
        )
      else:
        gradients[index]["sparse_rows"] = [0]
    expect = "error"
    if (fault["kind"] == "sparse_index_out_of_range" and
        0 in variables[fault["index"]]["shape"]):
      expect = "either"  # no element to update: nothing is read at the index
    case.update(fault=fault, expect=expect, names=names)
  else:
    names = _values_hyper(rng, case["hyper"])
    if names:
      case.update(expect="either", names=names)
  case["id"] = f"{target}-{algorithm}-{form}-{number:03d}"
  return case


def _optimizer_case(rng, number):
  name = rng.choice(OPTIMIZERS)
  n = rng.randint(1, 4)
  mixed = rng.random() < 0.3
  dtype = rng.choice(("float32", "float32", "float16", "float64"))
  variables = [
      _variable(
          rng,
          rng.choice(("float32", "float64")) if mixed else dtype,
          rng.choice((0, 1)) if mixed else 0,
      ) for _ in range(n)
  ]
  gradients = [_gradient(rng, v) for v in variables]
  for g, v in zip(gradients, variables):
    if v["shape"] and v["shape"][0] and rng.random() < 0.15:
      g["sparse_rows"] = [
          rng.randrange(v["shape"][0]) for _ in range(rng.randint(1, 4))
      ]
  options = {"learning_rate": rng.choice((1e-3, 0.1))}
  extra = rng.choice((
      "none",
      "none",
      "clipnorm",
      "clipvalue",
      "global_clipnorm",
      "weight_decay",
      "ema",
  ))
  if extra == "clipnorm":
    options["clipnorm"] = 1.0
  elif extra == "clipvalue":
    options["clipvalue"] = 0.5
  elif extra == "global_clipnorm":
    options["global_clipnorm"] = 1.0
  elif extra == "weight_decay" and name != "AdamW":
    options["weight_decay"] = 0.01
  elif extra == "ema":
    options["use_ema"] = True
  switches = A.for_keras_class(name).options
  if "momentum" in switches:
    options["momentum"] = rng.choice((0.0, 0.9))
    options["nesterov"] = options["momentum"] > 0 and rng.random() < 0.5
  if "amsgrad" in switches:
    options["amsgrad"] = rng.random() < 0.3
  case = {
      "target": "optimizer",
      "algorithm": name,
      "form": "multi" if n > 1 else "single",
      "mode": rng.choices(("eager", "function"), (0.7, 0.3))[0],
      "fused": None,
      "variables": variables,
      "gradients": gradients,
      "options": options,
      "hyper": {},
      "step": 1,
      "fault": None,
      "expect": "ok",
      "names": [],
  }
  if rng.random() < 0.45:
    fault, names = _fault(rng, "optimizer", name.lower(),
                          "multi" if n > 1 else "single", variables)
    if fault["kind"] == "variable_twice" and n < 2:
      fault["other"] = fault["index"]
    if fault["kind"] == "sparse_index_out_of_range":
      index = fault["index"]
      if variables[index]["shape"] and variables[index]["shape"][0]:
        gradients[index]["sparse_rows"] = [0]
      else:
        fault["kind"] = "grad_shape"
    # Optimizers take gradients and variables in pairs: messages name them
    # by position, or by the variable's name.
    names = sorted(
        set(names +
            ["grad", "gradient", "var", "variable", f"v{fault['index']}"]))
    # Keras's optimizers cast each gradient to its variable's dtype: another
    # float dtype may be accepted.
    expect = "either" if fault["kind"] == "grad_dtype" else "error"
    case.update(fault=fault, expect=expect, names=names)
  case["id"] = f"optimizer-{name.lower()}-{case['form']}-{number:03d}"
  return case


def cases(seed=SEED, num_cases=NUM_CASES):
  """The fixed list of case descriptions (see the module docstring)."""
  rng = random.Random(seed)
  result = []
  for number in range(num_cases):
    target = rng.choices(("wrapper", "raw", "optimizer"), (0.5, 0.3, 0.2))[0]
    if target == "optimizer":
      result.append(_optimizer_case(rng, number))
    else:
      result.append(_op_case(rng, number, target))
  return result
