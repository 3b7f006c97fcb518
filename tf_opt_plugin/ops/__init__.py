"""The algorithm core of tf_opt_plugin: one function per optimizer update.

Each `resource_apply_*` function updates a variable and its slots in place,
with the fused custom op where it can run and with a pure-TF twin that
computes the same numbers everywhere else (XLA, DTensor, other devices,
library not loaded). The Keras 3, tf-keras and DTensor optimizer classes are
thin front ends over these functions. `multi_tensor_apply_*` update a list of
variables with one op per (device, dtype) group.

Each algorithm's functions and twin live in one module (`adamw.py`, `lamb.py`,
`adafactor.py`, `lion.py`, `sgd.py`); `_update.py` is the one body they share
(convert, dispatch, validate, fused op or twin).
"""

from tf_opt_plugin.ops._dispatch import DISABLE_ENV
from tf_opt_plugin.ops._dispatch import dispatch_reason
from tf_opt_plugin.ops._dispatch import FusedOpUnavailableError
from tf_opt_plugin.ops._grouping import multi_tensor_groups
from tf_opt_plugin.ops._grouping import MultiTensorGroup
from tf_opt_plugin.ops._library import library_path
from tf_opt_plugin.ops._library import load_library
from tf_opt_plugin.ops._library import LibraryLoadError
from tf_opt_plugin.ops._quantization import stochastic_rounding_key
from tf_opt_plugin.ops._state import absmax_shape
from tf_opt_plugin.ops._state import QuantizedState
from tf_opt_plugin.ops._state import state_layout
from tf_opt_plugin.ops import adafactor
from tf_opt_plugin.ops import adamw
from tf_opt_plugin.ops import lamb
from tf_opt_plugin.ops import lion
from tf_opt_plugin.ops.adafactor import accumulator_shapes
from tf_opt_plugin.ops.adafactor import resource_apply_adafactor
from tf_opt_plugin.ops.adamw import multi_tensor_apply_adamw
from tf_opt_plugin.ops.adamw import resource_apply_adamw
from tf_opt_plugin.ops.lamb import multi_tensor_apply_lamb
from tf_opt_plugin.ops.lamb import resource_apply_lamb
from tf_opt_plugin.ops.lion import multi_tensor_apply_lion
from tf_opt_plugin.ops.lion import resource_apply_lion
from tf_opt_plugin.ops.sgd import resource_apply_sgd

# The `UpdateRule` of every algorithm with custom ops (SGD runs TF's own): the
# op library must define every op they name (`_library.required_ops`).
UPDATE_RULES = (adamw._RULE, lamb._RULE, adafactor._RULE, lion._RULE)  # pylint: disable=protected-access

__all__ = [
    "DISABLE_ENV",
    "FusedOpUnavailableError",
    "LibraryLoadError",
    "MultiTensorGroup",
    "QuantizedState",
    "absmax_shape",
    "accumulator_shapes",
    "dispatch_reason",
    "library_path",
    "load_library",
    "multi_tensor_apply_adamw",
    "multi_tensor_apply_lamb",
    "multi_tensor_apply_lion",
    "multi_tensor_groups",
    "resource_apply_adafactor",
    "resource_apply_adamw",
    "resource_apply_lamb",
    "resource_apply_lion",
    "resource_apply_sgd",
    "state_layout",
    "stochastic_rounding_key",
]
