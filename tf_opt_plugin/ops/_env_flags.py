"""Reads the boolean TF_OPT_PLUGIN_* environment variables, all by one rule."""

import os

_TRUE = ("1", "true", "on", "yes")
_FALSE = ("0", "false", "off", "no")


def read_flag(name, default: bool) -> bool:
  """The value of the boolean environment variable `name`.

  Accepts 1/0, true/false, on/off and yes/no in any case, with surrounding
  whitespace. Unset or empty gives `default`. Any other value raises, so a
  typo never silently picks a side.

  Args:
    name: the environment variable.
    default: the value when it is unset or empty.

  Returns:
    The flag as a bool.

  Raises:
    ValueError: the variable holds anything else.
  """
  raw = os.environ.get(name)
  value = (raw or "").strip().lower()
  if not value:
    return bool(default)
  if value in _TRUE:
    return True
  if value in _FALSE:
    return False
  raise ValueError(
      f"`{name}` must be one of 1/0, true/false, on/off, yes/no (any case). "
      f"Received: {name}={raw!r}")
