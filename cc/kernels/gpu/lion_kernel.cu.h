// Lion CUDA kernel, single- and multi-tensor: one pass over memory, one block
// per chunk of kChunkElements of one tensor, 16-byte vector loads where every
// buffer is aligned, a scalar tail, 64-bit sizes. The element update is
// math::LionUpdateAt, the loop body of the CPU kernel too. Includes no
// TensorFlow header (see common.cu.h).
#ifndef TF_OPT_PLUGIN_CC_KERNELS_GPU_LION_KERNEL_CU_H_
#define TF_OPT_PLUGIN_CC_KERNELS_GPU_LION_KERNEL_CU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "cc/kernels/gpu/common.cu.h"
#include "cc/kernels/gpu/multi_tensor.cu.h"
#include "cc/kernels/lion_op.h"
#include "cc/kernels/math/lion_math.h"

namespace tf_opt_plugin {
namespace gpu {

// Buffers of one tensor: Lion::Buffer. Flags: kApplyWeightDecay.
template <typename T, typename C, int kCapacity>
__global__ void __launch_bounds__(kThreads)
    LionKernel(functor::LionHyperparams<C> hyper,
               TensorListArgsOf<Lion, T, kCapacity> args) {
  const ChunkRange r = BlockChunk(args);
  T* __restrict__ var = args.ptrs[Lion::kVar][r.tensor];
  T* __restrict__ m = args.ptrs[Lion::kM][r.tensor];
  const T* __restrict__ grad = args.ptrs[Lion::kGrad][r.tensor];
  // The scalars stay in device memory: no host round trip per step.
  const math::LionStep<C> s = Lion::StepFor(hyper, args.flags[r.tensor]);
  ForEachPack<T>(r.begin, r.end, threadIdx.x, kThreads,
                 VectorOk(args, r.tensor, r.begin), [&](int64_t i, auto width) {
                   constexpr int W = decltype(width)::value;
                   Pack<T, W> w = LoadPack<W>(var + i);
                   Pack<T, W> mm = LoadPack<W>(m + i);
                   const Pack<T, W> g = LoadPack<W>(grad + i);
#pragma unroll
                   for (int k = 0; k < W; ++k) {
                     math::LionUpdateAt<T, C>(s, k, w.v, mm.v, g.v);
                   }
                   StorePack<W>(var + i, w);
                   StorePack<W>(m + i, mm);
                 });
}

// Updates every tensor of `tensors` on `stream`: one launch per kCapacity
// tensors. No scratch.
template <typename T, typename C, int kCapacity>
cudaError_t LaunchUpdate(cudaStream_t stream,
                         const functor::LionHyperparams<C>& hyper,
                         const TensorDescOf<Lion, T>* tensors, int n,
                         void* /*scratch*/,
                         TensorListArgsOf<Lion, T, kCapacity>* args) {
  return ForEachTensorList(tensors, n, args,
                           [&](const TensorListArgsOf<Lion, T, kCapacity>& a,
                               int chunks) -> cudaError_t {
                             LionKernel<T, C, kCapacity>
                                 <<<chunks, kThreads, 0, stream>>>(hyper, a);
                             return cudaGetLastError();
                           });
}

// Global memory traffic of one update, in full-size buffer accesses (the GPU
// check's bandwidth): reads var, m, grad, writes var, m.
constexpr int kLionAccesses = 5;

}  // namespace gpu
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_GPU_LION_KERNEL_CU_H_
