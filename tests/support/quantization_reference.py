"""Float64 numpy references of the 8-bit and bfloat16 optimizer-state formats.

Written from the definitions (docs/quantization.md), never from the code under
test:

* The dynamic maps of Dettmers et al., "8-bit Optimizers via Block-wise
  Quantization" (2022), as bitsandbytes' `create_dynamic_map(signed,
  max_exponent_bits=7, total_bits=8)` defines them: for each decade
  i = 0..6, the midpoints of the n_i equal intervals of [0.1, 1] scaled by
  10**(i - 6), with n_i = 2**i for the signed map (both signs) and
  n_i = 2**(i + 1) for the unsigned one; plus 0 and 1; sorted. Each entry is
  the exact rational value rounded once to the nearest float32.
* Blockwise quantization: blocks of 256 consecutive elements, absmax per block,
  code = index of the map entry nearest to x / absmax, ties away from zero;
  for the unsigned map a positive x never gets the code of 0. Subnormal
  float32 values are flushed to zero (inputs, ratios and dequantized values)
  so that every implementation agrees whatever its denormal mode.
* bfloat16: round-to-nearest-even, and stochastic rounding with the counter
  hash below (exact bits).
"""

import fractions
import functools

import numpy as np

__all__ = [
    "BLOCK_SIZE",
    "dynamic_map",
    "quantize_blockwise",
    "dequantize_blockwise",
    "bfloat16_round_nearest_even",
    "bfloat16_round_stochastic",
    "bfloat16_bits_to_float32",
    "lowbias32",
    "hash_combine",
    "stochastic_rounding_key",
    "stochastic_rounding_bits",
]

BLOCK_SIZE = 256
_FLT_MIN = np.float32(np.finfo(np.float32).tiny)


def _round_to_float32(q):
  """The float32 nearest the rational `q` (ties to even), exactly."""
  f = np.float32(float(q))  # within one float32 step of the answer
  candidates = [
      np.nextafter(f, np.float32(-np.inf)), f,
      np.nextafter(f, np.float32(np.inf))
  ]
  errors = [abs(fractions.Fraction(float(c)) - q) for c in candidates]
  best = min(errors)
  ties = [c for c, e in zip(candidates, errors) if e == best]
  even = [c for c in ties if int(c.view(np.uint32)) % 2 == 0]
  return (even or ties)[0]


# Cached: the exact rationals cost milliseconds, and the state references
# quantize every step. The array is read-only, so no caller can change it.
@functools.lru_cache(maxsize=None)
def dynamic_map(signed):
  """The 256 sorted float32 entries of the signed or unsigned dynamic map."""
  exact = [fractions.Fraction(0), fractions.Fraction(1)]
  for i in range(7):
    n = 2**i if signed else 2**(i + 1)
    scale = fractions.Fraction(10)**(i - 6)
    for k in range(n):
      low = fractions.Fraction(1, 10) + fractions.Fraction(9, 10) * k / n
      high = fractions.Fraction(1, 10) + fractions.Fraction(9, 10) * (k + 1) / n
      mean = (low + high) / 2 * scale
      exact.append(mean)
      if signed:
        exact.append(-mean)
  assert len(exact) == 256
  book = np.array(sorted(_round_to_float32(q) for q in exact), np.float32)
  book.setflags(write=False)
  return book


def _flush(x):
  x = np.asarray(x, np.float32)
  return np.where(np.abs(x) < _FLT_MIN, np.float32(0), x).astype(np.float32)


def _blocks(x):
  flat = _flush(np.asarray(x, np.float32).reshape(-1))
  pad = (-flat.size) % BLOCK_SIZE
  return np.concatenate([flat,
                         np.zeros(pad,
                                  np.float32)]).reshape(-1,
                                                        BLOCK_SIZE), flat.size


def _nearest_code(r, book):
  """Index of the entry of `book` nearest each float32 ratio `r`.

  Ties go away from zero. A NaN ratio gets the code of 0. float64 differences
  of float32 values this close are exact, so ties are found exactly.
  """
  r = np.asarray(r, np.float64)
  book64 = book.astype(np.float64)
  zero = int(np.flatnonzero(book64 == 0)[0])
  hi = np.clip(np.searchsorted(book64, r, side="left"), 1, book.size - 1)
  lo = hi - 1
  d_lo = np.abs(r - book64[lo])
  d_hi = np.abs(book64[hi] - r)
  far_is_hi = np.abs(book64[hi]) > np.abs(book64[lo])
  pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & far_is_hi)
  code = np.where(pick_hi, hi, lo)
  return np.where(np.isnan(r), zero, code)


def quantize_blockwise(x, signed):
  """Returns (codes uint8 of x.size, absmax float32 of ceil(size / 256)).

  absmax = max |x| over the block; a NaN anywhere makes it NaN and an Inf
  makes it Inf, so the whole block dequantizes to non-finite values.
  """
  blocks, n = _blocks(x)
  with np.errstate(invalid="ignore"):
    absmax = np.max(np.abs(blocks), axis=1).astype(np.float32)
    scale = absmax[:, None].astype(np.float64)
    safe = np.where(scale == 0, 1.0, scale)
    r = np.where(scale == 0, 0.0, blocks.astype(np.float64) / safe)
  r = _flush(r.astype(np.float32))  # the float32 quotient, exactly rounded
  book = dynamic_map(signed)
  code = _nearest_code(r, book)
  if not signed:
    code = np.where((blocks > 0) & (code == 0), 1, code)
  return code.reshape(-1)[:n].astype(np.uint8), absmax


def dequantize_blockwise(codes, absmax, signed):
  """float32 map[code] * absmax, element by element."""
  codes = np.asarray(codes, np.uint8).reshape(-1)
  book = dynamic_map(signed).astype(np.float64)
  scale = np.repeat(np.asarray(absmax, np.float64), BLOCK_SIZE)[:codes.size]
  with np.errstate(invalid="ignore"):
    return _flush((book[codes] * scale).astype(np.float32))


def bfloat16_bits_to_float32(bits):
  return (np.asarray(bits, np.uint32) << 16).view(np.float32)


def bfloat16_round_nearest_even(x):
  """uint16 bfloat16 bits of float32 `x`, round-to-nearest-even; NaN quiet."""
  u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
  rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
  nan = np.isnan(np.asarray(x, np.float32))
  return np.where(nan, (u >> 16) | 0x40, rounded).astype(np.uint16)


_MASK32 = 0xFFFFFFFF


def lowbias32(x):
  """Chris Wellons' 32-bit integer hash "lowbias32" (hash-prospector)."""
  x = int(x) & _MASK32
  x ^= x >> 16
  x = (x * 0x7FEB352D) & _MASK32
  x ^= x >> 15
  x = (x * 0x846CA68B) & _MASK32
  x ^= x >> 16
  return x


def hash_combine(h, v):
  """lowbias32((h ^ v) + golden ratio), mod 2**32."""
  return lowbias32(((int(h) ^ (int(v) & _MASK32)) + 0x9E3779B9) & _MASK32)


def stochastic_rounding_key(seed, step, variable_id):
  """Per (seed, step, variable) key; each argument taken mod 2**32."""
  return hash_combine(hash_combine(hash_combine(0, seed), step), variable_id)


def stochastic_rounding_bits(key, index):
  """16 random bits for element `index` (64-bit) under `key`."""
  index = int(index)
  return hash_combine(hash_combine(key, index & _MASK32), index >> 32) >> 16


def bfloat16_round_stochastic(x, key, first_index=0):
  """uint16 bfloat16 bits of float32 `x` (flat, element i has index
  first_index + i) rounded stochastically: 16 random bits are added below the
  bfloat16 mantissa and the sum truncated, so a value is rounded up with
  probability equal to its distance from the value below, in bfloat16 steps.
  Non-finite values round to nearest even.
  """
  x = np.asarray(x, np.float32).reshape(-1)
  bits = np.array(
      [stochastic_rounding_bits(key, first_index + i) for i in range(x.size)],
      np.uint64)
  u = x.view(np.uint32).astype(np.uint64)
  stochastic = ((u + bits) >> 16).astype(np.uint16)
  return np.where(np.isfinite(x), stochastic, bfloat16_round_nearest_even(x))
