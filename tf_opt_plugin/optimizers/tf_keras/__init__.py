"""The optimizers as tf-keras classes (`tf.keras` with TF_USE_LEGACY_KERAS=1).

Each class is an algorithm of `tf_opt_plugin.optimizers` on the tf-keras base
(`_base.Optimizer`), with tf-keras's API (`minimize`, `apply_gradients`,
`exclude_from_weight_decay`, `finalize_variable_values`, `jit_compile`,
`mesh`, ...) and slot names (`m`, `v`, `vhat`), registered for tf-keras
model loading under the package name "tf_opt_plugin". Importing this module
needs the `tf-keras` package.
"""

import tf_keras

from tf_opt_plugin.optimizers import adafactor
from tf_opt_plugin.optimizers import adam
from tf_opt_plugin.optimizers import adamw
from tf_opt_plugin.optimizers import lamb
from tf_opt_plugin.optimizers import lion
from tf_opt_plugin.optimizers import sgd
from tf_opt_plugin.optimizers.tf_keras._base import Optimizer

_register = tf_keras.saving.register_keras_serializable(package="tf_opt_plugin")

# tf-keras's own dynamic loss scaling wraps these classes as it wraps its own
# (`model.compile()` does it under a `mixed_float16` policy); it unscales and
# checks the gradients after tf-keras's cross-replica sum.
LossScaleOptimizer = tf_keras.mixed_precision.LossScaleOptimizer


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
