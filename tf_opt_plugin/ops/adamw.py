"""AdamW and Adam: the fused `ResourceApplyAdamW` and
`ResourceMultiTensorApplyAdamW` ops and their pure-TF twin.

Keras semantics, "epsilon hat" placement (Kingma & Ba, end of section 2):

    w    <- w - lr * weight_decay * w
    m    <- m + (g - m) * (1 - beta_1)
    v    <- v + (g^2 - v) * (1 - beta_2)
    vhat <- max(vhat, v)                                   (amsgrad)
    w    <- w - lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(vhat or v) + epsilon)

With `weight_decay=0` this is exactly `keras.optimizers.Adam`.
`multi_tensor_apply_adamw` updates a list of variables with one op per
(device, dtype) group: on a GPU one kernel launch for the group, after NVIDIA
apex's multi_tensor_apply; its results are those of the per-variable op.
"""

import tensorflow as tf

from tf_opt_plugin.ops import _update

# The ops' scalar hyperparameter inputs, in op order (`learning_rate` feeds
# "lr"); the ops also take `step`.
SCALAR_NAMES = ("lr", "beta_1", "beta_2", "epsilon", "weight_decay")


def resource_apply_adamw(var, m, v, grad, *, learning_rate, beta_1, beta_2,
                         epsilon, weight_decay, step, vhat=None,
                         rounding_key=None, use_locking=True, fused=None):
  """Applies one AdamW step to `var` and its slots `m`, `v` (`vhat`) in place.

  Args:
    var: the `tf.Variable` to update (float16, bfloat16, float32, float64).
    m, v: first and second moment slots, shaped like `var`, zero-initialised.
    grad: the gradient, a tensor shaped like `var` or `tf.IndexedSlices`
      (repeated indices are summed first).
    learning_rate, beta_1, beta_2, epsilon, weight_decay: scalars (Python
      numbers, tensors or variables).
    step: the 1-based count of this update (`iterations + 1` in Keras).
    vhat: the amsgrad slot (running maximum of `v`), or None for Adam(W).
    rounding_key: None rounds the updated variable to nearest; a uint32 key
      (`stochastic_rounding_key(seed, step, variable_id)`) rounds a bfloat16
      variable stochastically: unbiased, the same bits for the same key
      (ignored for other dtypes).
    use_locking: serialise concurrent updates of the same variables: the
      fused op holds their locks for the whole update, the twin, eagerly, a
      lock per variable; inside a graph the twin's reads and writes are each
      atomic, but two calls running at once may interleave them (README,
      "Concurrent updates").
    fused: None runs the custom op where it can run and the pure-TF twin
      elsewhere; True insists on the op (raises `FusedOpUnavailableError`
      saying why it cannot run); False forces the twin.

  Returns:
    The update op in graph mode, None eagerly.

  >>> w = tf.Variable([1.0, 2.0]); m = tf.Variable([0.0, 0.0])
  >>> v = tf.Variable([0.0, 0.0])
  >>> _ = resource_apply_adamw(w, m, v, tf.constant([0.1, 0.1]),
  ...     learning_rate=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
  ...     weight_decay=0.0, step=1)
  >>> [round(float(x), 4) for x in w.numpy()]
  [0.9, 1.9]
  """
  return _update.apply_update(
      _RULE, var, dict(m=m, v=v, vhat=vhat), grad,
      hyperparameters=_RULE.scalars(learning_rate, beta_1, beta_2, epsilon,
                                    weight_decay), step=step,
      rounding_key=rounding_key, use_locking=use_locking, fused=fused)


def multi_tensor_apply_adamw(variables, ms, vs, grads, *, learning_rate, beta_1,
                             beta_2, epsilon, weight_decay, step, vhats=None,
                             apply_weight_decay=None, rounding_keys=None,
                             use_locking=True, fused=None):
  """One AdamW step for every variable of `variables`, in place.

  Variables are grouped by (device, dtype) (`multi_tensor_groups`); each
  group runs as one `ResourceMultiTensorApplyAdamW` op where the fused op can
  run, else as the pure-TF twin of each variable. Every input is checked
  before any variable is written; empty lists are a no-op.

  Args:
    variables, ms, vs, grads: lists of equal length: the variables, their
      first and second moment slots and their gradients (tensors or
      `tf.IndexedSlices`), as for `resource_apply_adamw`.
    learning_rate, beta_1, beta_2, epsilon, weight_decay, step: shared by all
      variables, as for `resource_apply_adamw`.
    vhats: None (Adam / AdamW) or the amsgrad slots, one per variable.
    apply_weight_decay: None (decay for all) or one bool per variable; False
      updates that variable as if weight_decay were 0 (exclusion lists).
    rounding_keys: None, or one key per variable (see `rounding_key` of
      `resource_apply_adamw`).
    use_locking: as for `resource_apply_adamw`.
    fused: None runs the multi-tensor op where it can run and the twins
      elsewhere; True insists on fused ops (raises `FusedOpUnavailableError`
      for a variable where none can run, before any variable is updated);
      False runs every variable's pure-TF twin.

  Returns:
    The update op in graph mode, None eagerly.

  >>> ws = [tf.Variable([1.0, 2.0]), tf.Variable([3.0])]
  >>> ms = [tf.Variable(tf.zeros_like(w)) for w in ws]
  >>> vs = [tf.Variable(tf.zeros_like(w)) for w in ws]
  >>> _ = multi_tensor_apply_adamw(ws, ms, vs, [tf.constant([0.1, 0.1]),
  ...     tf.constant([0.1])], learning_rate=0.1, beta_1=0.9, beta_2=0.999,
  ...     epsilon=1e-7, weight_decay=0.0, step=1)
  >>> [[round(float(x), 4) for x in w.numpy()] for w in ws]
  [[0.9, 1.9], [2.9]]
  """
  return _update.apply_multi_tensor_update(
      _RULE, variables, dict(m=ms, v=vs, vhat=vhats), grads,
      hyperparameters=_RULE.scalars(learning_rate, beta_1, beta_2, epsilon,
                                    weight_decay), step=step,
      per_tensor_flags=dict(apply_weight_decay=apply_weight_decay),
      rounding_keys=rounding_keys, use_locking=use_locking, fused=fused)


def _adamw_twin_scalars(*, lr, beta_1, beta_2, epsilon, weight_decay, step):
  """The twin's scalars, derived once per call for all of its variables."""
  t = tf.cast(step, lr.dtype)
  return dict(
      lr_times_decay=lr * weight_decay,
      # apply_weight_decay=False: decay 0, as the kernel (w * 0 keeps NaNs).
      lr_times_no_decay=lr * tf.zeros_like(weight_decay),
      one_minus_beta_1=1 - beta_1,
      one_minus_beta_2=1 - beta_2,
      epsilon=epsilon,
      lr_t=lr * tf.sqrt(1 - tf.pow(beta_2, t)) / (1 - tf.pow(beta_1, t)))


def _adamw_twin(var, grad, *, m, v, vhat, lr_times_decay, lr_times_no_decay,
                one_minus_beta_1, one_minus_beta_2, epsilon, lr_t,
                apply_weight_decay=True):
  """The same step in plain TF ops (XLA-compilable, DTensor-friendly)."""
  compute = lr_t.dtype
  g = tf.cast(grad, compute)
  w = tf.cast(var.read_value(), compute)
  w = w - w * (lr_times_decay if apply_weight_decay else lr_times_no_decay)
  m_new = tf.cast(m.read_value(), compute)
  m_new = m_new + (g - m_new) * one_minus_beta_1
  v_new = tf.cast(v.read_value(), compute)
  v_new = v_new + (g * g - v_new) * one_minus_beta_2
  updates = [
      m.assign(tf.cast(m_new, m.dtype)),
      v.assign(tf.cast(v_new, v.dtype)),
  ]
  denominator_v = v_new
  if vhat is not None:
    denominator_v = tf.maximum(tf.cast(vhat.read_value(), compute), v_new)
    updates.append(vhat.assign(tf.cast(denominator_v, vhat.dtype)))
  w = w - lr_t * m_new / (tf.sqrt(denominator_v) + epsilon)
  # Narrowed by the staged variable: to nearest, or stochastically.
  updates.append(var.assign(w))
  return tf.group(*updates)


_RULE = _update.UpdateRule(per_variable_op="resource_apply_adam_w",
                           multi_tensor_op="resource_multi_tensor_apply_adam_w",
                           slot_names=("m", "v", "vhat"), list_slots=("vhat",),
                           scalar_names=SCALAR_NAMES, takes_step=True,
                           per_tensor_flags=("apply_weight_decay",),
                           twin=_adamw_twin, twin_scalars=_adamw_twin_scalars,
                           state_layouts=True, non_negative_slots=("v", "vhat"))
