"""LAMB: the fused `ResourceApplyLamb` op and its pure-TF twin.

You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
minutes" (2019), Algorithm 2, as TF Model Garden implements it:

    m     <- beta_1 * m + (1 - beta_1) * g
    v     <- beta_2 * v + (1 - beta_2) * g^2
    u      = (m / (1 - beta_1^t)) / (sqrt(v / (1 - beta_2^t)) + epsilon)
             + weight_decay_rate * w
    ratio  = ||w|| / ||u||  if use_layer_adaptation and both norms > 0, else 1
    w     <- w - lr * ratio * u

The norms are over the whole variable (for a DTensor, the global variable).
"""

import tensorflow as tf

from tf_opt_plugin.ops import _dispatch
from tf_opt_plugin.ops import _inputs
from tf_opt_plugin.ops import _library


def resource_apply_lamb(var, m, v, grad, *, learning_rate, beta_1, beta_2,
                        epsilon, weight_decay_rate, step,
                        use_layer_adaptation=True, use_locking=True,
                        fused=None):
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
    use_locking: hold the variables' locks during the update.
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
  grad = _inputs.as_dense_gradient(grad)
  compute = _inputs.compute_dtype(grad.dtype)
  scalars = _inputs.as_scalars(
      compute, learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
      epsilon=epsilon, weight_decay_rate=weight_decay_rate)
  scalars["step"] = _inputs.as_step(step)
  if _dispatch.use_fused_op(fused, var, grad):
    return _library.load_library().resource_apply_lamb(
        var=var.handle, m=m.handle, v=v.handle, grad=grad,
        use_layer_adaptation=use_layer_adaptation, use_locking=use_locking,
        **scalars)
  slots = {"m": m, "v": v}
  _inputs.check_update_inputs(var, slots, grad)
  with tf.control_dependencies(
      _inputs.runtime_checks({"var": var, **slots}, scalars["step"])):
    return _lamb_twin(var, m, v, grad,
                      use_layer_adaptation=use_layer_adaptation, **scalars)


def _lamb_twin(var, m, v, grad, *, lr, beta_1, beta_2, epsilon,
               weight_decay_rate, step, use_layer_adaptation):
  """The same step in plain TF ops (XLA-compilable, DTensor-friendly)."""
  compute = lr.dtype
  g = tf.cast(grad, compute)
  w = tf.cast(var.read_value(), compute)
  t = tf.cast(step, compute)
  m_new = beta_1 * tf.cast(m.read_value(), compute) + (1 - beta_1) * g
  v_new = beta_2 * tf.cast(v.read_value(), compute) + (1 - beta_2) * g * g
  m_hat = m_new / (1 - tf.pow(beta_1, t))
  v_hat = v_new / (1 - tf.pow(beta_2, t))
  u = m_hat / (tf.sqrt(v_hat) + epsilon) + weight_decay_rate * w
  ratio = tf.constant(1, compute)
  if use_layer_adaptation:
    w_norm = tf.norm(w)
    u_norm = tf.norm(u)
    ratio = tf.where(w_norm > 0,
                     tf.where(u_norm > 0, w_norm / u_norm, ratio), ratio)
  return tf.group(
      m.assign(tf.cast(m_new, m.dtype)),
      v.assign(tf.cast(v_new, v.dtype)),
      var.assign(tf.cast(w - lr * ratio * u, var.dtype)))
