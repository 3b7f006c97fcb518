// ResourceApplyAdafactor: the device functors the kernel dispatches to. The
// CPU specializations live in adafactor_op.cc, the GPU ones in
// adafactor_op_gpu.cu.cc; both apply the math in math/adafactor_math.h.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_ADAFACTOR_OP_H_
#define TF_OPT_PLUGIN_CC_KERNELS_ADAFACTOR_OP_H_

#include <cstdint>

#include "cc/kernels/math/adafactor_math.h"

namespace tensorflow {
class OpKernelContext;
}

namespace tf_opt_plugin {
namespace functor {

// Pointers to the validated scalar inputs, in the memory of the device the
// kernel runs on; C is the compute type.
template <typename C>
struct AdafactorHyperparams {
  const C* lr;
  const C* beta_2_decay;
  const C* epsilon_1;
  const C* epsilon_2;
  const C* clip_threshold;
  const int64_t* step;
  bool relative_step;  // the op's attr of that name

  // The op's scalar inputs, in op order (see hyperparams.h).
  template <typename Visit>
  void ForEachScalar(Visit&& visit) {
    visit("lr", &lr);
    visit("beta_2_decay", &beta_2_decay);
    visit("epsilon_1", &epsilon_1);
    visit("epsilon_2", &epsilon_2);
    visit("clip_threshold", &clip_threshold);
    visit("step", &step);
  }
};

// A variable of rank >= 2 viewed as [batch, rows, cols]: the last two dims
// are factored, the leading ones form a batch of independent matrices.
struct FactoredShape {
  int64_t batch, rows, cols;
  TFOPT_HOST_DEVICE int64_t size() const { return batch * rows * cols; }
};

// Rank >= 2: row accumulator [batch, rows], column accumulator [batch, cols].
template <typename Device, typename T, typename C>
struct ApplyAdafactorFactored {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const AdafactorHyperparams<C>& hyper,
                  const FactoredShape& shape, T* var, T* row_acc, T* col_acc,
                  const T* grad);
};

// Rank < 2: one accumulator shaped like the variable, `size` elements.
template <typename Device, typename T, typename C>
struct ApplyAdafactorUnfactored {
  void operator()(tensorflow::OpKernelContext* ctx,
                  const AdafactorHyperparams<C>& hyper, int64_t size, T* var,
                  T* acc, const T* grad);
};

}  // namespace functor
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_ADAFACTOR_OP_H_
