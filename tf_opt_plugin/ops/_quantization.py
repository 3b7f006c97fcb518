"""Pure-TF (XLA-compilable) 8-bit and bfloat16 optimizer-state formats.

The same numbers, bit for bit, as cc/kernels/math/quantization_math.h (see
docs/quantization.md):

* Block-wise dynamic quantization (Dettmers et al., 2022): blocks of 256
  consecutive elements of the flattened tensor, absmax = max |x| per block
  (float32; NaN if the block holds a NaN), and per element the uint8 index of
  the entry of the 256-entry dynamic map nearest x / absmax, ties away from
  zero. The signed map holds first moments, the unsigned map second moments;
  in the unsigned map a positive x never gets the code of 0. Dequantized:
  map[code] * absmax. Subnormals are flushed to zero explicitly.
* bfloat16 stochastic rounding: 16 bits of a counter-based hash of (seed,
  step, variable id, element index) added below the bfloat16 mantissa, then
  truncation; non-finite values round to nearest even.
"""

import numpy as np
import tensorflow as tf

BLOCK_SIZE = 256
_SIGNED_ZERO_CODE = 127
_FLT_MIN = float(np.finfo(np.float32).tiny)


def _dynamic_map_numpy(signed):
  """(entries, thresholds): the sorted map and its 255 decision thresholds.

  Entry: 10**(i-6) * (0.1 + 0.9 * (k + 1/2) / n) for decade i = 0..6 and
  k < n = 2**i (signed, both signs) or 2**(i+1) (unsigned), plus 0 and 1, as
  one float64 division of integers rounded to float32. Threshold j: the
  smallest float32 >= the midpoint of non-negative entries j and j + 1
  (padded with 2, above every ratio).
  """
  positive = [0.0]
  for i in range(7):
    n = 2**i if signed else 2**(i + 1)
    k = np.arange(n, dtype=np.float64)
    positive.extend((2.0 * n + 18.0 * k + 9.0) / (20.0 * n * 10.0**(6 - i)))
  positive = np.array(positive + [1.0], np.float32)
  entries = (np.concatenate([-positive[-2:0:-1], positive])
             if signed else positive)
  midpoint = (positive[:-1].astype(np.float64) + positive[1:]) / 2
  nearest = midpoint.astype(np.float32)
  ceil = np.where(nearest < midpoint, np.nextafter(nearest, np.float32(2)),
                  nearest)
  thresholds = np.full(255, 2.0, np.float32)
  thresholds[:ceil.size] = ceil
  return entries, thresholds


_MAPS = {signed: _dynamic_map_numpy(signed) for signed in (True, False)}


def dynamic_map(signed):
  """The 256 sorted float32 entries of the signed or unsigned dynamic map."""
  return _MAPS[signed][0].copy()


def _flush_subnormal(x):
  return tf.where(tf.abs(x) < _FLT_MIN, tf.zeros_like(x), x)


def _count_thresholds_at_or_below(thresholds, a):
  """Number of the 255 sorted thresholds <= a, in eight halving steps."""
  count = tf.zeros(tf.shape(a), tf.int32)
  for step in (128, 64, 32, 16, 8, 4, 2, 1):
    candidate = count + step
    below = tf.gather(thresholds, candidate - 1) <= a
    count = tf.where(below, candidate, count)
  return count


def _blocks(x):
  """x flattened to float32 [blocks, 256], zero-padded, and its size."""
  flat = _flush_subnormal(tf.reshape(tf.cast(x, tf.float32), [-1]))
  size = tf.size(flat)
  padding = (-size) % BLOCK_SIZE
  return tf.reshape(tf.pad(flat, [[0, padding]]), [-1, BLOCK_SIZE]), size


def quantize_blockwise(x, signed):
  """Returns (codes: uint8 of x's shape, absmax: float32 [ceil(size / 256)])."""
  x = tf.convert_to_tensor(x)
  blocks, size = _blocks(x)
  absmax = tf.reduce_max(tf.abs(blocks), axis=1)
  # reduce_max does not promise to propagate NaN: make a poisoned block's
  # absmax NaN explicitly.
  poisoned = tf.reduce_any(tf.math.is_nan(blocks), axis=1)
  absmax = tf.where(poisoned, tf.constant(np.nan, tf.float32), absmax)
  scale = absmax[:, None]
  ratio = tf.where(scale == 0, tf.zeros_like(blocks),
                   blocks / tf.where(scale == 0, tf.ones_like(scale), scale))
  ratio = _flush_subnormal(ratio)
  thresholds = tf.constant(_MAPS[signed][1])
  if signed:
    magnitude = _count_thresholds_at_or_below(thresholds, tf.abs(ratio))
    codes = tf.where(ratio < 0, _SIGNED_ZERO_CODE - tf.minimum(magnitude, 127),
                     _SIGNED_ZERO_CODE + magnitude)
  else:
    codes = _count_thresholds_at_or_below(thresholds, ratio)
    # The deliberate difference from bitsandbytes: a positive second moment
    # never dequantizes to zero.
    codes = tf.where((codes == 0) & (blocks > 0), tf.ones_like(codes), codes)
  codes = tf.cast(tf.reshape(codes, [-1])[:size], tf.uint8)
  return tf.reshape(codes, tf.shape(x)), absmax


def dequantize_blockwise(codes, absmax, signed):
  """float32 map[code] * absmax, of the codes' shape."""
  codes = tf.convert_to_tensor(codes)
  flat = tf.cast(tf.reshape(codes, [-1]), tf.int32)
  size = tf.size(flat)
  padding = (-size) % BLOCK_SIZE
  blocks = tf.reshape(tf.pad(flat, [[0, padding]]), [-1, BLOCK_SIZE])
  values = tf.gather(tf.constant(_MAPS[signed][0]), blocks) * absmax[:, None]
  values = tf.reshape(_flush_subnormal(values), [-1])[:size]
  return tf.reshape(values, tf.shape(codes))


def _uint32(value):
  return tf.cast(tf.bitwise.bitwise_and(tf.cast(value, tf.int64), 0xFFFFFFFF),
                 tf.uint32)


def _lowbias32(x):
  """Chris Wellons' 32-bit integer hash "lowbias32" (hash-prospector)."""
  shift = lambda v, n: tf.bitwise.right_shift(v, tf.constant(n, tf.uint32))
  x = tf.bitwise.bitwise_xor(x, shift(x, 16))
  x = x * tf.constant(0x7FEB352D, tf.uint32)
  x = tf.bitwise.bitwise_xor(x, shift(x, 15))
  x = x * tf.constant(0x846CA68B, tf.uint32)
  return tf.bitwise.bitwise_xor(x, shift(x, 16))


def _hash_combine(h, v):
  """lowbias32((h ^ v) + golden ratio), mod 2**32."""
  return _lowbias32(
      tf.bitwise.bitwise_xor(h, v) + tf.constant(0x9E3779B9, tf.uint32))


def stochastic_rounding_key(seed, step, variable_id):
  """uint32 key of (seed, step, variable id), each taken mod 2**32.

  The `rounding_key` of the AdamW, LAMB and Lion updates: the optimizers
  pass (global seed, 1-based step, variable index).

  >>> int(stochastic_rounding_key(0, 0, 0)) == int(
  ...     stochastic_rounding_key(0, 0, 0))  # the same key every time
  True
  >>> int(stochastic_rounding_key(0, 1, 0)) != int(
  ...     stochastic_rounding_key(0, 2, 0))  # another step, another key
  True
  """
  h = _hash_combine(tf.constant(0, tf.uint32), _uint32(seed))
  return _hash_combine(_hash_combine(h, _uint32(step)), _uint32(variable_id))


def bfloat16_round_stochastic(x, key, first_index=0):
  """float32 `x` rounded stochastically to bfloat16 (same shape).

  Element i of the flattened tensor uses the random bits of index
  first_index + i under `key`: unbiased, and the same bits for the same key.
  """
  x = tf.convert_to_tensor(x, tf.float32)
  flat = tf.reshape(x, [-1])
  index = tf.range(tf.size(flat, out_type=tf.int64), dtype=tf.int64)
  index += tf.cast(first_index, tf.int64)
  low = _uint32(index)
  high = tf.cast(tf.bitwise.right_shift(index, 32), tf.uint32)
  h = _hash_combine(_hash_combine(tf.cast(key, tf.uint32), low), high)
  random16 = tf.bitwise.right_shift(h, tf.constant(16, tf.uint32))
  bits = tf.bitwise.right_shift(
      tf.bitcast(flat, tf.uint32) + random16, tf.constant(16, tf.uint32))
  stochastic = tf.bitcast(tf.cast(bits, tf.uint16), tf.bfloat16)
  # Random bits added to an Inf or NaN would change its meaning.
  nearest = tf.cast(flat, tf.bfloat16)
  finite = tf.abs(flat) <= np.finfo(np.float32).max
  return tf.reshape(tf.where(finite, stochastic, nearest), tf.shape(x))
