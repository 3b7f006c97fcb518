// Device-side building blocks shared by every CUDA optimizer kernel. No
// TensorFlow header is included here or in any cc/kernels/gpu/*.cu.h file, so
// the exact kernels the op library runs can be compiled by nvcc alone and
// checked on a GPU machine without TensorFlow (tools/gpu_check.sh).
//
// Storage types are CUDA's own: float, double, __half, __nv_bfloat16 (the TF
// kernels reinterpret Eigen::half / Eigen::bfloat16 buffers, which have the
// same layout). The math is done in the compute type C (float for every type
// but double) by the per-element functions of cc/kernels/math/*_math.h, the
// same ones the CPU kernels call.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_GPU_COMMON_CU_H_
#define TF_OPT_PLUGIN_CC_KERNELS_GPU_COMMON_CU_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <type_traits>

namespace tf_opt_plugin {
namespace gpu {

// Threads per block of every kernel (a multiple of the warp size).
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Elements of one tensor that one block updates: a multi-tensor launch has one
// block per chunk, so a list of tensors of any sizes becomes one grid.
constexpr int64_t kChunkElements = 65536;

// 16 bytes of T: the width of one vector load or store.
template <typename T>
struct VectorWidth {
  static constexpr int value = 16 / static_cast<int>(sizeof(T));
};

// W consecutive elements of T, aligned to their total size, so that a Pack
// load or store is one instruction (LDG.128 / STG.128 for 16 bytes).
template <typename T, int W>
struct alignas(sizeof(T) * W) Pack {
  T v[W];
};

template <int W, typename T>
__device__ __forceinline__ Pack<T, W> LoadPack(const T* p) {
  return *reinterpret_cast<const Pack<T, W>*>(p);
}

template <int W, typename T>
__device__ __forceinline__ void StorePack(T* p, const Pack<T, W>& x) {
  *reinterpret_cast<Pack<T, W>*>(p) = x;
}

__host__ __device__ __forceinline__ bool Aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

template <int W>
using WidthTag = std::integral_constant<int, W>;

// Calls body(i, WidthTag<W>) so that every element of [begin, end) is visited
// exactly once by the `num_threads` threads numbered `thread`: 16-byte packs
// (W = VectorWidth<T>) over the largest prefix when `vector_ok` (every pointer
// the body touches is 16-byte aligned at `begin`), then single elements
// (W = 1) for the tail, or for everything when not aligned.
// Host-callable too, so tools/gpu_check's self-test can check the coverage.
template <typename T, typename Body>
__host__ __device__ __forceinline__ void ForEachPack(int64_t begin, int64_t end,
                                                     int64_t thread,
                                                     int64_t num_threads,
                                                     bool vector_ok,
                                                     Body&& body) {
  constexpr int N = VectorWidth<T>::value;
  int64_t tail = begin;
  if (vector_ok) {
    const int64_t num_packs = (end - begin) / N;
    for (int64_t p = thread; p < num_packs; p += num_threads) {
      body(begin + p * N, WidthTag<N>());
    }
    tail = begin + num_packs * N;
  }
  for (int64_t i = tail + thread; i < end; i += num_threads) {
    body(i, WidthTag<1>());
  }
}

// Quiet NaN in the compute type: what a variable becomes when a step's
// hyperparameters are out of range on the device (see docs/gpu.md: the value
// checks a CPU kernel reports as errors cannot be reported without a host
// synchronisation on a GPU).
template <typename C>
__host__ __device__ __forceinline__ C QuietNaN() {
  return std::numeric_limits<C>::quiet_NaN();
}

// Sum of one value per thread of a kThreads-thread block, in a fixed order
// (warp shuffle tree, then the warps' sums in warp order), so the result does
// not depend on timing. Valid in thread 0. `shared` holds kWarps doubles;
// every thread of the block must call this.
__device__ __forceinline__ double BlockSum(double x, double* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    x += __shfl_down_sync(0xffffffffu, x, offset);
  }
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  if (warp == 0) {
    x = lane < kWarps ? shared[lane] : 0.0;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      x += __shfl_down_sync(0xffffffffu, x, offset);
    }
  }
  return x;
}

// Sum of a double array, by one block, in a fixed order; valid in thread 0.
__device__ __forceinline__ double BlockSumArray(const double* values,
                                                int64_t count, int64_t stride,
                                                double* shared) {
  double x = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kThreads)
    x += values[i * stride];
  return BlockSum(x, shared);
}

// Grid size of a grid-stride loop over `work_items`: enough blocks for a few
// waves on `sm_count` SMs, never more than the work needs.
inline int GridFor(int64_t work_items, int sm_count) {
  const int64_t wanted = (work_items + kThreads - 1) / kThreads;
  const int64_t cap = static_cast<int64_t>(sm_count > 0 ? sm_count : 1) * 8;
  const int64_t blocks = wanted < cap ? wanted : cap;
  return static_cast<int>(blocks > 0 ? blocks : 1);
}

}  // namespace gpu
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_GPU_COMMON_CU_H_
