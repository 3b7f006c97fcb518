// Adafactor (Shazeer & Stern, 2018, Alg. 4 and 5), as Keras implements it,
// except that relative_step=False really means a constant step.
//
//   t        = step;  beta_2_t = 1 - t^beta_2_decay
//   G        = g^2 + epsilon_1
//   rank >= 2 (last two dims factored, leading dims are a batch):
//     r      <- beta_2_t * r + (1 - beta_2_t) * mean(G, axis=-1)
//     c      <- beta_2_t * c + (1 - beta_2_t) * mean(G, axis=-2)
//     u      = g / sqrt(r_i * c_j / mean(r))
//   rank < 2:
//     v      <- beta_2_t * v + (1 - beta_2_t) * G
//     u      = g / sqrt(v)
//   u        <- u / max(1, RMS(u) / clip_threshold)
//   rho      = relative_step ? min(lr, 1 / sqrt(t)) : lr
//   w        <- w - max(epsilon_2, RMS(w)) * rho * u       (RMS(w) before the
//   step)
//
// The factored scale is applied as g * (sqrt(mean(r)) * rsqrt(r_i)) *
// rsqrt(c_j) rather than by forming r_i * c_j / mean(r): the product underflows
// to 0 in float32 when a gradient row and a column are both all zero (a dead
// unit and a constant input feature), and 0 / sqrt(0) = NaN would poison the
// weight (Keras 3 defect 9 in docs/keras_defects.md). Accumulators are also
// read as max(acc, epsilon_1): the exact recurrence never goes below epsilon_1,
// but a float16 accumulator underflows to 0.
#ifndef TF_OPT_PLUGIN_CC_KERNELS_MATH_ADAFACTOR_MATH_H_
#define TF_OPT_PLUGIN_CC_KERNELS_MATH_ADAFACTOR_MATH_H_

#include <cmath>
#include <cstdint>

#include "cc/kernels/math/host_device.h"

namespace tf_opt_plugin {
namespace math {

template <typename C>
struct AdafactorStep {
  C beta_2_t, one_minus_beta_2_t;
  C epsilon_1;
  C rho;  // the relative or constant step size, before the RMS(w) scale
};

template <typename C>
TFOPT_HOST_DEVICE AdafactorStep<C> MakeAdafactorStep(C lr, C beta_2_decay,
                                                     C epsilon_1, int64_t step,
                                                     bool relative_step) {
  const C t = static_cast<C>(step);
  AdafactorStep<C> s;
  s.beta_2_t = C(1) - std::pow(t, beta_2_decay);
  s.one_minus_beta_2_t = C(1) - s.beta_2_t;
  s.epsilon_1 = epsilon_1;
  s.rho = relative_step ? Min(lr, C(1) / Sqrt(t)) : lr;
  return s;
}

// g^2 + epsilon_1: the quantity whose row / column means are accumulated.
template <typename C>
TFOPT_HOST_DEVICE C AdafactorRegularizedSquare(const AdafactorStep<C>& s, C g) {
  return g * g + s.epsilon_1;
}

// One moving-average update of an accumulator entry (r_i, c_j or v) with the
// mean of G over the factored-out axis (or G itself, unfactored).
template <typename C>
TFOPT_HOST_DEVICE C AdafactorAccumulate(const AdafactorStep<C>& s, C acc,
                                        C mean_square) {
  return s.beta_2_t * acc + s.one_minus_beta_2_t * mean_square;
}

// rsqrt of an accumulator entry, guarded against storage underflow.
template <typename C>
TFOPT_HOST_DEVICE C AdafactorInverseRoot(const AdafactorStep<C>& s, C acc) {
  return Rsqrt(Max(acc, s.epsilon_1));
}

// sqrt(mean(r)), the factor of every row scale of a matrix, from the mean of
// its (updated) row accumulator.
template <typename C>
TFOPT_HOST_DEVICE C AdafactorSqrtMeanRow(const AdafactorStep<C>& s, C mean_r) {
  return Sqrt(Max(mean_r, s.epsilon_1));
}

// Factored update direction: row_scale = sqrt(mean(r)) * rsqrt(r_i),
// col_scale = rsqrt(c_j). Unfactored: row_scale = rsqrt(v), col_scale = 1.
template <typename C>
TFOPT_HOST_DEVICE C AdafactorDirection(C g, C row_scale, C col_scale) {
  return g * row_scale * col_scale;
}

// sum(u^2) of a factored matrix without forming u. With
// u_ij = g_ij * sqrt(mean(r)) * rsqrt(r_i) * rsqrt(c_j),
//   sum(u^2) = sum_j [ sum_i (g_ij * rsqrt(r_i))^2 ] * rsqrt(c_j)^2 * mean(r),
// and the bracket needs only the row accumulators, so a kernel can sum it
// per column in the pass that computes them, before the column scales exist.
// AdafactorRowScaledSquare is the bracket's term, AdafactorColumnSumSquaresOfU
// one column's share of the total (equal to summing u^2 up to rounding).
template <typename C>
TFOPT_HOST_DEVICE C AdafactorRowScaledSquare(C g, C row_inv_root) {
  const C x = g * row_inv_root;
  return x * x;
}

template <typename C>
TFOPT_HOST_DEVICE C AdafactorColumnSumSquaresOfU(C row_scaled_squares,
                                                 C col_scale, C sqrt_mean_r) {
  return row_scaled_squares * (col_scale * col_scale) *
         (sqrt_mean_r * sqrt_mean_r);
}

// The step multiplier applied to u: max(epsilon_2, RMS(w)) * rho / max(1,
// RMS(u) / d).
template <typename C>
TFOPT_HOST_DEVICE C AdafactorStepSize(const AdafactorStep<C>& s, C epsilon_2,
                                      C clip_threshold, C w_sum_squares,
                                      C u_sum_squares, C num_elements) {
  const C rms_w = Sqrt(w_sum_squares / num_elements);
  const C rms_u = Sqrt(u_sum_squares / num_elements);
  const C alpha = Max(epsilon_2, rms_w) * s.rho;
  return alpha / Max(C(1), rms_u / clip_threshold);
}

}  // namespace math
}  // namespace tf_opt_plugin

#endif  // TF_OPT_PLUGIN_CC_KERNELS_MATH_ADAFACTOR_MATH_H_
