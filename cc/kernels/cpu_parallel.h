// Blocked parallel loops on TensorFlow's intra-op thread pool.
//
// Work is cut into blocks of a fixed size that does not depend on the number
// of threads, so reductions add their partial sums in the same order on every
// machine and results are reproducible run to run.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_CPU_PARALLEL_H_
#define TF_OPT_PLUGIN_CC_KERNELS_CPU_PARALLEL_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tf_opt_plugin {

// TFOPT_CPU_CLONES marks a function holding a hot loop: it is compiled for
// AVX-512 (x86-64-v4: F, BW, CD, DQ, VL; the 16-bit lanes of bfloat16 state
// need BW to vectorize),
// for AVX2 and for the baseline x86-64 the library targets, and the
// dynamic loader binds the best one the CPU supports (GNU ifunc), so the
// library still runs on any x86-64 CPU. On two cores the SSE2 loops are
// compute-bound (a divide and a square root per element, four floats per
// instruction); at AVX-512 width they are limited by memory bandwidth.
//
// All clones give bit-identical results, so a run continues identically on a
// CPU with another ISA: the kernels are built with -ffp-contract=off (GCC
// would otherwise fuse a * b + c into an FMA, which rounds once, in the AVX2
// and AVX-512 clones only); vector add, multiply, divide and square root round
// exactly like their scalar forms; and reductions keep the kLanes partial sums
// below whatever the vector width.
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && \
    !defined(__CUDACC__)
#define TFOPT_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define TFOPT_CPU_CLONES
#endif

// Elements per block: 64 KiB of float32 per stream, large enough to amortise
// scheduling, small enough to balance two to a few dozen threads.
constexpr int64_t kElementsPerBlock = int64_t{1} << 14;

inline int64_t NumBlocks(int64_t num_elements, int64_t block_size) {
  return (num_elements + block_size - 1) / block_size;
}

// Calls fn(block, begin, end) for every block of [0, num_elements), in
// parallel. `cycles_per_element` feeds TF's cost model, which decides how
// many blocks each thread takes. A single block (half of BERT's variables are
// 768-element biases and norms) runs inline without touching the pool.
inline void ParallelForBlocks(
    tensorflow::OpKernelContext* ctx, int64_t num_elements, int64_t block_size,
    int64_t cycles_per_element,
    const std::function<void(int64_t block, int64_t begin, int64_t end)>& fn) {
  if (num_elements <= 0) return;
  const int64_t num_blocks = NumBlocks(num_elements, block_size);
  if (num_blocks == 1) {
    fn(0, 0, num_elements);
    return;
  }
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  workers->ParallelFor(
      num_blocks,
      tsl::thread::ThreadPool::SchedulingParams::Adaptive(cycles_per_element *
                                                          block_size),
      [&](int64_t first_block, int64_t last_block) {
        for (int64_t block = first_block; block < last_block; ++block) {
          const int64_t begin = block * block_size;
          fn(block, begin, std::min(begin + block_size, num_elements));
        }
      });
}

// A block of one tensor of a multi-tensor op: elements [begin, end) of tensor
// `tensor`, block `index` of that tensor (the blocks of a tensor are exactly
// those ParallelForBlocks gives its single-tensor op, so per-block partial
// sums, and results, are the same).
struct TensorBlock {
  size_t tensor;
  int64_t index, begin, end;
};

// The blocks of kElementsPerBlock of `n` tensors, tensor by tensor;
// size_of(t) is the element count of tensor t.
template <typename SizeOf>
std::vector<TensorBlock> SplitIntoBlocks(size_t n, SizeOf size_of) {
  std::vector<TensorBlock> blocks;
  for (size_t t = 0; t < n; ++t) {
    const int64_t size = size_of(t);
    for (int64_t b = 0; b < NumBlocks(size, kElementsPerBlock); ++b) {
      const int64_t begin = b * kElementsPerBlock;
      blocks.push_back(
          {t, b, begin, std::min(begin + kElementsPerBlock, size)});
    }
  }
  return blocks;
}

// Calls fn(index) for every block of `blocks` (a multi-tensor op's), in
// parallel, with TF's cost model fed the blocks' average size; a list of at
// most one block's worth of elements (a small model) runs inline, as a
// single-block tensor does in ParallelForBlocks.
inline void ParallelForTensorBlocks(
    tensorflow::OpKernelContext* ctx, const std::vector<TensorBlock>& blocks,
    int64_t cycles_per_element, const std::function<void(int64_t index)>& fn) {
  int64_t elements = 0;
  for (const TensorBlock& b : blocks) elements += b.end - b.begin;
  if (elements <= kElementsPerBlock) {
    for (size_t i = 0; i < blocks.size(); ++i) fn(static_cast<int64_t>(i));
    return;
  }
  const int64_t average = elements / static_cast<int64_t>(blocks.size());
  ParallelForBlocks(ctx, static_cast<int64_t>(blocks.size()), /*block_size=*/1,
                    cycles_per_element * average,
                    [&](int64_t index, int64_t, int64_t) { fn(index); });
}

// Calls update(tensor, begin, end) for every block of every tensor of
// `tensors` (each with a `size`) in one parallel loop: the small tensors of a
// model (biases, norms) run side by side instead of one after another.
template <typename Tensor, typename Update>
void ParallelForEachBlock(tensorflow::OpKernelContext* ctx,
                          const std::vector<Tensor>& tensors,
                          int64_t cycles_per_element, Update update) {
  const std::vector<TensorBlock> blocks = SplitIntoBlocks(
      tensors.size(), [&](size_t t) { return tensors[t].size; });
  ParallelForTensorBlocks(ctx, blocks, cycles_per_element, [&](int64_t index) {
    const TensorBlock& b = blocks[index];
    update(tensors[b.tensor], b.begin, b.end);
  });
}

// Zero-filled scratch memory of `size` elements of S from the op's allocator,
// as TF's own kernels take it (allocate_temp): when memory runs out the op
// fails with ResourceExhausted, where a std::bad_alloc escaping a kernel
// (a std::vector) would kill the process.
template <typename S>
class Scratch {
 public:
  absl::Status Allocate(tensorflow::OpKernelContext* ctx, int64_t size) {
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DataTypeToEnum<S>::value,
                                          tensorflow::TensorShape({size}),
                                          &tensor_));
    size_ = size;
    std::fill(data(), data() + size, S(0));
    return absl::OkStatus();
  }
  S* data() { return tensor_.flat<S>().data(); }
  S& operator[](int64_t i) { return data()[i]; }
  int64_t size() const { return size_; }

 private:
  tensorflow::Tensor tensor_;
  int64_t size_ = 0;
};

// Adds up per-block partial sums in block order, in double.
inline double SumInOrder(Scratch<double>& partials) {
  double total = 0.0;
  for (int64_t i = 0; i < partials.size(); ++i) total += partials[i];
  return total;
}

// Calls body(i, lane) for i in [begin, end), with lane = (i - begin) % kLanes
// for all but the tail. A body that adds into `accumulator[lane]` gives the
// compiler kLanes independent sums it can vectorise without reassociating
// floating-point additions (which it would need -ffast-math for).
constexpr int kLanes = 16;

// Always inlined so the loop is compiled for the caller's TFOPT_CPU_CLONES
// target rather than called in its baseline form.
template <typename Body>
inline __attribute__((always_inline)) void ForEachWithLanes(int64_t begin,
                                                            int64_t end,
                                                            Body body) {
  int64_t i = begin;
  for (; i + kLanes <= end; i += kLanes) {
    for (int lane = 0; lane < kLanes; ++lane) body(i + lane, lane);
  }
  for (; i < end; ++i) body(i, 0);
}

template <typename C>
inline double SumLanes(const C (&lanes)[kLanes]) {
  double total = 0.0;
  for (int lane = 0; lane < kLanes; ++lane) total += lanes[lane];
  return total;
}

}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_CPU_PARALLEL_H_
