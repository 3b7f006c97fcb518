"""AdamW (Loshchilov & Hutter, 2019) as Keras computes it, in one fused pass.

    w <- w - lr * weight_decay * w
    then the Adam step of `AdamAlgorithm`.
"""

from tf_opt_plugin.optimizers import adam


class AdamWAlgorithm(adam.AdamAlgorithm):
  """Adam with decoupled weight decay, Keras's defaults and slots.

  Drop-in for Keras's `AdamW`. The decay is applied inside the fused Adam
  kernel (one pass over the variable instead of two); variables excluded with
  `exclude_from_weight_decay()` get none.

  Args:
    learning_rate: a float, a `LearningRateSchedule` or a callable.
    weight_decay: the decoupled decay rate (a float or a schedule).
    beta_1, beta_2, epsilon, amsgrad: as for `Adam`.
    state_dtype: None, "float32", "bfloat16" or "int8": the storage of the
      moments, as for `Adam` (int8: a quarter of float32's bytes; variables
      under 4096 elements keep float32 state).
    stochastic_rounding: round a bfloat16 variable stochastically after each
      step, as for `Adam`.
    fused: None, True or False (as for `Adam`).
    name: the optimizer's name (the front end's default when None).
    **kwargs: the front end's base optimizer arguments.

  >>> import tf_opt_plugin as top
  >>> w = tf.Variable([1.0, 2.0])
  >>> opt = top.AdamW(learning_rate=0.1, weight_decay=0.5)
  >>> _ = opt.apply_gradients([(tf.constant([0.0, 0.0]), w)])
  >>> [round(float(x), 4) for x in w.numpy()]  # w *= 1 - 0.1 * 0.5
  [0.95, 1.9]
  """

  def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9,
               beta_2=0.999, epsilon=1e-7, amsgrad=False, *, state_dtype=None,
               stochastic_rounding=False, fused=None, name=None, **kwargs):
    if weight_decay is None:
      raise ValueError(  # Keras 3's message, then tf-keras's words
          "Argument `weight_decay` must be a float. Received: "
          "weight_decay=None (Missing value of `weight_decay`, which AdamW "
          "requires: a float, a LearningRateSchedule or a callable; Adam is "
          "AdamW without decay)")
    super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad,
                     weight_decay=weight_decay, state_dtype=state_dtype,
                     stochastic_rounding=stochastic_rounding, fused=fused,
                     name=name, **kwargs)
