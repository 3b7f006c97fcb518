// Portability macros for the per-element optimizer math. This header and the
// *_math.h headers beside it include no TensorFlow header, so the exact code
// the kernels run can be compiled by nvcc alone and checked on a machine
// without TensorFlow.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_MATH_HOST_DEVICE_H_
#define TF_OPT_PLUGIN_CC_KERNELS_MATH_HOST_DEVICE_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define TFOPT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TFOPT_HOST_DEVICE inline __attribute__((always_inline))
#endif

namespace tf_opt_plugin {
namespace math {

// sqrt / rsqrt / max / min that resolve to the fast intrinsic for the compute
// type on the device and to <cmath> on the host. Compute types are float and
// double only: half types are widened to float before any arithmetic.
TFOPT_HOST_DEVICE float Sqrt(float x) { return sqrtf(x); }
TFOPT_HOST_DEVICE double Sqrt(double x) { return sqrt(x); }
#if defined(__CUDA_ARCH__)
TFOPT_HOST_DEVICE float Rsqrt(float x) { return rsqrtf(x); }
TFOPT_HOST_DEVICE double Rsqrt(double x) { return rsqrt(x); }
#else
TFOPT_HOST_DEVICE float Rsqrt(float x) { return 1.0f / sqrtf(x); }
TFOPT_HOST_DEVICE double Rsqrt(double x) { return 1.0 / sqrt(x); }
#endif
// Max / Min propagate NaN from either argument, as numpy and TF do, so a NaN
// gradient is never hidden by an amsgrad maximum or a clipping bound.
template <typename C>
TFOPT_HOST_DEVICE C Max(C a, C b) {
  return (a > b || a != a) ? a : b;
}
template <typename C>
TFOPT_HOST_DEVICE C Min(C a, C b) {
  return (a < b || a != a) ? a : b;
}

// Element i of a slot stored as S, widened to the compute type C, and a
// value of C narrowed back into it: a plain conversion, or, for Bfloat16,
// its bits.
template <typename C, typename S>
TFOPT_HOST_DEVICE C LoadAs(const S* p, int64_t i) {
  return static_cast<C>(p[i]);
}
template <typename S, typename C>
TFOPT_HOST_DEVICE void StoreAs(S* p, int64_t i, C x) {
  p[i] = static_cast<S>(x);
}

// How an update stores the variable: rounded to nearest (a plain conversion;
// every kernel), or stochastically (RoundStochastically in
// quantization_math.h, bfloat16 variables on the CPU). `Offset(n)` is the
// same rounding for the view of the variable that starts at element n.
struct RoundToNearest {
  TFOPT_HOST_DEVICE RoundToNearest Offset(int64_t) const { return *this; }
  template <typename T, typename C>
  TFOPT_HOST_DEVICE void Store(T* var, int64_t i, C w) const {
    var[i] = static_cast<T>(w);
  }
};

// The element type of a "bfloat16" slot in the CPU kernels: its bits, as
// uint16 (which no other slot uses), so that the loops stay vectorizable,
// read and written by these overloads with branch-free conversions that round
// as TensorFlow's cast to bfloat16 does (to nearest even; a NaN becomes the
// quiet NaN 0x7FC0 of its sign): the fused op stores what the pure-TF twin
// does.
using Bfloat16Bits = uint16_t;

template <typename C>
TFOPT_HOST_DEVICE C LoadAs(const Bfloat16Bits* p, int64_t i) {
  const uint32_t bits = static_cast<uint32_t>(p[i]) << 16;
  float x;
  memcpy(&x, &bits, sizeof(x));
  return static_cast<C>(x);
}
template <typename S, typename C>
TFOPT_HOST_DEVICE void StoreAs(Bfloat16Bits* p, int64_t i, C value) {
  const float x = static_cast<float>(value);
  uint32_t b;
  memcpy(&b, &x, sizeof(b));
  // Selected in 32 bits, narrowed last: AVX-512F vectorizes that, not a
  // select of 16-bit lanes.
  const uint32_t nearest = (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
  const uint32_t nan = (b & 0x80000000u) ? 0xFFC0u : 0x7FC0u;
  p[i] = static_cast<uint16_t>(x != x ? nan : nearest);
}

}  // namespace math
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_MATH_HOST_DEVICE_H_
