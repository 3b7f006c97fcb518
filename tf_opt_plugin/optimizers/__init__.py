"""Keras 3 optimizers on the tf_opt_plugin algorithm core.

Each class subclasses `keras.optimizers.Optimizer`, keeps Keras's arguments,
defaults and slot variables, and updates every variable with one
`tf_opt_plugin.ops.resource_apply_*` call: the fused kernel where it can run,
the pure-TF twin (same numbers, same slots) elsewhere.
"""

from tf_opt_plugin.optimizers._base import Optimizer
from tf_opt_plugin.optimizers.adafactor import Adafactor
from tf_opt_plugin.optimizers.adam import Adam
from tf_opt_plugin.optimizers.adamw import AdamW
from tf_opt_plugin.optimizers.lamb import Lamb
from tf_opt_plugin.optimizers.loss_scale_optimizer import LossScaleOptimizer
from tf_opt_plugin.optimizers.sgd import SGD

__all__ = ["Adafactor", "Adam", "AdamW", "Lamb", "LossScaleOptimizer",
           "Optimizer", "SGD"]
