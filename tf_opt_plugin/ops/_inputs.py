"""Conversion and validation of the inputs shared by every update function.

The fused kernels validate on their own; the pure-TF twins call these checks,
which raise the same error types with the same messages, so a user sees the
same failure whichever path ran.
"""

import tensorflow as tf


def compute_dtype(dtype):
  """float64 for float64 variables, float32 for every other (half types too)."""
  return tf.float64 if tf.as_dtype(dtype).base_dtype == tf.float64 else tf.float32


def as_scalar(value, dtype, name):
  """A Python number, tensor or variable as a scalar tensor of `dtype`."""
  if isinstance(value, (int, float)):
    return tf.constant(value, dtype=dtype, name=name)
  tensor = tf.convert_to_tensor(value, name=name)
  if tensor.shape.rank not in (None, 0):
    raise tf.errors.InvalidArgumentError(
        None, None,
        f"`{name}` must be a scalar. Received: {name}.shape={tensor.shape}")
  return tf.cast(tensor, dtype)


def as_step(step):
  """`step`, the 1-based count of this update, as an int64 scalar."""
  tensor = tf.cast(tf.convert_to_tensor(step, name="step"), tf.int64)
  if tensor.shape.rank not in (None, 0):
    raise tf.errors.InvalidArgumentError(
        None, None,
        f"`step` must be a scalar. Received: step.shape={tensor.shape}")
  static = tf.get_static_value(tensor)
  if static is not None and static < 1:
    raise tf.errors.InvalidArgumentError(
        None, None,
        "`step` must be >= 1 (the 1-based count of this update). Received: "
        f"step={static}")
  return tensor


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
        None, None,
        "`grad.values` must have rows shaped like `var`'s. Received: "
        f"var.shape={var.shape}, grad.values.shape={grad.values.shape}")


def as_dense_gradient(grad):
  """The gradient as a dense tensor; IndexedSlices have duplicates summed.

  Summing repeated indices before any nonlinear math is what makes a sparse
  update equal the dense one (Keras 3 squares each duplicate separately).
  """
  if isinstance(grad, tf.IndexedSlices):
    return tf.convert_to_tensor(grad)
  return tf.convert_to_tensor(grad, name="grad")


def check_variable(variable, name, dtype, grad_name="grad"):
  """The variable has `dtype` (that of the gradient `grad_name`)."""
  actual = tf.as_dtype(variable.dtype).base_dtype
  if actual != dtype:
    raise tf.errors.InvalidArgumentError(
        None, None,
        f"`{name}` must have dtype {dtype.name} (the dtype of `{grad_name}`). "
        f"Received: {name}.dtype={actual.name}")


def check_same_shape(name, shape, var_shape, var_name="var"):
  """`name` is shaped like `var_name` (statically, where both are known)."""
  shape, var_shape = tf.TensorShape(shape), tf.TensorShape(var_shape)
  if not shape.is_compatible_with(var_shape):
    raise tf.errors.InvalidArgumentError(
        None, None,
        f"`{name}` must have the shape of `{var_name}`. Received: "
        f"{var_name}.shape={var_shape}, {name}.shape={shape}")


def check_update_inputs(var, slots, grad, var_name="var", grad_name="grad"):
  """Dtype and shape checks of a variable, its slots ({name: var}) and grad.

  `var_name` and `grad_name` are the names the messages use ("var[2]" for
  the third variable of a multi-tensor update).
  """
  if not tf.as_dtype(grad.dtype).is_floating:
    raise TypeError(
        f"`{grad_name}` and `{var_name}` must be floating-point. Received: "
        f"{grad_name}.dtype={tf.as_dtype(grad.dtype).name}")
  check_variable(var, var_name, grad.dtype, grad_name)
  for name, slot in slots.items():
    check_variable(slot, name, grad.dtype, grad_name)
  for name, slot in slots.items():
    check_same_shape(name, slot.shape, var.shape, var_name)
  check_same_shape(grad_name, grad.shape, var.shape, var_name)


def check_distinct(named_variables):
  """No variable appears twice in `named_variables` ([(name, variable)]): an
  update would read what it has just written.

  The message is the kernels' one, naming both positions.
  """
  first_names = {}  # id(variable) -> the name it first appeared under
  for name, variable in named_variables:
    if id(variable) in first_names:
      raise tf.errors.InvalidArgumentError(
          None, None,
          f"`{first_names[id(variable)]}` and `{name}` must be distinct "
          "variables. Received the same variable twice.")
    first_names[id(variable)] = name


def runtime_checks(variables, step=None):
  """Checks the twin needs before it reads or writes anything.

  Eagerly, an uninitialised variable raises FailedPreconditionError here (its
  read would silently return an empty tensor). Traced, a step that is only
  known at run time gets an assertion, which the caller makes every read and
  write of the update depend on, so a bad step changes nothing.

  Args:
    variables: {name: variable} of the variables and slots of the update.
    step: the int64 step tensor from `as_step`, or None (no step).

  Returns:
    The assertion ops to use as control dependencies (possibly none).
  """
  if tf.executing_eagerly():
    for name, variable in variables.items():
      if not bool(variable.is_initialized()):
        raise tf.errors.FailedPreconditionError(
            None, None,
            f"Attempting to use uninitialized variable `{name}`. Initialise "
            "it before applying an update.")
    return []
  if step is None or tf.get_static_value(step) is not None:
    return []
  return [tf.debugging.assert_greater_equal(
      step, tf.constant(1, tf.int64),
      message="`step` must be >= 1 (the 1-based count of this update)")]
