"""The registered ops: their public signatures, and one list of scalar names.

Each op's inputs and attrs are pinned to the signature users know (the
registrations are generated from each algorithm's hyperparameter struct, so a
change there must show here), and each algorithm's `SCALAR_NAMES` (what the
Python wrapper feeds) must equal the op's `Tscalar` inputs, in order.
"""

import pytest
from tensorflow.python.framework import op_def_registry

import tf_opt_plugin.ops as ops
from tf_opt_plugin.ops import adafactor
from tf_opt_plugin.ops import adamw
from tf_opt_plugin.ops import lamb
from tf_opt_plugin.ops import lion

_ADAMW_SCALARS = ["lr", "beta_1", "beta_2", "epsilon", "weight_decay"]
_LAMB_SCALARS = ["lr", "beta_1", "beta_2", "epsilon", "weight_decay_rate"]
_LION_SCALARS = ["lr", "beta_1", "beta_2", "weight_decay"]
_ADAFACTOR_SCALARS = [
    "lr", "beta_2_decay", "epsilon_1", "epsilon_2", "clip_threshold"
]

# How the slots are stored (tensor_list.h, StateLayout: the 8-bit absmax
# list and the layout) and the variable rounded (the stochastic-rounding
# keys), on every tensor-list op.
_ABSMAX = "absmax: num_absmax"
_KEYS = "rounding_key: num_rounding_keys"
_STATE_ATTRS = ["num_absmax", "num_rounding_keys", "state_dtype"]

# op name: (inputs as "name" or "name: count attr", attrs), as published.
SIGNATURES = {
    "ResourceApplyAdamW": (
        [
            "var", "m", "v", "vhat: num_vhat", _ABSMAX, _KEYS, *_ADAMW_SCALARS,
            "step", "grad"
        ],
        ["T", "Tscalar", "num_vhat", *_STATE_ATTRS, "use_locking"],
    ),
    "ResourceMultiTensorApplyAdamW": (
        [
            "var: N", "m: N", "v: N", "vhat: num_vhat", _ABSMAX, _KEYS,
            *_ADAMW_SCALARS, "step", "grad: N"
        ],
        [
            "T", "Tscalar", "N", "num_vhat", *_STATE_ATTRS,
            "apply_weight_decay", "use_locking"
        ],
    ),
    "ResourceApplyLamb": (
        ["var", "m", "v", _ABSMAX, _KEYS, *_LAMB_SCALARS, "step", "grad"],
        ["T", "Tscalar", *_STATE_ATTRS, "use_locking", "use_layer_adaptation"],
    ),
    "ResourceMultiTensorApplyLamb": (
        [
            "var: N", "m: N", "v: N", _ABSMAX, _KEYS, *_LAMB_SCALARS, "step",
            "grad: N"
        ],
        [
            "T", "Tscalar", "N", *_STATE_ATTRS, "apply_weight_decay",
            "use_layer_adaptation", "use_locking"
        ],
    ),
    "ResourceApplyLion": (
        ["var", "m", _ABSMAX, _KEYS, *_LION_SCALARS, "grad"],
        ["T", "Tscalar", *_STATE_ATTRS, "use_locking"],
    ),
    "ResourceMultiTensorApplyLion": (
        ["var: N", "m: N", _ABSMAX, _KEYS, *_LION_SCALARS, "grad: N"],
        [
            "T", "Tscalar", "N", *_STATE_ATTRS, "apply_weight_decay",
            "use_locking"
        ],
    ),
    "ResourceApplyAdafactor": (
        ["var", "accumulators: N", *_ADAFACTOR_SCALARS, "step", "grad"],
        ["T", "Tscalar", "N", "relative_step", "use_locking"],
    ),
}

MODULES = {
    "ResourceApplyAdamW": adamw,
    "ResourceMultiTensorApplyAdamW": adamw,
    "ResourceApplyLamb": lamb,
    "ResourceMultiTensorApplyLamb": lamb,
    "ResourceApplyLion": lion,
    "ResourceMultiTensorApplyLion": lion,
    "ResourceApplyAdafactor": adafactor,
}


def _op_def(name):
  ops.load_library()
  op_def = op_def_registry.get(name)
  assert op_def is not None, f"{name} is not registered"
  return op_def


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signature(name):
  op_def = _op_def(name)
  inputs = [
      f"{a.name}: {a.number_attr}" if a.number_attr else a.name
      for a in op_def.input_arg
  ]
  want_inputs, want_attrs = SIGNATURES[name]
  assert inputs == want_inputs
  assert sorted(a.name for a in op_def.attr) == sorted(want_attrs)
  assert not op_def.output_arg


@pytest.mark.parametrize("name", sorted(MODULES))
def test_python_scalar_names_are_the_ops(name):
  scalars = [
      a.name for a in _op_def(name).input_arg if a.type_attr == "Tscalar"
  ]
  assert list(MODULES[name].SCALAR_NAMES) == scalars
