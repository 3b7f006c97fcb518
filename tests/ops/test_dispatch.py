"""dispatch_reason() and the fused=None/True/False contract."""

import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
import op_harness as H
import tf_opt_plugin.ops as ops

ALGOS = H.ADAPTERS
DISABLE = "TF_OPT_PLUGIN_DISABLE_CUSTOM_OPS"


def _var_and_grad(dtype=tf.float32, shape=(3, 2)):
  return tf.Variable(tf.ones(shape, dtype)), tf.ones(shape, dtype)


def test_library_loads_and_has_the_raw_ops():
  lib = ops.load_library()
  for algo in H.ADAPTERS.values():
    for op_type in (algo.spec.op_type, algo.spec.multi_tensor_op_type):
      if op_type is not None:
        name = A.raw_op_name(op_type)
        assert callable(getattr(lib, name)), name
  assert lib is not None


def test_error_class():
  assert issubclass(ops.FusedOpUnavailableError, RuntimeError)


@pytest.mark.parametrize("dtype", list(H.DTYPES))
def test_reason_is_none_for_cpu_variable(dtype):
  var, grad = _var_and_grad(H.DTYPES[dtype])
  assert ops.dispatch_reason(var, grad) is None


def test_reason_none_inside_plain_tf_function():
  var, grad = _var_and_grad()
  seen = []

  @tf.function
  def f(g):
    seen.append(ops.dispatch_reason(var, g))
    return tf.constant(0)

  f(grad)
  assert seen == [None]


def test_reason_xla_inside_jit_compile():
  var, grad = _var_and_grad()
  seen = []

  @tf.function(jit_compile=True)
  def f(g):
    seen.append(ops.dispatch_reason(var, g))
    return tf.constant(0)

  f(grad)
  assert seen == ["xla"]


def test_reason_disabled_by_env_read_at_call_time(monkeypatch):
  var, grad = _var_and_grad()
  assert ops.dispatch_reason(var, grad) is None
  monkeypatch.setenv(DISABLE, "1")
  assert ops.dispatch_reason(var, grad) == "disabled"
  monkeypatch.delenv(DISABLE)
  assert ops.dispatch_reason(var, grad) is None


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64, tf.complex64])
def test_reason_dtype_for_unsupported_dtype(dtype):
  var = tf.Variable(tf.ones((2, 2), dtype))
  assert ops.dispatch_reason(var, tf.ones((2, 2), dtype)) == "dtype"


def _apply_once(algo_name, fused, shape=(4, 3)):
  algo = ALGOS[algo_name]()
  state = H.make_state(algo, shape, tf.float32, w0=np.ones(shape))
  algo.apply(state, tf.fill(shape, 0.5), 1, fused=fused)
  return state


@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_fused_true_under_jit_raises_with_reason(algo_name):
  algo = ALGOS[algo_name]()
  state = H.make_state(algo, (4, 3), tf.float32, w0=np.ones((4, 3)))
  caught = []

  @tf.function(jit_compile=True)
  def f(g):
    try:
      algo.apply(state, g, 1, fused=True)
    except ops.FusedOpUnavailableError as e:
      caught.append(e)
    return tf.constant(0)

  f(tf.fill((4, 3), 0.5))
  assert len(caught) == 1
  assert isinstance(caught[0], RuntimeError)
  assert caught[0].reason == "xla"
  # Nothing was applied.
  np.testing.assert_array_equal(state[0].numpy(), np.ones((4, 3)))


@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_fused_true_raises_when_disabled(algo_name, monkeypatch):
  monkeypatch.setenv(DISABLE, "1")
  with pytest.raises(ops.FusedOpUnavailableError) as info:
    _apply_once(algo_name, fused=True)
  assert info.value.reason == "disabled"


@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_fused_none_falls_back_to_twin(algo_name, monkeypatch):
  expected = _apply_once(algo_name, fused=True)[0].numpy()
  monkeypatch.setenv(DISABLE, "1")
  got = _apply_once(algo_name, fused=None)[0].numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert not np.array_equal(got, np.ones((4, 3)))


@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_fused_none_under_jit_runs_twin(algo_name):
  algo = ALGOS[algo_name]()
  state = H.make_state(algo, (4, 3), tf.float32, w0=np.ones((4, 3)))

  @tf.function(jit_compile=True)
  def f(g):
    algo.apply(state, g, 1, fused=None)
    return tf.constant(0)

  f(tf.fill((4, 3), 0.5))
  expected = _apply_once(algo_name, fused=False)[0].numpy()
  np.testing.assert_allclose(state[0].numpy(), expected, rtol=1e-6)


def _traced_op_types(algo, fused):
  """The op types of a tf.function that applies `algo` to a (4, 3) variable."""
  state = H.make_state(algo, (4, 3), tf.float32, w0=np.ones((4, 3)))

  @tf.function
  def f(g, t):
    algo.apply(state, g, t, fused=fused)
    return tf.constant(0)

  return H.graph_op_types(
      f.get_concrete_function(tf.TensorSpec((4, 3), tf.float32),
                              tf.TensorSpec((), tf.int64)))


@pytest.mark.parametrize("algo_name", list(ALGOS))
@pytest.mark.parametrize("fused", [None, True, False])
def test_graph_contains_custom_op_only_when_fused(algo_name, fused):
  algo = ALGOS[algo_name]()
  types = _traced_op_types(algo, fused)
  if fused is False:
    assert algo.op_type not in types
  else:
    assert algo.op_type in types, sorted(types)


@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_fused_none_with_env_disabled_builds_no_custom_op(
    algo_name, monkeypatch):
  monkeypatch.setenv(DISABLE, "1")
  algo = ALGOS[algo_name]()
  assert algo.op_type not in _traced_op_types(algo, fused=None)


@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_unsupported_dtype_fused_true_raises(algo_name):
  algo = ALGOS[algo_name]()
  with pytest.raises((ops.FusedOpUnavailableError, TypeError, ValueError,
                      tf.errors.InvalidArgumentError)) as info:
    state = H.make_state(algo, (2, 2), tf.int32, w0=np.ones((2, 2)))
    algo.apply(state, tf.ones((2, 2), tf.int32), 1, fused=True)
  if isinstance(info.value, ops.FusedOpUnavailableError):
    assert info.value.reason == "dtype"


def test_gpu_kernels_are_opt_in(monkeypatch):
  # A CUDA build registers GPU kernels, but they are used only with
  # TF_OPT_PLUGIN_GPU_KERNELS=1 until they have run on a GPU (docs/gpu.md).
  from tf_opt_plugin.ops import _dispatch, _library
  monkeypatch.delenv(_dispatch.GPU_KERNELS_ENV, raising=False)
  assert "GPU" not in _dispatch.supported_device_types()
  monkeypatch.setenv(_dispatch.GPU_KERNELS_ENV, "1")
  assert ("GPU"
          in _dispatch.supported_device_types()) == _library.has_gpu_kernels()
