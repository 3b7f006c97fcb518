"""The optimizers, as classes of the Keras that `tf.keras` is.

Each algorithm (`sgd.py`, `adam.py`, `adamw.py`, `lamb.py`, `adafactor.py`,
`lion.py`) is written once, as a mixin over `_host.AlgorithmHost`, and updates
its variables with `tf_opt_plugin.ops` calls: the fused kernel where it can
run, the pure-TF twin (same numbers, same slots) elsewhere. Constructor
arguments are checked by `_hyperparameters.py`. `_registry.py` lists the
algorithms, one line each; every front end builds one class per line on its
base class:

  * `tf_opt_plugin.optimizers.keras3`: Keras 3 (`tf.keras` in TF 2.21);
  * `tf_opt_plugin.optimizers.tf_keras`: tf-keras (`TF_USE_LEGACY_KERAS=1`);
  * `tf_opt_plugin.dtensor`: tf-keras classes on a DTensor mesh.

The names exported here are those of the front end `tf.keras` resolves to,
so `model.compile(optimizer=tf_opt_plugin.optimizers.Adam())` works with
either Keras. tf-keras is optional: without it only the Keras 3 classes exist.
"""

import importlib.util
import os


def _tf_keras_is_legacy():
  """Whether `tf.keras` is tf-keras, by TensorFlow's own rule (lazy_loader)."""
  return (os.environ.get("TF_USE_LEGACY_KERAS") in ("true", "True", "1") and
          importlib.util.find_spec("tf_keras") is not None)


from tf_opt_plugin.optimizers import _registry

if _tf_keras_is_legacy():
  FLAVOUR = "tf_keras"
  from tf_opt_plugin.optimizers.tf_keras import *  # pylint: disable=wildcard-import
  from tf_opt_plugin.optimizers.tf_keras import Optimizer
else:
  FLAVOUR = "keras3"
  from tf_opt_plugin.optimizers.keras3 import *  # pylint: disable=wildcard-import
  from tf_opt_plugin.optimizers.keras3 import Optimizer

__all__ = [*_registry.NAMES, "FLAVOUR", "LossScaleOptimizer", "Optimizer"]
