"""Input validation of the kernels (raw ops and fused=True) and of the twins
(fused=False): error types, the key parts of the messages, and that nothing
is written when an update is rejected."""

import contextlib
import re
import uuid

import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
import op_harness as H
import tf_opt_plugin.ops as ops

ALGOS = H.FULL_ADAPTERS
# The algorithms whose ops take `step` (Lion has no step count).
STEPPED = [name for name, cls in H.ADAPTERS.items() if cls.spec.counts_steps]
FUSED = [True, False]
VAR_SHAPE = (3, 5)
BAD_SHAPE = (5, 3)


def _nospace(s):
  return re.sub(r"\s+", "", s)


def assert_mentions_shape(msg, shape):
  """TF prints shapes as [3,5]; Python as (3, 5) -- accept either."""
  shape = tuple(shape)
  m = _nospace(msg)
  brackets = "[" + ",".join(str(d) for d in shape) + "]"
  parens = "(" + ",".join(
      str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
  assert brackets in m or parens in m, (shape, msg)


def assert_mentions(msg, *names):
  assert any(
      re.search(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % re.escape(n), msg)
      for n in names), (names, msg)


def _state(algo, shape=VAR_SHAPE, dtype=tf.float32):
  w0 = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) / 7.0
  return H.make_state(algo, shape, dtype, w0=w0)


def _snapshot(state):
  return [v.numpy().copy() for v in state]


def _assert_unchanged(state, snap):
  for v, s in zip(state, snap):
    np.testing.assert_array_equal(v.numpy(), s)


@contextlib.contextmanager
def _rejected(state, error=tf.errors.InvalidArgumentError):
  """The block must raise `error` (yields pytest's ExceptionInfo) and leave
    every variable of `state` as it was: nothing is written before all checks
    pass."""
  snap = _snapshot(state)
  with pytest.raises(error) as info:
    yield info
  _assert_unchanged(state, snap)


# ---------------------------------------------------------------------------
# Wrapper level, kernel (fused=True) and twin (fused=False)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_grad_dtype_mismatch(algo_name, fused):
  algo = ALGOS[algo_name]()
  state = _state(algo)
  with _rejected(state):
    algo.apply(state, tf.ones(VAR_SHAPE, tf.float64), 1, fused=fused)


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_grad_shape_mismatch(algo_name, fused):
  algo = ALGOS[algo_name]()
  state = _state(algo)
  with _rejected(state) as info:
    algo.apply(state, tf.ones(BAD_SHAPE), 1, fused=fused)
  msg = str(info.value)
  assert "grad" in msg, msg
  assert_mentions_shape(msg, VAR_SHAPE)
  assert_mentions_shape(msg, BAD_SHAPE)


def _full_slots():
  """(algorithm, slot, index in the op's state) of every slot shaped like its
  variable (Adafactor's factored accumulators have tests of their own)."""
  for name, make in ALGOS.items():
    algo = make()
    slots = algo.spec.slots(VAR_SHAPE, **algo.options)
    for index, (slot, shape) in enumerate(slots, start=1):
      if shape == VAR_SHAPE:
        yield name, slot, index


FULL_SLOTS = list(_full_slots())


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("algo_name,slot,index", FULL_SLOTS,
                         ids=[f"{name}-{slot}" for name, slot, _ in FULL_SLOTS])
def test_slot_shape_mismatch(algo_name, slot, index, fused):
  algo = ALGOS[algo_name]()
  state = list(_state(algo))
  state[index] = tf.Variable(tf.zeros(BAD_SHAPE))
  with _rejected(state) as info:
    algo.apply(state, tf.ones(VAR_SHAPE), 1, fused=fused)
  msg = str(info.value)
  assert_mentions(msg, slot)
  assert_mentions_shape(msg, VAR_SHAPE)
  assert_mentions_shape(msg, BAD_SHAPE)


def _adafactor_state(shape, accumulator_shapes):
  return [tf.Variable(tf.ones(shape))
         ] + [tf.Variable(tf.zeros(s)) for s in accumulator_shapes]


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("shape,accumulator_shapes,bad", [
    (VAR_SHAPE, [(4,), (5,)], (4,)),
    (VAR_SHAPE, [(3,), (4,)], (4,)),
    ((6,), [(7,)], (7,)),
], ids=["row", "col", "rank1"])
def test_adafactor_accumulator_shape_mismatch(shape, accumulator_shapes, bad,
                                              fused):
  state = _adafactor_state(shape, accumulator_shapes)
  with _rejected(state) as info:
    H.Adafactor().apply(state, tf.ones(shape), 1, fused=fused)
  msg = str(info.value)
  assert "accumulators" in msg, msg
  assert_mentions_shape(msg, bad)


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("shape,accumulator_shapes", [
    (VAR_SHAPE, [(3,)]),
    ((6,), [(6,), (6,)]),
], ids=["one-for-matrix", "two-for-vector"])
def test_adafactor_wrong_number_of_accumulators(shape, accumulator_shapes,
                                                fused):
  state = _adafactor_state(shape, accumulator_shapes)
  with _rejected(state) as info:
    H.Adafactor().apply(state, tf.ones(shape), 1, fused=fused)
  assert "accumulators" in str(info.value), str(info.value)


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("step", [0, -3])
@pytest.mark.parametrize("algo_name", STEPPED)
def test_step_below_one(algo_name, step, fused):
  algo = ALGOS[algo_name]()
  state = _state(algo)
  with _rejected(state) as info:
    algo.apply(state, tf.ones(VAR_SHAPE), step, fused=fused)
  assert "step" in str(info.value), str(info.value)


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("algo_name", STEPPED)
def test_step_below_one_inside_tf_function(algo_name, fused):
  algo = ALGOS[algo_name]()
  state = _state(algo)

  @tf.function
  def f(t):
    algo.apply(state, tf.ones(VAR_SHAPE), t, fused=fused)
    return tf.constant(0)

  with _rejected(state) as info:
    f(tf.constant(0, tf.int64))
  assert "step" in str(info.value), str(info.value)


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_non_scalar_learning_rate(algo_name, fused):
  algo = ALGOS[algo_name]()
  state = _state(algo)
  hp = dict(algo.hp, learning_rate=tf.constant([0.1, 0.1]))
  with _rejected(state, (tf.errors.InvalidArgumentError, ValueError)) as info:
    algo.apply(state, tf.ones(VAR_SHAPE), 1, fused=fused, hp=hp)
  assert_mentions(str(info.value), "lr", "learning_rate")


def _uninitialized_like(variable):
  # TF2 has no public way to make an uninitialized tf.Variable;
  # UninitializedVariable (used by checkpoint restore and tf.distribute) is
  # a tf.Variable whose resource exists with is_initialized() == False.
  from tensorflow.python.ops import resource_variable_ops
  v = resource_variable_ops.UninitializedVariable(shape=variable.shape,
                                                  dtype=variable.dtype)
  assert isinstance(v, tf.Variable) and not bool(v.is_initialized())
  return v


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("which", ["var", "slot"])
@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_uninitialized_variable(algo_name, which, fused):
  algo = ALGOS[algo_name]()
  state = list(_state(algo))
  idx = 0 if which == "var" else 1
  state[idx] = _uninitialized_like(state[idx])
  live = [v for i, v in enumerate(state) if i != idx]
  with _rejected(live, tf.errors.FailedPreconditionError) as info:
    algo.apply(state, tf.ones(VAR_SHAPE), 1, fused=fused)
  assert "uninitialized" in str(info.value), str(info.value)


# ---------------------------------------------------------------------------
# Raw ops (kernel validation, eager: shape functions do not run)
# ---------------------------------------------------------------------------
def _scalars(spec, dtype=tf.float32, bad=None):
  """The raw op's scalar inputs, the op tests' defaults (`bad` a vector)."""
  vals = dict(spec.op_defaults, lr=spec.op_defaults["learning_rate"])
  out = {}
  for n in spec.raw_scalars:
    out[n] = tf.constant(vals[n], dtype)
    if n == bad:
      out[n] = tf.constant([vals[n], vals[n]], dtype)
  return out


def _raw_call(algo_name, handles, grad, bad=None, step=1, dtype=tf.float32):
  spec = H.ADAPTERS[algo_name].spec
  kw = _scalars(spec, dtype, bad)
  if spec.counts_steps:
    kw["step"] = (tf.constant([step, step], tf.int64)
                  if bad == "step" else tf.constant(step, tf.int64))
  raw_op = getattr(ops.load_library(), A.raw_op_name(spec.op_type))
  return spec.call_raw_op(raw_op, handles, grad, use_locking=True, **kw)


def _raw_state(algo_name, shape=VAR_SHAPE, dtype=tf.float32):
  algo = ALGOS[algo_name]()
  return list(_state(algo, shape, dtype))


@pytest.mark.parametrize("algo_name,bad",
                         [(name, scalar)
                          for name, cls in H.ADAPTERS.items()
                          for scalar in cls.spec.raw_scalars +
                          (("step",) if name in STEPPED else ())])
def test_raw_non_scalar_hyperparameter(algo_name, bad):
  state = _raw_state(algo_name)
  with _rejected(state) as info:
    _raw_call(algo_name, [v.handle for v in state], tf.ones(VAR_SHAPE), bad=bad)
  assert_mentions(str(info.value), bad)


@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_raw_good_call_works(algo_name):
  state = _raw_state(algo_name)
  snap = _snapshot(state)
  _raw_call(algo_name, [v.handle for v in state], tf.ones(VAR_SHAPE))
  assert not np.array_equal(state[0].numpy(), snap[0])


@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_raw_slot_dtype_mismatch(algo_name):
  state = _raw_state(algo_name)
  state[1] = tf.Variable(tf.zeros(state[1].shape, tf.float64))
  with _rejected(state):
    _raw_call(algo_name, [v.handle for v in state], tf.ones(VAR_SHAPE))


@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_raw_grad_dtype_mismatch(algo_name):
  state = _raw_state(algo_name)
  with _rejected(state):
    _raw_call(algo_name, [v.handle for v in state],
              tf.ones(VAR_SHAPE, tf.float64))


@pytest.mark.parametrize("algo_name", list(ALGOS))
@pytest.mark.parametrize("how", ["never-created", "created-uninitialized"])
def test_raw_uninitialized_variable(algo_name, how):
  state = _raw_state(algo_name)
  name = "tf_opt_plugin_test_" + uuid.uuid4().hex
  handle = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=list(VAR_SHAPE),
                                  shared_name=name)
  if how == "created-uninitialized":
    # TF's own training ops create the Var resource (uninitialized) via
    # LookupOrCreateResource and then fail; the resource stays behind.
    with pytest.raises(tf.errors.OpError):
      tf.raw_ops.ResourceApplyGradientDescent(var=handle, alpha=0.1,
                                              delta=tf.ones(VAR_SHAPE))
  with _rejected(state[1:], tf.errors.FailedPreconditionError) as info:
    _raw_call(algo_name, [handle] + [v.handle for v in state[1:]],
              tf.ones(VAR_SHAPE))
  assert "uninitialized" in str(info.value), str(info.value)
  tf.raw_ops.DestroyResourceOp(resource=handle, ignore_lookup_error=True)


@pytest.mark.parametrize("algo_name", STEPPED)
def test_raw_validation_order_shape_before_step(algo_name):
  # Contract: shapes are validated before hyperparameter values.
  state = _raw_state(algo_name)
  with _rejected(state) as info:
    _raw_call(algo_name, [v.handle for v in state], tf.ones(BAD_SHAPE), step=0)
  msg = str(info.value)
  assert "grad" in msg, msg
  assert_mentions_shape(msg, BAD_SHAPE)


@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_raw_validation_order_scalar_before_shape(algo_name):
  state = _raw_state(algo_name)
  with _rejected(state) as info:
    _raw_call(algo_name, [v.handle for v in state], tf.ones(BAD_SHAPE),
              bad="lr")
  assert_mentions(str(info.value), "lr")


def test_raw_adafactor_accumulator_count():
  state = _raw_state("adafactor")
  with _rejected(state) as info:
    _raw_call("adafactor", [state[0].handle, state[1].handle],
              tf.ones(VAR_SHAPE))
  assert "accumulators" in str(info.value)


def test_raw_adamw_vhat_shape_mismatch():
  state = _raw_state("adamw")
  state[3] = tf.Variable(tf.zeros(BAD_SHAPE))
  with _rejected(state) as info:
    _raw_call("adamw", [v.handle for v in state], tf.ones(VAR_SHAPE))
  msg = str(info.value)
  assert "vhat" in msg
  assert_mentions_shape(msg, VAR_SHAPE)
  assert_mentions_shape(msg, BAD_SHAPE)
