// ResourceApplyAdamW: the device functor the kernel dispatches to. The CPU
// specialization lives in adamw_op.cc, the GPU one in adamw_op_gpu.cu.cc; both
// apply math::AdamWElement.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_ADAMW_OP_H_
#define TF_OPT_PLUGIN_CC_KERNELS_ADAMW_OP_H_

#include <cstdint>

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
};

// Updates var, m, v (and vhat when non-null) in place from grad, all of
// `size` elements.
template <typename Device, typename T, typename C>
struct ApplyAdamW {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const AdamWHyperparams<C>& hyper, int64_t size, T* var,
                  T* m, T* v, T* vhat, const T* grad);
};

}  // namespace functor
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_ADAMW_OP_H_
