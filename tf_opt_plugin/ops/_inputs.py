"""Conversion and validation of the inputs shared by every update function.

Every check runs on both paths, the fused op and the pure-TF twin, before
anything is written, so a rejected call raises the same error, with the same
message, whichever path would have run, and changes nothing:

  * what is known when the call is made (Python values, dtypes, static
    shapes; eagerly, every value) raises at once;
  * what a graph only knows when it runs (a shape or rank not known when it
    was traced, a `step` or `clip_threshold` fed at run time, the indices of
    an `IndexedSlices` gradient, whether a variable is initialised) becomes
    a check op of the call's `Checks`, which every read and write of the
    call waits for.

Messages are the kernels' (cc/kernels/variable_access.h), shapes printed as
[3,5]. Inside an XLA-compiled function (`jit_compile=True`) no check op is
added, because XLA compiles assertions away: XLA reads every variable before
it writes any, and a gradient whose shape was unknown when traced is pinned
to its variable's static shape (`tf.ensure_shape`, checked when XLA
compiles), but values known only at run time (`step`, `clip_threshold`,
sparse indices) are not checked there.
"""

import math
import numbers

import numpy as np
import tensorflow as tf

from tf_opt_plugin.ops import _dispatch

# The largest `step` an int64 holds (the ops' step is int64).
_MAX_STEP = 2**63 - 1


# ----------------------------------------------------------------------------
# Run-time checks.
# ----------------------------------------------------------------------------
class Checks:
  """The run-time checks of one update call: ops that every read and write of
  the call depends on (`tf.control_dependencies(checks.ops)`).

  Attributes:
    ops: the check ops so far (none eagerly, where every check raises at
      once, and none inside an XLA-compiled function).
    kernel_validates: True when the whole call is one fused op, which checks
      at run time that its variables are initialised and distinct, their
      shapes, and the values of `step` and `clip_threshold` (before it
      writes anything): those checks are then left to it. Checks the kernel
      cannot make (sparse indices, a float `step`, hyperparameters of
      unknown rank, whose message names the Python argument) are added on
      both paths.
  """

  def __init__(self, variables=()):
    self.ops = []
    self.kernel_validates = False
    self._graph = not tf.executing_eagerly()
    self._xla = self._graph and _dispatch.in_xla_context()
    self._variables = list(variables)
    self._dtensor = None  # whether any variable is a DTensor, when needed

  @property
  def active(self):
    """Whether a check only known at run time becomes an op: in a graph
    (tf.function or TF1), not in an XLA-compiled function."""
    return self._graph and not self._xla

  @property
  def xla(self):
    return self._xla

  def require(self, condition, message):
    """Adds a check: InvalidArgumentError when `condition()` (a scalar bool
    tensor) is false as the graph runs, with the message `message()`: a list
    of Python strings, `Shape(shape vector)` and `Value(scalar)`, printed
    as the kernels print them.

    Both are functions, called only where a check op is added (never eagerly
    or inside XLA); the message is built only when the check fails. DTensor
    has no layout propagation for string ops: where the call updates a
    DTensor the parts are the assertion's data, printed by TensorFlow's
    Assert ("[`step` must be >= 1 ... step=] [0]"). Returns the check, or
    None.
    """
    if not self.active:
      return None
    if self._dtensor is None:
      self._dtensor = any(_dispatch.is_dtensor(v) for v in self._variables)
    plain = self._dtensor

    def holds():
      return tf.constant(True)

    def fails():
      parts = list(message())
      if plain:
        data = [p if isinstance(p, str) else p.tensor for p in parts]
      else:
        data = [tf.strings.join([_text(p) for p in parts])]
      with tf.control_dependencies([tf.debugging.Assert(False, data)]):
        return tf.constant(False)

    check = tf.cond(condition(), holds, fails)
    self.ops.append(check)
    return check

  def add(self, op):
    if self.active:
      self.ops.append(op)


def _fail(message):
  raise tf.errors.InvalidArgumentError(None, None, message)


def shape_text(shape):
  """A static shape as the kernels print one: [3,5], [] for a scalar."""
  shape = tf.TensorShape(shape)
  if shape.rank is None:
    return "<unknown>"
  return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


class Shape:
  """A part of a run-time message: a shape vector, printed "[3,5]"."""

  def __init__(self, tensor):
    self.tensor = tensor


class Value:
  """A part of a run-time message: a scalar (or the values of a vector,
  comma-separated), printed as the kernels print numbers."""

  def __init__(self, tensor):
    self.tensor = tensor


def _text(part):
  """A message part as a string (tensor)."""
  if isinstance(part, str):
    return part
  tensor = tf.reshape(part.tensor, [-1])
  if tensor.dtype.is_floating:
    text = tf.strings.as_string(tf.cast(tensor, tf.float64), shortest=True)
  else:
    text = tf.strings.as_string(tensor)
  joined = tf.strings.reduce_join(text, separator=",")
  if isinstance(part, Shape):
    return tf.strings.join(["[", joined, "]"])
  return joined


def same_shape(a, b):
  """Whether the shape vectors `a` and `b` are equal (a scalar bool tensor;
  no string ops, so that DTensor can run it)."""
  return tf.cond(
      tf.equal(tf.size(a), tf.size(b)),
      lambda: tf.reduce_all(tf.equal(a, tf.cast(b, a.dtype))),
      lambda: tf.constant(False),
  )


def _number_text(value):
  """A Python or NumPy number as the kernels print it (absl::StrCat)."""
  if isinstance(value, (float, np.floating)):
    return f"{float(value):g}"
  return str(value)


# ----------------------------------------------------------------------------
# Python arguments.
# ----------------------------------------------------------------------------
def check_fused(fused):
  """`fused` is None, True or False (a typo such as "no" is not True)."""
  if fused is None or fused is True or fused is False:
    return fused
  raise TypeError(
      f"`fused` must be None, True or False. Received: fused={fused!r}")


def check_bool(name, value):
  """`value` is a bool (Python or NumPy): a string such as "no" is not
  taken for True."""
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  raise TypeError(f"`{name}` must be a bool. Received: {name}={value!r}")


def compute_dtype(dtype):
  """float64 for float64 variables, float32 for every other (half types too)."""
  return (tf.float64
          if tf.as_dtype(dtype).base_dtype == tf.float64 else tf.float32)


def _as_real_tensor(value, name, what):
  """`value` as a tensor of a real (floating-point or integer) dtype, else a
  TypeError naming the argument."""
  if value is None or isinstance(value, (bool, np.bool_, str, bytes, complex)):
    raise TypeError(f"`{name}` must be {what}. Received: {name}={value!r}")
  try:
    tensor = tf.convert_to_tensor(value)
  except (TypeError, ValueError) as e:
    raise TypeError(
        f"`{name}` must be {what}. Received: {name}={value!r}") from e
  dtype = tensor.dtype.base_dtype
  if not (dtype.is_floating or dtype.is_integer):
    raise TypeError(
        f"`{name}` must be {what}. Received: {name}={value!r} of dtype "
        f"{dtype.name}")
  return tensor


def _check_scalar_rank(tensor, name, checks):
  rank = tensor.shape.rank
  if rank is None:
    checks.require(
        lambda: tf.equal(tf.rank(tensor), 0),
        lambda: [
            f"`{name}` must be a scalar. Received: {name}.shape=",
            Shape(tf.shape(tensor)),
        ],
    )
  elif rank != 0:
    _fail(f"`{name}` must be a scalar. Received: {name}.shape="
          f"{shape_text(tensor.shape)}")


def as_rounding_key(value, name):
  """A stochastic-rounding key as a uint32 scalar tensor: an integer (Python,
  NumPy or TF; taken mod 2**32), e.g. from `stochastic_rounding_key`."""
  if isinstance(value, numbers.Integral) and not isinstance(value, bool):
    return tf.constant(int(value) % 2**32, tf.uint32)
  try:
    tensor = tf.convert_to_tensor(value)
  except (TypeError, ValueError):
    tensor = None
  if (tensor is None or not tensor.dtype.is_integer or isinstance(value, bool)):
    raise TypeError(f"`{name}` must be an integer scalar (a uint32 key, see "
                    f"`stochastic_rounding_key`). Received: {name}={value!r}")
  if tensor.shape.rank not in (None, 0):
    raise ValueError(f"`{name}` must be a scalar. Received: "
                     f"{name}.shape={shape_text(tensor.shape)}")
  if tensor.dtype == tf.uint32:
    return tensor
  return tf.cast(tf.bitwise.bitwise_and(tf.cast(tensor, tf.int64), 0xFFFFFFFF),
                 tf.uint32)


def as_scalar(value, dtype, name, checks):
  """A hyperparameter as a scalar tensor of `dtype`.

  Python ints and floats, NumPy numbers, and tensors or variables of a
  floating-point or integer dtype are taken (an integer is its float value);
  a bool, a string, a complex number or None is a TypeError naming the
  argument (a cast would give 1.0, fail with a generic error or drop the
  imaginary part).
  """
  what = ("a real number: a Python int or float, or a tensor or variable of a "
          "floating-point or integer dtype")
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return tf.constant(value, dtype=dtype, name=name)
  tensor = _as_real_tensor(value, name, what)
  _check_scalar_rank(tensor, name, checks)
  return tf.cast(tensor, dtype)


def as_step(step, checks):
  """`step`, the 1-based count of this update, as an int64 scalar.

  An integer, or a float with an integral value (2.0); a non-integral or
  non-finite float is an InvalidArgumentError naming the value (a cast would
  truncate 1.5 to 1 and make NaN INT64_MIN); a bool, a string or None is a
  TypeError. Whether it is >= 1 is `check_step_value`.
  """
  what = "an integer (the 1-based count of this update)"
  if isinstance(step,
                (int, np.integer)) and not isinstance(step, (bool, np.bool_)):
    if not -_MAX_STEP <= int(step) <= _MAX_STEP:
      _fail(f"`step` must be {what} that fits int64. Received: step={step}")
    return tf.constant(int(step), tf.int64, name="step")
  if isinstance(step, (float, np.floating)):
    _check_integral_step(float(step), what)
    return tf.constant(int(step), tf.int64, name="step")
  tensor = _as_real_tensor(step, "step", what)
  if tensor.shape.rank not in (None, 0):
    shape = shape_text(tensor.shape)
    _fail(f"`step` must be a scalar. Received: step.shape={shape}")
  if tensor.dtype.is_floating:
    static = tf.get_static_value(tensor)
    if static is not None:
      for value in np.ravel(static):
        _check_integral_step(float(value), what)
    else:
      checks.require(
          lambda: tf.reduce_all(
              tf.logical_and(tf.math.is_finite(tensor),
                             tf.equal(tensor, tf.math.floor(tensor)))),
          lambda: [f"`step` must be {what}. Received: step=",
                   Value(tensor)],
      )
  _check_scalar_rank(tensor, "step", checks)
  return tf.cast(tensor, tf.int64)


def _check_integral_step(value, what):
  if not math.isfinite(value) or value != math.floor(value):
    _fail(f"`step` must be {what}. Received: step={value!r}")
  if abs(value) > _MAX_STEP:
    _fail(f"`step` must be {what} that fits int64. Received: step={value!r}")


def check_step_value(step, checks):
  """`step` (from `as_step`) is >= 1: at once where its value is known, else
  at run time unless the kernel checks it."""
  static = tf.get_static_value(step)
  if static is not None:
    if np.ndim(static) == 0 and static < 1:
      _fail("`step` must be >= 1 (the 1-based count of this update). Received: "
            f"step={int(static)}")
    return
  if not checks.kernel_validates:
    checks.require(
        lambda: tf.reduce_all(step >= 1),
        lambda: [
            "`step` must be >= 1 (the 1-based count of this update). Received: "
            "step=",
            Value(tf.reshape(step, [-1])[0]),
        ],
    )


def check_positive(name, value, checks):
  """The scalar tensor `value` is > 0 (NaN is not): as the kernel's
  CheckPositive, at once where its value is known, else at run time."""
  static = tf.get_static_value(value)
  if static is not None:
    if np.ndim(static) == 0 and not static > 0:
      _fail(
          f"`{name}` must be > 0. Received: {name}={_number_text(float(static))}"
      )
    return
  if not checks.kernel_validates:
    checks.require(
        lambda: tf.reduce_all(value > 0),
        lambda: [
            f"`{name}` must be > 0. Received: {name}=",
            Value(tf.reshape(value, [-1])[0]),
        ],
    )


# ----------------------------------------------------------------------------
# Variables.
# ----------------------------------------------------------------------------
def check_variable_object(variable, name):
  """`variable` is a variable the update can read and write: a tf.Variable
  (or an object with a resource `handle`, `dtype` and `shape`, such as a
  Keras 3 variable). A lookup table, a dataset iterator, a tensor or None is
  a TypeError, not an "uninitialized variable"."""
  if isinstance(variable, tf.Variable):
    return
  try:
    handle = variable.handle
    ok = (tf.as_dtype(handle.dtype) == tf.resource and
          variable.dtype is not None and variable.shape is not None)
  except (AttributeError, TypeError, ValueError):
    ok = False
  if not ok:
    raise TypeError(
        f"`{name}` must be a tf.Variable. Received: {name}={variable!r}")


def check_distinct(named_variables):
  """No variable appears twice in `named_variables` ([(name, variable)]): an
  update would read what it has just written.

  Two Python objects of one variable resource (the same `handle`) count as
  the same variable. The message is the kernels' one, naming both positions.
  """
  first_names = {}  # id(variable or handle) -> the name it first appeared as
  handles = []  # kept alive, so that no id is reused during the check
  for name, variable in named_variables:
    keys = [id(variable)]
    try:
      handle = variable.handle
    except (AttributeError, ValueError):  # e.g. a tf.distribute variable
      handle = None
    if handle is not None:
      handles.append(handle)
      keys.append(id(handle))
    for key in keys:
      if key in first_names:
        raise tf.errors.InvalidArgumentError(
            None,
            None,
            f"`{first_names[key]}` and `{name}` must be distinct variables. "
            "Received the same variable twice.",
        )
    for key in keys:
      first_names[key] = name


def check_variable(variable, name, dtype, grad_name="grad"):
  """The variable has `dtype` (that of the gradient `grad_name`)."""
  actual = tf.as_dtype(variable.dtype).base_dtype
  if actual != dtype:
    raise tf.errors.InvalidArgumentError(
        None,
        None,
        f"`{name}` must have dtype {dtype.name} (the dtype of `{grad_name}`). "
        f"Received: {name}.dtype={actual.name}",
    )


def runtime_shape(value):
  """The run-time shape of a tensor or variable, without reading a variable."""
  if isinstance(value, tf.Tensor):
    return tf.shape(value, out_type=tf.int64)
  return tf.raw_ops.VariableShape(input=value.handle, out_type=tf.int64)


def check_same_shape(name, value, var, checks, var_name="var"):
  """`value` (a tensor or variable) is shaped like `var_name`: statically
  where both shapes are known, else at run time unless the kernel checks it."""
  var_shape, shape = tf.TensorShape(var.shape), tf.TensorShape(value.shape)
  head = (
      f"`{name}` must have the shape of `{var_name}`. Received: {var_name}.shape="
  )
  if not shape.is_compatible_with(var_shape):
    _fail(f"{head}{shape_text(var_shape)}, {name}.shape={shape_text(shape)}")
  if checks.kernel_validates or (shape.is_fully_defined() and
                                 var_shape.is_fully_defined()):
    return
  shapes = []  # [actual, expected], built where a check op is added

  def condition():
    shapes.append(runtime_shape(value))
    shapes.append(
        tf.constant(var_shape.as_list(), tf.int64) if var_shape.
        is_fully_defined() else runtime_shape(var))
    return same_shape(shapes[0], shapes[1])

  checks.require(
      condition,
      lambda: [head,
               Shape(shapes[1]), f", {name}.shape=",
               Shape(shapes[0])],
  )


def check_gradient_dtype(var, grad, var_name="var", grad_name="grad"):
  """The gradient is floating-point, of the variable's dtype."""
  if not tf.as_dtype(grad.dtype).is_floating:
    raise TypeError(
        f"`{grad_name}` and `{var_name}` must be floating-point. Received: "
        f"{grad_name}.dtype={tf.as_dtype(grad.dtype).name}")
  check_variable(var, var_name, grad.dtype, grad_name)


def check_update_inputs(var, slots, grad, checks, var_name="var",
                        grad_name="grad"):
  """Dtype and shape checks of a variable, its slots ({name: var}) and grad.

  `var_name` and `grad_name` are the names the messages use ("var[2]" for
  the third variable of a multi-tensor update). Returns the gradient (inside
  XLA pinned to the variable's static shape).
  """
  check_gradient_dtype(var, grad, var_name, grad_name)
  for name, slot in slots.items():
    check_variable(slot, name, grad.dtype, grad_name)
  for name, slot in slots.items():
    check_same_shape(name, slot, var, checks, var_name)
  check_same_shape(grad_name, grad, var, checks, var_name)
  return pin_shape(grad, var, checks)


def pin_shape(tensor, var, checks):
  """Inside XLA, where no check op runs, `tensor` with the static shape of
  `var` (XLA rejects another shape when it compiles, instead of
  broadcasting)."""
  if (checks.xla and not tensor.shape.is_fully_defined() and
      var.shape.is_fully_defined()):
    return tf.ensure_shape(tensor, var.shape)
  return tensor


def check_initialized(named_variables, checks):
  """Every variable of [(name, variable)] is initialised, before the update
  reads or writes any.

  Eagerly: FailedPreconditionError, the kernels' message, naming the first
  that is not (a resource of another kind is an InvalidArgumentError saying
  so). In a graph, unless the kernel checks: one check of the call, which
  every write waits for, that reads the variables when any is not
  initialised, raising TensorFlow's FailedPreconditionError for it from an
  op named `<name>_must_be_initialized`. (A read alone would not do: Grappler
  turns a read whose value no op uses into a no-op.) DTensor variables,
  created initialised, are not checked in a graph.
  """
  if checks.kernel_validates:
    return
  if tf.executing_eagerly():
    for name, variable in named_variables:
      if not bool(variable.is_initialized()):
        _check_is_variable_resource(variable, name)
        raise tf.errors.FailedPreconditionError(
            None,
            None,
            f"Attempting to use uninitialized variable `{name}`. Initialise it "
            "(e.g. tf.Variable(initial_value)) before applying an update.",
        )
    return
  named_variables = [
      (name, v) for name, v in named_variables if not _dispatch.is_dtensor(v)
  ]
  if not checks.active or not named_variables:
    return
  with tf.name_scope("variables_must_be_initialized"):
    initialized = tf.stack([v.is_initialized() for _, v in named_variables])
    names = tf.constant([f"`{name}`" for name, _ in named_variables])

    def all_initialized():
      return tf.constant(True)

    def some_not():
      values = []
      for name, variable in named_variables:
        scope = name.replace("[", "_").replace("]", "")
        with tf.name_scope(f"{scope}_must_be_initialized"):
          value = tf.raw_ops.ReadVariableOp(resource=variable.handle,
                                            dtype=variable.dtype)
          # The first element, as data of the assertion below: the read runs.
          values.append(
              tf.strings.as_string(
                  tf.cast(tf.reshape(value, [-1])[:1], tf.float32)))
      message = tf.strings.join([
          "Attempting to use uninitialized variable ",
          tf.strings.reduce_join(
              tf.boolean_mask(names, tf.logical_not(initialized)),
              separator=", ",
          ),
          ". Initialise it (e.g. tf.Variable(initial_value)) before applying "
          "an update.",
      ])
      with tf.control_dependencies(
          [tf.debugging.Assert(False, [message] + values)]):
        return tf.constant(False)

    checks.add(tf.cond(tf.reduce_all(initialized), all_initialized, some_not))


def _check_is_variable_resource(variable, name):
  """Eagerly, for a variable that reads as uninitialised: a handle of a
  resource of another kind (a lookup table, an iterator) says so."""
  try:
    tf.raw_ops.ReadVariableOp(resource=variable.handle, dtype=variable.dtype)
  except tf.errors.InvalidArgumentError as e:
    if "wrong type" in str(e):
      raise tf.errors.InvalidArgumentError(
          None,
          None,
          f"`{name}` must be a resource variable. Received a handle of "
          "another kind of resource.",
      ) from None
  except tf.errors.OpError:
    pass


# ----------------------------------------------------------------------------
# Gradients.
# ----------------------------------------------------------------------------
def sum_duplicate_indices(grad):
  """`tf.IndexedSlices` with each index once, its rows summed (sorted order)."""
  unique_indices, positions = tf.unique(grad.indices)
  values = tf.math.unsorted_segment_sum(grad.values, positions,
                                        tf.shape(unique_indices)[0])
  return tf.IndexedSlices(values, unique_indices, grad.dense_shape)


def check_sparse_gradient(var, grad):
  """`grad` (IndexedSlices) has var's dtype and rows shaped like var's."""
  check_variable(var, "var", tf.as_dtype(grad.dtype).base_dtype)
  row_shape = tf.TensorShape(grad.values.shape)[1:]
  if not row_shape.is_compatible_with(tf.TensorShape(var.shape)[1:]):
    raise tf.errors.InvalidArgumentError(
        None,
        None,
        "`grad.values` must have rows shaped like `var`'s. Received: "
        f"var.shape={shape_text(var.shape)}, "
        f"grad.values.shape={shape_text(grad.values.shape)}",
    )


def check_sparse_indices(grad, var, checks, grad_name="grad", var_name="var"):
  """Every index of the IndexedSlices `grad` is in [0, var.shape[0]).

  TensorFlow's densification drops a negative index and fails on one past the
  end; a scatter writes the rows before a bad one. Both are the same
  InvalidArgumentError here, naming the first bad index, before anything is
  written: eagerly at once, in a graph as a check of the call (returned,
  also in `checks.ops`; None where no check op is added).
  """
  indices = grad.indices
  var_shape = tf.TensorShape(var.shape)
  rows = tf.compat.dimension_value(var_shape[0]) if var_shape.rank else None
  head = f"`{grad_name}.indices` must be in [0, "
  tail = (
      f") (the first dimension of `{var_name}`). Received: {grad_name}.indices["
  )
  if tf.executing_eagerly():
    if rows is None:
      rows = int(runtime_shape(var)[0])
    values = np.ravel(indices.numpy())
    bad = np.flatnonzero((values < 0) | (values >= rows))
    if bad.size:
      _fail(f"{head}{rows}{tail}{bad[0]}]={values[bad[0]]}")
    return None
  if not checks.active:
    return None
  flat = tf.reshape(tf.cast(indices, tf.int64), [-1])
  limit = (tf.constant(rows, tf.int64)
           if rows is not None else runtime_shape(var)[0])
  in_range = tf.logical_and(flat >= 0, flat < limit)

  def message():
    first_bad = tf.argmin(tf.cast(in_range, tf.int32), output_type=tf.int64)
    return [
        head,
        Value(limit),
        tail,
        Value(first_bad),
        "]=",
        Value(tf.gather(flat, first_bad)),
    ]

  return checks.require(lambda: tf.reduce_all(in_range), message)


def as_dense_gradient(grad, var, checks, grad_name="grad", var_name="var"):
  """The gradient as a dense tensor; IndexedSlices have duplicates summed.

  Summing repeated indices before any nonlinear math is what makes a sparse
  update equal the dense one (Keras 3 squares each duplicate separately).
  An IndexedSlices index out of [0, var.shape[0]) is an error
  (`check_sparse_indices`); the densification waits for that check.
  """
  if isinstance(grad, tf.IndexedSlices):
    check = check_sparse_indices(grad, var, checks, grad_name, var_name)
    with tf.control_dependencies([] if check is None else [check]):
      return tf.convert_to_tensor(grad)
  try:
    return tf.convert_to_tensor(grad, name="grad")
  except (TypeError, ValueError) as e:
    raise TypeError(
        f"`{grad_name}` must be a tensor or tf.IndexedSlices. Received: "
        f"{grad_name}={grad!r}") from e
