// AdamW / Adam CUDA kernel, single- and multi-tensor: one pass over memory,
// one block per chunk of kChunkElements of one tensor, 16-byte vector loads
// where every buffer is aligned, a scalar tail, 64-bit sizes. The element
// update is math::AdamWUpdateAt, the loop body of the CPU kernel too.
// Includes no TensorFlow header (see common.cu.h).
#ifndef TF_OPT_PLUGIN_CC_KERNELS_GPU_ADAMW_KERNEL_CU_H_
#define TF_OPT_PLUGIN_CC_KERNELS_GPU_ADAMW_KERNEL_CU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "cc/kernels/adamw_op.h"
#include "cc/kernels/gpu/common.cu.h"
#include "cc/kernels/gpu/multi_tensor.cu.h"
#include "cc/kernels/math/adamw_math.h"

namespace tf_opt_plugin {
namespace gpu {

// Buffers of one tensor: AdamW::Buffer (vhat null: no amsgrad). Flags:
// kApplyWeightDecay.
template <typename T, typename C, bool kAmsgrad, int kCapacity>
__global__ void __launch_bounds__(kThreads)
    AdamWKernel(functor::AdamWHyperparams<C> hyper,
                TensorListArgsOf<AdamW, T, kCapacity> args) {
  const ChunkRange r = BlockChunk(args);
  T* __restrict__ var = args.ptrs[AdamW::kVar][r.tensor];
  T* __restrict__ m = args.ptrs[AdamW::kM][r.tensor];
  T* __restrict__ v = args.ptrs[AdamW::kV][r.tensor];
  T* __restrict__ vhat = args.ptrs[AdamW::kVhat][r.tensor];
  const T* __restrict__ grad = args.ptrs[AdamW::kGrad][r.tensor];
  // The scalars stay in device memory: no host round trip per step.
  const int64_t step = *hyper.step;
  if (step < 1) {
    // Out of range (docs/gpu.md): the variable becomes NaN, slots unchanged.
    for (int64_t i = r.begin + threadIdx.x; i < r.end; i += kThreads) {
      var[i] = static_cast<T>(QuietNaN<C>());
    }
    return;
  }
  const math::AdamWStep<C> s = AdamW::StepFor(hyper, args.flags[r.tensor]);
  ForEachPack<T>(r.begin, r.end, threadIdx.x, kThreads,
                 VectorOk(args, r.tensor, r.begin), [&](int64_t i, auto width) {
                   constexpr int W = decltype(width)::value;
                   Pack<T, W> w = LoadPack<W>(var + i);
                   Pack<T, W> mm = LoadPack<W>(m + i);
                   Pack<T, W> vv = LoadPack<W>(v + i);
                   const Pack<T, W> g = LoadPack<W>(grad + i);
                   Pack<T, W> vh;
                   if (kAmsgrad) vh = LoadPack<W>(vhat + i);
#pragma unroll
                   for (int k = 0; k < W; ++k) {
                     math::AdamWUpdateAt<T, C, kAmsgrad>(
                         s, k, w.v, mm.v, vv.v, kAmsgrad ? vh.v : nullptr, g.v);
                   }
                   StorePack<W>(var + i, w);
                   StorePack<W>(m + i, mm);
                   StorePack<W>(v + i, vv);
                   if (kAmsgrad) StorePack<W>(vhat + i, vh);
                 });
}

// Updates every tensor of `tensors` (all with vhat, or all without) on
// `stream`: one launch per kCapacity tensors. No scratch.
template <typename T, typename C, int kCapacity>
cudaError_t LaunchUpdate(cudaStream_t stream,
                         const functor::AdamWHyperparams<C>& hyper,
                         const TensorDescOf<AdamW, T>* tensors, int n,
                         void* /*scratch*/,
                         TensorListArgsOf<AdamW, T, kCapacity>* args) {
  if (n == 0) return cudaSuccess;
  const bool amsgrad = tensors[0].ptrs[AdamW::kVhat] != nullptr;
  const auto kernel = amsgrad ? &AdamWKernel<T, C, true, kCapacity>
                              : &AdamWKernel<T, C, false, kCapacity>;
  return ForEachTensorList(tensors, n, args,
                           [&](const TensorListArgsOf<AdamW, T, kCapacity>& a,
                               int chunks) -> cudaError_t {
                             kernel<<<chunks, kThreads, 0, stream>>>(hyper, a);
                             return cudaGetLastError();
                           });
}

// Global memory traffic of one update, in full-size buffer accesses (the GPU
// check's bandwidth): reads var, m, v, grad, writes var, m, v; with amsgrad
// reads and writes vhat too.
constexpr int kAdamWAccesses = 7;
constexpr int kAmsgradAccesses = 2;

}  // namespace gpu
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_GPU_ADAMW_KERNEL_CU_H_
