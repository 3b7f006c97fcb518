// The CPU functor of AdamW (ResourceApplyAdamW and
// ResourceMultiTensorApplyAdamW: one pass over memory) and the ops' kernels
// (tensor_list_op.h).
#define EIGEN_USE_THREADS

#include "cc/kernels/adamw_op.h"

#include "cc/kernels/cpu_parallel.h"
#include "cc/kernels/tensor_list_op.h"

namespace tf_opt_plugin {
namespace functor {

template <typename T, typename C, bool kAmsgrad, typename S, typename Rounding>
TFOPT_CPU_CLONES void AdamWRange(const math::AdamWStep<C>& s, int64_t begin,
                                 int64_t end, T* __restrict var,
                                 S* __restrict m, S* __restrict v,
                                 S* __restrict vhat, const T* __restrict grad,
                                 Rounding rounding) {
  for (int64_t i = begin; i < end; ++i) {
    math::AdamWUpdateAt<T, C, kAmsgrad>(s, i, var, m, v, vhat, grad, rounding);
  }
}

template <typename T, typename C>
struct CpuRange<T, C, AdamW> {
  // A divide and a square root dominate.
  static constexpr int64_t kCyclesPerElement = 25;

  template <typename S, typename Rounding>
  static void Run(const math::AdamWStep<C>& s, int64_t begin, int64_t end,
                  T* var, S* const* slots, const T* grad, Rounding rounding) {
    S* m = slots[SlotOf(AdamW::kM)];
    S* v = slots[SlotOf(AdamW::kV)];
    S* vhat = slots[SlotOf(AdamW::kVhat)];
    if (vhat == nullptr) {
      AdamWRange<T, C, false>(s, begin, end, var, m, v, vhat, grad, rounding);
    } else {
      AdamWRange<T, C, true>(s, begin, end, var, m, v, vhat, grad, rounding);
    }
  }
};

}  // namespace functor

TFOPT_REGISTER_TENSOR_LIST_KERNELS(AdamW)

}  // namespace tf_opt_plugin
