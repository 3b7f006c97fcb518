// The 8-bit and bfloat16 optimizer-state formats, one element at a time (see
// docs/quantization.md for the design and the error bound).
//
// 8 bits: block-wise dynamic quantization (Dettmers et al., "8-bit Optimizers
// via Block-wise Quantization", 2022). A block of 256 consecutive elements
// stores absmax = max |x| as float32 and, per element, the uint8 index of the
// entry of a 256-entry map nearest x / absmax:
//
//   the dynamic maps (bitsandbytes' create_dynamic_map, 7 exponent bits): for
//   each decade i = 0..6, the midpoints of n_i equal intervals of [0.1, 1]
//   scaled by 10^(i-6), with n_i = 2^i for the signed map (first moments, both
//   signs) and n_i = 2^(i+1) for the unsigned one (second moments); plus 0
//   and 1; sorted. Each entry is its exact value rounded once to float32.
//
// Ties between two entries go away from zero. For the unsigned map a positive
// value never gets the code of 0 (bitsandbytes rounds it to zero): a second
// moment that dequantizes to zero turns the next zero-gradient step into
// m / epsilon. Subnormal floats (inputs, ratios, dequantized values) are
// flushed to zero explicitly, so the CPU kernels (which TensorFlow runs with
// denormals-are-zero), CUDA and the pure-TF twin agree bit for bit.
//
// bfloat16: round-to-nearest-even, and stochastic rounding: 16 random bits from
// a counter-based hash of (seed, step, variable, element index) are added
// below the bfloat16 mantissa and the sum truncated, so the expected stored
// value is the float32 value.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_MATH_QUANTIZATION_MATH_H_
#define TF_OPT_PLUGIN_CC_KERNELS_MATH_QUANTIZATION_MATH_H_

#include <cfloat>
#include <cstdint>
#include <cstring>

#include "cc/kernels/math/host_device.h"

#if defined(__CUDACC__)
#define TFOPT_CONSTEXPR_HOST_DEVICE constexpr __host__ __device__
#else
#define TFOPT_CONSTEXPR_HOST_DEVICE constexpr
#endif

namespace tf_opt_plugin {
namespace math {

constexpr int64_t kQuantizationBlockSize = 256;
// The code of 0.0 in the signed map (127 negative entries sort below it).
constexpr int kSignedZeroCode = 127;

// A dynamic map: its sorted entries, and the decision thresholds of its
// non-negative entries (magnitudes for the signed map): a magnitude a gets the
// non-negative entry whose index is the number of thresholds <= a. Threshold j
// is the smallest float32 >= the midpoint of entries j and j + 1, so a float32
// exactly on a midpoint rounds up (away from zero). Unused thresholds, and a
// 256th one, are 2, above every ratio (|x / absmax| <= 1).
struct DynamicMap {
  float value[256];
  float threshold[256];
};

// The smallest float32 >= m, for a normal m in (0, 2].
TFOPT_CONSTEXPR_HOST_DEVICE float CeilToFloat(double m) {
  const float nearest = static_cast<float>(m);
  if (static_cast<double>(nearest) >= m) return nearest;
  double power = 1.0;  // the largest power of two <= nearest
  while (power > nearest) power *= 0.5;
  return static_cast<float>(nearest + power * 0x1p-23);
}

TFOPT_CONSTEXPR_HOST_DEVICE DynamicMap MakeDynamicMap(bool is_signed) {
  DynamicMap map{};
  // The non-negative entries in increasing order: 0, the decades, 1.
  float positive[256] = {};
  int count = 1;
  double decade = 1e6;  // 10^(6 - i)
  for (int i = 0; i < 7; ++i, decade /= 10) {
    const int n = is_signed ? (1 << i) : (1 << (i + 1));
    for (int k = 0; k < n; ++k) {
      // 10^(i-6) * (0.1 + 0.9 * (k + 1/2) / n), as one division of integers.
      positive[count++] =
          static_cast<float>((2.0 * n + 18.0 * k + 9.0) / (20.0 * n * decade));
    }
  }
  positive[count++] = 1.0f;
  const int zero = is_signed ? kSignedZeroCode : 0;
  for (int j = 0; j < count; ++j) {
    map.value[zero + j] = positive[j];
    if (is_signed && j > 0 && j < count - 1) map.value[zero - j] = -positive[j];
  }
  map.threshold[255] = 2.0f;
  for (int j = 0; j < 255; ++j) {
    map.threshold[j] =
        j + 1 < count
            ? CeilToFloat((static_cast<double>(positive[j]) + positive[j + 1]) /
                          2)
            : 2.0f;
  }
  return map;
}

constexpr DynamicMap kSignedDynamicMap = MakeDynamicMap(true);
constexpr DynamicMap kUnsignedDynamicMap = MakeDynamicMap(false);
#if defined(__CUDACC__)
// Device code cannot index a host constant array: the same tables in global
// memory (divergent lookups suit the L1 cache better than constant memory).
__device__ constexpr DynamicMap kSignedDynamicMapDevice = MakeDynamicMap(true);
__device__ constexpr DynamicMap kUnsignedDynamicMapDevice =
    MakeDynamicMap(false);
#endif

TFOPT_HOST_DEVICE const DynamicMap& GetDynamicMap(bool is_signed) {
#if defined(__CUDA_ARCH__)
  return is_signed ? kSignedDynamicMapDevice : kUnsignedDynamicMapDevice;
#else
  return is_signed ? kSignedDynamicMap : kUnsignedDynamicMap;
#endif
}

TFOPT_HOST_DEVICE float FlushSubnormal(float x) {
  return fabsf(x) < FLT_MIN ? 0.0f : x;
}

// Number of thresholds <= a: eight halving steps over the 255 sorted
// thresholds (0 for a NaN, which compares false).
TFOPT_HOST_DEVICE int CountThresholdsAtOrBelow(const float* threshold,
                                               float a) {
  int count = 0;
  for (int step = 128; step > 0; step >>= 1) {
    if (threshold[count + step - 1] <= a) count += step;
  }
  return count;
}

// The code of the map entry nearest a ratio r in [-1, 1] (a NaN gets the code
// of 0; a negative r in the unsigned map gets the code of 0).
TFOPT_HOST_DEVICE int QuantizeToCode(float r, bool is_signed) {
  const DynamicMap& map = GetDynamicMap(is_signed);
  if (!is_signed) return CountThresholdsAtOrBelow(map.threshold, r);
  const int magnitude = CountThresholdsAtOrBelow(map.threshold, fabsf(r));
  // -1 is not in the signed map: the most negative entry has magnitude 127.
  return r < 0.0f ? kSignedZeroCode - (magnitude < 127 ? magnitude : 127)
                  : kSignedZeroCode + magnitude;
}

// Element x of a block with the given absmax (from BlockAbsMax) -> its code.
TFOPT_HOST_DEVICE uint8_t QuantizeValue(float x, float absmax, bool is_signed) {
  x = FlushSubnormal(x);
  const float r = FlushSubnormal(absmax == 0.0f ? 0.0f : x / absmax);
  int code = QuantizeToCode(r, is_signed);
  // The deliberate difference from bitsandbytes: a positive second moment
  // never dequantizes to zero.
  if (!is_signed && code == 0 && x > 0.0f) code = 1;
  return static_cast<uint8_t>(code);
}

TFOPT_HOST_DEVICE float DequantizeCode(uint8_t code, float absmax,
                                       bool is_signed) {
  return FlushSubnormal(GetDynamicMap(is_signed).value[code] * absmax);
}

// max |x[i]| over [begin, end), float32; NaN if any element is NaN, so a
// poisoned block dequantizes to non-finite values instead of silently finite.
template <typename T>
TFOPT_HOST_DEVICE float BlockAbsMax(const T* x, int64_t begin, int64_t end) {
  float absmax = 0.0f;
  for (int64_t i = begin; i < end; ++i) {
    absmax = Max(absmax, fabsf(FlushSubnormal(static_cast<float>(x[i]))));
  }
  return absmax;
}

TFOPT_HOST_DEVICE uint32_t FloatBits(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof(bits));
  return bits;
}

// float32 -> bfloat16 bits, round to nearest, ties to even; NaN stays (quiet)
// NaN.
TFOPT_HOST_DEVICE uint16_t Bfloat16RoundNearestEven(float x) {
  const uint32_t bits = FloatBits(x);
  if (x != x) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

// float32 -> bfloat16 bits, rounded up in magnitude with probability equal to
// the distance from the value below (in bfloat16 steps) when random16 is
// uniform in [0, 2^16). Inf and NaN round to nearest even.
TFOPT_HOST_DEVICE uint16_t Bfloat16RoundStochastic(float x, uint32_t random16) {
  if (!(fabsf(x) <= FLT_MAX)) return Bfloat16RoundNearestEven(x);
  return static_cast<uint16_t>((FloatBits(x) + random16) >> 16);
}

// Chris Wellons' 32-bit integer hash "lowbias32" (hash-prospector).
TFOPT_HOST_DEVICE uint32_t Lowbias32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// Adding the golden ratio keeps a chain of zero inputs away from lowbias32's
// fixed point at 0.
TFOPT_HOST_DEVICE uint32_t HashCombine(uint32_t h, uint32_t v) {
  return Lowbias32((h ^ v) + 0x9E3779B9u);
}

// One key per (seed, step, variable), each taken mod 2^32; computed once per
// step, outside the element loop.
TFOPT_HOST_DEVICE uint32_t StochasticRoundingKey(uint32_t seed, uint32_t step,
                                                 uint32_t variable_id) {
  return HashCombine(HashCombine(HashCombine(0u, seed), step), variable_id);
}

// 16 random bits for element `index` of the variable keyed by `key`.
TFOPT_HOST_DEVICE uint32_t StochasticRoundingBits(uint32_t key, int64_t index) {
  const uint64_t i = static_cast<uint64_t>(index);
  return HashCombine(HashCombine(key, static_cast<uint32_t>(i)),
                     static_cast<uint32_t>(i >> 32)) >>
         16;
}

// Stores a bfloat16 variable (any 2-byte T holding bfloat16 bits) rounded
// stochastically: element i of the view draws the random bits of index
// first + i of the variable under `key` (StochasticRoundingKey of the seed,
// the step and the variable), so the fused op, in whatever blocks it runs,
// and the pure-TF twin store the same bits. Inf and NaN round to nearest,
// NaN to the quiet NaN of its sign as TensorFlow's cast does.
struct RoundStochastically {
  uint32_t key;
  int64_t first = 0;

  TFOPT_HOST_DEVICE RoundStochastically Offset(int64_t n) const {
    return {key, first + n};
  }
  template <typename T, typename C>
  TFOPT_HOST_DEVICE void Store(T* var, int64_t i, C w) const {
    static_assert(sizeof(T) == 2, "stochastic rounding is for bfloat16");
    const float x = static_cast<float>(w);
    const uint32_t b = FloatBits(x);
    const uint32_t random = StochasticRoundingBits(key, first + i);
    const uint32_t stochastic = (b + random) >> 16;
    const uint32_t nearest = (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
    const uint32_t nan = (b & 0x80000000u) ? 0xFFC0u : 0x7FC0u;
    const uint32_t bits =
        fabsf(x) <= FLT_MAX ? stochastic : (x != x ? nan : nearest);
    reinterpret_cast<uint16_t*>(var)[i] = static_cast<uint16_t>(bits);
  }
};

#if !defined(__CUDACC__)
// The CPU kernels' form of CountThresholdsAtOrBelow, with the same result:
// one table lookup and one comparison instead of eight dependent ones. A
// magnitude a in [0, 1] falls in the bucket of floats sharing its exponent
// and top kMantissaBits mantissa bits; `count_` holds the number of
// thresholds <= the bucket's smallest float, and at most one threshold lies
// inside a bucket (a bucket spans at most 2^-8 of its value, the closest
// thresholds 0.7% apart: the constructor checks it), so
//   count = count_[bucket] + (threshold[count_[bucket]] <= a).
class ThresholdIndex {
 public:
  explicit ThresholdIndex(const DynamicMap& map) : threshold_(map.threshold) {
    int count = 0;
    for (uint32_t bucket = 0; bucket <= kBucketOfOne; ++bucket) {
      const uint32_t low_bits = bucket << kShift;
      float low;
      memcpy(&low, &low_bits, sizeof(low));
      while (count < 255 && map.threshold[count] <= low) ++count;
      count_[bucket] = static_cast<uint8_t>(count);
      const uint32_t next_bits = (bucket + 1) << kShift;
      float next;
      memcpy(&next, &next_bits, sizeof(next));
      // A second threshold below the next bucket would need two comparisons.
      if (count + 1 < 255 && map.threshold[count + 1] < next) exact_ = false;
    }
  }

  // Number of thresholds <= a (0 for a NaN), for |a| <= 1.
  int Count(float a) const {
    const uint32_t bucket = a <= 1.0f ? FloatBits(a) >> kShift : 0;
    const int count = count_[bucket];
    return exact_ ? count + (threshold_[count] <= a)
                  : CountThresholdsAtOrBelow(threshold_, a);
  }

 private:
  static constexpr int kMantissaBits = 8;
  static constexpr int kShift = 23 - kMantissaBits;
  static constexpr uint32_t kBucketOfOne = 0x3F800000u >> kShift;

  const float* threshold_;
  bool exact_ = true;
  uint8_t count_[kBucketOfOne + 1];
};

inline const ThresholdIndex& GetThresholdIndex(bool is_signed) {
  static const ThresholdIndex* const kSigned =
      new ThresholdIndex(kSignedDynamicMap);
  static const ThresholdIndex* const kUnsigned =
      new ThresholdIndex(kUnsignedDynamicMap);
  return is_signed ? *kSigned : *kUnsigned;
}

// QuantizeValue of x[0, count), one block with the given absmax, into codes:
// the same codes, by the table of ThresholdIndex.
inline void QuantizeBlock(const float* x, int64_t count, float absmax,
                          bool is_signed, uint8_t* codes) {
  const ThresholdIndex& index = GetThresholdIndex(is_signed);
  for (int64_t j = 0; j < count; ++j) {
    const float v = FlushSubnormal(x[j]);
    const float r = FlushSubnormal(absmax == 0.0f ? 0.0f : v / absmax);
    int code;
    if (is_signed) {
      const int magnitude = index.Count(fabsf(r));
      code = r < 0.0f ? kSignedZeroCode - (magnitude < 127 ? magnitude : 127)
                      : kSignedZeroCode + magnitude;
    } else {
      code = index.Count(r);
      if (code == 0 && v > 0.0f) code = 1;
    }
    codes[j] = static_cast<uint8_t>(code);
  }
}
#endif  // !defined(__CUDACC__)

}  // namespace math
}  // namespace tf_opt_plugin

#undef TFOPT_CONSTEXPR_HOST_DEVICE

#endif  // TF_OPT_PLUGIN_CC_KERNELS_MATH_QUANTIZATION_MATH_H_
