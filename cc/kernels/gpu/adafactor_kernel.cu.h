// Adafactor CUDA kernels (single tensor). Every reduction is on the device,
// in a fixed order (deterministic), and no launch waits for the host.
//
// Factored (rank >= 2, viewed as [batch, rows, cols]):
//   1. AdafactorRowKernel, one warp per row: sum_j G and sum_j w^2 of the row,
//      r_i updated, r_i and rsqrt(r_i) kept in scratch;
//   2. AdafactorColumnPartialKernel, one thread per column of a band of
//      kColumnBandRows rows: sum_i G and sum_i (g * rsqrt(r_i))^2 per band;
//   3. AdafactorColumnKernel, one thread per column: the bands added in band
//      order, c_j updated, rsqrt(c_j), the column's share of sum(u^2)
//      (math::AdafactorColumnSumSquaresOfU) and sqrt(mean(r)) per matrix;
//   4. AdafactorStepSizeKernel, one block: RMS(w), RMS(u), the step size;
//   5. AdafactorFactoredApplyKernel: w <- w - step_size * u.
// Unfactored (rank < 2): the accumulator and per-chunk sums of w^2 and u^2,
// the step size, the update (three launches, as LAMB's).
// Includes no TensorFlow header (see common.cu.h).
#ifndef TF_OPT_PLUGIN_CC_KERNELS_GPU_ADAFACTOR_KERNEL_CU_H_
#define TF_OPT_PLUGIN_CC_KERNELS_GPU_ADAFACTOR_KERNEL_CU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "cc/kernels/adafactor_op.h"
#include "cc/kernels/gpu/common.cu.h"
#include "cc/kernels/gpu/multi_tensor.cu.h"
#include "cc/kernels/math/adafactor_math.h"

namespace tf_opt_plugin {
namespace gpu {

// Rows per band of the column reduction: per-band partial sums cost 2 /
// kColumnBandRows of the matrix in scratch traffic.
constexpr int64_t kColumnBandRows = 64;

template <typename C>
__device__ __forceinline__ math::AdafactorStep<C> AdafactorStepFor(
    const functor::AdafactorHyperparams<C>& hyper) {
  return math::MakeAdafactorStep<C>(*hyper.lr, *hyper.beta_2_decay,
                                    *hyper.epsilon_1, *hyper.step,
                                    hyper.relative_step);
}

// Hyperparameter values a CPU kernel rejects with an error: on the GPU the
// slots are left unchanged and the variable becomes NaN (docs/gpu.md).
template <typename C>
__device__ __forceinline__ bool AdafactorValuesOk(
    const functor::AdafactorHyperparams<C>& hyper) {
  return *hyper.step >= 1 && *hyper.clip_threshold > C(0);
}

// Scratch of a factored update, carved out of one device buffer.
template <typename C>
struct AdafactorFactoredScratch {
  C* row_acc;             // [batch * rows]  updated r_i in the compute type
  C* row_inv_root;        // [batch * rows]  rsqrt(r_i)
  double* row_w_squares;  // [batch * rows]  sum_j w_ij^2
  C* col_sums;            // [batch * bands * cols]  sum over a band of G
  C* col_u_squares;       // [batch * bands * cols]  sum over a band of (g
                          // rsqrt(r_i))^2
  C* col_scale;           // [batch * cols]  rsqrt(c_j)
  C* sqrt_mean_r;         // [batch]
  double* u_partials;     // [column blocks]
  C* step_size;           // [1]
};

__host__ __device__ inline int64_t ColumnBands(int64_t rows) {
  return (rows + kColumnBandRows - 1) / kColumnBandRows;
}

inline int64_t ColumnBlocks(const functor::FactoredShape& shape) {
  return shape.batch * ((shape.cols + kThreads - 1) / kThreads);
}

inline int64_t Align16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

// Bytes of scratch a factored update of `shape` needs, and the layout.
template <typename C>
int64_t AdafactorFactoredScratchBytes(
    const functor::FactoredShape& shape, char* base = nullptr,
    AdafactorFactoredScratch<C>* out = nullptr) {
  const int64_t rows = shape.batch * shape.rows;
  const int64_t band_cols = shape.batch * ColumnBands(shape.rows) * shape.cols;
  int64_t offset = 0;
  auto take = [&](int64_t bytes) {
    char* p = base == nullptr ? nullptr : base + offset;
    offset += Align16(bytes);
    return p;
  };
  AdafactorFactoredScratch<C> s;
  s.row_acc = reinterpret_cast<C*>(take(rows * sizeof(C)));
  s.row_inv_root = reinterpret_cast<C*>(take(rows * sizeof(C)));
  s.row_w_squares = reinterpret_cast<double*>(take(rows * sizeof(double)));
  s.col_sums = reinterpret_cast<C*>(take(band_cols * sizeof(C)));
  s.col_u_squares = reinterpret_cast<C*>(take(band_cols * sizeof(C)));
  s.col_scale =
      reinterpret_cast<C*>(take(shape.batch * shape.cols * sizeof(C)));
  s.sqrt_mean_r = reinterpret_cast<C*>(take(shape.batch * sizeof(C)));
  s.u_partials =
      reinterpret_cast<double*>(take(ColumnBlocks(shape) * sizeof(double)));
  s.step_size = reinterpret_cast<C*>(take(sizeof(C)));
  if (out != nullptr) *out = s;
  return offset;
}

template <typename T, typename C>
__global__ void __launch_bounds__(kThreads)
    AdafactorRowKernel(functor::AdafactorHyperparams<C> hyper,
                       functor::FactoredShape shape, const T* var, T* row_acc,
                       const T* grad, AdafactorFactoredScratch<C> scratch) {
  const int lane = threadIdx.x & 31;
  const int64_t row =
      static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= shape.batch * shape.rows) return;  // whole warps only
  const int64_t cols = shape.cols;
  const int64_t begin = row * cols;
  const math::AdafactorStep<C> s = AdafactorStepFor(hyper);
  C square_sum = C(0), w_squares = C(0);
  const bool vector_ok = Aligned16(var + begin) && Aligned16(grad + begin);
  ForEachPack<T>(
      begin, begin + cols, lane, 32, vector_ok, [&](int64_t i, auto width) {
        constexpr int W = decltype(width)::value;
        const Pack<T, W> g = LoadPack<W>(grad + i);
        const Pack<T, W> w = LoadPack<W>(var + i);
#pragma unroll
        for (int k = 0; k < W; ++k) {
          square_sum +=
              math::AdafactorRegularizedSquare<C>(s, static_cast<C>(g.v[k]));
          const C wk = static_cast<C>(w.v[k]);
          w_squares += wk * wk;
        }
      });
  double sums[2] = {static_cast<double>(square_sum),
                    static_cast<double>(w_squares)};
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    sums[0] += __shfl_down_sync(0xffffffffu, sums[0], offset);
    sums[1] += __shfl_down_sync(0xffffffffu, sums[1], offset);
  }
  if (lane == 0) {
    const C updated = math::AdafactorAccumulate<C>(
        s, static_cast<C>(row_acc[row]), static_cast<C>(sums[0] / cols));
    if (AdafactorValuesOk(hyper)) row_acc[row] = static_cast<T>(updated);
    scratch.row_acc[row] = updated;
    scratch.row_inv_root[row] = math::AdafactorInverseRoot<C>(s, updated);
    scratch.row_w_squares[row] = sums[1];
  }
}

template <typename T, typename C>
__global__ void __launch_bounds__(kThreads)
    AdafactorColumnPartialKernel(functor::AdafactorHyperparams<C> hyper,
                                 functor::FactoredShape shape, const T* grad,
                                 AdafactorFactoredScratch<C> scratch) {
  const int64_t col_blocks = (shape.cols + kThreads - 1) / kThreads;
  const int64_t bands = ColumnBands(shape.rows);
  const int64_t block = blockIdx.x;
  const int64_t col = (block % col_blocks) * kThreads + threadIdx.x;
  const int64_t band = (block / col_blocks) % bands;
  const int64_t b = block / (col_blocks * bands);
  if (col >= shape.cols) return;
  const math::AdafactorStep<C> s = AdafactorStepFor(hyper);
  const int64_t row_begin = band * kColumnBandRows;
  const int64_t row_end = row_begin + kColumnBandRows < shape.rows
                              ? row_begin + kColumnBandRows
                              : shape.rows;
  C square_sum = C(0), u_squares = C(0);
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t flat_row = b * shape.rows + r;
    const C g = static_cast<C>(grad[flat_row * shape.cols + col]);
    square_sum += math::AdafactorRegularizedSquare<C>(s, g);
    u_squares +=
        math::AdafactorRowScaledSquare<C>(g, scratch.row_inv_root[flat_row]);
  }
  const int64_t out = (b * bands + band) * shape.cols + col;
  scratch.col_sums[out] = square_sum;
  scratch.col_u_squares[out] = u_squares;
}

template <typename T, typename C>
__global__ void __launch_bounds__(kThreads)
    AdafactorColumnKernel(functor::AdafactorHyperparams<C> hyper,
                          functor::FactoredShape shape, T* col_acc,
                          AdafactorFactoredScratch<C> scratch) {
  __shared__ double shared[kWarps];
  __shared__ C sqrt_mean_r;
  const int64_t col_blocks = (shape.cols + kThreads - 1) / kThreads;
  const int64_t bands = ColumnBands(shape.rows);
  const int64_t b = blockIdx.x / col_blocks;
  const int64_t col = (blockIdx.x % col_blocks) * kThreads + threadIdx.x;
  const math::AdafactorStep<C> s = AdafactorStepFor(hyper);
  // Every block of matrix b adds its r_i alike (a fixed order).
  double r_sum = 0.0;
  for (int64_t r = threadIdx.x; r < shape.rows; r += kThreads) {
    r_sum += static_cast<double>(scratch.row_acc[b * shape.rows + r]);
  }
  r_sum = BlockSum(r_sum, shared);
  if (threadIdx.x == 0) {
    sqrt_mean_r =
        math::AdafactorSqrtMeanRow<C>(s, static_cast<C>(r_sum / shape.rows));
    if (blockIdx.x % col_blocks == 0) scratch.sqrt_mean_r[b] = sqrt_mean_r;
  }
  __syncthreads();
  double u_share = 0.0;
  if (col < shape.cols) {
    double sums = 0.0, u_sums = 0.0;
    for (int64_t band = 0; band < bands; ++band) {
      const int64_t at = (b * bands + band) * shape.cols + col;
      sums += static_cast<double>(scratch.col_sums[at]);
      u_sums += static_cast<double>(scratch.col_u_squares[at]);
    }
    const int64_t c = b * shape.cols + col;
    const C updated = math::AdafactorAccumulate<C>(
        s, static_cast<C>(col_acc[c]), static_cast<C>(sums / shape.rows));
    if (AdafactorValuesOk(hyper)) col_acc[c] = static_cast<T>(updated);
    const C scale = math::AdafactorInverseRoot<C>(s, updated);
    scratch.col_scale[c] = scale;
    u_share = math::AdafactorColumnSumSquaresOfU<double>(
        u_sums, static_cast<double>(scale), static_cast<double>(sqrt_mean_r));
  }
  u_share = BlockSum(u_share, shared);
  if (threadIdx.x == 0) scratch.u_partials[blockIdx.x] = u_share;
}

// One block: the step size from the sums of squares of w and u.
template <typename C>
__global__ void __launch_bounds__(kThreads)
    AdafactorStepSizeKernel(functor::AdafactorHyperparams<C> hyper,
                            const double* w_squares, int64_t w_count,
                            int64_t w_stride, const double* u_squares,
                            int64_t u_count, int64_t u_stride,
                            int64_t num_elements, C* step_size) {
  __shared__ double shared[kWarps];
  const double w_total = BlockSumArray(w_squares, w_count, w_stride, shared);
  const double u_total = BlockSumArray(u_squares, u_count, u_stride, shared);
  if (threadIdx.x == 0) {
    const math::AdafactorStep<C> s = AdafactorStepFor(hyper);
    *step_size = AdafactorValuesOk(hyper)
                     ? math::AdafactorStepSize<C>(
                           s, *hyper.epsilon_2, *hyper.clip_threshold,
                           static_cast<C>(w_total), static_cast<C>(u_total),
                           static_cast<C>(num_elements))
                     : QuietNaN<C>();
  }
}

template <typename T, typename C>
__global__ void __launch_bounds__(kThreads)
    AdafactorFactoredApplyKernel(functor::FactoredShape shape, T* var,
                                 const T* grad,
                                 AdafactorFactoredScratch<C> scratch) {
  const int64_t size = shape.size(), cols = shape.cols, rows = shape.rows;
  const C step_size = *scratch.step_size;
  const bool vector_ok =
      Aligned16(var) && Aligned16(grad) && cols % VectorWidth<T>::value == 0;
  ForEachPack<T>(
      0, size, static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x,
      static_cast<int64_t>(gridDim.x) * kThreads, vector_ok,
      [&](int64_t i, auto width) {
        // A pack never crosses a row: cols is a multiple of its width.
        constexpr int W = decltype(width)::value;
        const int64_t flat_row = i / cols;
        const int64_t col = i - flat_row * cols;
        const int64_t b = flat_row / rows;
        const C row_scale =
            scratch.row_inv_root[flat_row] * scratch.sqrt_mean_r[b];
        const C* col_scale = scratch.col_scale + b * cols + col;
        Pack<T, W> w = LoadPack<W>(var + i);
        const Pack<T, W> g = LoadPack<W>(grad + i);
#pragma unroll
        for (int k = 0; k < W; ++k) {
          const C u = math::AdafactorDirection<C>(static_cast<C>(g.v[k]),
                                                  row_scale, col_scale[k]);
          w.v[k] = static_cast<T>(static_cast<C>(w.v[k]) - step_size * u);
        }
        StorePack<W>(var + i, w);
      });
}

// Unfactored pass 1: one block per chunk.
template <typename T, typename C>
__global__ void __launch_bounds__(kThreads)
    AdafactorUnfactoredSumsKernel(functor::AdafactorHyperparams<C> hyper,
                                  int64_t size, const T* var, T* acc,
                                  const T* grad, double2* partials) {
  __shared__ double shared[kWarps];
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * kChunkElements;
  const int64_t end =
      begin + kChunkElements < size ? begin + kChunkElements : size;
  const math::AdafactorStep<C> s = AdafactorStepFor(hyper);
  const bool write = AdafactorValuesOk(hyper);
  C w_squares = C(0), u_squares = C(0);
  const bool vector_ok = Aligned16(var + begin) && Aligned16(acc + begin) &&
                         Aligned16(grad + begin);
  ForEachPack<T>(begin, end, threadIdx.x, kThreads, vector_ok,
                 [&](int64_t i, auto width) {
                   constexpr int W = decltype(width)::value;
                   const Pack<T, W> w = LoadPack<W>(var + i);
                   Pack<T, W> a = LoadPack<W>(acc + i);
                   const Pack<T, W> g = LoadPack<W>(grad + i);
#pragma unroll
                   for (int k = 0; k < W; ++k) {
                     const C gk = static_cast<C>(g.v[k]);
                     const C updated = math::AdafactorAccumulate<C>(
                         s, static_cast<C>(a.v[k]),
                         math::AdafactorRegularizedSquare<C>(s, gk));
                     a.v[k] = static_cast<T>(updated);
                     const C u = math::AdafactorDirection<C>(
                         gk, math::AdafactorInverseRoot<C>(s, updated), C(1));
                     const C wk = static_cast<C>(w.v[k]);
                     w_squares += wk * wk;
                     u_squares += u * u;
                   }
                   if (write) StorePack<W>(acc + i, a);
                 });
  const double w_total = BlockSum(static_cast<double>(w_squares), shared);
  const double u_total = BlockSum(static_cast<double>(u_squares), shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = make_double2(w_total, u_total);
}

template <typename T, typename C>
__global__ void __launch_bounds__(kThreads)
    AdafactorUnfactoredApplyKernel(functor::AdafactorHyperparams<C> hyper,
                                   int64_t size, T* var, const T* acc,
                                   const T* grad, const C* step_size_ptr) {
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * kChunkElements;
  const int64_t end =
      begin + kChunkElements < size ? begin + kChunkElements : size;
  const math::AdafactorStep<C> s = AdafactorStepFor(hyper);
  const C step_size = *step_size_ptr;
  const bool vector_ok = Aligned16(var + begin) && Aligned16(acc + begin) &&
                         Aligned16(grad + begin);
  ForEachPack<T>(
      begin, end, threadIdx.x, kThreads, vector_ok, [&](int64_t i, auto width) {
        constexpr int W = decltype(width)::value;
        Pack<T, W> w = LoadPack<W>(var + i);
        const Pack<T, W> a = LoadPack<W>(acc + i);
        const Pack<T, W> g = LoadPack<W>(grad + i);
#pragma unroll
        for (int k = 0; k < W; ++k) {
          const C u = math::AdafactorDirection<C>(
              static_cast<C>(g.v[k]),
              math::AdafactorInverseRoot<C>(s, static_cast<C>(a.v[k])), C(1));
          w.v[k] = static_cast<T>(static_cast<C>(w.v[k]) - step_size * u);
        }
        StorePack<W>(var + i, w);
      });
}

template <typename C>
int64_t AdafactorUnfactoredScratchBytes(int64_t size) {
  return NumChunks(size) * 16 + 16;
}

// Factored update of `shape` on `stream`; `scratch` holds
// AdafactorFactoredScratchBytes<C>(shape) bytes (no initialisation needed).
template <typename T, typename C>
cudaError_t LaunchAdafactorFactored(
    cudaStream_t stream, int sm_count,
    const functor::AdafactorHyperparams<C>& hyper,
    const functor::FactoredShape& shape, T* var, T* row_acc, T* col_acc,
    const T* grad, void* scratch_buffer) {
  if (shape.size() == 0) return cudaSuccess;
  AdafactorFactoredScratch<C> scratch;
  AdafactorFactoredScratchBytes<C>(shape, static_cast<char*>(scratch_buffer),
                                   &scratch);
  const int64_t rows = shape.batch * shape.rows;
  AdafactorRowKernel<T, C>
      <<<(rows + kWarps - 1) / kWarps, kThreads, 0, stream>>>(
          hyper, shape, var, row_acc, grad, scratch);
  const int64_t col_blocks = ColumnBlocks(shape);
  AdafactorColumnPartialKernel<T, C>
      <<<col_blocks * ColumnBands(shape.rows), kThreads, 0, stream>>>(
          hyper, shape, grad, scratch);
  AdafactorColumnKernel<T, C>
      <<<col_blocks, kThreads, 0, stream>>>(hyper, shape, col_acc, scratch);
  AdafactorStepSizeKernel<C><<<1, kThreads, 0, stream>>>(
      hyper, scratch.row_w_squares, rows, 1, scratch.u_partials, col_blocks, 1,
      shape.size(), scratch.step_size);
  const int64_t packs = shape.size() / VectorWidth<T>::value + 1;
  AdafactorFactoredApplyKernel<T, C>
      <<<GridFor(packs, sm_count), kThreads, 0, stream>>>(shape, var, grad,
                                                          scratch);
  return cudaGetLastError();
}

// Unfactored update of `size` elements; `scratch` holds
// AdafactorUnfactoredScratchBytes<C>(size) bytes.
template <typename T, typename C>
cudaError_t LaunchAdafactorUnfactored(
    cudaStream_t stream, const functor::AdafactorHyperparams<C>& hyper,
    int64_t size, T* var, T* acc, const T* grad, void* scratch) {
  if (size == 0) return cudaSuccess;
  const int64_t chunks = NumChunks(size);
  double2* partials = static_cast<double2*>(scratch);
  C* step_size =
      reinterpret_cast<C*>(static_cast<char*>(scratch) + chunks * 16);
  const double* sums = reinterpret_cast<const double*>(partials);
  AdafactorUnfactoredSumsKernel<T, C>
      <<<chunks, kThreads, 0, stream>>>(hyper, size, var, acc, grad, partials);
  AdafactorStepSizeKernel<C><<<1, kThreads, 0, stream>>>(
      hyper, sums, chunks, 2, sums + 1, chunks, 2, size, step_size);
  AdafactorUnfactoredApplyKernel<T, C>
      <<<chunks, kThreads, 0, stream>>>(hyper, size, var, acc, grad, step_size);
  return cudaGetLastError();
}

// Global memory traffic of one update, in full-size buffer accesses.
// Factored: pass 1 reads grad and var, pass 2 grad, the update reads grad and
// var and writes var (the accumulators and scratch are O(rows + cols)).
// Unfactored: pass 1 reads var, acc, grad and writes acc; the update reads
// var, acc, grad, writes var.
constexpr int kAdafactorFactoredAccesses = 6;
constexpr int kAdafactorUnfactoredAccesses = 8;

}  // namespace gpu
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_GPU_ADAFACTOR_KERNEL_CU_H_
