// Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023,
// Algorithm 2), one element at a time, with Keras's decoupled weight decay:
//
//   w  <- w - w * (lr * weight_decay)
//   w  <- w - lr * sign(beta_1 * m + (1 - beta_1) * g)
//   m  <- beta_2 * m + (1 - beta_2) * g
//
// Products are formed as a traced Keras step rounds them (keras.optimizers.
// Lion's `m * beta_1 + g * (1 - beta_1)`; its base optimizer's decay
// `w - w * wd * lr`, which TensorFlow's arithmetic optimizer regroups as
// `w * (wd * lr)` inside fit() or any tf.function), so float32 results match
// Keras's fit() to the last bit, and the pure-TF twin's.
// sign(0) = 0 and sign(NaN) = NaN, as tf.sign: a NaN gradient shows in w
// rather than vanishing into a unit step.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_MATH_LION_MATH_H_
#define TF_OPT_PLUGIN_CC_KERNELS_MATH_LION_MATH_H_

#include <cstdint>

#include "cc/kernels/math/host_device.h"

namespace tf_opt_plugin {
namespace math {

// Everything per step that does not depend on the element.
template <typename C>
struct LionStep {
  C lr;
  C decay;  // lr * weight_decay
  C beta_1, one_minus_beta_1;
  C beta_2, one_minus_beta_2;
};

template <typename C>
TFOPT_HOST_DEVICE LionStep<C> MakeLionStep(C lr, C beta_1, C beta_2,
                                           C weight_decay) {
  LionStep<C> s;
  s.lr = lr;
  s.decay = lr * weight_decay;
  s.beta_1 = beta_1;
  s.one_minus_beta_1 = C(1) - beta_1;
  s.beta_2 = beta_2;
  s.one_minus_beta_2 = C(1) - beta_2;
  return s;
}

// -1, 0 or 1; NaN stays NaN (x * 0 also keeps the sign of a zero). Written
// with selects, not branches: the sign of a gradient is a coin toss, which a
// branch predictor loses half the time where a loop is not vectorized.
template <typename C>
TFOPT_HOST_DEVICE C Sign(C x) {
  const C unit = C(x > C(0)) - C(x < C(0));
  const C zero_or_nan = x * C(0);  // unconditional: a plain vector select
  return x == C(0) || x != x ? zero_or_nan : unit;
}

// One element, all values in registers.
template <typename C>
TFOPT_HOST_DEVICE void LionElement(const LionStep<C>& s, C g, C& w, C& m) {
  const C interpolated = m * s.beta_1 + g * s.one_minus_beta_1;
  w -= w * s.decay;
  w -= s.lr * Sign(interpolated);
  m = m * s.beta_2 + g * s.one_minus_beta_2;
}

// Element i of a variable of storage type T with its slot stored as S (T,
// or a state layout's float or bfloat16): widened to C, updated, narrowed
// back (the variable by `rounding`). The one loop body of the CPU and the CUDA
// kernels.
template <typename T, typename C, typename S,
          typename Rounding = RoundToNearest>
TFOPT_HOST_DEVICE void LionUpdateAt(const LionStep<C>& s, int64_t i, T* var,
                                    S* m, const T* grad,
                                    Rounding rounding = Rounding()) {
  C w = static_cast<C>(var[i]);
  C mi = LoadAs<C>(m, i);
  LionElement<C>(s, static_cast<C>(grad[i]), w, mi);
  rounding.Store(var, i, w);
  StoreAs<S>(m, i, mi);
}

}  // namespace math
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_MATH_LION_MATH_H_
