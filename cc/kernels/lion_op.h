// ResourceApplyLion and ResourceMultiTensorApplyLion: their hyperparameters
// and the one device functor both ops run (an op of one variable is a list of
// one). The CPU specialization lives in lion_op.cc, the GPU one in
// lion_op_gpu.cu.cc (kernel: gpu/lion_kernel.cu.h); both apply
// math::LionUpdateAt. No TensorFlow header: the GPU check includes this.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_LION_OP_H_
#define TF_OPT_PLUGIN_CC_KERNELS_LION_OP_H_

#include <cstdint>
#include <vector>

#include "cc/kernels/math/lion_math.h"

namespace tensorflow {
class OpKernelContext;
}

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

// One variable of an update.
template <typename T>
struct LionTensor {
  int64_t size;
  T* var;
  T* m;
  const T* grad;
  bool apply_weight_decay;  // false: weight_decay counts as 0 for it
};

// Updates every tensor of the list in place, in one pass over memory (on a
// GPU: one launch for the list).
template <typename Device, typename T, typename C>
struct ApplyLion {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const LionHyperparams<C>& hyper,
                  const std::vector<LionTensor<T>>& tensors);
};

}  // namespace functor
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_LION_OP_H_
