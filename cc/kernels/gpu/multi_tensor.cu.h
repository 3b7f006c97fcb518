// Multi-tensor apply (after NVIDIA apex's multi_tensor_apply): a list of
// tensors of any sizes is cut into chunks of kChunkElements, and one launch
// runs one block per chunk. The tensor list travels in the kernel arguments:
// no host-to-device copy, no allocation, no synchronisation per step.
//
// The argument block of a list of kCapacity tensors must fit the kernel
// parameter limit: 32764 bytes since CUDA 12.1 on sm_70 and newer (driver
// r530+; the library needs r580+ anyway, see docs/gpu.md). A list that does
// not fit one argument block is split into several launches.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_GPU_MULTI_TENSOR_CU_H_
#define TF_OPT_PLUGIN_CC_KERNELS_GPU_MULTI_TENSOR_CU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "cc/kernels/gpu/common.cu.h"
#include "cc/kernels/tensor_list.h"

namespace tf_opt_plugin {
namespace gpu {

// Tensors per launch of a multi-tensor op: BERT-base's 199 variables take one
// launch per dtype.
constexpr int kMultiTensorCapacity = 512;

// One tensor of a list: tf_opt_plugin::TensorDesc (tensor_list.h), with
// the buffers' CUDA types.
using ::tf_opt_plugin::TensorDesc;

// The kernel argument: up to kCapacity tensors. Block b of the launch works
// on chunk b - chunk_begin[i] of tensor i, where i is the last tensor with
// chunk_begin[i] <= b (empty tensors have no chunks).
template <typename T, int kDepth, int kCapacity>
struct TensorListArgs {
  T* ptrs[kDepth][kCapacity];
  int64_t sizes[kCapacity];
  int32_t chunk_begin[kCapacity + 1];
  uint8_t flags[kCapacity];
  int32_t num_tensors;
  int32_t first_tensor;  // index of tensor 0 in the whole list
  int64_t first_chunk;   // index of block 0 among all chunks of the list
};

// The tensors and kernel arguments of an algorithm (tensor_list.h): its
// variable, slots and gradient, in op order.
template <typename Algorithm, typename T>
using TensorDescOf = TensorDesc<T, kNumBuffers<Algorithm>>;
template <typename Algorithm, typename T, int kCapacity>
using TensorListArgsOf = TensorListArgs<T, kNumBuffers<Algorithm>, kCapacity>;

// Device scratch, in bytes, that LaunchUpdate needs for `n` tensors: none,
// unless the algorithm's kernel header overloads this for its Hyperparams.
template <typename Hyperparams, typename T, int kDepth>
int64_t UpdateScratchBytes(const Hyperparams&, const TensorDesc<T, kDepth>*,
                           int) {
  return 0;
}

static_assert(sizeof(TensorListArgs<double, 5, kMultiTensorCapacity>) < 30000,
              "the tensor list must fit CUDA's 32764-byte kernel parameter "
              "limit, with room for the other arguments");

inline __host__ __device__ int64_t NumChunks(int64_t size) {
  return (size + kChunkElements - 1) / kChunkElements;
}

// The tensor of block `block` (see TensorListArgs). Host-callable for the
// self-test of tools/gpu_check.
template <typename T, int kDepth, int kCapacity>
__host__ __device__ __forceinline__ int FindTensor(
    const TensorListArgs<T, kDepth, kCapacity>& args, int64_t block) {
  int lo = 0, hi = args.num_tensors - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (args.chunk_begin[mid] <= block) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Where a block works: tensor `tensor` of the launch, elements [begin, end).
struct ChunkRange {
  int tensor;
  int64_t begin, end;
};

template <typename T, int kDepth, int kCapacity>
__device__ __forceinline__ ChunkRange
BlockChunk(const TensorListArgs<T, kDepth, kCapacity>& args) {
  ChunkRange r;
  r.tensor = FindTensor(args, blockIdx.x);
  const int64_t chunk =
      static_cast<int64_t>(blockIdx.x) - args.chunk_begin[r.tensor];
  r.begin = chunk * kChunkElements;
  const int64_t size = args.sizes[r.tensor];
  r.end = r.begin + kChunkElements < size ? r.begin + kChunkElements : size;
  return r;
}

// Whether every buffer of tensor `t` is 16-byte aligned at element `begin`.
template <typename T, int kDepth, int kCapacity>
__device__ __forceinline__ bool VectorOk(
    const TensorListArgs<T, kDepth, kCapacity>& args, int t, int64_t begin) {
  bool ok = true;
#pragma unroll
  for (int d = 0; d < kDepth; ++d) {
    const T* p = args.ptrs[d][t];
    ok = ok && (p == nullptr || Aligned16(p + begin));
  }
  return ok;
}

// Host side: cuts `tensors` into argument blocks of at most kCapacity tensors
// and INT32_MAX / 2 chunks, and calls launch(args, num_chunks) for each (a
// tensor is never split between two blocks). Returns the first error of a
// launch. `args` is scratch space owned by the caller (about 27 KB, too much
// for some stacks).
template <typename T, int kDepth, int kCapacity, typename Launch>
cudaError_t ForEachTensorList(const TensorDesc<T, kDepth>* tensors, int n,
                              TensorListArgs<T, kDepth, kCapacity>* args,
                              Launch&& launch) {
  constexpr int64_t kMaxChunksPerLaunch = int64_t{1} << 30;
  int64_t chunk_base = 0;
  int i = 0;
  while (i < n) {
    args->num_tensors = 0;
    args->first_tensor = i;
    args->first_chunk = chunk_base;
    int64_t chunks = 0;
    while (i < n && args->num_tensors < kCapacity) {
      const int64_t c = NumChunks(tensors[i].size);
      if (args->num_tensors > 0 && chunks + c > kMaxChunksPerLaunch) break;
      const int k = args->num_tensors++;
      for (int d = 0; d < kDepth; ++d) args->ptrs[d][k] = tensors[i].ptrs[d];
      args->sizes[k] = tensors[i].size;
      args->flags[k] = tensors[i].flags;
      args->chunk_begin[k] = static_cast<int32_t>(chunks);
      chunks += c;
      ++i;
    }
    args->chunk_begin[args->num_tensors] = static_cast<int32_t>(chunks);
    if (chunks > 0) {
      const cudaError_t error = launch(*args, static_cast<int>(chunks));
      if (error != cudaSuccess) return error;
    }
    chunk_base += chunks;
  }
  return cudaSuccess;
}

// Total chunks of a list (the size of per-chunk scratch arrays).
template <typename T, int kDepth>
int64_t TotalChunks(const TensorDesc<T, kDepth>* tensors, int n) {
  int64_t total = 0;
  for (int i = 0; i < n; ++i) total += NumChunks(tensors[i].size);
  return total;
}

}  // namespace gpu
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_GPU_MULTI_TENSOR_CU_H_
