"""SGD with Keras momentum, on TF's built-in fused kernels.

    momentum == 0:  w <- w - lr * g
    otherwise:      b <- momentum * b - lr * g
                    w <- w + b                          (nesterov=False)
                    w <- w + momentum * b - lr * g      (nesterov=True)
"""

from tf_opt_plugin.optimizers import _hyperparameters
from tf_opt_plugin import ops

# Keras's rule and message.
_check_momentum = _hyperparameters.check_range(
    lambda momentum: 0.0 <= momentum <= 1.0, "a float between [0, 1]")


class SGDAlgorithm:
  """Gradient descent with (Nesterov) momentum, Keras's defaults and slots.

  Drop-in for Keras's `SGD` (slot `momentum` per variable, `m` in tf-keras,
  only when `momentum` is not 0). The update runs TF's
  `ResourceApplyKerasMomentum` / `ResourceApplyGradientDescent`; sparse
  gradients without momentum are scattered into the touched rows only.

  Args:
    learning_rate: a float, a `LearningRateSchedule` or a callable.
    momentum: in [0, 1]; 0 is plain gradient descent.
    nesterov: use Nesterov momentum.
    fused: None or True use TF's built-in kernels (the pure-TF twin on
      DTensor variables); False forces the twin.
    name: the optimizer's name (the front end's default when None).
    **kwargs: the front end's base optimizer arguments.

  >>> import tf_opt_plugin as top
  >>> w = tf.Variable(1.0)
  >>> opt = top.SGD(learning_rate=0.1, momentum=0.9)
  >>> for _ in range(2):
  ...   _ = opt.apply_gradients([(tf.constant(1.0), w)])
  >>> round(float(w.numpy()), 4)  # steps of 0.1, then 0.1 + 0.9 * 0.1
  0.71
  """

  HYPERPARAMETER_CHECKS = {
      "momentum": _check_momentum,
      "nesterov": _hyperparameters.check_bool,
  }

  def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, *,
               fused=None, name=None, **kwargs):
    super().__init__(learning_rate, fused=fused, name=name, **kwargs)
    self.set_hyperparameters(momentum=momentum, nesterov=nesterov)

  def build(self, var_list):
    if self.built:
      return
    super().build(var_list)
    self.momentums = []
    if self.momentum != 0:
      self.momentums, = self.add_slots(var_list, ("momentum",))

  def update_step(self, gradient, variable, learning_rate=None):
    """One SGD step of `variable`; `learning_rate` None: the current one."""
    return ops.resource_apply_sgd(
        variable,
        self.slot(self.momentums, variable) if self.momentum != 0 else None,
        gradient, learning_rate=self.learning_rate_for_step(learning_rate),
        momentum=self.momentum, nesterov=self.nesterov, fused=self.fused)
