"""The optimizers as Keras 3 classes (`tf.keras` in TF 2.21 by default).

Each class is an algorithm of `tf_opt_plugin.optimizers` (`_registry.py`) on
the Keras 3 base (`_base.Optimizer`: Keras's `apply()`,
distribution-correct), `class Adam(AdamAlgorithm, Optimizer)`, registered for
`.keras` loading under the package name "tf_opt_plugin".
"""

import keras

from tf_opt_plugin.optimizers import _registry
from tf_opt_plugin.optimizers.keras3._base import Optimizer
from tf_opt_plugin.optimizers.keras3.loss_scale_optimizer import (
    LossScaleOptimizer)

_registry.define_classes(
    globals(), lambda name, algorithm: (algorithm, Optimizer),
    register=keras.saving.register_keras_serializable(package="tf_opt_plugin"))

__all__ = [*_registry.NAMES, "LossScaleOptimizer", "Optimizer"]
