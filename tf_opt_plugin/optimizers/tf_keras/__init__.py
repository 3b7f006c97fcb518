"""The optimizers as tf-keras classes (`tf.keras` with TF_USE_LEGACY_KERAS=1).

Each class is an algorithm of `tf_opt_plugin.optimizers` (`_registry.py`) on
the tf-keras base (`_base.Optimizer`), `class Adam(AdamAlgorithm, Optimizer)`,
with tf-keras's API (`minimize`, `apply_gradients`,
`exclude_from_weight_decay`, `finalize_variable_values`, `jit_compile`,
`mesh`, ...) and slot names (`m`, `v`, `vhat`), registered for tf-keras
model loading under the package name "tf_opt_plugin". Importing this module
needs the `tf-keras` package.
"""

import tf_keras

from tf_opt_plugin.optimizers import _registry
from tf_opt_plugin.optimizers.tf_keras._base import Optimizer

# tf-keras's own dynamic loss scaling wraps these classes as it wraps its own
# (`model.compile()` does it under a `mixed_float16` policy); it unscales and
# checks the gradients after tf-keras's cross-replica sum.
LossScaleOptimizer = tf_keras.mixed_precision.LossScaleOptimizer

_registry.define_classes(
    globals(), lambda name, algorithm: (algorithm, Optimizer),
    register=tf_keras.saving.register_keras_serializable(
        package="tf_opt_plugin"))

__all__ = [*_registry.NAMES, "LossScaleOptimizer", "Optimizer"]
