// ResourceApplyAdamW and ResourceMultiTensorApplyAdamW: their hyperparameters
// and the algorithm's traits (tensor_list.h). The CPU functor lives in
// adamw_op.cc, the GPU launch in gpu/adamw_kernel.cu.h; both apply
// math::AdamWUpdateAt. No TensorFlow header: the GPU check includes this.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_ADAMW_OP_H_
#define TF_OPT_PLUGIN_CC_KERNELS_ADAMW_OP_H_

#include <cstdint>

#include "cc/kernels/math/adamw_math.h"
#include "cc/kernels/tensor_list.h"

namespace tf_opt_plugin {
namespace functor {

// Pointers to the validated scalar inputs, in the memory of the device the
// kernel runs on (so a GPU step never waits for a host round trip); C is the
// compute type.
template <typename C>
struct AdamWHyperparams {
  const C* lr;
  const C* beta_1;
  const C* beta_2;
  const C* epsilon;
  const C* weight_decay;
  const int64_t* step;

  // The ops' scalar inputs, in op order (see hyperparams.h).
  template <typename Visit>
  void ForEachScalar(Visit&& visit) {
    visit("lr", &lr);
    visit("beta_1", &beta_1);
    visit("beta_2", &beta_2);
    visit("epsilon", &epsilon);
    visit("weight_decay", &weight_decay);
    visit("step", &step);
  }
};

}  // namespace functor

// Slots m, v and, with amsgrad, vhat (an empty list without). A variable
// whose kApplyWeightDecay flag is off gets weight_decay 0.
struct AdamW {
  template <typename C>
  using Hyperparams = functor::AdamWHyperparams<C>;
  static constexpr Slot kSlots[] = {{"m"},
                                    {"v", nullptr, nullptr, true},
                                    {"vhat", "num_vhat", "amsgrad", true}};
  static constexpr const char* kPerTensorFlags[] = {"apply_weight_decay"};
  enum Buffer { kVar, kM, kV, kVhat, kGrad };

  // The per-element constants of this step for a variable with `flags`.
  template <typename C>
  static TFOPT_HOST_DEVICE math::AdamWStep<C> StepFor(
      const Hyperparams<C>& hyper, uint8_t flags) {
    return StepForFlags(math::MakeAdamWStep<C>(
                            *hyper.lr, *hyper.beta_1, *hyper.beta_2,
                            *hyper.epsilon, *hyper.weight_decay, *hyper.step),
                        &math::AdamWStep<C>::decay, flags);
  }
};

}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_ADAMW_OP_H_
