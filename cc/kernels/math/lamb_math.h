// LAMB (You et al., "Large Batch Optimization for Deep Learning", Alg. 2), as
// TF Model Garden, TF Addons, optax and apex implement it:
//
//   m     <- beta_1 * m + (1 - beta_1) * g
//   v     <- beta_2 * v + (1 - beta_2) * g^2
//   u      = (m / (1 - beta_1^t)) / (sqrt(v / (1 - beta_2^t)) + epsilon)
//            + weight_decay_rate * w
//   ratio  = ||w|| / ||u||   if both norms > 0 and layer adaptation is on,
//            1               otherwise                       (whole variable)
//   w     <- w - lr * ratio * u
//
// The trust ratio needs both norms before w can be written, so a kernel makes
// two passes: LambMomentsAndDirection (updates m, v; returns u for the norms)
// and LambDirection (recomputes u from the stored m, v for the write).
#ifndef TF_OPT_PLUGIN_CC_KERNELS_MATH_LAMB_MATH_H_
#define TF_OPT_PLUGIN_CC_KERNELS_MATH_LAMB_MATH_H_

#include <cmath>
#include <cstdint>

#include "cc/kernels/math/host_device.h"

namespace tf_opt_plugin {
namespace math {

template <typename C>
struct LambStep {
  C beta_1, one_minus_beta_1;
  C beta_2, one_minus_beta_2;
  C inv_bias_correction_1;  // 1 / (1 - beta_1^t)
  C inv_bias_correction_2;  // 1 / (1 - beta_2^t)
  C epsilon;
  C weight_decay_rate;
};

template <typename C>
TFOPT_HOST_DEVICE LambStep<C> MakeLambStep(C beta_1, C beta_2, C epsilon,
                                           C weight_decay_rate, int64_t step) {
  const C t = static_cast<C>(step);
  LambStep<C> s;
  s.beta_1 = beta_1;
  s.one_minus_beta_1 = C(1) - beta_1;
  s.beta_2 = beta_2;
  s.one_minus_beta_2 = C(1) - beta_2;
  s.inv_bias_correction_1 = C(1) / (C(1) - std::pow(beta_1, t));
  s.inv_bias_correction_2 = C(1) / (C(1) - std::pow(beta_2, t));
  s.epsilon = epsilon;
  s.weight_decay_rate = weight_decay_rate;
  return s;
}

// The update direction u from the (already updated) moments.
template <typename C>
TFOPT_HOST_DEVICE C LambDirection(const LambStep<C>& s, C w, C m, C v) {
  const C m_hat = m * s.inv_bias_correction_1;
  const C v_hat = v * s.inv_bias_correction_2;
  return m_hat / (Sqrt(v_hat) + s.epsilon) + s.weight_decay_rate * w;
}

// First pass: moment updates, then the direction for the norms.
template <typename C>
TFOPT_HOST_DEVICE C LambMomentsAndDirection(const LambStep<C>& s, C g, C w,
                                            C& m, C& v) {
  m = s.beta_1 * m + s.one_minus_beta_1 * g;
  v = s.beta_2 * v + s.one_minus_beta_2 * g * g;
  return LambDirection(s, w, m, v);
}

// ratio = ||w|| / ||u|| from the two sums of squares, 1 when either is 0
// (a freshly zero-initialised bias, or a zero update) or adaptation is off.
template <typename C>
TFOPT_HOST_DEVICE C LambTrustRatio(C w_sum_squares, C u_sum_squares,
                                   bool use_layer_adaptation) {
  if (!use_layer_adaptation) return C(1);
  const C w_norm = Sqrt(w_sum_squares);
  const C u_norm = Sqrt(u_sum_squares);
  if (!(w_norm > C(0)) || !(u_norm > C(0))) return C(1);
  return w_norm / u_norm;
}

}  // namespace math
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_MATH_LAMB_MATH_H_
