"""Lion (Chen et al., 2023) as Keras computes it, fused.

    c  = beta_1 * m + (1 - beta_1) * g
    w <- w - lr * weight_decay * w       (the front end's decoupled decay)
    w <- w - lr * sign(c)
    m <- beta_2 * m + (1 - beta_2) * g

The front end's `weight_decay` runs inside the same fused pass, rounded as
Keras's training steps (tf.functions) round it, so float32 results are those
of `keras.optimizers.Lion` in a tf.function to the last bit.
"""

from tf_opt_plugin import ops
from tf_opt_plugin.optimizers import _hyperparameters

# Keras's rule.
_check_beta_1 = _hyperparameters.check_range(
    lambda beta_1: 0.0 < beta_1 <= 1.0,
    "in (0, 1]: at 0 Lion degenerates to SignSGD")


class LionAlgorithm:
  """The sign of an interpolated momentum, with Keras's defaults and slot.

  Drop-in for Keras's `Lion`: the same arguments, the same slot variable
  (`momentum` per variable; tf-keras calls it `m`) and the same numbers,
  computed by one fused pass over each variable. Each step moves every
  element by exactly `learning_rate` (or not at all), so Lion usually wants
  a learning rate 3-10x smaller than AdamW's and a weight decay 3-10x larger.

  Args:
    learning_rate: a float, a `LearningRateSchedule` or a callable.
    beta_1: the weight of the momentum in the update's sign, in (0, 1].
    beta_2: decay of the momentum, in [0, 1).
    state_dtype: None, "float32", "bfloat16" or "int8": the storage of `m`,
      as for `Adam` (int8: the signed map, a quarter of float32's bytes;
      variables under 4096 elements keep float32 state).
    stochastic_rounding: round a bfloat16 variable stochastically after each
      step, as for `Adam`.
    fused: None runs the fused op where it can run and the pure-TF twin
      elsewhere (XLA, DTensor, devices without a kernel); True raises
      `FusedOpUnavailableError` where the op cannot run; False forces the
      twin.
    name: the optimizer's name (the front end's default when None).
    **kwargs: the front end's base optimizer arguments (`weight_decay` is
      applied inside the fused op).

  >>> import tf_opt_plugin as top
  >>> w = tf.Variable([1.0, 2.0])
  >>> opt = top.Lion(learning_rate=0.1)
  >>> _ = opt.apply_gradients([(tf.constant([0.5, -3.0]), w)])
  >>> [round(float(x), 4) for x in w.numpy()]  # w - lr * sign(g)
  [0.9, 2.1]
  """

  _fuses_weight_decay = True
  HYPERPARAMETER_CHECKS = {
      "beta_1": _check_beta_1,
      "beta_2": _hyperparameters.check_unit_interval,
      "state_dtype": _hyperparameters.check_state_dtype,
      "stochastic_rounding": _hyperparameters.check_bool,
  }

  def __init__(
      self,
      learning_rate=0.001,
      beta_1=0.9,
      beta_2=0.99,
      *,
      state_dtype=None,
      stochastic_rounding=False,
      fused=None,
      name=None,
      **kwargs,
  ):
    super().__init__(learning_rate, fused=fused, name=name, **kwargs)
    self.set_hyperparameters(beta_1=beta_1, beta_2=beta_2,
                             state_dtype=state_dtype,
                             stochastic_rounding=stochastic_rounding)

  def build(self, var_list):
    if self.built:
      return
    super().build(var_list)
    (self._momentums,) = self.add_state_slots(var_list, ("momentum",))

  def update_step(self, gradient, variable, learning_rate=None):
    """One Lion step of `variable`; `learning_rate` None: the current one."""
    return self.update_steps([gradient], [variable], learning_rate)

  def update_steps(self, gradients, variables, learning_rate=None):
    """One Lion step of each of `variables` (one device), batched.

    One multi-tensor op per dtype where the fused op can run (see
    `tf_opt_plugin.ops.multi_tensor_apply_lion`), the twin elsewhere.
    Variables excluded from the front end's `weight_decay` get none.
    """
    return ops.multi_tensor_apply_lion(
        variables,
        [self.slot(self._momentums, v) for v in variables],
        gradients,
        learning_rate=self.learning_rate_for_step(learning_rate),
        beta_1=self.beta_1,
        beta_2=self.beta_2,
        weight_decay=self.current_weight_decay(),
        apply_weight_decay=[self.applies_weight_decay(v) for v in variables],
        rounding_keys=self.rounding_keys(variables),
        fused=self.fused,
    )
