// The CPU functor of Lion (ResourceApplyLion and
// ResourceMultiTensorApplyLion: one pass over memory, 20 bytes per float32
// parameter: reads w, m, g; writes w, m) and the ops' kernels
// (tensor_list_op.h).
#define EIGEN_USE_THREADS

#include "cc/kernels/lion_op.h"

#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/tensor_list_op.h"

namespace tf_opt_plugin {
namespace functor {

template <typename T, typename C>
TFOPT_CPU_CLONES void LionRange(const math::LionStep<C>& s, int64_t begin,
                                int64_t end, T* __restrict var, T* __restrict m,
                                const T* __restrict grad) {
  for (int64_t i = begin; i < end; ++i) {
    math::LionUpdateAt<T, C>(s, i, var, m, grad);
  }
}

template <typename T, typename C>
struct ApplyUpdate<Eigen::ThreadPoolDevice, T, C, Lion> {
  using Tensor = TensorDesc<T, kNumBuffers<Lion>>;

  void operator()(tensorflow::OpKernelContext* ctx,
                  const LionHyperparams<C>& hyper,
                  const std::vector<Tensor>& tensors) {
    const math::LionStep<C> step = math::MakeLionStep<C>(
        *hyper.lr, *hyper.beta_1, *hyper.beta_2, *hyper.weight_decay);
    // No divide or square root: a few cycles per element, memory-bound.
    ParallelForEachBlock(
        ctx, tensors, /*cycles_per_element=*/8,
        [&](const Tensor& t, int64_t begin, int64_t end) {
          LionRange<T, C>(
              StepForFlags(step, &math::LionStep<C>::decay, t.flags), begin,
              end, t.ptrs[Lion::kVar], t.ptrs[Lion::kM], t.ptrs[Lion::kGrad]);
        });
  }
};

}  // namespace functor

TFOPT_REGISTER_TENSOR_LIST_KERNELS(Lion)

}  // namespace tf_opt_plugin
