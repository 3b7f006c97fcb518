// ResourceApplyLamb and ResourceMultiTensorApplyLamb: their hyperparameters
// and the algorithm's traits (tensor_list.h). The CPU functor lives in
// lamb_op.cc, the GPU launches in gpu/lamb_kernel.cu.h; both apply the math
// in math/lamb_math.h. No TensorFlow header: the GPU check includes this.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_LAMB_OP_H_
#define TF_OPT_PLUGIN_CC_KERNELS_LAMB_OP_H_

#include <cstdint>

#include "cc/kernels/math/lamb_math.h"
#include "cc/kernels/tensor_list.h"

namespace tf_opt_plugin {
namespace functor {

// Pointers to the validated scalar inputs, in the memory of the device the
// kernel runs on; C is the compute type.
template <typename C>
struct LambHyperparams {
  const C* lr;
  const C* beta_1;
  const C* beta_2;
  const C* epsilon;
  const C* weight_decay_rate;
  const int64_t* step;

  // The ops' scalar inputs, in op order (see hyperparams.h).
  template <typename Visit>
  void ForEachScalar(Visit&& visit) {
    visit("lr", &lr);
    visit("beta_1", &beta_1);
    visit("beta_2", &beta_2);
    visit("epsilon", &epsilon);
    visit("weight_decay_rate", &weight_decay_rate);
    visit("step", &step);
  }
};

}  // namespace functor

// Slots m and v; each variable has its own trust ratio (on a GPU: three
// launches per list, no host synchronisation). A variable whose
// kApplyWeightDecay flag is off gets weight_decay_rate 0, one whose
// kLayerAdaptation flag is off the trust ratio 1.
struct Lamb {
  template <typename C>
  using Hyperparams = functor::LambHyperparams<C>;
  static constexpr Slot kSlots[] = {{"m"}, {"v", nullptr, nullptr, true}};
  static constexpr const char* kPerTensorFlags[] = {"apply_weight_decay",
                                                    "use_layer_adaptation"};
  enum Buffer { kVar, kM, kV, kGrad };

  // The per-element constants of this step for a variable with `flags` (the
  // trust ratio aside).
  template <typename C>
  static TFOPT_HOST_DEVICE math::LambStep<C> StepFor(
      const Hyperparams<C>& hyper, uint8_t flags) {
    return StepForFlags(
        math::MakeLambStep<C>(*hyper.beta_1, *hyper.beta_2, *hyper.epsilon,
                              *hyper.weight_decay_rate, *hyper.step),
        &math::LambStep<C>::weight_decay_rate, flags);
  }
};

}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_LAMB_OP_H_
