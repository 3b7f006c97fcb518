// ResourceApplyAdamW and ResourceMultiTensorApplyAdamW: their hyperparameters
// and the one device functor both ops run (an op of one variable is a list of
// one). The CPU specialization lives in adamw_op.cc, the GPU one in
// adamw_op_gpu.cu.cc (kernel: gpu/adamw_kernel.cu.h); both apply
// math::AdamWUpdateAt. No TensorFlow header: the GPU check includes this.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_ADAMW_OP_H_
#define TF_OPT_PLUGIN_CC_KERNELS_ADAMW_OP_H_

#include <cstdint>
#include <vector>

#include "cc/kernels/math/adamw_math.h"

namespace tensorflow {
class OpKernelContext;
}

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

// One variable of an update (vhat null without amsgrad).
template <typename T>
struct AdamWTensor {
  int64_t size;
  T* var;
  T* m;
  T* v;
  T* vhat;
  const T* grad;
  bool apply_weight_decay;  // false: weight_decay counts as 0 for it
};

// Updates every tensor of the list in place, with the same hyperparameters
// (on a GPU: one launch for the list).
template <typename Device, typename T, typename C>
struct ApplyAdamW {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const AdamWHyperparams<C>& hyper,
                  const std::vector<AdamWTensor<T>>& tensors);
};

}  // namespace functor
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_ADAMW_OP_H_
