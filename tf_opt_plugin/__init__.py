"""tf_opt_plugin: fused, exact LAMB, AdamW and Adafactor for TensorFlow.

`tf_opt_plugin.ops` holds the algorithm core: one `resource_apply_*` function
per algorithm that runs the fused custom op where it can and a pure-TF twin
with the same numbers everywhere else.
"""

from tf_opt_plugin import ops

__version__ = "0.1.0"

__all__ = ["ops", "__version__"]
