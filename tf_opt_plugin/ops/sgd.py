"""SGD with Keras momentum: TF's built-in fused kernels and a pure-TF twin.

Keras semantics (`keras.optimizers.SGD`):

    momentum == 0:  w <- w - lr * g
    momentum  > 0:  b <- momentum * b - lr * g
                    w <- w + b                         (nesterov=False)
                    w <- w + momentum * b - lr * g     (nesterov=True)

TF's own `ResourceApplyKerasMomentum` / `ResourceApplyGradientDescent` compute
exactly this, on every device and under XLA, so no custom op is needed; the
twin exists for DTensor, where those kernels have no layout propagation.

A sparse gradient without momentum is applied as a scatter (rows without a
gradient do not move, as with the dense gradient). With momentum every row's
buffer decays each step, so a sparse gradient is densified: TF's "lazy"
sparse momentum kernel would leave untouched rows' buffers undecayed and give
a different trajectory than the dense gradient.
"""

import tensorflow as tf

from tf_opt_plugin.ops import _dispatch
from tf_opt_plugin.ops import _inputs


def resource_apply_sgd(var, momentum_buffer, grad, *, learning_rate, momentum,
                       nesterov=False, use_locking=True, fused=None):
  """Applies one SGD (with Keras momentum) step to `var` in place.

  Args:
    var: the `tf.Variable` to update.
    momentum_buffer: the momentum slot shaped like `var`, or None when
      `momentum` is 0.
    grad: a tensor shaped like `var` or `tf.IndexedSlices` (repeated indices
      are summed).
    learning_rate, momentum: scalars (Python numbers, tensors or variables).
    nesterov: use Nesterov momentum.
    use_locking: hold the variables' locks during the update.
    fused: None uses TF's built-in kernels where they run (everywhere except
      DTensor), True insists on them, False forces the pure-TF twin.

  Returns:
    The update op in graph mode, None eagerly.

  >>> w = tf.Variable([1.0, 2.0]); b = tf.Variable([0.0, 0.0])
  >>> for _ in range(2):
  ...   _ = resource_apply_sgd(w, b, tf.constant([1.0, 1.0]),
  ...                          learning_rate=0.1, momentum=0.9)
  >>> [round(float(x), 4) for x in w.numpy()]  # 1 - 0.1 - (0.09 + 0.1)
  [0.71, 1.71]
  """
  if momentum_buffer is None:
    momentum_value = tf.get_static_value(tf.convert_to_tensor(momentum))
    if momentum_value is None or momentum_value != 0:
      raise ValueError(
          "`momentum_buffer` is required when momentum is not 0. Received: "
          f"momentum={momentum}, momentum_buffer=None")
  dtype = tf.as_dtype(var.dtype).base_dtype
  lr = _inputs.as_scalar(learning_rate, dtype, "learning_rate")
  mu = _inputs.as_scalar(momentum, dtype, "momentum")
  use_builtin = _use_builtin_kernel(fused, var)

  if momentum_buffer is None and isinstance(grad, tf.IndexedSlices):
    grad = _inputs.sum_duplicate_indices(grad)
    _inputs.check_sparse_gradient(var, grad)
    # TF's scatter kernel runs wherever the dense kernel does (the twin path
    # would be the same op), so there is only one sparse update.
    return var.scatter_sub(tf.IndexedSlices(grad.values * lr, grad.indices,
                                            grad.dense_shape))

  grad = _inputs.as_dense_gradient(grad)
  slots = {} if momentum_buffer is None else {"momentum_buffer": momentum_buffer}
  _inputs.check_update_inputs(var, slots, grad)
  if use_builtin:
    if momentum_buffer is None:
      return tf.raw_ops.ResourceApplyGradientDescent(
          var=var.handle, alpha=lr, delta=grad, use_locking=use_locking)
    return tf.raw_ops.ResourceApplyKerasMomentum(
        var=var.handle, accum=momentum_buffer.handle, lr=lr, grad=grad,
        momentum=mu, use_locking=use_locking, use_nesterov=nesterov)
  return _sgd_twin(var, momentum_buffer, grad, lr=lr, momentum=mu,
                   nesterov=nesterov)


def _use_builtin_kernel(fused, var):
  if fused is False:
    return False
  if _dispatch.is_dtensor(var):
    if fused:
      raise _dispatch.FusedOpUnavailableError("dtensor")
    return False
  return True


def _sgd_twin(var, momentum_buffer, grad, *, lr, momentum, nesterov):
  """The same step in plain TF ops (DTensor-friendly)."""
  if momentum_buffer is None:
    return var.assign_sub(grad * lr)
  buffer = momentum_buffer.assign(momentum_buffer.read_value() * momentum
                                  - grad * lr)
  if nesterov:
    return var.assign_add(buffer * momentum - grad * lr)
  return var.assign_add(buffer)
