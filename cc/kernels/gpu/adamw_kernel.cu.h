// The AdamW CUDA kernel, free of TensorFlow headers so that the exact code the
// op runs can be compiled by nvcc alone and checked on a GPU machine without
// TensorFlow. Grid-stride loop, 64-bit indices, float math in registers.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_GPU_ADAMW_KERNEL_CU_H_
#define TF_OPT_PLUGIN_CC_KERNELS_GPU_ADAMW_KERNEL_CU_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cc/kernels/adamw_op.h"
#include "cc/kernels/math/adamw_math.h"

namespace tf_opt_plugin {
namespace gpu {

template <typename T, typename C, bool kAmsgrad>
__global__ void AdamWKernel(functor::AdamWHyperparams<C> hyper, int64_t size,
                            T* __restrict__ var, T* __restrict__ m,
                            T* __restrict__ v, T* __restrict__ vhat,
                            const T* __restrict__ grad) {
  // The scalars stay in device memory: no host round trip per step.
  const math::AdamWStep<C> s = math::MakeAdamWStep<C>(
      *hyper.lr, *hyper.beta_1, *hyper.beta_2, *hyper.epsilon,
      *hyper.weight_decay, *hyper.step);
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < size; i += stride) {
    math::AdamWUpdateAt<T, C, kAmsgrad>(s, i, var, m, v, vhat, grad);
  }
}

// Launches AdamWKernel on `stream`; `sm_count` sizes a grid of a few waves.
template <typename T, typename C>
cudaError_t LaunchAdamW(cudaStream_t stream, int sm_count,
                        const functor::AdamWHyperparams<C>& hyper, int64_t size,
                        T* var, T* m, T* v, T* vhat, const T* grad) {
  if (size == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t wanted = (size + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(
      std::min<int64_t>(wanted, static_cast<int64_t>(sm_count) * 8));
  if (vhat == nullptr) {
    AdamWKernel<T, C, false><<<blocks, kThreads, 0, stream>>>(
        hyper, size, var, m, v, nullptr, grad);
  } else {
    AdamWKernel<T, C, true><<<blocks, kThreads, 0, stream>>>(
        hyper, size, var, m, v, vhat, grad);
  }
  return cudaGetLastError();
}

}  // namespace gpu
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_GPU_ADAMW_KERNEL_CU_H_
