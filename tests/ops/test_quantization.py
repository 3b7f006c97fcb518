"""The 8-bit and bfloat16 state formats against the float64 reference.

Three implementations, one definition (docs/quantization.md):
cc/kernels/math/quantization_math.h (compiled here with g++ into
tests/support/quantization_math_check.cc, and with nvcc when present),
tf_opt_plugin/ops/_quantization.py (eager, tf.function, jit_compile=True) and
tests/support/quantization_reference.py. Codes, absmax, dequantized values and
bfloat16 bits must be identical: 0 differences, bucket boundaries included.
"""

import os
import shutil
import subprocess
import zlib

import numpy as np
import pytest
import tensorflow as tf

import quantization_reference as ref
from tf_opt_plugin.ops import _quantization as quant

REPO = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK_SOURCE = os.path.join(REPO, "tests", "support",
                            "quantization_math_check.cc")
F32 = np.float32
FLT_MIN = np.finfo(F32).tiny

# Published values of bitsandbytes' create_dynamic_map (from its definition:
# e.g. the signed map's smallest entry is the midpoint of the last of the 64
# intervals of [0.1, 1]). bitsandbytes computes them in float32 steps; ours
# are the exact values rounded once, so allow 2 float32 steps.
PUBLISHED = {
    True: {
        0: -0.99296875,
        126: -5.5e-7,
        127: 0.0,
        128: 5.5e-7,
        129: 3.25e-6,
        130: 7.75e-6,
        254: 0.99296875,
        255: 1.0
    },
    False: {
        0: 0.0,
        1: 3.25e-7,
        2: 7.75e-7,
        3: 2.125e-6,
        254: 0.996484375,
        255: 1.0
    },
}


def _bits(x):
  """uint32 bits of float32 values, every NaN as the same quiet NaN."""
  x = np.asarray(x, F32)
  return np.where(np.isnan(x), F32(np.nan), x).view(np.uint32)


def _exact_midpoints(signed):
  """The midpoints between adjacent entries that float32 holds exactly."""
  book = ref.dynamic_map(signed).astype(np.float64)
  mid = (book[:-1] + book[1:]) / 2
  return mid[mid.astype(F32) == mid].astype(F32)


def _ties(signed):
  """The exact midpoints, and the floats nearest every midpoint either side."""
  book = ref.dynamic_map(signed).astype(np.float64)
  rounded = ((book[:-1] + book[1:]) / 2).astype(F32)
  return np.concatenate([
      _exact_midpoints(signed), rounded,
      np.nextafter(rounded, F32(-2)),
      np.nextafter(rounded, F32(2))
  ])


def _with_absmax_one(values, signed):
  """`values` in blocks whose absmax is exactly 1, so x / absmax = x."""
  values = np.asarray(values, F32)
  if not signed:
    values = np.abs(values)
  blocks = -(-values.size // 255)
  padded = np.zeros(blocks * 255, F32)
  padded[:values.size] = values
  return np.concatenate(
      [np.ones((blocks, 1), F32),
       padded.reshape(blocks, 255)], axis=1).reshape(-1)


def _every_entry_and_neighbours(signed):
  book = ref.dynamic_map(signed)
  around = [book, np.nextafter(book, F32(-2)), np.nextafter(book, F32(2))]
  return _with_absmax_one(np.concatenate(around).clip(-1, 1), signed)


def _with_element(x, index, value):
  x = x.copy()
  x[index] = value
  return x


# name -> (rng, signed) -> float32 values. Each case is used signed as is and,
# as a second moment, unsigned with its absolute values.
CASES = {
    "normal_partial_last_block":
        lambda rng, signed: rng.standard_normal(4096 + 100),
    "lognormal_wide_range":
        lambda rng, signed: np.exp(rng.uniform(-40, 10, 3000)) * rng.choice(
            [-1, 1], 3000),
    "all_zero_blocks":
        lambda rng, signed: _with_element(np.zeros(600), 300, -0.0),
    "single_huge_outlier":
        lambda rng, signed: _with_element(
            rng.uniform(-1, 1, 512) * 1e-3, 17, 1e30),
    "nan_and_inf":
        lambda rng, signed: _with_element(rng.standard_normal(
            1024), [3, 300, 700], [np.nan, np.inf, -np.inf]),
    "subnormals_and_tiny":
        lambda rng, signed: np.concatenate([
            [1e-45, 1e-40, FLT_MIN, -1e-42, 2e-38, 1.0],
            rng.uniform(-1, 1, 250) * 1e-37,
            [1e-40, 3e-41],  # a block of subnormals only
        ]),
    "ties_and_neighbours":
        lambda rng, signed: _with_absmax_one(_ties(signed), signed),
    "every_entry_and_neighbours":
        lambda rng, signed: _every_entry_and_neighbours(signed),
}


def _case_values(name, signed):
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  x = np.asarray(CASES[name](rng, signed), F32)
  return x if signed else np.abs(x)  # second moments are non-negative


SIGNS = [pytest.param(True, id="signed"), pytest.param(False, id="unsigned")]

# ----------------------------------------------------------------------------
# The reference itself: the published map, the bound, the chosen rules.


@pytest.mark.parametrize("signed", SIGNS)
def test_map_matches_published_values(signed):
  book = ref.dynamic_map(signed)
  assert book.dtype == F32 and book.size == 256
  assert np.unique(book).size == 256 and np.all(np.diff(book) > 0)
  assert book[-1] == 1.0 and (book[0] == 0.0) == (not signed)
  for index, value in PUBLISHED[signed].items():
    spacing = 2 * np.spacing(abs(F32(value)))
    assert abs(book[index] - F32(value)) <= spacing, (index, book[index])


@pytest.mark.parametrize("signed", SIGNS)
def test_ties_round_away_from_zero(signed):
  ties = _exact_midpoints(signed)
  assert ties.size > 100
  x = _with_absmax_one(ties, signed)
  codes, _ = ref.quantize_blockwise(x, signed)
  decoded = ref.dynamic_map(signed)[codes]
  is_tie = np.isin(x, ties)
  assert np.all(np.abs(decoded[is_tie]) > np.abs(x[is_tie]))


def test_unsigned_positive_never_dequantizes_to_zero():
  x = np.array([1.0, 1e-7, 1e-12, 1e-30, FLT_MIN, 0.0], F32)
  codes, absmax = ref.quantize_blockwise(x, signed=False)
  values = ref.dequantize_blockwise(codes, absmax, signed=False)
  np.testing.assert_array_equal(codes, [255, 1, 1, 1, 1, 0])
  assert np.all(values[:-1] > 0) and values[-1] == 0
  # bitsandbytes' nearest rounding would give 0 below half the first entry.
  assert ref.dynamic_map(False)[1] / 2 > 1e-7


@pytest.mark.parametrize("signed", SIGNS)
@pytest.mark.parametrize("name", [
    "normal_partial_last_block", "lognormal_wide_range", "single_huge_outlier",
    "ties_and_neighbours", "every_entry_and_neighbours", "all_zero_blocks"
])
def test_error_within_half_the_largest_gap_per_block(name, signed):
  x = _case_values(name, signed)
  codes, absmax = ref.quantize_blockwise(x, signed)
  error = np.abs(
      ref.dequantize_blockwise(codes, absmax, signed).astype(np.float64) - x)
  half_gap = np.max(np.diff(ref.dynamic_map(signed).astype(np.float64))) / 2
  padded = np.zeros(absmax.size * 256)
  padded[:x.size] = error
  per_block = padded.reshape(-1, 256).max(axis=1)
  # Plus the float32 roundings of x / absmax and of map * absmax.
  bound = absmax * half_gap + 2 * np.spacing(absmax)
  assert np.all(per_block <= bound), np.max(per_block /
                                            np.maximum(bound, 1e-300))


def test_non_finite_input_poisons_its_block_visibly():
  x = _case_values("nan_and_inf", True)
  for signed in (True, False):
    codes, absmax = ref.quantize_blockwise(x if signed else np.abs(x), signed)
    values = ref.dequantize_blockwise(codes, absmax, signed).reshape(-1, 256)
    assert np.isnan(absmax[0]) and np.all(np.isinf(absmax[1:3]))
    assert not np.any(np.isfinite(values[:3])), "a poisoned block is finite"
    assert np.all(np.isfinite(values[3]))


def test_state_bytes_for_4096_elements():
  codes, absmax = quant.quantize_blockwise(tf.ones([64, 64]), signed=True)
  assert codes.dtype == tf.uint8 and absmax.dtype == tf.float32
  nbytes = codes.numpy().nbytes + absmax.numpy().nbytes
  assert nbytes == 4096 + 16 * 4


# ----------------------------------------------------------------------------
# The C++ header (g++; nvcc when present) against the reference.


@pytest.fixture(scope="module")
def check_program(tmp_path_factory):
  compiler = shutil.which("g++")
  if compiler is None:
    pytest.skip("g++ not found: the standalone header check needs it")
  binary = str(tmp_path_factory.mktemp("quantization") / "check")
  subprocess.run([
      compiler, "-std=c++17", "-O2", "-Wall", "-Werror", "-I", REPO,
      CHECK_SOURCE, "-o", binary
  ], check=True, timeout=300)

  def run(lines):
    out = subprocess.run([binary], input="\n".join(lines) + "\n", text=True,
                         capture_output=True, check=True, timeout=300).stdout
    return [
        np.array([int(v, 16)
                  for v in line.split()], np.uint64)
        for line in out.splitlines()
    ]

  return run


def _hex_floats(x):
  x = np.asarray(x, F32).reshape(-1)
  return " ".join([format(x.size, "x")] +
                  [format(int(b), "x") for b in x.view(np.uint32)])


@pytest.mark.subprocess
@pytest.mark.parametrize("signed", SIGNS)
def test_cc_map_is_the_reference_map(check_program, signed):
  (bits,) = check_program([f"map {int(signed)}"])
  np.testing.assert_array_equal(bits, ref.dynamic_map(signed).view(np.uint32))


def _assert_blockwise_matches_reference(x, signed, absmax, codes, values):
  """absmax, codes and dequantized values bit-identical to the reference."""
  want_codes, want_absmax = ref.quantize_blockwise(x, signed)
  np.testing.assert_array_equal(_bits(absmax), _bits(want_absmax))
  mismatch = np.mean(np.reshape(codes, -1) != want_codes)
  assert mismatch == 0, f"{mismatch:.2%} of the codes differ"
  np.testing.assert_array_equal(
      _bits(np.reshape(values, -1)),
      _bits(ref.dequantize_blockwise(want_codes, want_absmax, signed)))


def _floats_from_bits(bits):
  return bits.astype(np.uint32).view(F32)


@pytest.mark.subprocess
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("signed", SIGNS)
def test_cc_blockwise_matches_reference(check_program, name, signed):
  x = _case_values(name, signed)
  absmax, codes, values = check_program(
      [f"blockwise {int(signed)} {_hex_floats(x)}"])
  _assert_blockwise_matches_reference(x, signed, _floats_from_bits(absmax),
                                      codes, _floats_from_bits(values))


@pytest.mark.subprocess
@pytest.mark.parametrize("signed", SIGNS)
def test_cc_threshold_index_counts_as_the_binary_search(check_program, signed):
  """The CPU kernels' one-lookup count of thresholds (ThresholdIndex) equals
  the eight-step search at every bucket edge and threshold (+-2 ulps) and on
  a sweep of [0, 1] (QuantizeBlock is checked inside `blockwise` above)."""
  (differences, probes), = check_program([f"index {int(signed)}"])
  assert probes > 10_000_000
  assert differences == 0


def _bf16_inputs():
  rng = np.random.default_rng(16)
  special = np.array([
      0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-45, -1e-40, FLT_MIN,
      np.finfo(F32).max, -np.finfo(F32).max, 3.3895314e38, 1.00390625,
      1.01171875, -1.00390625, 1.0039063, 1.0039062
  ], F32)
  return np.concatenate([
      special,
      rng.standard_normal(2000).astype(F32),
      (rng.standard_normal(500) * 1e-39).astype(F32),
      np.exp(rng.uniform(-80, 80, 500)).astype(F32)
  ])


KEYS = [(0, 0, 0), (42, 1, 7), (2**40 + 5, 2**33 + 9, 3), (2**32 - 1, 7, 2**31)]


@pytest.mark.subprocess
def test_cc_bfloat16_matches_reference(check_program):
  x = _bf16_inputs()
  lines = [f"nearest {_hex_floats(x)}"]
  lines += ["key %x %x %x" % tuple(v % 2**32 for v in k) for k in KEYS]
  keys = [ref.stochastic_rounding_key(*k) for k in KEYS]
  firsts = [0, 5, 2**32 - 100, 2**40]
  lines += [
      f"stochastic {k:x} {f:x} {_hex_floats(x)}" for k, f in zip(keys, firsts)
  ]
  out = check_program(lines)
  np.testing.assert_array_equal(out[0], ref.bfloat16_round_nearest_even(x))
  np.testing.assert_array_equal(np.concatenate(out[1:5]), keys)
  for k, f, got in zip(keys, firsts, out[5:]):
    np.testing.assert_array_equal(got, ref.bfloat16_round_stochastic(x, k, f))


@pytest.mark.subprocess
@pytest.mark.needs_nvcc
def test_header_compiles_for_the_device(tmp_path):
  nvcc = os.environ.get("NVCC") or shutil.which("nvcc")
  if nvcc is None:
    pytest.skip("nvcc not found (set NVCC=/path/to/nvcc)")
  source = tmp_path / "quantization_device.cu"
  source.write_text("""
#include "cc/kernels/math/quantization_math.h"
namespace m = tf_opt_plugin::math;
__global__ void Roundtrip(const float* x, float* y, uint16_t* b, int64_t n) {
  const int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (i >= n) return;
  const float absmax = m::BlockAbsMax(x, 0, n);
  y[i] = m::DequantizeCode(m::QuantizeValue(x[i], absmax, true), absmax, true)
       + m::DequantizeCode(m::QuantizeValue(x[i], absmax, false), absmax,
                           false);
  b[i] = m::Bfloat16RoundStochastic(
      x[i], m::StochasticRoundingBits(m::StochasticRoundingKey(1, 2, 3), i))
       + m::Bfloat16RoundNearestEven(x[i]);
}
""")
  subprocess.run([
      nvcc, "-std=c++17", "-x", "cu", "-c", "-I", REPO,
      str(source), "-o",
      str(tmp_path / "quantization_device.o")
  ], check=True, timeout=600)


# ----------------------------------------------------------------------------
# The pure-TF twin's versions, in every execution mode, against the reference.

MODES = {
    "eager": lambda f: f,
    "function": tf.function,
    "jit": lambda f: tf.function(f, jit_compile=True),
}


@pytest.mark.parametrize("signed", SIGNS)
def test_tf_map_is_the_reference_map(signed):
  np.testing.assert_array_equal(
      quant.dynamic_map(signed).view(np.uint32),
      ref.dynamic_map(signed).view(np.uint32))


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("signed", SIGNS)
def test_tf_blockwise_matches_reference(mode, name, signed):
  x = _case_values(name, signed)
  shaped = x.reshape(-1, 2) if x.size % 2 == 0 else x  # codes keep the shape
  codes, absmax = MODES[mode](lambda x: quant.quantize_blockwise(x, signed))(
      tf.constant(shaped))
  assert codes.shape == shaped.shape
  values = MODES[mode](lambda c, a: quant.dequantize_blockwise(c, a, signed))(
      codes, absmax)
  _assert_blockwise_matches_reference(x, signed, absmax.numpy(), codes.numpy(),
                                      values.numpy())


@pytest.mark.parametrize("mode", sorted(MODES))
def test_tf_stochastic_rounding_bits_match_reference(mode):
  x = _bf16_inputs()
  fn = MODES[mode](lambda x, s, t, v, f: quant.bfloat16_round_stochastic(
      x, quant.stochastic_rounding_key(s, t, v), f))
  for key, first in zip(KEYS, [0, 5, 2**32 - 100, 2**40]):
    got = fn(tf.constant(x), *[tf.constant(v, tf.int64) for v in key],
             tf.constant(first, tf.int64))
    want = ref.bfloat16_round_stochastic(x, ref.stochastic_rounding_key(*key),
                                         first)
    np.testing.assert_array_equal(
        tf.bitcast(got, tf.uint16).numpy(), want, str(key))


def test_tf_round_nearest_is_tf_cast_and_reference():
  x = _bf16_inputs()
  got = tf.bitcast(tf.cast(tf.constant(x), tf.bfloat16), tf.uint16).numpy()
  np.testing.assert_array_equal(got, ref.bfloat16_round_nearest_even(x))


def test_stochastic_rounding_is_unbiased_and_deterministic():
  rng = np.random.default_rng(3)
  values = rng.uniform(-4, 4, 64).astype(F32)
  trials = 4000
  key = quant.stochastic_rounding_key(1234, 10, 2)
  rounded = quant.bfloat16_round_stochastic(np.tile(values, trials), key)
  again = quant.bfloat16_round_stochastic(np.tile(values, trials), key)
  np.testing.assert_array_equal(tf.bitcast(rounded, tf.uint16),
                                tf.bitcast(again, tf.uint16))
  draws = tf.cast(rounded, tf.float64).numpy().reshape(trials, -1)
  down = ref.bfloat16_bits_to_float32(values.view(np.uint32) >> 16).astype(
      np.float64)
  step = np.spacing(np.abs(down).astype(F32)).astype(np.float64) * 2**16
  p = np.abs(values - down) / step
  sigma = step * np.sqrt(p * (1 - p) / trials)
  assert np.all(np.abs(draws.mean(axis=0) - values) <= 5 * sigma + 1e-12)
  # Each draw is one of the two neighbours.
  assert np.all((draws == down) | (np.abs(draws - down) == step))
