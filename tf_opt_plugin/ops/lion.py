"""Lion: the fused `ResourceApplyLion` / `ResourceMultiTensorApplyLion` ops and
their pure-TF twin.

Chen et al., "Symbolic Discovery of Optimization Algorithms" (2023),
Algorithm 2, with Keras's decoupled weight decay applied first:

    c  = beta_1 * m + (1 - beta_1) * g
    w <- w - lr * weight_decay * w
    w <- w - lr * sign(c)                 (sign(0) = 0)
    m <- beta_2 * m + (1 - beta_2) * g

Every update moves each element by exactly lr (or 0), whatever the scale of
the gradient; the one slot `m` is an interpolation of past gradients, read
with beta_1 and written with beta_2. No step count enters the update.

Rounding follows `keras.optimizers.Lion` as its training steps run, in a
tf.function: `m * beta_1 + g * (1 - beta_1)`, `w - w * (lr * weight_decay)`,
`w - lr * sign(c)`, `m * beta_2 + g * (1 - beta_2)`. (Keras writes the decay
`w - w * weight_decay * lr`; in a graph TensorFlow's arithmetic optimizer
regroups that chain of products as `w * (weight_decay * lr)`, one broadcast
instead of two, so only eager Keras rounds `w * weight_decay` first.) Written
in that grouped form the twin rounds the same way eagerly, in a tf.function
and in the fused kernel, and float32 results equal Keras's to the last bit.
"""

import tensorflow as tf

from tf_opt_plugin.ops import _update

# The ops' scalar hyperparameter inputs, in op order (`learning_rate` feeds
# "lr"). Lion takes no step.
SCALAR_NAMES = ("lr", "beta_1", "beta_2", "weight_decay")


def resource_apply_lion(var, m, grad, *, learning_rate, beta_1, beta_2,
                        weight_decay, rounding_key=None, use_locking=True,
                        fused=None):
  """Applies one Lion step to `var` and its slot `m` in place.

  Args:
    var: the `tf.Variable` to update (float16, bfloat16, float32, float64).
    m: the momentum slot, shaped like `var`, zero-initialised.
    grad: the gradient, a tensor shaped like `var` or `tf.IndexedSlices`
      (repeated indices are summed; every row's `m` still decays, as with
      the dense gradient).
    learning_rate, beta_1, beta_2, weight_decay: scalars (Python numbers,
      tensors or variables).
    rounding_key: as for `resource_apply_adamw`.
    use_locking: as for `resource_apply_adamw`.
    fused: None, True or False, as for `resource_apply_adamw`.

  Returns:
    The update op in graph mode, None eagerly.

  >>> w = tf.Variable([1.0, -2.0]); m = tf.Variable([0.0, 0.0])
  >>> _ = resource_apply_lion(w, m, tf.constant([0.5, -0.5]),
  ...     learning_rate=0.1, beta_1=0.9, beta_2=0.99, weight_decay=0.0)
  >>> [round(float(x), 4) for x in w.numpy()]  # each element moves by lr
  [0.9, -1.9]
  >>> [round(float(x), 4) for x in m.numpy()]  # (1 - beta_2) * g
  [0.005, -0.005]
  """
  return _update.apply_update(
      _RULE, var, dict(m=m), grad,
      hyperparameters=_RULE.scalars(learning_rate, beta_1, beta_2,
                                    weight_decay), rounding_key=rounding_key,
      use_locking=use_locking, fused=fused)


def multi_tensor_apply_lion(variables, ms, grads, *, learning_rate, beta_1,
                            beta_2, weight_decay, apply_weight_decay=None,
                            rounding_keys=None, use_locking=True, fused=None):
  """One Lion step for every variable of `variables`, in place.

  Variables are grouped by (device, dtype) (`multi_tensor_groups`); each
  group runs as one `ResourceMultiTensorApplyLion` op where the fused op can
  run (its results are those of the per-variable op), else as the pure-TF
  twin of each variable. Every input is checked before any variable is
  written.

  Args:
    variables, ms, grads: lists of equal length: the variables, their
      momentum slots and their gradients (tensors or `tf.IndexedSlices`), as
      for `resource_apply_lion`.
    learning_rate, beta_1, beta_2, weight_decay: shared by all variables.
    apply_weight_decay: None (decay for all) or one bool per variable; False
      updates that variable as if weight_decay were 0 (exclusion lists).
    rounding_keys: as for `multi_tensor_apply_adamw`.
    use_locking: as for `resource_apply_adamw`.
    fused: None, True or False, as for `multi_tensor_apply_adamw`.

  Returns:
    The update op in graph mode, None eagerly.

  >>> ws = [tf.Variable([1.0, -2.0]), tf.Variable([4.0])]
  >>> ms = [tf.Variable(tf.zeros_like(w)) for w in ws]
  >>> _ = multi_tensor_apply_lion(ws, ms, [tf.constant([0.5, -0.5]),
  ...     tf.constant([0.0])], learning_rate=0.1, beta_1=0.9, beta_2=0.99,
  ...     weight_decay=0.5, apply_weight_decay=[True, False])
  >>> # decayed by lr * weight_decay = 5 %, then moved by lr; a zero
  >>> # gradient and momentum (sign 0) and no decay leave 4.0 as it was.
  >>> [[round(float(x), 4) for x in w.numpy()] for w in ws]
  [[0.85, -1.8], [4.0]]
  """
  return _update.apply_multi_tensor_update(
      _RULE, variables, dict(m=ms), grads,
      hyperparameters=_RULE.scalars(learning_rate, beta_1, beta_2,
                                    weight_decay),
      per_tensor_flags=dict(apply_weight_decay=apply_weight_decay),
      rounding_keys=rounding_keys, use_locking=use_locking, fused=fused)


def _lion_twin_scalars(*, lr, beta_1, beta_2, weight_decay):
  """The twin's scalars, derived once per call for all of its variables."""
  return dict(
      lr=lr,
      beta_1=beta_1,
      beta_2=beta_2,
      one_minus_beta_1=1 - beta_1,
      one_minus_beta_2=1 - beta_2,
      lr_times_decay=lr * weight_decay,
      # apply_weight_decay=False: decay 0, as the kernel (w * 0 keeps NaNs).
      lr_times_no_decay=lr * tf.zeros_like(weight_decay))


def _lion_twin(var, grad, *, m, lr, beta_1, beta_2, one_minus_beta_1,
               one_minus_beta_2, lr_times_decay, lr_times_no_decay,
               apply_weight_decay=True):
  """The same step in plain TF ops (XLA-compilable, DTensor-friendly)."""
  compute = lr.dtype
  g = tf.cast(grad, compute)
  w = tf.cast(var.read_value(), compute)
  m_old = tf.cast(m.read_value(), compute)
  interpolated = m_old * beta_1 + g * one_minus_beta_1
  w = w - w * (lr_times_decay if apply_weight_decay else lr_times_no_decay)
  w = w - lr * tf.sign(interpolated)
  m_new = m_old * beta_2 + g * one_minus_beta_2
  return tf.group(m.assign(tf.cast(m_new, m.dtype)),
                  var.assign(w))  # narrowed as the staged variable rounds


_RULE = _update.UpdateRule(per_variable_op="resource_apply_lion",
                           multi_tensor_op="resource_multi_tensor_apply_lion",
                           slot_names=("m",), scalar_names=SCALAR_NAMES,
                           takes_step=False,
                           per_tensor_flags=("apply_weight_decay",),
                           twin=_lion_twin, twin_scalars=_lion_twin_scalars,
                           state_layouts=True)
