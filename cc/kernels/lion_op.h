// ResourceApplyLion and ResourceMultiTensorApplyLion: their hyperparameters
// and the algorithm's traits (tensor_list.h). The CPU functor lives in
// lion_op.cc, the GPU launch in gpu/lion_kernel.cu.h; both apply
// math::LionUpdateAt. No TensorFlow header: the GPU check includes this.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_LION_OP_H_
#define TF_OPT_PLUGIN_CC_KERNELS_LION_OP_H_

#include "cc/kernels/math/lion_math.h"
#include "cc/kernels/tensor_list.h"

namespace tf_opt_plugin {
namespace functor {

// Pointers to the validated scalar inputs, in the memory of the device the
// kernel runs on; C is the compute type. Lion needs no step count.
template <typename C>
struct LionHyperparams {
  const C* lr;
  const C* beta_1;
  const C* beta_2;
  const C* weight_decay;

  // The ops' scalar inputs, in op order (see hyperparams.h).
  template <typename Visit>
  void ForEachScalar(Visit&& visit) {
    visit("lr", &lr);
    visit("beta_1", &beta_1);
    visit("beta_2", &beta_2);
    visit("weight_decay", &weight_decay);
  }
};

}  // namespace functor

// One slot, m; one pass over memory. A variable whose kApplyWeightDecay flag
// is off gets weight_decay 0.
struct Lion {
  template <typename C>
  using Hyperparams = functor::LionHyperparams<C>;
  static constexpr Slot kSlots[] = {{"m"}};
  static constexpr const char* kPerTensorFlags[] = {"apply_weight_decay"};
  enum Buffer { kVar, kM, kGrad };

  // The per-element constants of this step for a variable with `flags`.
  template <typename C>
  static TFOPT_HOST_DEVICE math::LionStep<C> StepFor(
      const Hyperparams<C>& hyper, uint8_t flags) {
    return StepForFlags(
        math::MakeLionStep<C>(*hyper.lr, *hyper.beta_1, *hyper.beta_2,
                              *hyper.weight_decay),
        &math::LionStep<C>::decay, flags);
  }
};

}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_LION_OP_H_
