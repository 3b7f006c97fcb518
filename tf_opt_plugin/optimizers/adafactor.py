"""Adafactor (Shazeer & Stern, 2018) as Keras computes it, fused.

    beta_2_t = 1 - t^beta_2_decay;  G = g^2 + epsilon_1
    rank >= 2:  r <- beta_2_t r + (1 - beta_2_t) mean(G, -1)
                c <- beta_2_t c + (1 - beta_2_t) mean(G, -2)
                u  = g / sqrt(r_i c_j / mean(r))
    rank < 2:   v <- beta_2_t v + (1 - beta_2_t) G;   u = g / sqrt(v)
    u <- u / max(1, RMS(u) / clip_threshold)
    w <- w - max(epsilon_2, RMS(w)) * rho * u,
         rho = min(lr, 1/sqrt(t)) if relative_step else lr

Unlike Keras 3, `relative_step=False` gives a constant step (defect 5), a zero
gradient row and column never produce NaN (defect 9), and a factored variable
keeps only its row and column accumulators: Keras also allocates a full-size
`velocity` per factored variable, which is exactly the memory Adafactor exists
to save.
"""

import keras

from tf_opt_plugin import _hyperparameters
from tf_opt_plugin import ops
from tf_opt_plugin.optimizers import _base


@keras.saving.register_keras_serializable(package="tf_opt_plugin")
class Adafactor(_base.Optimizer):
  """Factored second moments with Keras's arguments and defaults.

  Slots, per variable in order: for rank >= 2 the row accumulator (shape
  `var.shape[:-1]`) and the column accumulator (`var.shape[:-2] +
  var.shape[-1:]`), both named after the variable as in Keras; for rank < 2
  one `velocity` shaped like the variable.

  Args:
    learning_rate: a float, a `LearningRateSchedule` or a callable.
    beta_2_decay: exponent of the second-moment decay, <= 0.
    epsilon_1: regulariser added to g^2, >= 0.
    epsilon_2: lower bound of the RMS(w) step scale, >= 0.
    clip_threshold: update clipping threshold d, > 0.
    relative_step: True scales by min(lr, 1/sqrt(t)), False uses lr.
    fused: None, True or False (see `tf_opt_plugin.optimizers.Optimizer`).
    **kwargs: the Keras 3 base optimizer arguments.
  """

  def __init__(self, learning_rate=0.001, beta_2_decay=-0.8, epsilon_1=1e-30,
               epsilon_2=1e-3, clip_threshold=1.0, relative_step=True, *,
               fused=None, name="adafactor", **kwargs):
    super().__init__(learning_rate=learning_rate, fused=fused, name=name,
                     **kwargs)
    self.beta_2_decay = _hyperparameters.check_number("beta_2_decay",
                                                      beta_2_decay)
    if not self.beta_2_decay <= 0:
      raise ValueError("`beta_2_decay` must be <= 0. Received: "
                       f"beta_2_decay={beta_2_decay}")
    self.epsilon_1 = _hyperparameters.check_non_negative("epsilon_1",
                                                         epsilon_1)
    self.epsilon_2 = _hyperparameters.check_non_negative("epsilon_2",
                                                         epsilon_2)
    self.clip_threshold = _hyperparameters.check_positive("clip_threshold",
                                                          clip_threshold)
    self.relative_step = _hyperparameters.check_bool("relative_step",
                                                     relative_step)

  def build(self, var_list):
    if self.built:
      return
    super().build(var_list)
    self._accumulators = []
    for variable in var_list:
      if self._overwrite_variable_with_gradient(variable):
        self._accumulators.append(None)
      elif len(variable.shape) >= 2:
        self._accumulators.append(tuple(
            self.add_variable(tuple(shape.as_list()), dtype=variable.dtype,
                              name=variable.name)
            for shape in ops.accumulator_shapes(variable.shape)))
      else:
        self._accumulators.append((self.add_variable_from_reference(
            variable, name="velocity"),))

  def update_step(self, gradient, variable, learning_rate):
    accumulators = self._accumulators[self._get_variable_index(variable)]
    return ops.resource_apply_adafactor(
        variable, [_base.tf_variable(a) for a in accumulators], gradient,
        learning_rate=learning_rate, beta_2_decay=self.beta_2_decay,
        epsilon_1=self.epsilon_1, epsilon_2=self.epsilon_2,
        clip_threshold=self.clip_threshold, step=self.step_count(),
        relative_step=self.relative_step, fused=self.fused)

  def get_config(self):
    config = super().get_config()
    config.update(beta_2_decay=self.beta_2_decay, epsilon_1=self.epsilon_1,
                  epsilon_2=self.epsilon_2,
                  clip_threshold=self.clip_threshold,
                  relative_step=self.relative_step)
    return config
