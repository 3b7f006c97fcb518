// ResourceApplyLamb and ResourceMultiTensorApplyLamb: their hyperparameters
// and the one device functor both ops run (an op of one variable is a list of
// one). The CPU specialization lives in lamb_op.cc, the GPU one in
// lamb_op_gpu.cu.cc (kernels: gpu/lamb_kernel.cu.h); both apply the math in
// math/lamb_math.h. No TensorFlow header: the GPU check includes this.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_LAMB_OP_H_
#define TF_OPT_PLUGIN_CC_KERNELS_LAMB_OP_H_

#include <cstdint>
#include <vector>

#include "cc/kernels/math/lamb_math.h"

namespace tensorflow {
class OpKernelContext;
}

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

// One variable of an update.
template <typename T>
struct LambTensor {
  int64_t size;
  T* var;
  T* m;
  T* v;
  const T* grad;
  bool apply_weight_decay;    // false: weight_decay_rate counts as 0 for it
  bool use_layer_adaptation;  // false: trust ratio 1 for it
};

// Updates every tensor of the list in place, each with its own trust ratio
// (on a GPU: three launches for the list, no host synchronisation).
template <typename Device, typename T, typename C>
struct ApplyLamb {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const LambHyperparams<C>& hyper,
                  const std::vector<LambTensor<T>>& tensors);
};

}  // namespace functor
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_LAMB_OP_H_
