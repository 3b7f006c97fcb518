// Portability macros for the per-element optimizer math. This header and the
// *_math.h headers beside it include no TensorFlow header, so the exact code
// the kernels run can be compiled by nvcc alone and checked on a machine
// without TensorFlow.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_MATH_HOST_DEVICE_H_
#define TF_OPT_PLUGIN_CC_KERNELS_MATH_HOST_DEVICE_H_

#include <cmath>

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

}  // namespace math
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_MATH_HOST_DEVICE_H_
