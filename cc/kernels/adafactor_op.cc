// ResourceApplyAdafactor kernel and its CPU functors.
//
// Factored (rank >= 2), three passes over the gradient:
//   1. one read of g (and w) in 2-D tiles gives the row sums, the column sums
//      of g^2 + epsilon_1 and sum(w^2); the small accumulators are updated;
//   2. sum(u^2) for the RMS clip, u = g * row_scale * col_scale;
//   3. w <- w - step_size * u.
// Unfactored (rank < 2), two passes: accumulator and both sums, then w.
#define EIGEN_USE_THREADS

#include "cc/kernels/adafactor_op.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/cpu_registration.h"
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

// Pass-1 tiles: 32 rows x 2048 columns. Row sums are kept per column tile and
// column sums per row tile, so each tile is independent and the partial sums
// add up in a fixed order. Short, wide tiles read 8 KiB runs per row: square
// tiles of a wide matrix touch a new page every 1 KiB and ran 2x slower.
constexpr int64_t kTileRows = 32;
constexpr int64_t kTileCols = 2048;

template <typename T, typename C>
struct ApplyAdafactorFactored<CPUDevice, T, C> {
  void operator()(OpKernelContext* ctx, const AdafactorHyperparams<C>& hyper,
                  const FactoredShape& shape, T* __restrict var,
                  T* __restrict row_acc, T* __restrict col_acc,
                  const T* __restrict grad) {
    const int64_t batch = shape.batch, rows = shape.rows, cols = shape.cols;
    const math::AdafactorStep<C> s = math::MakeAdafactorStep<C>(
        *hyper.lr, *hyper.beta_2_decay, *hyper.epsilon_1, *hyper.step,
        hyper.relative_step);
    const int64_t row_tiles = NumBlocks(rows, kTileRows);
    const int64_t col_tiles = NumBlocks(cols, kTileCols);
    const int64_t num_tiles = batch * row_tiles * col_tiles;

    // Pass 1.
    std::vector<double> row_partials(batch * col_tiles * rows);
    std::vector<double> col_partials(batch * row_tiles * cols);
    std::vector<double> w_partials(num_tiles);
    ParallelForBlocks(
        ctx, num_tiles, /*block_size=*/1,
        /*cycles_per_element=*/6 * kTileRows * kTileCols,
        [&](int64_t tile, int64_t, int64_t) {
          const int64_t b = tile / (row_tiles * col_tiles);
          const int64_t rt = (tile / col_tiles) % row_tiles;
          const int64_t ct = tile % col_tiles;
          const int64_t row_begin = rt * kTileRows;
          const int64_t row_end = std::min(rows, row_begin + kTileRows);
          const int64_t col_begin = ct * kTileCols;
          const int64_t width = std::min(cols, col_begin + kTileCols) - col_begin;
          C col_sums[kTileCols] = {};
          C w_squares[kLanes] = {};
          for (int64_t r = row_begin; r < row_end; ++r) {
            const int64_t offset = (b * rows + r) * cols + col_begin;
            const T* __restrict g_row = grad + offset;
            const T* __restrict w_row = var + offset;
            C row_sum[kLanes] = {};
            ForEachWithLanes(int64_t{0}, width, [&](int64_t j, int lane) {
              const C square = math::AdafactorRegularizedSquare<C>(
                  s, static_cast<C>(g_row[j]));
              const C w = static_cast<C>(w_row[j]);
              col_sums[j] += square;
              row_sum[lane] += square;
              w_squares[lane] += w * w;
            });
            row_partials[(b * col_tiles + ct) * rows + r] = SumLanes(row_sum);
          }
          double* col_out = &col_partials[(b * row_tiles + rt) * cols + col_begin];
          for (int64_t j = 0; j < width; ++j) col_out[j] = col_sums[j];
          w_partials[tile] = SumLanes(w_squares);
        });

    // Accumulators and the per-row / per-column scales of u (small arrays).
    std::vector<C> row_scale(batch * rows), col_scale(batch * cols);
    // Moves entry idx of an accumulator by its new mean square; returns it.
    auto update_accumulator = [&s](T* acc, int64_t idx, double mean_square) {
      const C updated = math::AdafactorAccumulate<C>(
          s, static_cast<C>(acc[idx]), static_cast<C>(mean_square));
      acc[idx] = static_cast<T>(updated);
      return updated;
    };
    for (int64_t b = 0; b < batch; ++b) {
      double r_total = 0.0;
      for (int64_t r = 0; r < rows; ++r) {
        double sum = 0.0;
        for (int64_t ct = 0; ct < col_tiles; ++ct) {
          sum += row_partials[(b * col_tiles + ct) * rows + r];
        }
        const int64_t idx = b * rows + r;
        const C updated = update_accumulator(row_acc, idx, sum / cols);
        row_scale[idx] = math::AdafactorInverseRoot<C>(s, updated);
        r_total += updated;
      }
      const C sqrt_mean_r =
          math::Sqrt(math::Max(static_cast<C>(r_total / rows), s.epsilon_1));
      for (int64_t r = 0; r < rows; ++r) row_scale[b * rows + r] *= sqrt_mean_r;
      for (int64_t c = 0; c < cols; ++c) {
        double sum = 0.0;
        for (int64_t rt = 0; rt < row_tiles; ++rt) {
          sum += col_partials[(b * row_tiles + rt) * cols + c];
        }
        const int64_t idx = b * cols + c;
        col_scale[idx] = math::AdafactorInverseRoot<C>(
            s, update_accumulator(col_acc, idx, sum / rows));
      }
    }

    // Passes 2 and 3 walk whole rows: row `r` of matrix `b` is flat row b*rows+r.
    const int64_t total_rows = batch * rows;
    const int64_t rows_per_block = std::max<int64_t>(1, kElementsPerBlock / cols);
    auto for_each_row = [&](int64_t cycles, auto&& row_fn) {
      ParallelForBlocks(ctx, total_rows, rows_per_block, cycles * cols,
                        [&](int64_t block, int64_t begin, int64_t end) {
                          for (int64_t fr = begin; fr < end; ++fr) {
                            row_fn(block, fr, fr * cols,
                                   &col_scale[(fr / rows) * cols],
                                   row_scale[fr]);
                          }
                        });
    };

    std::vector<double> u_partials(NumBlocks(total_rows, rows_per_block));
    for_each_row(4, [&](int64_t block, int64_t, int64_t offset,
                        const C* __restrict cs, C rs) {
      C u_squares[kLanes] = {};
      ForEachWithLanes(int64_t{0}, cols, [&](int64_t j, int lane) {
        const C u = math::AdafactorDirection<C>(
            static_cast<C>(grad[offset + j]), rs, cs[j]);
        u_squares[lane] += u * u;
      });
      u_partials[block] += SumLanes(u_squares);
    });

    const C step_size = math::AdafactorStepSize<C>(
        s, *hyper.epsilon_2, *hyper.clip_threshold,
        static_cast<C>(SumInOrder(w_partials)),
        static_cast<C>(SumInOrder(u_partials)),
        static_cast<C>(shape.size()));

    for_each_row(4, [&](int64_t, int64_t, int64_t offset,
                        const C* __restrict cs, C rs) {
      T* __restrict w = var + offset;
      const T* __restrict g = grad + offset;
      for (int64_t j = 0; j < cols; ++j) {
        const C u = math::AdafactorDirection<C>(static_cast<C>(g[j]), rs, cs[j]);
        w[j] = static_cast<T>(static_cast<C>(w[j]) - step_size * u);
      }
    });
  }
};

template <typename T, typename C>
struct ApplyAdafactorUnfactored<CPUDevice, T, C> {
  void operator()(OpKernelContext* ctx, const AdafactorHyperparams<C>& hyper,
                  int64_t size, T* __restrict var, T* __restrict acc,
                  const T* __restrict grad) {
    const math::AdafactorStep<C> s = math::MakeAdafactorStep<C>(
        *hyper.lr, *hyper.beta_2_decay, *hyper.epsilon_1, *hyper.step,
        hyper.relative_step);
    const int64_t num_blocks = NumBlocks(size, kElementsPerBlock);
    std::vector<double> w_partials(num_blocks), u_partials(num_blocks);
    ParallelForBlocks(
        ctx, size, kElementsPerBlock, /*cycles_per_element=*/25,
        [&](int64_t block, int64_t begin, int64_t end) {
          C w_squares[kLanes] = {}, u_squares[kLanes] = {};
          ForEachWithLanes(begin, end, [&](int64_t i, int lane) {
            const C g = static_cast<C>(grad[i]);
            const C updated = math::AdafactorAccumulate<C>(
                s, static_cast<C>(acc[i]),
                math::AdafactorRegularizedSquare<C>(s, g));
            acc[i] = static_cast<T>(updated);
            const C u = math::AdafactorDirection<C>(
                g, math::AdafactorInverseRoot<C>(s, updated), C(1));
            const C w = static_cast<C>(var[i]);
            w_squares[lane] += w * w;
            u_squares[lane] += u * u;
          });
          w_partials[block] = SumLanes(w_squares);
          u_partials[block] = SumLanes(u_squares);
        });

    const C step_size = math::AdafactorStepSize<C>(
        s, *hyper.epsilon_2, *hyper.clip_threshold,
        static_cast<C>(SumInOrder(w_partials)),
        static_cast<C>(SumInOrder(u_partials)), static_cast<C>(size));

    ParallelForBlocks(
        ctx, size, kElementsPerBlock, /*cycles_per_element=*/25,
        [&](int64_t, int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) {
            const C u = math::AdafactorDirection<C>(
                static_cast<C>(grad[i]),
                math::AdafactorInverseRoot<C>(s, static_cast<C>(acc[i])), C(1));
            var[i] = static_cast<T>(static_cast<C>(var[i]) - step_size * u);
          }
        });
  }
};

}  // namespace functor

namespace {

// The accumulator shapes a variable of this shape needs, in op order.
std::vector<TensorShape> ExpectedAccumulatorShapes(const TensorShape& var) {
  if (var.dims() < 2) return {var};
  TensorShape row = var, col = var;
  row.RemoveLastDims(1);
  col.RemoveDim(var.dims() - 2);
  return {row, col};
}

absl::Status CheckAccumulators(const UpdateInputs& in) {
  const TensorShape& var = in.vars[0].shape();
  const std::vector<TensorShape> expected = ExpectedAccumulatorShapes(var);
  const size_t received = in.vars.size() - 1;
  if (received != expected.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "`accumulators` must hold ", expected.size(),
        expected.size() == 2
            ? " variables (row, column) for a variable of rank >= 2"
            : " variable (shaped like `var`) for a variable of rank < 2",
        ". Received: ", received, " accumulators for var.shape=",
        var.DebugString()));
  }
  static const char* const kRole[2][2] = {{"shaped like `var`", ""},
                                          {"row: var.shape[:-1]",
                                           "column: var.shape[:-2] + var.shape[-1:]"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    const TensorShape& actual = in.vars[i + 1].shape();
    if (actual != expected[i]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "`accumulators[", i, "]` must have shape ", expected[i].DebugString(),
          " (", kRole[expected.size() - 1][i], "). Received: var.shape=",
          var.DebugString(), ", accumulators[", i,
          "].shape=", actual.DebugString()));
    }
  }
  return CheckSameShape("grad", *in.grad, in.vars[0]);
}

}  // namespace

template <typename Device, typename T, typename C>
class ResourceApplyAdafactorOp : public OpKernel {
 public:
  explicit ResourceApplyAdafactorOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("relative_step", &relative_step_));
  }

  void Compute(OpKernelContext* ctx) override {
    UpdateInputs in;
    OP_REQUIRES_OK(ctx, (PrepareUpdate<Device, T>(
                            ctx, use_locking_,
                            {{"var", false}, {"accumulators", true}},
                            {"lr", "beta_2_decay", "epsilon_1", "epsilon_2",
                             "clip_threshold", "step"},
                            &in)));
    OP_REQUIRES_OK(ctx, CheckAccumulators(in));
    OP_REQUIRES_OK(ctx, CheckStep(*in.scalars[5]));
    OP_REQUIRES_OK(ctx, CheckPositive<C>("clip_threshold", *in.scalars[4]));

    const functor::AdafactorHyperparams<C> hyper{
        in.scalars[0]->scalar<C>().data(),
        in.scalars[1]->scalar<C>().data(),
        in.scalars[2]->scalar<C>().data(),
        in.scalars[3]->scalar<C>().data(),
        in.scalars[4]->scalar<C>().data(),
        in.scalars[5]->scalar<int64_t>().data(),
        relative_step_};
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
          in.grad->flat<T>().data());
    } else {
      functor::ApplyAdafactorUnfactored<Device, T, C>()(
          ctx, hyper, var.NumElements(), in.vars[0].flat<T>().data(),
          in.vars[1].flat<T>().data(), in.grad->flat<T>().data());
    }
  }

 private:
  bool use_locking_;
  bool relative_step_;
};

TFOPT_REGISTER_CPU_KERNELS("ResourceApplyAdafactor", ResourceApplyAdafactorOp)

}  // namespace tf_opt_plugin
