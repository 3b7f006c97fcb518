"""AdamW and Adam: the fused `ResourceApplyAdamW` op and its pure-TF twin.

Keras semantics, "epsilon hat" placement (Kingma & Ba, end of section 2):

    w    <- w - lr * weight_decay * w
    m    <- m + (g - m) * (1 - beta_1)
    v    <- v + (g^2 - v) * (1 - beta_2)
    vhat <- max(vhat, v)                                   (amsgrad)
    w    <- w - lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(vhat or v) + epsilon)

With `weight_decay=0` this is exactly `keras.optimizers.Adam`.
"""

import tensorflow as tf

from tf_opt_plugin.ops import _dispatch
from tf_opt_plugin.ops import _inputs
from tf_opt_plugin.ops import _library


def resource_apply_adamw(var, m, v, grad, *, learning_rate, beta_1, beta_2,
                         epsilon, weight_decay, step, vhat=None,
                         use_locking=True, fused=None):
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
    use_locking: hold the variables' locks during the update.
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
  grad = _inputs.as_dense_gradient(grad)
  compute = _inputs.compute_dtype(grad.dtype)
  scalars = _inputs.as_scalars(
      compute, learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
      epsilon=epsilon, weight_decay=weight_decay)
  scalars["step"] = _inputs.as_step(step)
  if _dispatch.use_fused_op(fused, var, grad):
    return _library.load_library().resource_apply_adam_w(
        var=var.handle, m=m.handle, v=v.handle,
        vhat=[] if vhat is None else [vhat.handle], grad=grad,
        use_locking=use_locking, **scalars)
  slots = {"m": m, "v": v}
  if vhat is not None:
    slots["vhat[0]"] = vhat
  _inputs.check_update_inputs(var, slots, grad)
  with tf.control_dependencies(
      _inputs.runtime_checks({"var": var, **slots}, scalars["step"])):
    return _adamw_twin(var, m, v, vhat, grad, **scalars)


def _adamw_twin(var, m, v, vhat, grad, *, lr, beta_1, beta_2, epsilon,
                weight_decay, step):
  """The same step in plain TF ops (XLA-compilable, DTensor-friendly)."""
  compute = lr.dtype
  g = tf.cast(grad, compute)
  w = tf.cast(var.read_value(), compute)
  t = tf.cast(step, compute)
  w = w - w * (lr * weight_decay)
  m_new = tf.cast(m.read_value(), compute)
  m_new = m_new + (g - m_new) * (1 - beta_1)
  v_new = tf.cast(v.read_value(), compute)
  v_new = v_new + (g * g - v_new) * (1 - beta_2)
  updates = [m.assign(tf.cast(m_new, m.dtype)),
             v.assign(tf.cast(v_new, v.dtype))]
  denominator_v = v_new
  if vhat is not None:
    denominator_v = tf.maximum(tf.cast(vhat.read_value(), compute), v_new)
    updates.append(vhat.assign(tf.cast(denominator_v, vhat.dtype)))
  lr_t = lr * tf.sqrt(1 - tf.pow(beta_2, t)) / (1 - tf.pow(beta_1, t))
  w = w - lr_t * m_new / (tf.sqrt(denominator_v) + epsilon)
  updates.append(var.assign(tf.cast(w, var.dtype)))
  return tf.group(*updates)
