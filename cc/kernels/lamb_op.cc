// The CPU functor of LAMB (ResourceApplyLamb and
// ResourceMultiTensorApplyLamb) and the ops' kernels (tensor_list_op.h). Two
// passes: the trust ratio needs ||w|| and ||u|| over the whole variable
// before w can be written.
#define EIGEN_USE_THREADS

#include "cc/kernels/lamb_op.h"

#include <vector>

#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/tensor_list_op.h"

namespace tf_opt_plugin {
namespace functor {

// Pass 1 over [begin, end): updates m and v, and returns the sums of squares
// of w and of the direction u over the range.
template <typename T, typename C, typename S>
TFOPT_CPU_CLONES void LambMomentsRange(
    const math::LambStep<C>& s, int64_t begin, int64_t end,
    const T* __restrict var, S* __restrict m, S* __restrict v,
    const T* __restrict grad, double* w_sum_squares, double* u_sum_squares) {
  C w_squares[kLanes] = {}, u_squares[kLanes] = {};
  ForEachWithLanes(begin, end, [&](int64_t i, int lane) {
    const C w = static_cast<C>(var[i]);
    C mi = math::LoadAs<C>(m, i);
    C vi = math::LoadAs<C>(v, i);
    const C u =
        math::LambMomentsAndDirection<C>(s, static_cast<C>(grad[i]), w, mi, vi);
    math::StoreAs<S>(m, i, mi);
    math::StoreAs<S>(v, i, vi);
    w_squares[lane] += w * w;
    u_squares[lane] += u * u;
  });
  *w_sum_squares = SumLanes(w_squares);
  *u_sum_squares = SumLanes(u_squares);
}

// Pass 2 over [begin, end): w <- w - step_size * u, with u recomputed from the
// new moments (cheaper than a fourth full-size buffer to store it in).
template <typename T, typename C, typename S, typename Rounding>
TFOPT_CPU_CLONES void LambApplyRange(const math::LambStep<C>& s, C step_size,
                                     int64_t begin, int64_t end,
                                     T* __restrict var, const S* __restrict m,
                                     const S* __restrict v, Rounding rounding) {
  for (int64_t i = begin; i < end; ++i) {
    const C w = static_cast<C>(var[i]);
    const C u = math::LambDirection<C>(s, w, math::LoadAs<C>(m, i),
                                       math::LoadAs<C>(v, i));
    rounding.Store(var, i, w - step_size * u);
  }
}

// Slots stored as S; 8-bit slots are dequantized a block at a time in both
// passes (the second reads back the moments as the first stored them).
template <typename T, typename C, typename S, typename Rounding>
struct CpuUpdate<T, C, Lamb, S, Rounding> {
  using Tensor = CpuTensorDesc<T, S, kNumSlots<Lamb>>;

  void operator()(tensorflow::OpKernelContext* ctx,
                  const LambHyperparams<C>& hyper,
                  const std::vector<Tensor>& tensors) {
    // Pass 1 over the blocks of all tensors, each block's partial sums kept
    // apart, so a tensor's norms add up in block order whatever the threads
    // and whatever else is in the list.
    const std::vector<TensorBlock> blocks = SplitIntoBlocks(
        tensors.size(), [&](size_t t) { return tensors[t].size; });
    Scratch<double> w_partials, u_partials;
    OP_REQUIRES_OK(ctx, w_partials.Allocate(ctx, blocks.size()));
    OP_REQUIRES_OK(ctx, u_partials.Allocate(ctx, blocks.size()));
    ParallelForTensorBlocks(
        ctx, blocks, /*cycles_per_element=*/30, [&](int64_t index) {
          const TensorBlock& b = blocks[index];
          const Tensor& t = tensors[b.tensor];
          const math::LambStep<C> step = Lamb::StepFor(hyper, t.flags);
          ForEachStateRange<Lamb>(
              t, b.begin, b.end, /*write_back=*/true, math::RoundToNearest(),
              [&](int64_t begin, int64_t end, T* var, auto* const* slots,
                  const T* grad, math::RoundToNearest) {
                double w_sum = 0.0, u_sum = 0.0;
                LambMomentsRange<T, C>(
                    step, begin, end, var, slots[SlotOf(Lamb::kM)],
                    slots[SlotOf(Lamb::kV)], grad, &w_sum, &u_sum);
                w_partials[index] += w_sum;
                u_partials[index] += u_sum;
              });
        });
    Scratch<C> step_sizes;
    OP_REQUIRES_OK(ctx, step_sizes.Allocate(ctx, tensors.size()));
    for (size_t first = 0; first < blocks.size();) {
      const size_t t = blocks[first].tensor;
      size_t last = first;
      double w_sum = 0.0, u_sum = 0.0;  // in block order, as SumInOrder
      for (; last < blocks.size() && blocks[last].tensor == t; ++last) {
        w_sum += w_partials[last];
        u_sum += u_partials[last];
      }
      step_sizes[t] =
          *hyper.lr *
          math::LambTrustRatio<C>(static_cast<C>(w_sum), static_cast<C>(u_sum),
                                  (tensors[t].flags & kLayerAdaptation) != 0);
      first = last;
    }
    ParallelForTensorBlocks(
        ctx, blocks, /*cycles_per_element=*/25, [&](int64_t index) {
          const TensorBlock& b = blocks[index];
          const Tensor& t = tensors[b.tensor];
          const math::LambStep<C> step = Lamb::StepFor(hyper, t.flags);
          ForEachStateRange<Lamb>(
              t, b.begin, b.end, /*write_back=*/false,
              MakeRounding<Rounding>(t),
              [&](int64_t begin, int64_t end, T* var, auto* const* slots,
                  const T*, Rounding rounding) {
                LambApplyRange<T, C>(step, step_sizes[b.tensor], begin, end,
                                     var, slots[SlotOf(Lamb::kM)],
                                     slots[SlotOf(Lamb::kV)], rounding);
              });
        });
  }
};

}  // namespace functor

TFOPT_REGISTER_TENSOR_LIST_KERNELS(Lamb)

}  // namespace tf_opt_plugin
