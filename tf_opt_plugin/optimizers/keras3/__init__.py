"""The optimizers as Keras 3 classes (`tf.keras` in TF 2.21 by default).

Each class is an algorithm of `tf_opt_plugin.optimizers` on the Keras 3 base
(`_base.Optimizer`: Keras's `apply()`, distribution-correct), registered for
`.keras` loading under the package name "tf_opt_plugin".
"""

import keras

from tf_opt_plugin.optimizers import adafactor
from tf_opt_plugin.optimizers import adam
from tf_opt_plugin.optimizers import adamw
from tf_opt_plugin.optimizers import lamb
from tf_opt_plugin.optimizers import lion
from tf_opt_plugin.optimizers import sgd
from tf_opt_plugin.optimizers.keras3._base import Optimizer
from tf_opt_plugin.optimizers.keras3.loss_scale_optimizer import (
    LossScaleOptimizer)

_register = keras.saving.register_keras_serializable(package="tf_opt_plugin")


@_register
class SGD(sgd.SGDAlgorithm, Optimizer):
  __doc__ = sgd.SGDAlgorithm.__doc__


@_register
class Adam(adam.AdamAlgorithm, Optimizer):
  __doc__ = adam.AdamAlgorithm.__doc__


@_register
class AdamW(adamw.AdamWAlgorithm, Optimizer):
  __doc__ = adamw.AdamWAlgorithm.__doc__


@_register
class Lamb(lamb.LambAlgorithm, Optimizer):
  __doc__ = lamb.LambAlgorithm.__doc__


@_register
class Adafactor(adafactor.AdafactorAlgorithm, Optimizer):
  __doc__ = adafactor.AdafactorAlgorithm.__doc__


@_register
class Lion(lion.LionAlgorithm, Optimizer):
  __doc__ = lion.LionAlgorithm.__doc__


__all__ = [
    "Adafactor", "Adam", "AdamW", "Lamb", "Lion", "LossScaleOptimizer",
    "Optimizer", "SGD"
]
