// ResourceApplyAdamW and ResourceMultiTensorApplyAdamW: the device functors
// the kernels dispatch to. The CPU specializations live in adamw_op.cc, the
// GPU ones in adamw_op_gpu.cu.cc (kernel: gpu/adamw_kernel.cu.h); all apply
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
};

// Updates var, m, v (and vhat when non-null) in place from grad, all of
// `size` elements.
template <typename Device, typename T, typename C>
struct ApplyAdamW {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const AdamWHyperparams<C>& hyper, int64_t size, T* var,
                  T* m, T* v, T* vhat, const T* grad);
};

// One variable of a multi-tensor update (vhat null without amsgrad).
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

// ResourceMultiTensorApplyAdamW: every tensor of the list, with the same
// hyperparameters (the GPU functor: one launch for the list).
template <typename Device, typename T, typename C>
struct ApplyAdamWMulti {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const AdamWHyperparams<C>& hyper,
                  const std::vector<AdamWTensor<T>>& tensors);
};

}  // namespace functor
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_ADAMW_OP_H_
