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

template <typename T, typename C, typename S, typename Rounding>
TFOPT_CPU_CLONES void LionRange(const math::LionStep<C>& s, int64_t begin,
                                int64_t end, T* __restrict var, S* __restrict m,
                                const T* __restrict grad, Rounding rounding) {
  for (int64_t i = begin; i < end; ++i) {
    math::LionUpdateAt<T, C>(s, i, var, m, grad, rounding);
  }
}

template <typename T, typename C>
struct CpuRange<T, C, Lion> {
  // No divide or square root: memory-bound.
  static constexpr int64_t kCyclesPerElement = 8;

  template <typename S, typename Rounding>
  static void Run(const math::LionStep<C>& s, int64_t begin, int64_t end,
                  T* var, S* const* slots, const T* grad, Rounding rounding) {
    LionRange<T, C>(s, begin, end, var, slots[SlotOf(Lion::kM)], grad,
                    rounding);
  }
};

}  // namespace functor

TFOPT_REGISTER_TENSOR_LIST_KERNELS(Lion)

}  // namespace tf_opt_plugin
