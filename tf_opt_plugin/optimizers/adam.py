"""Adam (Kingma & Ba, 2015) as Keras computes it, on the fused AdamW op.

    m <- beta_1 * m + (1 - beta_1) * g
    v <- beta_2 * v + (1 - beta_2) * g^2
    vhat <- max(vhat, v)                                        (amsgrad)
    w <- w - lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(vhat or v) + epsilon)

The front end's decoupled `weight_decay` (`w -= lr * weight_decay * w` before
the step) runs inside the same fused pass.
"""

from tf_opt_plugin.optimizers import _hyperparameters
from tf_opt_plugin import ops


class AdamAlgorithm:
  """Adam with Keras's defaults, slots and "epsilon hat".

  Drop-in for Keras's `Adam`: the same arguments, the same slot variables
  (`momentum`, `velocity` per variable, then `velocity_hat` with `amsgrad`;
  tf-keras calls them `m`, `v`, `vhat`) and the same numbers, computed by one
  fused kernel per variable.

  Args:
    learning_rate: a float, a `LearningRateSchedule` or a callable.
    beta_1: decay of the first moment, in [0, 1).
    beta_2: decay of the second moment, in [0, 1).
    epsilon: added to sqrt(v) ("epsilon hat"), >= 0.
    amsgrad: use the running maximum of v (Reddi et al., 2018).
    state_dtype: the storage of the slots. None (default): the variable's
      dtype. "float32": float32 (for float16/bfloat16 variables, which
      otherwise keep their moments in 16 bits). "bfloat16": bfloat16,
      rounded to nearest even (2 bytes per element and slot: half of
      float32 state; about 3 significant digits). "int8": 8-bit block-wise
      dynamic quantization (Dettmers et al., 2022: `m` with the signed map,
      `v` and `vhat` with the unsigned one, blocks of 256 elements with a
      float32 absmax each: 1.016 bytes per element and slot, 0.254x float32;
      error below 0.71% of the block's largest `m` and 0.36% of its largest
      `v`); variables with fewer than 4096 elements keep float32 state.
      Each step dequantizes to float32, updates in float32 and stores the
      result in the layout; the variable's own update uses the float32
      values before that rounding. float64 variables take only None.
      `tf.float32`-style dtypes are accepted and stored as the string.
    stochastic_rounding: round a bfloat16 variable stochastically after each
      step (unbiased: the expected stored weight is the float32 update, so
      pure-bfloat16 training keeps the small updates round-to-nearest
      loses). The random bits are a hash of the global seed
      (`keras.utils.set_random_seed`; 0 when unset), the step, the
      variable's index and the element's: the same seed gives the same bits
      on every run, on the fused op and the twin alike. A no-op for
      variables of other dtypes. False (default): round to nearest.
    fused: None runs the fused op where it can run and the pure-TF twin
      elsewhere (XLA, DTensor, devices without a kernel); True raises
      `FusedOpUnavailableError` where the op cannot run; False forces the
      twin.
    name: the optimizer's name (the front end's default when None).
    **kwargs: the front end's base optimizer arguments.

  >>> import tf_opt_plugin as top
  >>> w = tf.Variable([1.0, 2.0])
  >>> opt = top.Adam(learning_rate=0.1)
  >>> _ = opt.apply_gradients([(tf.constant([0.5, -0.5]), w)])
  >>> [round(float(x), 4) for x in w.numpy()]  # one Adam step moves by lr
  [0.9, 2.1]
  """

  _fuses_weight_decay = True
  HYPERPARAMETER_CHECKS = {
      "beta_1": _hyperparameters.check_unit_interval,
      "beta_2": _hyperparameters.check_unit_interval,
      "epsilon": _hyperparameters.check_non_negative,
      "amsgrad": _hyperparameters.check_bool,
      "state_dtype": _hyperparameters.check_state_dtype,
      "stochastic_rounding": _hyperparameters.check_bool,
  }

  def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999,
               epsilon=1e-7, amsgrad=False, *, state_dtype=None,
               stochastic_rounding=False, fused=None, name=None, **kwargs):
    super().__init__(learning_rate, fused=fused, name=name, **kwargs)
    self.set_hyperparameters(beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                             amsgrad=amsgrad, state_dtype=state_dtype,
                             stochastic_rounding=stochastic_rounding)

  def build(self, var_list):
    if self.built:
      return
    super().build(var_list)
    self._momentums, self._velocities = self.add_state_slots(
        var_list, ("momentum", "velocity"))
    if self.amsgrad:  # after all others, as Keras orders them
      self._velocity_hats, = self.add_state_slots(var_list, ("velocity_hat",))

  def update_step(self, gradient, variable, learning_rate=None):
    """One Adam step of `variable`; `learning_rate` None: the current one."""
    return self.update_steps([gradient], [variable], learning_rate)

  def update_steps(self, gradients, variables, learning_rate=None):
    """One Adam step of each of `variables` (one device), batched.

    One multi-tensor op per dtype where the fused op can run (see
    `tf_opt_plugin.ops.multi_tensor_apply_adamw`), the same per-variable
    update elsewhere. Variables excluded from the front end's `weight_decay`
    get none.
    """
    return ops.multi_tensor_apply_adamw(
        variables, [self.slot(self._momentums, v) for v in variables],
        [self.slot(self._velocities, v) for v in variables], gradients,
        learning_rate=self.learning_rate_for_step(learning_rate),
        beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
        weight_decay=self.current_weight_decay(), step=self.step_count(),
        vhats=([self.slot(self._velocity_hats, v) for v in variables]
               if self.amsgrad else None),
        rounding_keys=self.rounding_keys(variables),
        apply_weight_decay=[self.applies_weight_decay(v) for v in variables
                           ], fused=self.fused)
