// ResourceApplyLamb: the device functor the kernel dispatches to. The CPU
// specialization lives in lamb_op.cc, the GPU one in lamb_op_gpu.cu.cc; both
// apply the math in math/lamb_math.h.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_LAMB_OP_H_
#define TF_OPT_PLUGIN_CC_KERNELS_LAMB_OP_H_

#include <cstdint>

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
  bool use_layer_adaptation;
};

// Updates var, m, v (all of `size` elements) in place from grad.
template <typename Device, typename T, typename C>
struct ApplyLamb {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const LambHyperparams<C>& hyper, int64_t size, T* var, T* m,
                  T* v, const T* grad);
};

}  // namespace functor
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_LAMB_OP_H_
