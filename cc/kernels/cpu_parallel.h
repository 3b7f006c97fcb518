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

// Elements per block: 64 KiB of float32 per stream, large enough to amortise
// scheduling, small enough to balance two to a few dozen threads.
constexpr int64_t kElementsPerBlock = int64_t{1} << 14;

inline int64_t NumBlocks(int64_t num_elements, int64_t block_size) {
  return (num_elements + block_size - 1) / block_size;
}

// Calls fn(block, begin, end) for every block of [0, num_elements), in
// parallel. `cycles_per_element` feeds TF's cost model, which decides how
// many blocks each thread takes (small tensors run inline).
inline void ParallelForBlocks(
    tensorflow::OpKernelContext* ctx, int64_t num_elements, int64_t block_size,
    int64_t cycles_per_element,
    const std::function<void(int64_t block, int64_t begin, int64_t end)>& fn) {
  if (num_elements <= 0) return;
  const int64_t num_blocks = NumBlocks(num_elements, block_size);
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

// Adds up per-block partial sums in block order, in double.
inline double SumInOrder(const std::vector<double>& partials) {
  double total = 0.0;
  for (double partial : partials) total += partial;
  return total;
}

// Calls body(i, lane) for i in [begin, end), with lane = (i - begin) % kLanes
// for all but the tail. A body that adds into `accumulator[lane]` gives the
// compiler kLanes independent sums it can vectorise without reassociating
// floating-point additions (which it would need -ffast-math for).
constexpr int kLanes = 16;

template <typename Body>
inline void ForEachWithLanes(int64_t begin, int64_t end, Body body) {
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
