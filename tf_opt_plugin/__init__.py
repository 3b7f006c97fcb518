"""tf_opt_plugin: fused, exact LAMB, AdamW, Adafactor and Lion for TensorFlow.

`tf_opt_plugin.ops` holds the algorithm core: one `resource_apply_*` function
per algorithm that runs the fused custom op where it can and a pure-TF twin
with the same numbers everywhere else. `tf_opt_plugin.optimizers` puts
optimizer classes on top of it, for the Keras that `tf.keras` is (Keras 3, or
tf-keras with TF_USE_LEGACY_KERAS=1); they are also importable from here.
`tf_opt_plugin.dtensor` has the same optimizers for DTensor meshes.
"""

from tf_opt_plugin import ops
from tf_opt_plugin import optimizers
from tf_opt_plugin.optimizers import _registry
from tf_opt_plugin.optimizers import LossScaleOptimizer

from tf_opt_plugin._version import __version__

# `tf_opt_plugin.Adam` and the others: one class per algorithm of the
# registry, those of `tf_opt_plugin.optimizers`.
globals().update((name, getattr(optimizers, name)) for name in _registry.NAMES)

__all__ = [
    *_registry.NAMES, "LossScaleOptimizer", "ops", "optimizers", "__version__"
]
