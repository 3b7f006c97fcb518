// ResourceApplyAdafactor kernel (CPU and, with CUDA, GPU registrations) and
// its CPU functors (GPU: adafactor_op_gpu.cu.cc, gpu/adafactor_kernel.cu.h).
//
// Factored (rank >= 2), two passes over the variable and the gradient:
//   1. one read of g and w, in bands of whole rows, gives the row sums and
//      the column sums of g^2 + epsilon_1, sum(w^2), the row accumulators,
//      and per column sum_i (g_ij * rsqrt(r_i))^2, from which sum(u^2) for the
//      RMS clip follows without another pass over g; then the column
//      accumulators and scales, from the small per-band partial sums;
//   2. w <- w - step_size * u.
// Unfactored (rank < 2), two passes: accumulator and both sums, then w.
#define EIGEN_USE_THREADS

#include "cc/kernels/adafactor_op.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/registration.h"
#include "cc/kernels/variable_access.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tf_opt_plugin {

using CPUDevice = Eigen::ThreadPoolDevice;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

namespace functor {

// Pass 1 of a factored variable works on bands of kBandRows whole rows. A band
// is one contiguous run of memory (earlier 32 x 2048 tiles broke the rows of
// wide matrices into short runs), each of its rows is complete, so the row
// accumulator can be updated while the row is still in cache, and per-band
// column partial sums keep the reduction order fixed. They cost 2 / kBandRows
// of the matrix in extra memory traffic; a matrix with fewer than kBandRows
// rows per thread leaves threads idle in pass 1. On BERT-base a step took 6 %
// longer with 32-row bands and 3 % longer with 256 (its 768-row matrices then
// split into three bands for two threads; docs/benchmarks.md).
constexpr int64_t kBandRows = 128;

// Columns per task of the column reduction after pass 1 (768-wide BERT
// matrices split three ways).
constexpr int64_t kReduceCols = 256;

// One row of pass 1: adds G = g^2 + epsilon_1 to col_sums and the lanes of
// row_sum, w^2 to the lanes of w_squares and, when kWithPrevious, the previous
// row's (g * rsqrt(r))^2 terms to col_u_squares. Those need that row's r,
// known only once the row is summed; adding them while this row streams in
// (the previous row is still in L1) rather than in a loop of their own keeps
// memory busy (a BERT-base step about 3 % faster), and still adds rows to
// each column in order.
template <bool kWithPrevious, typename T, typename C>
inline __attribute__((always_inline)) void AdafactorBandRow(
    const math::AdafactorStep<C>& s, int64_t cols, const T* __restrict g,
    const T* __restrict w, const T* __restrict previous_g, C previous_inv_root,
    C* __restrict col_sums, C* __restrict col_u_squares, C (&row_sum)[kLanes],
    C (&w_squares)[kLanes]) {
  ForEachWithLanes(int64_t{0}, cols, [&](int64_t j, int lane) {
    const C square =
        math::AdafactorRegularizedSquare<C>(s, static_cast<C>(g[j]));
    const C wj = static_cast<C>(w[j]);
    col_sums[j] += square;
    row_sum[lane] += square;
    w_squares[lane] += wj * wj;
    if (kWithPrevious) {
      col_u_squares[j] += math::AdafactorRowScaledSquare<C>(
          static_cast<C>(previous_g[j]), previous_inv_root);
    }
  });
}

// Pass 1 over one band of `num_rows` rows of `cols` columns (grad, var and
// row_acc point at its first row). Per row i it reads g and w once (one
// AdafactorBandRow), updates r_i from the row mean of G and stores rsqrt(r_i)
// in row_inv_root; the column sums of (g * rsqrt(r_i))^2 give sum(u^2) once
// the column scales are known (math::AdafactorColumnSumSquaresOfU), which
// spares a pass over g in memory. col_sums and col_u_squares must be zero;
// they are kept in the compute type, exactly as accumulated, and widened to
// double when bands are added up.
template <typename T, typename C>
TFOPT_CPU_CLONES void AdafactorBandSums(
    const math::AdafactorStep<C>& s, int64_t num_rows, int64_t cols,
    const T* __restrict grad, const T* __restrict var, T* __restrict row_acc,
    C* __restrict row_inv_root, C* __restrict col_sums,
    C* __restrict col_u_squares, double* w_sum_squares, double* row_acc_sum) {
  C w_squares[kLanes] = {};
  double acc_sum = 0.0;
  for (int64_t r = 0; r < num_rows; ++r) {
    const int64_t offset = r * cols;
    C row_sum[kLanes] = {};
    if (r == 0) {
      AdafactorBandRow<false, T, C>(s, cols, grad, var, nullptr, C(0), col_sums,
                                    col_u_squares, row_sum, w_squares);
    } else {
      AdafactorBandRow<true, T, C>(s, cols, grad + offset, var + offset,
                                   grad + offset - cols, row_inv_root[r - 1],
                                   col_sums, col_u_squares, row_sum, w_squares);
    }
    const C updated =
        math::AdafactorAccumulate<C>(s, static_cast<C>(row_acc[r]),
                                     static_cast<C>(SumLanes(row_sum) / cols));
    row_acc[r] = static_cast<T>(updated);
    acc_sum += updated;
    row_inv_root[r] = math::AdafactorInverseRoot<C>(s, updated);
  }
  if (num_rows > 0) {
    const T* __restrict last_g = grad + (num_rows - 1) * cols;
    const C inv_root = row_inv_root[num_rows - 1];
    for (int64_t j = 0; j < cols; ++j) {
      col_u_squares[j] += math::AdafactorRowScaledSquare<C>(
          static_cast<C>(last_g[j]), inv_root);
    }
  }
  *w_sum_squares = SumLanes(w_squares);
  *row_acc_sum = acc_sum;
}

// Adds the partial sums of `num_bands` bands (`stride` apart) for `width`
// columns into sums, in band order.
template <typename C>
TFOPT_CPU_CLONES void AddBandPartials(const C* __restrict partials,
                                      int64_t num_bands, int64_t stride,
                                      int64_t width, double* __restrict sums) {
  for (int64_t band = 0; band < num_bands; ++band) {
    const C* __restrict row = partials + band * stride;
    for (int64_t j = 0; j < width; ++j) sums[j] += row[j];
  }
}

// Pass 2 over rows [0, num_rows) of `cols` columns: w <- w - step_size * u.
template <typename T, typename C>
TFOPT_CPU_CLONES void AdafactorApplyRows(C step_size, int64_t num_rows,
                                         int64_t cols, const T* __restrict grad,
                                         T* __restrict var,
                                         const C* __restrict row_scale,
                                         const C* __restrict col_scale) {
  for (int64_t r = 0; r < num_rows; ++r) {
    const T* __restrict g = grad + r * cols;
    T* __restrict w = var + r * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const C u = math::AdafactorDirection<C>(static_cast<C>(g[j]),
                                              row_scale[r], col_scale[j]);
      w[j] = static_cast<T>(static_cast<C>(w[j]) - step_size * u);
    }
  }
}

template <typename T, typename C>
struct ApplyAdafactorFactored<CPUDevice, T, C> {
  void operator()(OpKernelContext* ctx, const AdafactorHyperparams<C>& hyper,
                  const FactoredShape& shape, T* var, T* row_acc, T* col_acc,
                  const T* grad) {
    const int64_t batch = shape.batch, rows = shape.rows, cols = shape.cols;
    const math::AdafactorStep<C> s = math::MakeAdafactorStep<C>(
        *hyper.lr, *hyper.beta_2_decay, *hyper.epsilon_1, *hyper.step,
        hyper.relative_step);
    const int64_t bands = NumBlocks(rows, kBandRows);  // per matrix

    // Pass 1, one task per band of each matrix of the batch; row_scale holds
    // rsqrt(r_i) until the mean of r is known.
    Scratch<C> row_scale, col_partials, col_u_partials, sqrt_mean_r, col_scale;
    Scratch<double> w_partials, r_partials, u_partials;
    const int64_t col_blocks = NumBlocks(cols, kReduceCols);  // per matrix
    OP_REQUIRES_OK(ctx, row_scale.Allocate(ctx, batch * rows));
    OP_REQUIRES_OK(ctx, col_partials.Allocate(ctx, batch * bands * cols));
    OP_REQUIRES_OK(ctx, col_u_partials.Allocate(ctx, batch * bands * cols));
    OP_REQUIRES_OK(ctx, w_partials.Allocate(ctx, batch * bands));
    OP_REQUIRES_OK(ctx, r_partials.Allocate(ctx, batch * bands));
    OP_REQUIRES_OK(ctx, sqrt_mean_r.Allocate(ctx, batch));
    OP_REQUIRES_OK(ctx, col_scale.Allocate(ctx, batch * cols));
    OP_REQUIRES_OK(ctx, u_partials.Allocate(ctx, batch * col_blocks));
    ParallelForBlocks(
        ctx, batch * bands, /*block_size=*/1,
        /*cycles_per_element=*/8 * kBandRows * cols,
        [&](int64_t band, int64_t, int64_t) {
          const int64_t row =
              (band / bands) * rows + (band % bands) * kBandRows;
          const int64_t num_rows =
              std::min(kBandRows, rows - (band % bands) * kBandRows);
          AdafactorBandSums<T, C>(s, num_rows, cols, grad + row * cols,
                                  var + row * cols, row_acc + row,
                                  &row_scale[row], &col_partials[band * cols],
                                  &col_u_partials[band * cols],
                                  &w_partials[band], &r_partials[band]);
        });

    // Row scales sqrt(mean(r)) * rsqrt(r_i), per matrix of the batch.
    for (int64_t b = 0; b < batch; ++b) {
      double r_total = 0.0;
      for (int64_t band = 0; band < bands; ++band) {
        r_total += r_partials[b * bands + band];
      }
      sqrt_mean_r[b] =
          math::AdafactorSqrtMeanRow<C>(s, static_cast<C>(r_total / rows));
      for (int64_t r = 0; r < rows; ++r)
        row_scale[b * rows + r] *= sqrt_mean_r[b];
    }

    // Column accumulators and scales, and sum(u^2), in blocks of columns.
    ParallelForBlocks(
        ctx, batch * col_blocks, /*block_size=*/1,
        /*cycles_per_element=*/4 * bands * kReduceCols,
        [&](int64_t block, int64_t, int64_t) {
          const int64_t b = block / col_blocks;
          const int64_t col_begin = (block % col_blocks) * kReduceCols;
          const int64_t width = std::min(kReduceCols, cols - col_begin);
          const int64_t offset = b * bands * cols + col_begin;
          std::vector<double> sums(width), u_sums(width);
          AddBandPartials<C>(&col_partials[offset], bands, cols, width,
                             sums.data());
          AddBandPartials<C>(&col_u_partials[offset], bands, cols, width,
                             u_sums.data());
          double u_total = 0.0;
          for (int64_t j = 0; j < width; ++j) {
            const int64_t c = b * cols + col_begin + j;
            const C updated = math::AdafactorAccumulate<C>(
                s, static_cast<C>(col_acc[c]), static_cast<C>(sums[j] / rows));
            col_acc[c] = static_cast<T>(updated);
            col_scale[c] = math::AdafactorInverseRoot<C>(s, updated);
            u_total += math::AdafactorColumnSumSquaresOfU<double>(
                u_sums[j], col_scale[c], sqrt_mean_r[b]);
          }
          u_partials[block] = u_total;
        });

    const C step_size = math::AdafactorStepSize<C>(
        s, *hyper.epsilon_2, *hyper.clip_threshold,
        static_cast<C>(SumInOrder(w_partials)),
        static_cast<C>(SumInOrder(u_partials)), static_cast<C>(shape.size()));

    // Pass 2 walks whole rows: row `r` of matrix `b` is flat row b*rows+r.
    const int64_t rows_per_block =
        std::max<int64_t>(1, kElementsPerBlock / cols);
    ParallelForBlocks(
        ctx, batch * rows, rows_per_block, /*cycles_per_element=*/4 * cols,
        [&](int64_t, int64_t begin, int64_t end) {
          // A block may straddle two matrices of the batch (col_scale differs).
          for (int64_t fr = begin; fr < end;) {
            const int64_t b = fr / rows;
            const int64_t stop = std::min(end, (b + 1) * rows);
            AdafactorApplyRows<T, C>(step_size, stop - fr, cols,
                                     grad + fr * cols, var + fr * cols,
                                     &row_scale[fr], &col_scale[b * cols]);
            fr = stop;
          }
        });
  }
};

// Unfactored pass 1 over [begin, end): updates v, and returns the sums of
// squares of w and of u over the range.
template <typename T, typename C>
TFOPT_CPU_CLONES void AdafactorUnfactoredSums(
    const math::AdafactorStep<C>& s, int64_t begin, int64_t end,
    const T* __restrict var, T* __restrict acc, const T* __restrict grad,
    double* w_sum_squares, double* u_sum_squares) {
  C w_squares[kLanes] = {}, u_squares[kLanes] = {};
  ForEachWithLanes(begin, end, [&](int64_t i, int lane) {
    const C g = static_cast<C>(grad[i]);
    const C updated = math::AdafactorAccumulate<C>(
        s, static_cast<C>(acc[i]), math::AdafactorRegularizedSquare<C>(s, g));
    acc[i] = static_cast<T>(updated);
    const C u = math::AdafactorDirection<C>(
        g, math::AdafactorInverseRoot<C>(s, updated), C(1));
    const C w = static_cast<C>(var[i]);
    w_squares[lane] += w * w;
    u_squares[lane] += u * u;
  });
  *w_sum_squares = SumLanes(w_squares);
  *u_sum_squares = SumLanes(u_squares);
}

// Unfactored pass 2 over [begin, end): w <- w - step_size * u.
template <typename T, typename C>
TFOPT_CPU_CLONES void AdafactorUnfactoredApply(const math::AdafactorStep<C>& s,
                                               C step_size, int64_t begin,
                                               int64_t end, T* __restrict var,
                                               const T* __restrict acc,
                                               const T* __restrict grad) {
  for (int64_t i = begin; i < end; ++i) {
    const C u = math::AdafactorDirection<C>(
        static_cast<C>(grad[i]),
        math::AdafactorInverseRoot<C>(s, static_cast<C>(acc[i])), C(1));
    var[i] = static_cast<T>(static_cast<C>(var[i]) - step_size * u);
  }
}

template <typename T, typename C>
struct ApplyAdafactorUnfactored<CPUDevice, T, C> {
  void operator()(OpKernelContext* ctx, const AdafactorHyperparams<C>& hyper,
                  int64_t size, T* var, T* acc, const T* grad) {
    const math::AdafactorStep<C> s = math::MakeAdafactorStep<C>(
        *hyper.lr, *hyper.beta_2_decay, *hyper.epsilon_1, *hyper.step,
        hyper.relative_step);
    const int64_t num_blocks = NumBlocks(size, kElementsPerBlock);
    Scratch<double> w_partials, u_partials;
    OP_REQUIRES_OK(ctx, w_partials.Allocate(ctx, num_blocks));
    OP_REQUIRES_OK(ctx, u_partials.Allocate(ctx, num_blocks));
    ParallelForBlocks(ctx, size, kElementsPerBlock, /*cycles_per_element=*/25,
                      [&](int64_t block, int64_t begin, int64_t end) {
                        AdafactorUnfactoredSums<T, C>(s, begin, end, var, acc,
                                                      grad, &w_partials[block],
                                                      &u_partials[block]);
                      });

    const C step_size = math::AdafactorStepSize<C>(
        s, *hyper.epsilon_2, *hyper.clip_threshold,
        static_cast<C>(SumInOrder(w_partials)),
        static_cast<C>(SumInOrder(u_partials)), static_cast<C>(size));
    ParallelForBlocks(ctx, size, kElementsPerBlock, /*cycles_per_element=*/25,
                      [&](int64_t, int64_t begin, int64_t end) {
                        AdafactorUnfactoredApply<T, C>(s, step_size, begin, end,
                                                       var, acc, grad);
                      });
  }
};

}  // namespace functor

// Defined in adafactor_op_gpu.cu.cc.
TFOPT_DECLARE_GPU_FUNCTOR(functor::ApplyAdafactorFactored)
TFOPT_DECLARE_GPU_FUNCTOR(functor::ApplyAdafactorUnfactored)

namespace {

// The accumulator shapes a variable of this shape needs, in op order.
std::vector<TensorShape> ExpectedAccumulatorShapes(const TensorShape& var) {
  if (var.dims() < 2) return {var};
  TensorShape row = var, col = var;
  row.RemoveLastDims(1);
  col.RemoveDim(var.dims() - 2);
  return {row, col};
}

// Step 3: the accumulators have the shapes `var` implies, `grad` that of
// `var`.
absl::Status CheckShapes(const LockedVariables& in, const Tensor& grad) {
  const TensorShape& var = in.vars[0].shape();
  const std::vector<TensorShape> expected = ExpectedAccumulatorShapes(var);
  const size_t received = in.vars.size() - 1;
  if (received != expected.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "`accumulators` must hold ", expected.size(),
        expected.size() == 2
            ? " variables (row, column) for a variable of rank >= 2"
            : " variable (shaped like `var`) for a variable of rank < 2",
        ". Received: ", received,
        " accumulators for var.shape=", var.DebugString()));
  }
  static const char* const kRole[2][2] = {
      {"shaped like `var`", ""},
      {"row: var.shape[:-1]", "column: var.shape[:-2] + var.shape[-1:]"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    const TensorShape& actual = in.vars[i + 1].shape();
    if (actual != expected[i]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "`accumulators[", i, "]` must have shape ", expected[i].DebugString(),
          " (", kRole[expected.size() - 1][i],
          "). Received: var.shape=", var.DebugString(), ", accumulators[", i,
          "].shape=", actual.DebugString()));
    }
  }
  return CheckSameShape("grad", grad, in.vars[0]);
}

}  // namespace

// One variable: Adafactor's factored accumulators differ in shape from
// variable to variable, and a list form would not save the per-op costs that
// matter (docs/benchmarks.md, "Why Adafactor stays above its floor").
template <typename Device, typename T, typename C>
class ApplyAdafactorOp : public OpKernel {
 public:
  explicit ApplyAdafactorOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("relative_step", &relative_step_));
  }

  void Compute(OpKernelContext* ctx) override {
    LockedVariables in;
    OP_REQUIRES_OK(ctx, (LockAndGetVariables<Device, T>(
                            ctx, use_locking_, {"var", "accumulators"}, &in)));
    functor::AdafactorHyperparams<C> hyper;
    hyper.relative_step = relative_step_;
    OP_REQUIRES_OK(ctx, ReadScalarInputs(ctx, &hyper));
    const Tensor* grad = nullptr;
    OP_REQUIRES_OK(ctx, ctx->input("grad", &grad));
    OP_REQUIRES_OK(ctx, CheckShapes(in, *grad));
    OP_REQUIRES_OK(ctx, CheckScalarValues<Device>(ctx, hyper));
    if (kIsHostDevice<Device>) {
      OP_REQUIRES_OK(ctx,
                     CheckPositive("clip_threshold", *hyper.clip_threshold));
    }

    const Tensor& var = in.vars[0];
    if (var.NumElements() == 0) return;
    if (var.dims() >= 2) {
      const int64_t rows = var.dim_size(var.dims() - 2);
      const int64_t cols = var.dim_size(var.dims() - 1);
      const functor::FactoredShape shape{var.NumElements() / (rows * cols),
                                         rows, cols};
      functor::ApplyAdafactorFactored<Device, T, C>()(
          ctx, hyper, shape, in.vars[0].flat<T>().data(),
          in.vars[1].flat<T>().data(), in.vars[2].flat<T>().data(),
          grad->flat<T>().data());
    } else {
      functor::ApplyAdafactorUnfactored<Device, T, C>()(
          ctx, hyper, var.NumElements(), in.vars[0].flat<T>().data(),
          in.vars[1].flat<T>().data(), grad->flat<T>().data());
    }
  }

 private:
  bool use_locking_;
  bool relative_step_;
};

TFOPT_REGISTER_KERNELS("ResourceApplyAdafactor", ApplyAdafactorOp)

}  // namespace tf_opt_plugin
