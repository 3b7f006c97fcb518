// The CPU functor of AdamW (ResourceApplyAdamW and
// ResourceMultiTensorApplyAdamW: one pass over memory) and the ops' kernels
// (tensor_list_op.h).
#define EIGEN_USE_THREADS

#include "cc/kernels/adamw_op.h"

#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/tensor_list_op.h"

namespace tf_opt_plugin {
namespace functor {

template <typename T, typename C, bool kAmsgrad>
TFOPT_CPU_CLONES void AdamWRange(const math::AdamWStep<C>& s, int64_t begin,
                                 int64_t end, T* __restrict var,
                                 T* __restrict m, T* __restrict v,
                                 T* __restrict vhat, const T* __restrict grad) {
  for (int64_t i = begin; i < end; ++i) {
    math::AdamWUpdateAt<T, C, kAmsgrad>(s, i, var, m, v, vhat, grad);
  }
}

template <typename T, typename C>
struct ApplyUpdate<Eigen::ThreadPoolDevice, T, C, AdamW> {
  using Tensor = TensorDesc<T, kNumBuffers<AdamW>>;

  void operator()(tensorflow::OpKernelContext* ctx,
                  const AdamWHyperparams<C>& hyper,
                  const std::vector<Tensor>& tensors) {
    const math::AdamWStep<C> step = math::MakeAdamWStep<C>(
        *hyper.lr, *hyper.beta_1, *hyper.beta_2, *hyper.epsilon,
        *hyper.weight_decay, *hyper.step);
    // ~25 cycles per element: a divide and a square root dominate.
    ParallelForEachBlock(
        ctx, tensors, /*cycles_per_element=*/25,
        [&](const Tensor& t, int64_t begin, int64_t end) {
          const math::AdamWStep<C> s =
              StepForFlags(step, &math::AdamWStep<C>::decay, t.flags);
          T* const* p = t.ptrs;
          if (p[AdamW::kVhat] == nullptr) {
            AdamWRange<T, C, false>(s, begin, end, p[AdamW::kVar], p[AdamW::kM],
                                    p[AdamW::kV], nullptr, p[AdamW::kGrad]);
          } else {
            AdamWRange<T, C, true>(s, begin, end, p[AdamW::kVar], p[AdamW::kM],
                                   p[AdamW::kV], p[AdamW::kVhat],
                                   p[AdamW::kGrad]);
          }
        });
  }
};

}  // namespace functor

TFOPT_REGISTER_TENSOR_LIST_KERNELS(AdamW)

}  // namespace tf_opt_plugin
