"""Optimizer state stored in another format than its variable.

Every slot of an AdamW, LAMB or Lion update is stored in one of four layouts
(docs/quantization.md has the formats, docs/semantics.md what they cost):

  "same"      a variable of the model variable's dtype (the default);
  "float32"   a float32 variable, for a float16 or bfloat16 model variable;
  "bfloat16"  a bfloat16 variable, for a float16 or float32 model variable,
              stored rounded to nearest even;
  "int8"      a `QuantizedState`: uint8 codes shaped like the variable and
              one float32 absmax per block of 256 elements (block-wise
              dynamic quantization, Dettmers et al. 2022); first moments use
              the signed map, second moments the unsigned one.

An update reads the state widened to the compute type (float32 for every
layout but "same" on a float64 variable), runs the algorithm's float32 math,
and stores the new state in its layout. The layout is read off the slots (all
slots of one variable share it) and becomes the ops' `state_dtype` attr; the
pure-TF twin sees a quantized slot through `StagedQuantized`, which
dequantizes on read and quantizes on assign, so each algorithm's twin is
written once for every layout.
"""

import math
from typing import Any, NamedTuple

import tensorflow as tf

from tf_opt_plugin.ops import _inputs
from tf_opt_plugin.ops import _quantization

LAYOUTS = ("same", "float32", "bfloat16", "int8")

# The stored dtypes a slot may have besides its variable's, per variable
# dtype: {variable dtype: {slot dtype: layout}}. float64 variables keep
# float64 state.
_NARROWER = {
    tf.float16: {
        tf.float32: "float32",
        tf.bfloat16: "bfloat16"
    },
    tf.bfloat16: {
        tf.float32: "float32"
    },
    tf.float32: {
        tf.bfloat16: "bfloat16"
    },
    tf.float64: {},
}


class QuantizedState(NamedTuple):
  """One slot in 8-bit block-wise form: two variables.

  Attributes:
    codes: a `tf.uint8` variable shaped like the model variable, each
      element the index of its entry in the slot's dynamic map.
    absmax: a `tf.float32` variable of shape `absmax_shape(var.shape)`: the
      largest magnitude of each block of 256 consecutive elements (of the
      flattened variable). Element i stores `map[codes[i]] * absmax[i //
      256]`; all zeros is the zero state.

  >>> w = tf.Variable(tf.zeros([3, 1000]))
  >>> m = QuantizedState(tf.Variable(tf.zeros(w.shape, tf.uint8)),
  ...                    tf.Variable(tf.zeros(absmax_shape(w.shape))))
  >>> state_layout(w, m), m.absmax.shape.as_list()
  ('int8', [12])
  """

  codes: Any
  absmax: Any


def absmax_shape(var_shape):
  """[ceil(size / 256)]: the shape of a `QuantizedState`'s absmax.

  >>> absmax_shape([3, 1000])
  [12]
  """
  size = math.prod(tf.TensorShape(var_shape).as_list())
  return [-(-size // _quantization.BLOCK_SIZE)]


def state_layout(var, slot):
  """The layout ("same", "float32", "bfloat16" or "int8") of `slot`, a slot
  of `var`, or None when its dtype is none of them.

  >>> w = tf.Variable([1.0, 2.0])
  >>> state_layout(w, tf.Variable([0.0, 0.0], dtype=tf.bfloat16))
  'bfloat16'
  """
  if isinstance(slot, QuantizedState):
    return "int8"
  var_dtype = tf.as_dtype(var.dtype).base_dtype
  slot_dtype = tf.as_dtype(slot.dtype).base_dtype
  if slot_dtype == var_dtype:
    return "same"
  return _NARROWER.get(var_dtype, {}).get(slot_dtype)


def slot_layout(var, named_slots, var_name="var"):
  """The one layout of `var`'s slots, [(name, slot)] with None for an
  optional slot not in use; checks their dtypes and that they agree.

  A float slot of another dtype than the layouts allow keeps the kernels'
  message (InvalidArgumentError); 8-bit state on a float64 variable is one
  too. Slots in two layouts are a ValueError naming both.
  """
  var_dtype = tf.as_dtype(var.dtype).base_dtype
  first = None  # (name, layout) of the first slot
  for name, slot in named_slots:
    if slot is None:
      continue
    layout = state_layout(var, slot)
    if layout is None:
      _inputs.check_variable(slot, name, var_dtype, var_name)
    if layout == "int8" and var_dtype == tf.float64:
      raise tf.errors.InvalidArgumentError(
          None, None,
          f"`{name}` must have dtype float64 (the dtype of `{var_name}`): "
          "8-bit state needs a float16, bfloat16 or float32 variable. "
          f"Received: {name}=QuantizedState, {var_name}.dtype=float64")
    if first is None:
      first = (name, layout)
    elif layout != first[1]:
      raise ValueError(
          f"`{first[0]}` and `{name}` must store the state of `{var_name}` in "
          f"one layout. Received: {first[0]}: {_describe(first[1], var)}, "
          f"{name}: {_describe(layout, var)}")
  return "same" if first is None else first[1]


def _describe(layout, var):
  if layout == "same":
    return tf.as_dtype(var.dtype).base_dtype.name
  if layout == "int8":
    return "8-bit QuantizedState"
  return layout


def expand(named_slots):
  """[(name, variable)] with each `QuantizedState` slot `x` as its codes
  (named `x`) and its absmax (named `x_absmax`)."""
  expanded = []
  for name, slot in named_slots:
    if isinstance(slot, QuantizedState):
      expanded += [(name, slot.codes), (_absmax_name(name), slot.absmax)]
    else:
      expanded.append((name, slot))
  return expanded


def _absmax_name(name):
  """"m_absmax" for "m", "vhat_absmax[2]" for "vhat[2]"."""
  base, bracket, rest = name.partition("[")
  return f"{base}_absmax{bracket}{rest}"


def check_quantized(name, state, var, checks, var_name="var"):
  """A `QuantizedState` slot of `var`: uint8 codes shaped like it, float32
  absmax of `absmax_shape(var.shape)` (statically where known, else at run
  time unless the kernel checks)."""
  absmax_name = _absmax_name(name)
  for part, variable, dtype in ((name, state.codes, tf.uint8),
                                (absmax_name, state.absmax, tf.float32)):
    _inputs.check_variable_object(variable, part)
    actual = tf.as_dtype(variable.dtype).base_dtype
    if actual != dtype:
      raise tf.errors.InvalidArgumentError(
          None, None, f"`{part}` must have dtype {dtype.name} (8-bit state of "
          f"`{var_name}`). Received: {part}.dtype={actual.name}")
  _inputs.check_same_shape(name, state.codes, var, checks, var_name)
  var_shape = tf.TensorShape(var.shape)
  shape = tf.TensorShape(state.absmax.shape)
  expected = absmax_shape(var_shape) if var_shape.is_fully_defined() else None
  head = (f"`{absmax_name}` must have shape "
          f"{'[ceil(size / 256)]' if expected is None else expected} (one "
          f"float32 per block of 256 elements of `{var_name}`). Received: "
          f"{var_name}.shape=")
  if expected is not None and shape.rank is not None:
    if shape.as_list() != expected:
      raise tf.errors.InvalidArgumentError(
          None, None, f"{head}{_inputs.shape_text(var_shape)}, "
          f"{absmax_name}.shape={_inputs.shape_text(shape)}")
    if shape.is_fully_defined():
      return
  if checks.kernel_validates:
    return
  shapes = []  # [actual, expected, var's], built where a check op is added

  def condition():
    shapes.append(_inputs.runtime_shape(state.absmax))
    shapes.append(_inputs.runtime_shape(var))
    size = tf.reduce_prod(shapes[1])
    blocks = (size + _quantization.BLOCK_SIZE - 1) // _quantization.BLOCK_SIZE
    return _inputs.same_shape(shapes[0], tf.reshape(blocks, [1]))

  checks.require(
      condition, lambda: [
          head,
          _inputs.Shape(shapes[1]), f", {absmax_name}.shape=",
          _inputs.Shape(shapes[0])
      ])


class StagedQuantized:
  """A `QuantizedState` slot as a twin sees it (see `_update._Staged`):
  `read_value()` dequantizes it to float32, `assign(value)` records the
  quantized `value`, `stored_value()` is what was recorded, dequantized."""

  def __init__(self, state, signed):
    self._state = state
    self._signed = signed
    self.value = None  # (codes, absmax) once assigned

  @property
  def dtype(self):
    return tf.float32

  @property
  def shape(self):
    return self._state.codes.shape

  @property
  def device(self):
    return self._state.codes.device

  def read_value(self):
    return _quantization.dequantize_blockwise(self._state.codes.read_value(),
                                              self._state.absmax.read_value(),
                                              self._signed)

  def assign(self, value):
    if self.value is not None:
      raise RuntimeError("A twin assigns each variable once.")
    self.value = _quantization.quantize_blockwise(value, self._signed)
    return value

  def stored_value(self):
    return _quantization.dequantize_blockwise(*self.value, self._signed)

  def pending(self):
    return list(self.value)

  def write(self):
    codes, absmax = self.value
    return tf.group(self._state.codes.assign(codes),
                    self._state.absmax.assign(absmax))
