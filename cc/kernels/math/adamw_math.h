// AdamW / Adam, one element at a time.
//
// Keras AdamW: decoupled weight decay first, then Keras Adam with the
// "epsilon hat" placement (Kingma & Ba, section 2, last paragraph):
//
//   w     <- w - lr * weight_decay * w
//   m     <- m + (g - m) * (1 - beta_1)
//   v     <- v + (g^2 - v) * (1 - beta_2)
//   vhat  <- max(vhat, v)                            (amsgrad only)
//   lr_t   = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
//   w     <- w - lr_t * m / (sqrt(v or vhat) + epsilon)
//
// With weight_decay = 0 this is exactly keras.optimizers.Adam.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_MATH_ADAMW_MATH_H_
#define TF_OPT_PLUGIN_CC_KERNELS_MATH_ADAMW_MATH_H_

#include <cmath>
#include <cstdint>

#include "cc/kernels/math/host_device.h"

namespace tf_opt_plugin {
namespace math {

// Everything per step that does not depend on the element, computed once on
// the host (or by one thread) in the compute type C.
template <typename C>
struct AdamWStep {
  C decay;  // lr * weight_decay
  C one_minus_beta_1;
  C one_minus_beta_2;
  C lr_t;  // lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
  C epsilon;
};

template <typename C>
TFOPT_HOST_DEVICE AdamWStep<C> MakeAdamWStep(C lr, C beta_1, C beta_2,
                                             C epsilon, C weight_decay,
                                             int64_t step) {
  const C t = static_cast<C>(step);
  AdamWStep<C> s;
  s.decay = lr * weight_decay;
  s.one_minus_beta_1 = C(1) - beta_1;
  s.one_minus_beta_2 = C(1) - beta_2;
  s.lr_t = lr * Sqrt(C(1) - std::pow(beta_2, t)) / (C(1) - std::pow(beta_1, t));
  s.epsilon = epsilon;
  return s;
}

// One element. `vhat` is null when amsgrad is off. All values in registers.
template <typename C>
TFOPT_HOST_DEVICE void AdamWElement(const AdamWStep<C>& s, C g, C& w, C& m,
                                    C& v, C* vhat) {
  w -= w * s.decay;
  m += (g - m) * s.one_minus_beta_1;
  v += (g * g - v) * s.one_minus_beta_2;
  C denom_v = v;
  if (vhat != nullptr) {
    *vhat = Max(*vhat, v);
    denom_v = *vhat;
  }
  w -= s.lr_t * m / (Sqrt(denom_v) + s.epsilon);
}

// Element i of a variable of storage type T with slots stored as S (T, or a
// state layout's float or bfloat16): widened to C, updated, narrowed back
// (the variable by `rounding`).
// The one loop body of the CPU and the CUDA kernels.
template <typename T, typename C, bool kAmsgrad, typename S,
          typename Rounding = RoundToNearest>
TFOPT_HOST_DEVICE void AdamWUpdateAt(const AdamWStep<C>& s, int64_t i, T* var,
                                     S* m, S* v, S* vhat, const T* grad,
                                     Rounding rounding = Rounding()) {
  C w = static_cast<C>(var[i]);
  C mi = LoadAs<C>(m, i);
  C vi = LoadAs<C>(v, i);
  C vhat_i = kAmsgrad ? LoadAs<C>(vhat, i) : C(0);
  AdamWElement<C>(s, static_cast<C>(grad[i]), w, mi, vi,
                  kAmsgrad ? &vhat_i : nullptr);
  rounding.Store(var, i, w);
  StoreAs<S>(m, i, mi);
  StoreAs<S>(v, i, vi);
  if (kAmsgrad) StoreAs<S>(vhat, i, vhat_i);
}

}  // namespace math
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_MATH_ADAMW_MATH_H_
