"""LAMB: the fused `ResourceApplyLamb` / `ResourceMultiTensorApplyLamb` ops and
their pure-TF twin.

You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
minutes" (2019), Algorithm 2, as TF Model Garden implements it:

    m     <- beta_1 * m + (1 - beta_1) * g
    v     <- beta_2 * v + (1 - beta_2) * g^2
    u      = (m / (1 - beta_1^t)) / (sqrt(v / (1 - beta_2^t)) + epsilon)
             + weight_decay_rate * w
    ratio  = ||w|| / ||u||  if use_layer_adaptation and both norms > 0, else 1
    w     <- w - lr * ratio * u

The norms are over the whole variable (for a DTensor, the global variable).
`multi_tensor_apply_lamb` updates a list of variables with one op per
(device, dtype) group, each variable with its own trust ratio; its results
are those of the per-variable op.
"""

import tensorflow as tf

from tf_opt_plugin.ops import _update

# The ops' scalar hyperparameter inputs, in op order (`learning_rate` feeds
# "lr"); the ops also take `step`.
SCALAR_NAMES = ("lr", "beta_1", "beta_2", "epsilon", "weight_decay_rate")


def resource_apply_lamb(var, m, v, grad, *, learning_rate, beta_1, beta_2,
                        epsilon, weight_decay_rate, step,
                        use_layer_adaptation=True, rounding_key=None,
                        use_locking=True, fused=None):
  """Applies one LAMB step to `var` and its slots `m`, `v` in place.

  Args:
    var: the `tf.Variable` to update (float16, bfloat16, float32, float64).
    m, v: first and second moment slots, shaped like `var`, zero-initialised.
    grad: the gradient, a tensor shaped like `var` or `tf.IndexedSlices`.
    learning_rate, beta_1, beta_2, epsilon, weight_decay_rate: scalars
      (Python numbers, tensors or variables).
    step: the 1-based count of this update.
    use_layer_adaptation: False fixes the trust ratio at 1 (for variables
      excluded from layer adaptation).
    rounding_key: as for `resource_apply_adamw`.
    use_locking: as for `resource_apply_adamw`.
    fused: None, True or False, as for `resource_apply_adamw`.

  Returns:
    The update op in graph mode, None eagerly.

  >>> w = tf.Variable([3.0, 4.0]); m = tf.Variable([0.0, 0.0])
  >>> v = tf.Variable([0.0, 0.0])
  >>> _ = resource_apply_lamb(w, m, v, tf.constant([1.0, 1.0]),
  ...     learning_rate=0.1, beta_1=0.9, beta_2=0.999, epsilon=0.0,
  ...     weight_decay_rate=0.0, step=1)
  >>> [round(float(x), 4) for x in w.numpy()]  # u = [1, 1], ratio = 5/sqrt(2)
  [2.6464, 3.6464]
  """
  return _update.apply_update(
      _RULE, var, dict(m=m, v=v), grad,
      hyperparameters=_RULE.scalars(learning_rate, beta_1, beta_2, epsilon,
                                    weight_decay_rate), step=step,
      flags=dict(use_layer_adaptation=use_layer_adaptation),
      rounding_key=rounding_key, use_locking=use_locking, fused=fused)


def multi_tensor_apply_lamb(variables, ms, vs, grads, *, learning_rate, beta_1,
                            beta_2, epsilon, weight_decay_rate, step,
                            apply_weight_decay=None, use_layer_adaptation=None,
                            rounding_keys=None, use_locking=True, fused=None):
  """One LAMB step for every variable of `variables`, in place.

  Each variable gets its own trust ratio ||w|| / ||u||, as with
  `resource_apply_lamb`; on a GPU the norms are reduced on the device. Groups
  and checks as for `multi_tensor_apply_adamw`.

  Args:
    variables, ms, vs, grads: lists of equal length, as for
      `resource_apply_lamb`.
    learning_rate, beta_1, beta_2, epsilon, weight_decay_rate, step: shared.
    apply_weight_decay: None (all) or one bool per variable; False updates
      that variable as if weight_decay_rate were 0.
    use_layer_adaptation: None (all) or one bool per variable; False fixes
      that variable's trust ratio at 1.
    rounding_keys: as for `multi_tensor_apply_adamw`.
    use_locking: as for `resource_apply_adamw`.
    fused: None, True or False, as for `multi_tensor_apply_adamw`.

  Returns:
    The update op in graph mode, None eagerly.

  >>> ws = [tf.Variable([3.0, 4.0]), tf.Variable([1.0])]
  >>> ms = [tf.Variable(tf.zeros_like(w)) for w in ws]
  >>> vs = [tf.Variable(tf.zeros_like(w)) for w in ws]
  >>> _ = multi_tensor_apply_lamb(ws, ms, vs, [tf.constant([1.0, 1.0]),
  ...     tf.constant([1.0])], learning_rate=0.1, beta_1=0.9, beta_2=0.999,
  ...     epsilon=0.0, weight_decay_rate=0.0, step=1,
  ...     use_layer_adaptation=[True, False])
  >>> [[round(float(x), 4) for x in w.numpy()] for w in ws]
  [[2.6464, 3.6464], [0.9]]
  """
  return _update.apply_multi_tensor_update(
      _RULE, variables, dict(m=ms, v=vs), grads,
      hyperparameters=_RULE.scalars(learning_rate, beta_1, beta_2, epsilon,
                                    weight_decay_rate), step=step,
      per_tensor_flags=dict(apply_weight_decay=apply_weight_decay,
                            use_layer_adaptation=use_layer_adaptation),
      rounding_keys=rounding_keys, use_locking=use_locking, fused=fused)


def _lamb_twin_scalars(*, lr, beta_1, beta_2, epsilon, weight_decay_rate, step):
  """The twin's scalars, derived once per call for all of its variables."""
  t = tf.cast(step, lr.dtype)
  return dict(
      lr=lr,
      beta_1=beta_1,
      beta_2=beta_2,
      epsilon=epsilon,
      one_minus_beta_1=1 - beta_1,
      one_minus_beta_2=1 - beta_2,
      m_correction=1 - tf.pow(beta_1, t),
      v_correction=1 - tf.pow(beta_2, t),
      weight_decay_rate=weight_decay_rate,
      # apply_weight_decay=False: rate 0, as the kernel.
      no_decay=tf.zeros_like(weight_decay_rate),
      one=tf.constant(1, lr.dtype))


def _lamb_twin(var, grad, *, m, v, lr, beta_1, beta_2, epsilon,
               one_minus_beta_1, one_minus_beta_2, m_correction, v_correction,
               weight_decay_rate, no_decay, one, apply_weight_decay=True,
               use_layer_adaptation=True):
  """The same step in plain TF ops (XLA-compilable, DTensor-friendly)."""
  compute = lr.dtype
  if not apply_weight_decay:
    weight_decay_rate = no_decay
  g = tf.cast(grad, compute)
  w = tf.cast(var.read_value(), compute)
  m_new = beta_1 * tf.cast(m.read_value(), compute) + one_minus_beta_1 * g
  v_new = beta_2 * tf.cast(v.read_value(), compute) + one_minus_beta_2 * g * g
  m_hat = m_new / m_correction
  v_hat = v_new / v_correction
  u = m_hat / (tf.sqrt(v_hat) + epsilon) + weight_decay_rate * w
  ratio = one
  if use_layer_adaptation:
    w_norm = tf.norm(w)
    u_norm = tf.norm(u)
    ratio = tf.where(w_norm > 0, tf.where(u_norm > 0, w_norm / u_norm, ratio),
                     ratio)
  m.assign(tf.cast(m_new, m.dtype))
  v.assign(tf.cast(v_new, v.dtype))
  # The kernel's second pass reads the moments back as stored (rounded to the
  # slots' dtype or quantized) to recompute u for the write.
  m_hat = tf.cast(m.stored_value(), compute) / m_correction
  v_hat = tf.cast(v.stored_value(), compute) / v_correction
  u = m_hat / (tf.sqrt(v_hat) + epsilon) + weight_decay_rate * w
  # Narrowed by the staged variable: to nearest, or stochastically.
  return var.assign(w - lr * ratio * u)


_RULE = _update.UpdateRule(
    per_variable_op="resource_apply_lamb",
    multi_tensor_op="resource_multi_tensor_apply_lamb", slot_names=("m", "v"),
    scalar_names=SCALAR_NAMES, takes_step=True,
    per_tensor_flags=("apply_weight_decay", "use_layer_adaptation"),
    twin=_lamb_twin, twin_scalars=_lamb_twin_scalars, state_layouts=True,
    non_negative_slots=("v",))
