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
from tf_opt_plugin.ops import _update


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
    use_locking: as for `resource_apply_adamw`.
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
  return _apply_sgd(var, momentum_buffer, grad, learning_rate=learning_rate,
                    momentum=momentum, nesterov=nesterov,
                    use_locking=use_locking, fused=fused)


# Builds ops with no tensor-dependent Python control flow: AutoGraph, inside
# a tf.function, has nothing to convert (and must not rewrite its checks).
@tf.autograph.experimental.do_not_convert
def _apply_sgd(var, momentum_buffer, grad, *, learning_rate, momentum, nesterov,
               use_locking, fused):  # fmt: skip
  """`resource_apply_sgd`."""
  fused = _inputs.check_fused(fused)
  use_locking = _inputs.check_bool("use_locking", use_locking)
  nesterov = _inputs.check_bool("nesterov", nesterov)
  _inputs.check_variable_object(var, "var")
  named = [("var", var)]
  if momentum_buffer is not None:
    _inputs.check_variable_object(momentum_buffer, "momentum_buffer")
    named.append(("momentum_buffer", momentum_buffer))
  _inputs.check_distinct(named)
  checks = _inputs.Checks([var])
  dtype = tf.as_dtype(var.dtype).base_dtype
  lr = _inputs.as_scalar(learning_rate, dtype, "learning_rate", checks)
  mu = _inputs.as_scalar(momentum, dtype, "momentum", checks)
  if momentum_buffer is None:
    momentum_value = tf.get_static_value(mu)
    if momentum_value is None or momentum_value != 0:
      raise ValueError(
          "`momentum_buffer` is required when momentum is not 0. Received: "
          f"momentum={momentum}, momentum_buffer=None")
  use_builtin = _use_builtin_kernel(fused, var)

  if momentum_buffer is None and isinstance(grad, tf.IndexedSlices):
    # TF's scatter writes the rows before a bad index: check them first.
    _inputs.check_sparse_indices(grad, var, checks)
    with tf.control_dependencies(checks.ops):
      grad = _inputs.sum_duplicate_indices(grad)
      _inputs.check_sparse_gradient(var, grad)
      # TF's scatter kernel runs wherever the dense kernel does (the twin
      # path would be the same op), so there is only one sparse update.
      return var.scatter_sub(
          tf.IndexedSlices(grad.values * lr, grad.indices, grad.dense_shape))

  grad = _inputs.as_dense_gradient(grad, var, checks)
  slots = ({} if momentum_buffer is None else {
      "momentum_buffer": momentum_buffer
  })
  # TF's kernels check shapes and initialisation themselves; the twin's
  # checks come first.
  checks.kernel_validates = use_builtin
  grad = _inputs.check_update_inputs(var, slots, grad, checks)
  _inputs.check_initialized(named, checks)
  with tf.control_dependencies(checks.ops):
    if use_builtin:
      if momentum_buffer is None:
        return tf.raw_ops.ResourceApplyGradientDescent(var=var.handle, alpha=lr,
                                                       delta=grad,
                                                       use_locking=use_locking)
      return tf.raw_ops.ResourceApplyKerasMomentum(
          var=var.handle, accum=momentum_buffer.handle, lr=lr, grad=grad,
          momentum=mu, use_locking=use_locking, use_nesterov=nesterov)
    with _update.hold_twin_locks([v for _, v in named], use_locking):
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
  buffer = momentum_buffer.assign(momentum_buffer.read_value() * momentum -
                                  grad * lr)
  if nesterov:
    return var.assign_add(buffer * momentum - grad * lr)
  return var.assign_add(buffer)
