"""SGD with Keras momentum, on TF's built-in fused kernels.

    momentum == 0:  w <- w - lr * g
    otherwise:      b <- momentum * b - lr * g
                    w <- w + b                          (nesterov=False)
                    w <- w + momentum * b - lr * g      (nesterov=True)
"""

import keras

from tf_opt_plugin import _hyperparameters
from tf_opt_plugin import ops
from tf_opt_plugin.optimizers import _base


@keras.saving.register_keras_serializable(package="tf_opt_plugin")
class SGD(_base.Optimizer):
  """Gradient descent with (Nesterov) momentum, Keras's defaults and slots.

  Drop-in for `keras.optimizers.SGD` (slot `momentum` per variable, only when
  `momentum` is not 0). The update runs TF's `ResourceApplyKerasMomentum` /
  `ResourceApplyGradientDescent`; sparse gradients without momentum are
  scattered into the touched rows only.

  Args:
    learning_rate: a float, a `LearningRateSchedule` or a callable.
    momentum: in [0, 1]; 0 is plain gradient descent.
    nesterov: use Nesterov momentum.
    fused: None or True use TF's built-in kernels (the pure-TF twin on
      DTensor variables); False forces the twin.
    **kwargs: the Keras 3 base optimizer arguments.
  """

  def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, *,
               fused=None, name="SGD", **kwargs):
    super().__init__(learning_rate=learning_rate, fused=fused, name=name,
                     **kwargs)
    self.momentum = _hyperparameters.check_number("momentum", momentum)
    if not 0.0 <= self.momentum <= 1.0:
      raise ValueError(
          f"`momentum` must be in [0, 1]. Received: momentum={momentum}")
    self.nesterov = _hyperparameters.check_bool("nesterov", nesterov)

  def build(self, var_list):
    if self.built:
      return
    super().build(var_list)
    self.momentums = []
    if self.momentum != 0:
      self.momentums = self.add_optimizer_variables(var_list, "momentum")

  def update_step(self, gradient, variable, learning_rate):
    return ops.resource_apply_sgd(
        variable,
        self.slot(self.momentums, variable) if self.momentum != 0 else None,
        gradient, learning_rate=learning_rate, momentum=self.momentum,
        nesterov=self.nesterov, fused=self.fused)

  def get_config(self):
    config = super().get_config()
    config.update(momentum=self.momentum, nesterov=self.nesterov)
    return config
