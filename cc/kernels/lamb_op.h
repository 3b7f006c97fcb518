// ResourceApplyLamb: the device functor the kernel dispatches to. The CPU
// specialization lives in lamb_op.cc, the GPU one in lamb_op_gpu.cu.cc (kernels:
// gpu/lamb_kernel.cu.h); both apply the math in math/lamb_math.h. No
// TensorFlow header: the GPU check includes this.
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
  bool use_layer_adaptation;
};

// Updates var, m, v (all of `size` elements) in place from grad.
template <typename Device, typename T, typename C>
struct ApplyLamb {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const LambHyperparams<C>& hyper, int64_t size, T* var, T* m,
                  T* v, const T* grad);
};

// One variable of a multi-tensor update.
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

// ResourceMultiTensorApplyLamb: every tensor of the list, each with its own
// trust ratio (hyper.use_layer_adaptation is ignored: per tensor instead).
template <typename Device, typename T, typename C>
struct ApplyLambMulti {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const LambHyperparams<C>& hyper,
                  const std::vector<LambTensor<T>>& tensors);
};

}  // namespace functor
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_LAMB_OP_H_
