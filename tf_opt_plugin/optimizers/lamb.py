"""LAMB (You et al., 2019) as TF Model Garden implements it, fused.

    m <- beta_1 * m + (1 - beta_1) * g
    v <- beta_2 * v + (1 - beta_2) * g^2
    u  = (m / (1 - beta_1^t)) / (sqrt(v / (1 - beta_2^t)) + epsilon) + wd * w
    r  = ||w|| / ||u||   (1 when either norm is 0 or the variable is excluded
                          from layer adaptation)
    w <- w - lr * r * u

`wd` is `weight_decay_rate`, 0 for variables excluded from weight decay. The
decay sits inside the trust ratio, as in the paper (Keras 3's Lamb applies it
outside, defect 6 in docs/keras_defects.md).
"""

from tf_opt_plugin.optimizers import _hyperparameters
from tf_opt_plugin import ops


class LambAlgorithm:
  """Layer-wise adaptive moments, with TF Model Garden's arguments.

  Slots: `momentum` and `velocity` per variable (Keras's names and order;
  `m` and `v` in tf-keras).

  Args:
    learning_rate: a float, a `LearningRateSchedule` or a callable.
    beta_1, beta_2: moment decays, in [0, 1).
    epsilon: added to the bias-corrected sqrt(v), >= 0.
    weight_decay_rate: decay inside the trust ratio (a float or a schedule).
    exclude_from_weight_decay: regular expressions; a variable whose path
      (Keras 3) or name (tf-keras) contains a match (`re.search`) gets no
      `weight_decay_rate`.
    exclude_from_layer_adaptation: regular expressions; matching variables
      get trust ratio 1. Defaults to `exclude_from_weight_decay`.
    state_dtype: None, "float32", "bfloat16" or "int8": the storage of `m`
      and `v`, as for `Adam` (int8: a quarter of float32's bytes; variables
      under 4096 elements keep float32 state). The trust ratio's norms use
      the moments before storage rounding; the step `w - lr * r * u`
      recomputes `u` from the moments as stored, as the fused op's second
      pass reads them back.
    stochastic_rounding: round a bfloat16 variable stochastically after each
      step, as for `Adam`.
    fused: None, True or False (as for `Adam`).
    name: the optimizer's name (the front end's default when None).
    **kwargs: the front end's base optimizer arguments (its `weight_decay`
      is the front end's decoupled decay, applied before the LAMB step).

  >>> import tf_opt_plugin as top
  >>> w = tf.Variable([3.0, 4.0])
  >>> opt = top.Lamb(learning_rate=0.1)
  >>> _ = opt.apply_gradients([(tf.constant([1.0, 1.0]), w)])
  >>> [round(float(x), 4) for x in w.numpy()]  # u = [1, 1], ratio 5/sqrt(2)
  [2.6464, 3.6464]
  """

  HYPERPARAMETER_CHECKS = {
      "beta_1": _hyperparameters.check_unit_interval,
      "beta_2": _hyperparameters.check_unit_interval,
      "epsilon": _hyperparameters.check_non_negative,
      "weight_decay_rate": _hyperparameters.check_non_negative,
      "state_dtype": _hyperparameters.check_state_dtype,
      "stochastic_rounding": _hyperparameters.check_bool,
  }

  def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999,
               epsilon=1e-6, weight_decay_rate=0.0,
               exclude_from_weight_decay=None,
               exclude_from_layer_adaptation=None, *, state_dtype=None,
               stochastic_rounding=False, fused=None, name=None, **kwargs):
    super().__init__(learning_rate, fused=fused, name=name, **kwargs)
    self.set_hyperparameters(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                             weight_decay_rate=weight_decay_rate,
                             state_dtype=state_dtype,
                             stochastic_rounding=stochastic_rounding)
    # Not `exclude_from_weight_decay`: that is the front end's method.
    self.exclude_from_weight_decay_patterns = _hyperparameters.check_patterns(
        "exclude_from_weight_decay", exclude_from_weight_decay)
    self.exclude_from_layer_adaptation = _hyperparameters.check_patterns(
        "exclude_from_layer_adaptation", exclude_from_layer_adaptation)

  def build(self, var_list):
    if self.built:
      return
    super().build(var_list)
    self._momentums, self._velocities = self.add_state_slots(
        var_list, ("momentum", "velocity"))

  def update_step(self, gradient, variable, learning_rate=None):
    """One LAMB step of `variable`; `learning_rate` None: the current one."""
    return self.update_steps([gradient], [variable], learning_rate)

  def update_steps(self, gradients, variables, learning_rate=None):
    """One LAMB step of each of `variables` (one device), batched.

    One multi-tensor op per dtype where the fused op can run (see
    `tf_opt_plugin.ops.multi_tensor_apply_lamb`), the same per-variable
    update elsewhere. The exclusion lists become per-variable flags.
    """
    adaptation_patterns = (self.exclude_from_layer_adaptation
                           if self.exclude_from_layer_adaptation is not None
                           else self.exclude_from_weight_decay_patterns)
    return ops.multi_tensor_apply_lamb(
        variables, [self.slot(self._momentums, v) for v in variables],
        [self.slot(self._velocities, v) for v in variables], gradients,
        learning_rate=self.learning_rate_for_step(learning_rate),
        beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
        weight_decay_rate=self.current_value(self.weight_decay_rate),
        step=self.step_count(), apply_weight_decay=[
            not self.excluded(self.exclude_from_weight_decay_patterns, v)
            for v in variables
        ], use_layer_adaptation=[
            not self.excluded(adaptation_patterns, v) for v in variables
        ], rounding_keys=self.rounding_keys(variables), fused=self.fused)

  def get_config(self):
    config = super().get_config()
    config.update(
        exclude_from_weight_decay=self.exclude_from_weight_decay_patterns,
        exclude_from_layer_adaptation=self.exclude_from_layer_adaptation)
    return config

  @classmethod
  def schedulable_hyperparameters(cls):
    return super().schedulable_hyperparameters() + ("weight_decay_rate",)
