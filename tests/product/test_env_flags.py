"""The three TF_OPT_PLUGIN_* switches all read booleans by one rule.

TF_OPT_PLUGIN_DISABLE_CUSTOM_OPS, TF_OPT_PLUGIN_GPU_KERNELS and
TF_OPT_PLUGIN_MULTI_TENSOR accept 1/0, true/false, on/off and yes/no in any
case with surrounding whitespace; unset or empty keeps the default; anything
else raises a ValueError from the user's call (the first update traced), on
any machine. Each accepted spelling is checked through what the switch
controls: the dispatch decision, the GPU device set, the multi-tensor ops in a
traced Keras step.
"""

import re
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
from tf_opt_plugin import ops
from tf_opt_plugin.ops import _dispatch
from tf_opt_plugin.ops import _library
from tf_opt_plugin.optimizers import _by_device
from tf_opt_plugin.optimizers import keras3

DISABLE = "TF_OPT_PLUGIN_DISABLE_CUSTOM_OPS"
GPU = "TF_OPT_PLUGIN_GPU_KERNELS"
MULTI = "TF_OPT_PLUGIN_MULTI_TENSOR"

TRUE_SPELLINGS = [
    "1", "true", "True", "TRUE", "on", "On", "ON", "yes", "Yes", "YES", " 1 ",
    "\ttrue\n", "  oN"
]
FALSE_SPELLINGS = [
    "0", "false", "False", "FALSE", "off", "Off", "OFF", "no", "No", "NO",
    " 0 ", "\tfalse\n", "nO  "
]
DEFAULT_SPELLINGS = [None, "", "   "]  # None: unset
BAD_VALUES = ["maybe", "2", "-1", "enabled", "o n", "y", "t", "none"]


def _expected_error(name, value):
  return re.escape(
      f"`{name}` must be one of 1/0, true/false, on/off, yes/no (any case). "
      f"Received: {name}={value!r}")


@pytest.fixture(autouse=True)
def _flags_unset(monkeypatch):
  for name in (DISABLE, GPU, MULTI):
    monkeypatch.delenv(name, raising=False)


@pytest.fixture
def library():
  try:
    _library.load_library()
  except _library.LibraryLoadError as e:
    pytest.skip(f"op library not loaded: {e}")


def _set(monkeypatch, name, value):
  if value is None:
    monkeypatch.delenv(name, raising=False)
  else:
    monkeypatch.setenv(name, value)


def _adamw_variables():
  """w, m, v of one AdamW update."""
  return tf.Variable([1.0, 2.0]), tf.Variable([0.0,
                                               0.0]), tf.Variable([0.0, 0.0])


def _adamw_step(w, m, v):
  hp = A.op_hp("adamw", learning_rate=0.1, weight_decay=0.0)
  ops.resource_apply_adamw(w, m, v, tf.ones_like(w), step=1, **hp)


def _assert_apply_gradients_raises(monkeypatch, flag):
  """A Keras step with `flag` set to a bad value raises the flag's error."""
  monkeypatch.setenv(flag, "maybe")
  variable = keras.Variable(np.ones((2,), np.float32))
  optimizer = keras3.Adam(learning_rate=0.1)
  optimizer.build([variable])
  with pytest.raises(ValueError, match=_expected_error(flag, "maybe")):
    optimizer.apply_gradients([(tf.ones((2,)), variable)])


def _gpu_variable():
  """Stands for a float32 variable on a GPU, for the dispatch decision."""
  return types.SimpleNamespace(
      device="/job:localhost/replica:0/task:0/device:GPU:0", dtype=tf.float32,
      handle=tf.constant(0.0))


def _traced_keras_step():
  """Traces one Keras 3 AdamW step over two variables; returns its update ops
  as `_update_ops` does."""
  variables = [
      keras.Variable(np.ones((3, 2), np.float32), name="kernel"),
      keras.Variable(np.ones((2,), np.float32), name="bias")
  ]
  optimizer = keras3.AdamW(learning_rate=0.01)
  optimizer.build(variables)

  @tf.function
  def step():
    optimizer.apply_gradients([(tf.ones_like(v.value), v) for v in variables])

  return _update_ops(step)


def _update_ops(function):
  """The AdamW update ops in the graph of a tf.function (nested functions and
  cond branches included), sorted, each as the number of variables it
  updates (1 for a per-variable op)."""
  graph_def = function.get_concrete_function().graph.as_graph_def()
  nodes = list(graph_def.node) + [
      n for f in graph_def.library.function for n in f.node_def
  ]
  return sorted(n.attr["N"].i if "N" in n.attr else 1
                for n in nodes
                if n.op in ("ResourceMultiTensorApplyAdamW",
                            "ResourceApplyAdamW"))


# ----------------------------------------------------------------------------
# The rule itself.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", TRUE_SPELLINGS)
@pytest.mark.parametrize("default", [False, True])
def test_read_flag_true_spellings(value, default, monkeypatch):
  from tf_opt_plugin.ops._env_flags import read_flag  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("TF_OPT_PLUGIN_TEST_FLAG", value)
  assert read_flag("TF_OPT_PLUGIN_TEST_FLAG", default) is True


@pytest.mark.parametrize("value", FALSE_SPELLINGS)
@pytest.mark.parametrize("default", [False, True])
def test_read_flag_false_spellings(value, default, monkeypatch):
  from tf_opt_plugin.ops._env_flags import read_flag  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("TF_OPT_PLUGIN_TEST_FLAG", value)
  assert read_flag("TF_OPT_PLUGIN_TEST_FLAG", default) is False


@pytest.mark.parametrize("value", DEFAULT_SPELLINGS)
@pytest.mark.parametrize("default", [False, True])
def test_read_flag_unset_or_empty_is_default(value, default, monkeypatch):
  from tf_opt_plugin.ops._env_flags import read_flag  # pylint: disable=g-import-not-at-top
  _set(monkeypatch, "TF_OPT_PLUGIN_TEST_FLAG", value)
  assert read_flag("TF_OPT_PLUGIN_TEST_FLAG", default) is default


@pytest.mark.parametrize("value", BAD_VALUES)
def test_read_flag_rejects_other_values(value, monkeypatch):
  from tf_opt_plugin.ops._env_flags import read_flag  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("TF_OPT_PLUGIN_TEST_FLAG", value)
  with pytest.raises(ValueError,
                     match=_expected_error("TF_OPT_PLUGIN_TEST_FLAG", value)):
    read_flag("TF_OPT_PLUGIN_TEST_FLAG", False)


# ----------------------------------------------------------------------------
# TF_OPT_PLUGIN_DISABLE_CUSTOM_OPS (default: off).
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", TRUE_SPELLINGS)
def test_disable_on_spellings_disable(value, monkeypatch):
  monkeypatch.setenv(DISABLE, value)
  assert ops.dispatch_reason(tf.Variable([1.0])) == "disabled"


@pytest.mark.parametrize("value", FALSE_SPELLINGS + DEFAULT_SPELLINGS)
def test_disable_off_spellings_keep_the_ops(value, monkeypatch, library):
  _set(monkeypatch, DISABLE, value)
  assert ops.dispatch_reason(tf.Variable([1.0])) is None


def test_disable_off_really_runs_the_op_and_on_the_twin(monkeypatch, library):
  w, m, v = _adamw_variables()

  @tf.function
  def step():
    _adamw_step(w, m, v)

  monkeypatch.setenv(DISABLE, "off")
  assert _update_ops(step) == [1]
  monkeypatch.setenv(DISABLE, "on")
  assert _update_ops(tf.function(step.python_function)) == []


@pytest.mark.parametrize("value", BAD_VALUES)
def test_disable_bad_value_raises_from_the_update(value, monkeypatch):
  monkeypatch.setenv(DISABLE, value)
  w, m, v = _adamw_variables()
  with pytest.raises(ValueError, match=_expected_error(DISABLE, value)):
    _adamw_step(w, m, v)
  np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])


def test_disable_bad_value_raises_from_apply_gradients(monkeypatch):
  _assert_apply_gradients_raises(monkeypatch, DISABLE)


# ----------------------------------------------------------------------------
# TF_OPT_PLUGIN_GPU_KERNELS (default: off). The GPU kernels are pretended to
# be registered, so that the flag alone decides, on any machine.
# ----------------------------------------------------------------------------
@pytest.fixture
def gpu_kernels_registered(monkeypatch, library):
  monkeypatch.setattr(_library, "has_gpu_kernels", lambda: True)


@pytest.mark.parametrize("value", TRUE_SPELLINGS)
def test_gpu_on_spellings_enable(value, monkeypatch, gpu_kernels_registered):
  monkeypatch.setenv(GPU, value)
  assert "GPU" in _dispatch.supported_device_types()
  assert ops.dispatch_reason(_gpu_variable()) is None


@pytest.mark.parametrize("value", FALSE_SPELLINGS + DEFAULT_SPELLINGS)
def test_gpu_off_spellings_keep_the_twin(value, monkeypatch,
                                         gpu_kernels_registered):
  _set(monkeypatch, GPU, value)
  assert "GPU" not in _dispatch.supported_device_types()
  assert ops.dispatch_reason(_gpu_variable()) == "device"


def test_gpu_on_without_gpu_kernels_keeps_the_twin(monkeypatch, library):
  monkeypatch.setattr(_library, "has_gpu_kernels", lambda: False)
  monkeypatch.setenv(GPU, "on")
  assert ops.dispatch_reason(_gpu_variable()) == "device"


@pytest.mark.parametrize("has_gpu_kernels", [False, True])
@pytest.mark.parametrize("value", BAD_VALUES)
def test_gpu_bad_value_raises_from_the_update(value, has_gpu_kernels,
                                              monkeypatch, library):
  # Also on a machine whose library has no GPU kernels: a typo is reported
  # wherever it is made, not only where it would matter.
  monkeypatch.setattr(_library, "has_gpu_kernels", lambda: has_gpu_kernels)
  monkeypatch.setenv(GPU, value)
  w, m, v = _adamw_variables()
  with pytest.raises(ValueError, match=_expected_error(GPU, value)):
    _adamw_step(w, m, v)
  np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])


def test_gpu_bad_value_raises_from_apply_gradients(monkeypatch, library):
  _assert_apply_gradients_raises(monkeypatch, GPU)


# ----------------------------------------------------------------------------
# TF_OPT_PLUGIN_MULTI_TENSOR (default: on).
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", TRUE_SPELLINGS + DEFAULT_SPELLINGS)
def test_multi_tensor_on_spellings_enable(value, monkeypatch):
  _set(monkeypatch, MULTI, value)
  assert _by_device.multi_tensor_enabled() is True


@pytest.mark.parametrize("value", FALSE_SPELLINGS)
def test_multi_tensor_off_spellings_disable(value, monkeypatch):
  monkeypatch.setenv(MULTI, value)
  assert _by_device.multi_tensor_enabled() is False


def test_multi_tensor_off_really_gives_per_variable_ops(monkeypatch, library):
  monkeypatch.setenv(MULTI, "off")
  assert _traced_keras_step() == [1, 1]  # one update per variable
  monkeypatch.setenv(MULTI, "on")
  assert _traced_keras_step() == [2]  # one update for both


@pytest.mark.parametrize("value", BAD_VALUES)
def test_multi_tensor_bad_value_raises_from_apply_gradients(value, monkeypatch):
  monkeypatch.setenv(MULTI, value)
  variables = [
      keras.Variable(np.ones((2,), np.float32)),
      keras.Variable(np.ones((3,), np.float32))
  ]
  optimizer = keras3.AdamW(learning_rate=0.1)
  optimizer.build(variables)
  with pytest.raises(ValueError, match=_expected_error(MULTI, value)):
    optimizer.apply_gradients([(tf.ones_like(v.value), v) for v in variables])
  for v in variables:
    np.testing.assert_array_equal(v.numpy(), np.ones(v.shape))
