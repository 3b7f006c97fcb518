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

from tf_opt_plugin.optimizers import _hyperparameters
from tf_opt_plugin import ops

_check_beta_2_decay = _hyperparameters.check_range(lambda decay: decay <= 0,
                                                   "<= 0")


class AdafactorAlgorithm:
  """Factored second moments with Keras's arguments and defaults.

  Slots, per variable in order: for rank >= 2 a `row` accumulator (shape
  `var.shape[:-1]`) and a `column` accumulator (`var.shape[:-2] +
  var.shape[-1:]`); for rank < 2 one `velocity` shaped like the variable. On
  a DTensor mesh they take the variable's layout minus the reduced dimension.

  Args:
    learning_rate: a float, a `LearningRateSchedule` or a callable.
    beta_2_decay: exponent of the second-moment decay, <= 0.
    epsilon_1: regulariser added to g^2, >= 0.
    epsilon_2: lower bound of the RMS(w) step scale, >= 0.
    clip_threshold: update clipping threshold d, > 0.
    relative_step: True scales by min(lr, 1/sqrt(t)), False uses lr.
    fused: None, True or False (as for `Adam`).
    name: the optimizer's name (the front end's default when None).
    **kwargs: the front end's base optimizer arguments.

  >>> import tf_opt_plugin as top
  >>> w = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
  >>> opt = top.Adafactor(learning_rate=0.01)
  >>> _ = opt.apply_gradients([(tf.ones([2, 2]), w)])
  >>> [round(float(x), 4) for x in w.numpy().ravel()]  # 0.01 * RMS(w) each
  [0.9726, 1.9726, 2.9726, 3.9726]
  """

  HYPERPARAMETER_CHECKS = {
      "beta_2_decay": _check_beta_2_decay,
      "epsilon_1": _hyperparameters.check_non_negative,
      "epsilon_2": _hyperparameters.check_non_negative,
      "clip_threshold": _hyperparameters.check_positive,
      "relative_step": _hyperparameters.check_bool,
  }

  def __init__(self, learning_rate=0.001, beta_2_decay=-0.8, epsilon_1=1e-30,
               epsilon_2=1e-3, clip_threshold=1.0, relative_step=True, *,
               fused=None, name=None, **kwargs):
    super().__init__(learning_rate, fused=fused, name=name, **kwargs)
    self.set_hyperparameters(beta_2_decay=beta_2_decay, epsilon_1=epsilon_1,
                             epsilon_2=epsilon_2, clip_threshold=clip_threshold,
                             relative_step=relative_step)

  def build(self, var_list):
    if self.built:
      return
    super().build(var_list)
    self._accumulators = []
    for variable in var_list:
      if self.skips_variable(variable):
        self._accumulators.append(None)
      elif len(variable.shape) >= 2:
        # The shapes of `ops.accumulator_shapes`: mean over the last axis
        # (rows), over the second to last (columns).
        self._accumulators.append(
            (self.add_slot(variable, "row", reduced_axis=-1),
             self.add_slot(variable, "column", reduced_axis=-2)))
      else:
        self._accumulators.append((self.add_slot(variable, "velocity"),))

  def update_step(self, gradient, variable, learning_rate=None):
    """One Adafactor step; `learning_rate` None: the current one."""
    accumulators = self._accumulators[self.variable_index(variable)]
    return ops.resource_apply_adafactor(
        variable, [self.as_tf_variable(a) for a in accumulators], gradient,
        learning_rate=self.learning_rate_for_step(learning_rate),
        beta_2_decay=self.beta_2_decay, epsilon_1=self.epsilon_1,
        epsilon_2=self.epsilon_2, clip_threshold=self.clip_threshold,
        step=self.step_count(), relative_step=self.relative_step,
        fused=self.fused)
