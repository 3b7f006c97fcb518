"""Validation of optimizer constructor arguments, shared by every front end.

Each check raises at construction time, naming the argument and the value
received ("`beta_1` must be in [0, 1). Received: beta_1=1.5"), so a typo never
reaches a training step. Values that are schedules, callables or tensors are
only checked for type: their value is known later.
"""

import numbers
import re


def _is_number(value):
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(name, value):
  """`value` is a real number (not a bool); returns it as a float."""
  if not _is_number(value):
    raise TypeError(f"`{name}` must be a number. Received: {name}={value!r} "
                    f"of type {type(value).__name__}")
  return float(value)


def check_unit_interval(name, value):
  """0 <= value < 1 (decay rates such as beta_1, beta_2, momentum)."""
  value = check_number(name, value)
  if not 0.0 <= value < 1.0:
    raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value}")
  return value


def check_non_negative(name, value):
  value = check_number(name, value)
  if not value >= 0.0:  # also rejects NaN
    raise ValueError(f"`{name}` must be >= 0. Received: {name}={value}")
  return value


def check_positive(name, value):
  value = check_number(name, value)
  if not value > 0.0:
    raise ValueError(f"`{name}` must be > 0. Received: {name}={value}")
  return value


def check_range(holds, requirement):
  """A check of a number for which `holds(number)` is true.

  Its ValueError says "`name` must be <requirement>. Received: name=value",
  with the value as given (`check_range(lambda x: x <= 0, "<= 0")`).
  """

  def check(name, value):
    number = check_number(name, value)
    if not holds(number):  # also rejects NaN
      raise ValueError(
          f"`{name}` must be {requirement}. Received: {name}={value}")
    return number

  return check


def check_bool(name, value):
  if not isinstance(value, bool):
    raise TypeError(f"`{name}` must be True or False. Received: "
                    f"{name}={value!r}")
  return value


def check_fused(fused):
  """`fused` is None (op where it runs), True (insist) or False (twin)."""
  if fused is not None and not isinstance(fused, bool):
    raise TypeError("`fused` must be None, True or False. Received: "
                    f"fused={fused!r}")
  return fused


def check_patterns(name, patterns):
  """A list of regular expressions (or None); each must compile."""
  if patterns is None:
    return None
  if isinstance(patterns, str):
    raise TypeError(f"`{name}` must be a list of regular expressions, not a "
                    f"single string. Received: {name}={patterns!r}")
  patterns = list(patterns)
  for pattern in patterns:
    if not isinstance(pattern, str):
      raise TypeError(f"`{name}` must contain strings. Received: "
                      f"{name}={patterns!r}")
    try:
      re.compile(pattern)
    except re.error as e:
      raise ValueError(
          f"`{name}` holds an invalid regular expression "
          f"{pattern!r} ({e}). Received: {name}={patterns!r}") from None
  return patterns


def matches_any(patterns, variable_name):
  """Whether any pattern is found (`re.search`) in `variable_name`."""
  return any(re.search(p, variable_name) is not None for p in patterns or ())


# The reduced-precision layouts of optimizer state (docs/quantization.md);
# None keeps the variable's dtype.
STATE_DTYPES = ("float32", "bfloat16", "int8")


def check_state_dtype(name, value):
  """None, or one of `STATE_DTYPES`, returned as its string.

  Also accepted: the `tf.DType` or NumPy dtype (or scalar type) of one of
  them, normalised to the string, so the config stores "bfloat16" whether
  `tf.bfloat16` or "bfloat16" was given.
  """
  if value is None:
    return None
  normalised = value
  if not isinstance(value, (str, bool, numbers.Number)):
    # tf.DType, np.dtype, np.float32 and ml_dtypes' bfloat16 all carry their
    # name; importing TensorFlow here is not needed for that.
    dtype_name = getattr(value, "name", None)
    if not isinstance(dtype_name, str):
      dtype_name = getattr(getattr(value, "dtype", None), "name", None)
    if not isinstance(dtype_name, str) and isinstance(value, type):
      dtype_name = getattr(value, "__name__", None)
    normalised = dtype_name
  if not isinstance(normalised, str) or normalised not in STATE_DTYPES:
    raise ValueError(f"`{name}` must be None, 'float32', 'bfloat16' or "
                     f"'int8'. Received: {name}={value!r}")
  return normalised
