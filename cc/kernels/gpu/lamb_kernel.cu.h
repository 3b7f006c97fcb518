// LAMB CUDA kernels, single- and multi-tensor. The trust ratio needs ||w||
// and ||u|| of the whole variable before w can be written, so a list of
// tensors takes three launches, none of which waits for the host:
//   1. LambMomentsKernel, one block per chunk: m, v updated, and the chunk's
//      sums of w^2 and u^2 written to `partials` (one double2 per chunk);
//   2. LambRatioKernel, one block per tensor: its chunks' partial sums added
//      in chunk order (deterministic), lr * trust ratio written to
//      `step_sizes` (device memory);
//   3. LambApplyKernel, one block per chunk: w <- w - step_size * u, with u
//      recomputed from the stored m, v (as the CPU kernel does).
// Includes no TensorFlow header (see common.cu.h).
#ifndef TF_OPT_PLUGIN_CC_KERNELS_GPU_LAMB_KERNEL_CU_H_
#define TF_OPT_PLUGIN_CC_KERNELS_GPU_LAMB_KERNEL_CU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "cc/kernels/gpu/common.cu.h"
#include "cc/kernels/gpu/multi_tensor.cu.h"
#include "cc/kernels/lamb_op.h"
#include "cc/kernels/math/lamb_math.h"

namespace tf_opt_plugin {
namespace gpu {

// Buffers of one tensor: Lamb::Buffer. Flags: kApplyWeightDecay,
// kLayerAdaptation.
template <typename T, int kCapacity>
using LambArgs = TensorListArgsOf<Lamb, T, kCapacity>;

template <typename T, typename C, int kCapacity>
__global__ void __launch_bounds__(kThreads)
    LambMomentsKernel(functor::LambHyperparams<C> hyper,
                      LambArgs<T, kCapacity> args, double2* partials) {
  __shared__ double shared[kWarps];
  const ChunkRange r = BlockChunk(args);
  const T* __restrict__ var = args.ptrs[Lamb::kVar][r.tensor];
  T* __restrict__ m = args.ptrs[Lamb::kM][r.tensor];
  T* __restrict__ v = args.ptrs[Lamb::kV][r.tensor];
  const T* __restrict__ grad = args.ptrs[Lamb::kGrad][r.tensor];
  const int64_t step = *hyper.step;
  C w_squares = C(0), u_squares = C(0);
  if (step >= 1) {  // else nothing is written; LambRatioKernel poisons var
    const math::LambStep<C> s = Lamb::StepFor(hyper, args.flags[r.tensor]);
    ForEachPack<T>(r.begin, r.end, threadIdx.x, kThreads,
                   VectorOk(args, r.tensor, r.begin),
                   [&](int64_t i, auto width) {
                     constexpr int W = decltype(width)::value;
                     const Pack<T, W> w = LoadPack<W>(var + i);
                     Pack<T, W> mm = LoadPack<W>(m + i);
                     Pack<T, W> vv = LoadPack<W>(v + i);
                     const Pack<T, W> g = LoadPack<W>(grad + i);
#pragma unroll
                     for (int k = 0; k < W; ++k) {
                       const C wk = static_cast<C>(w.v[k]);
                       C mk = static_cast<C>(mm.v[k]);
                       C vk = static_cast<C>(vv.v[k]);
                       const C u = math::LambMomentsAndDirection<C>(
                           s, static_cast<C>(g.v[k]), wk, mk, vk);
                       mm.v[k] = static_cast<T>(mk);
                       vv.v[k] = static_cast<T>(vk);
                       w_squares += wk * wk;
                       u_squares += u * u;
                     }
                     StorePack<W>(m + i, mm);
                     StorePack<W>(v + i, vv);
                   });
  }
  const double w_total = BlockSum(static_cast<double>(w_squares), shared);
  const double u_total = BlockSum(static_cast<double>(u_squares), shared);
  if (threadIdx.x == 0) {
    partials[args.first_chunk + blockIdx.x] = make_double2(w_total, u_total);
  }
}

template <typename T, typename C, int kCapacity>
__global__ void __launch_bounds__(kThreads)
    LambRatioKernel(functor::LambHyperparams<C> hyper,
                    LambArgs<T, kCapacity> args, const double2* partials,
                    C* step_sizes) {
  __shared__ double shared[kWarps];
  const int t = blockIdx.x;
  const int64_t first = args.first_chunk + args.chunk_begin[t];
  const int64_t count = args.chunk_begin[t + 1] - args.chunk_begin[t];
  const double* sums = reinterpret_cast<const double*>(partials + first);
  const double w_total = BlockSumArray(sums, count, 2, shared);
  const double u_total = BlockSumArray(sums + 1, count, 2, shared);
  if (threadIdx.x == 0) {
    const C ratio = math::LambTrustRatio<C>(
        static_cast<C>(w_total), static_cast<C>(u_total),
        (args.flags[t] & kLayerAdaptation) != 0);
    step_sizes[args.first_tensor + t] =
        *hyper.step >= 1 ? *hyper.lr * ratio : QuietNaN<C>();
  }
}

template <typename T, typename C, int kCapacity>
__global__ void __launch_bounds__(kThreads)
    LambApplyKernel(functor::LambHyperparams<C> hyper,
                    LambArgs<T, kCapacity> args, const C* step_sizes) {
  const ChunkRange r = BlockChunk(args);
  T* __restrict__ var = args.ptrs[Lamb::kVar][r.tensor];
  const T* __restrict__ m = args.ptrs[Lamb::kM][r.tensor];
  const T* __restrict__ v = args.ptrs[Lamb::kV][r.tensor];
  const math::LambStep<C> s = Lamb::StepFor(hyper, args.flags[r.tensor]);
  const C step_size = step_sizes[args.first_tensor + r.tensor];
  ForEachPack<T>(r.begin, r.end, threadIdx.x, kThreads,
                 VectorOk(args, r.tensor, r.begin), [&](int64_t i, auto width) {
                   constexpr int W = decltype(width)::value;
                   Pack<T, W> w = LoadPack<W>(var + i);
                   const Pack<T, W> mm = LoadPack<W>(m + i);
                   const Pack<T, W> vv = LoadPack<W>(v + i);
#pragma unroll
                   for (int k = 0; k < W; ++k) {
                     const C wk = static_cast<C>(w.v[k]);
                     const C u =
                         math::LambDirection<C>(s, wk, static_cast<C>(mm.v[k]),
                                                static_cast<C>(vv.v[k]));
                     w.v[k] = static_cast<T>(wk - step_size * u);
                   }
                   StorePack<W>(var + i, w);
                 });
}

// Scratch a LaunchUpdate call needs, in bytes (16-byte aligned pieces):
// one double2 per chunk, then one C per tensor.
template <typename T, typename C>
int64_t UpdateScratchBytes(const functor::LambHyperparams<C>&,
                           const TensorDescOf<Lamb, T>* tensors, int n) {
  const int64_t partials = TotalChunks(tensors, n) * 16;
  return partials + ((static_cast<int64_t>(n) * sizeof(C) + 15) / 16) * 16;
}

// Updates every tensor of `tensors` on `stream`; `scratch` holds
// UpdateScratchBytes bytes of device memory (no initialisation needed).
template <typename T, typename C, int kCapacity>
cudaError_t LaunchUpdate(cudaStream_t stream,
                         const functor::LambHyperparams<C>& hyper,
                         const TensorDescOf<Lamb, T>* tensors, int n,
                         void* scratch, LambArgs<T, kCapacity>* args) {
  if (n == 0) return cudaSuccess;
  double2* partials = static_cast<double2*>(scratch);
  C* step_sizes = reinterpret_cast<C*>(static_cast<char*>(scratch) +
                                       TotalChunks(tensors, n) * 16);
  return ForEachTensorList(
      tensors, n, args,
      [&](const LambArgs<T, kCapacity>& a, int chunks) -> cudaError_t {
        LambMomentsKernel<T, C, kCapacity>
            <<<chunks, kThreads, 0, stream>>>(hyper, a, partials);
        LambRatioKernel<T, C, kCapacity>
            <<<a.num_tensors, kThreads, 0, stream>>>(hyper, a, partials,
                                                     step_sizes);
        LambApplyKernel<T, C, kCapacity>
            <<<chunks, kThreads, 0, stream>>>(hyper, a, step_sizes);
        return cudaGetLastError();
      });
}

// Global memory traffic of one update, in full-size buffer accesses: pass 1
// reads var, m, v, grad and writes m, v; pass 3 reads var, m, v and writes
// var.
constexpr int kLambAccesses = 10;

}  // namespace gpu
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_GPU_LAMB_KERNEL_CU_H_
