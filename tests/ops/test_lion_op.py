"""Lion: fused ops and pure-TF twin against the float64 reference and Keras.

The reference is `references.lion_step`, written from the paper's Algorithm 2;
`keras.optimizers.Lion`, stepped in a tf.function as fit() steps it, is the
float32 ground truth the fused op and the twin must equal to the last bit.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
import keras_goldens as G
import op_harness as H
import references as R
import tf_opt_plugin.ops as ops

HP = dict(learning_rate=0.01, beta_1=0.9, beta_2=0.99, weight_decay=0.01)


# --- keras.optimizers.Lion, float32, to the last bit --------------------------
def _keras_lion_trajectory(w0, grads, weight_decay):
  """Keras's Lion in a tf.function, as its training steps run: there the
  decay `w - w * wd * lr` is regrouped `w - w * (wd * lr)` by TF's graph
  optimizer (eager Keras rounds `w * wd` first and can differ in the last
  bit)."""
  variable = keras.Variable(w0, dtype="float32")
  optimizer = keras.optimizers.Lion(learning_rate=0.01, beta_1=0.9, beta_2=0.99,
                                    weight_decay=weight_decay)
  optimizer.build([variable])
  step = tf.function(lambda g: optimizer.apply([g], [variable]))
  for g in grads:
    step(tf.constant(g))
  return variable.numpy(), optimizer._momentums[0].numpy()  # pylint: disable=protected-access


@pytest.mark.parametrize(
    "mode", ["fused-eager", "fused-function", "twin-eager", "twin-function"])
@pytest.mark.parametrize("weight_decay", [None, 0.3])
def test_float32_equals_keras_lion_bit_for_bit(weight_decay, mode):
  rng = np.random.default_rng(5)
  shape = (9, 4)
  w0 = rng.normal(size=shape).astype(np.float32)
  grads = [rng.normal(size=shape).astype(np.float32) for _ in range(25)]
  want_w, want_m = _keras_lion_trajectory(w0, grads, weight_decay)

  algo = H.Lion(
      weight_decay=weight_decay or 0.0,
      **{
          k: v for k, v in HP.items() if k != "weight_decay"
      },
  )
  state = H.make_state(algo, shape, tf.float32, w0=w0)
  runner = H.make_runner(algo, state, mode)
  for t, g in enumerate(grads, 1):
    runner(tf.constant(g), tf.constant(t, tf.int64))
  np.testing.assert_array_equal(state[0].numpy(), want_w)
  np.testing.assert_array_equal(state[1].numpy(), want_m)


# --- the multi-tensor op ------------------------------------------------------
# Shapes like a model's: a matrix, a bias, a >1-block vector, an empty variable.
MULTI_SHAPES = [(7, 5), (3,), (40000,), (0,)]
DECAY_FLAGS = [True, False, True, False]


def _multi_state(dtype, seed=0):
  rng = np.random.default_rng(seed)
  ws = [
      tf.Variable(tf.constant(rng.normal(size=s), dtype)) for s in MULTI_SHAPES
  ]
  ms = [
      tf.Variable(tf.constant(rng.normal(size=s) * 0.1, dtype))
      for s in MULTI_SHAPES
  ]
  return ws, ms


def _multi_grads(dtype, step):
  rng = np.random.default_rng(100 + step)
  return [tf.constant(rng.normal(size=s), dtype) for s in MULTI_SHAPES]


@pytest.mark.parametrize("mode", ["eager", "tf.function"])
@pytest.mark.parametrize("dtype", list(H.DTYPES))
def test_multi_tensor_equals_per_variable_ops_bit_for_bit(dtype, mode):
  dt = H.DTYPES[dtype]
  multi, single = _multi_state(dt), _multi_state(dt)

  def run_multi(grads):
    ops.multi_tensor_apply_lion(*multi, grads, apply_weight_decay=DECAY_FLAGS,
                                fused=True, **HP)

  def run_single(grads):
    for w, m, g, decay in zip(*single, grads, DECAY_FLAGS):
      ops.resource_apply_lion(
          w,
          m,
          g,
          fused=True,
          **dict(HP, weight_decay=HP["weight_decay"] if decay else 0.0),
      )

  if mode == "tf.function":
    run_multi, run_single = tf.function(run_multi), tf.function(run_single)
  for step in range(1, 4):
    grads = _multi_grads(dt, step)
    run_multi(grads)
    run_single(grads)
  for a, b in zip(multi[0] + multi[1], single[0] + single[1]):
    np.testing.assert_array_equal(H.to_np(a), H.to_np(b))


@pytest.mark.parametrize("fused", [True, False])
def test_multi_tensor_matches_the_reference_with_decay_flags(fused):
  ws, ms = _multi_state(tf.float64)
  ref = [[H.to_np(w), H.to_np(m)] for w, m in zip(ws, ms)]
  for step in range(1, 6):
    grads = _multi_grads(tf.float64, step)
    ops.multi_tensor_apply_lion(ws, ms, grads, apply_weight_decay=DECAY_FLAGS,
                                fused=fused, **HP)
    for i, (g, decay) in enumerate(zip(grads, DECAY_FLAGS)):
      ref[i] = list(
          R.lion_step(
              *ref[i],
              g.numpy(),
              **dict(HP, weight_decay=HP["weight_decay"] if decay else 0.0),
          ))
  for (w, m), (want_w, want_m) in zip(zip(ws, ms), ref):
    np.testing.assert_allclose(w.numpy(), want_w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m.numpy(), want_m, rtol=1e-12, atol=1e-14)


def test_multi_tensor_runs_one_op_per_dtype():
  ws = [
      tf.Variable(tf.ones([3], dt))
      for dt in (tf.float32, tf.float64, tf.float32)
  ]
  ms = [tf.Variable(tf.zeros_like(w)) for w in ws]

  @tf.function
  def step(grads):
    ops.multi_tensor_apply_lion(ws, ms, grads, **HP)

  grads = [tf.ones([3], w.dtype) for w in ws]
  types = [
      n.op
      for n in step.get_concrete_function(grads).graph.as_graph_def().node
      if "Lion" in n.op
  ]
  assert types == ["ResourceMultiTensorApplyLion"] * 2
  step(grads)
  # 1 - lr * wd, then - lr * sign(0.1); m = 0.01 * g.
  for w, m in zip(ws, ms):
    np.testing.assert_allclose(H.to_np(w), 1 - 0.01 * 0.01 - 0.01, rtol=1e-6)
    np.testing.assert_allclose(H.to_np(m), 0.01, rtol=1e-6)


# --- sparse gradients ---------------------------------------------------------
@pytest.mark.parametrize("multi_tensor", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_indexed_slices_with_repeated_indices(fused, multi_tensor):
  """Repeated rows are summed; rows without a gradient still decay their
  momentum and move by its sign, as with the dense gradient."""
  rng = np.random.default_rng(9)
  w0, m0 = rng.normal(size=(5, 2)), rng.normal(size=(5, 2)) * 0.1
  values = np.array([[1.0, -2.0], [0.5, 0.5], [-3.0, 1.0]])
  indices = np.array([1, 3, 1])
  dense = np.zeros((5, 2))
  np.add.at(dense, indices, values)
  slices = tf.IndexedSlices(tf.constant(values), tf.constant(indices),
                            tf.constant([5, 2]))
  w, m = tf.Variable(w0), tf.Variable(m0)
  if multi_tensor:
    ops.multi_tensor_apply_lion([w], [m], [slices], fused=fused, **HP)
  else:
    ops.resource_apply_lion(w, m, slices, fused=fused, **HP)
  want_w, want_m = R.lion_step(w0, m0, dense, **HP)
  np.testing.assert_allclose(w.numpy(), want_w, rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(m.numpy(), want_m, rtol=1e-12, atol=1e-15)
  assert not np.allclose(m.numpy()[0], m0[0])  # an untouched row's m decayed


# --- the update's edges -------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False])
def test_weight_decay_is_decoupled(fused):
  # Keras's published test_weight_decay: a zero gradient, lr 1, wd 0.004,
  # three steps from 2.0 (sign(0) = 0, so only the decay moves the weight).
  w, m = tf.Variable(2.0), tf.Variable(0.0)
  for _ in range(3):
    ops.resource_apply_lion(
        w,
        m,
        tf.constant(0.0),
        learning_rate=1.0,
        beta_1=0.9,
        beta_2=0.99,
        weight_decay=0.004,
        fused=fused,
    )
  assert abs(float(w.numpy()) - 1.9760959) < 1e-6


@pytest.mark.parametrize("fused", [True, False])
def test_keras_golden_trajectory(fused):
  # keras/src/optimizers/lion_test.py, test_correctness_with_golden: defaults,
  # ones(10), one step of 0.01, then steps of arange(0.1, 1.1, 0.1).
  w, m = (
      tf.Variable(np.ones(10, np.float32)),
      tf.Variable(np.zeros(10, np.float32)),
  )
  golden = [0.999, 0.998, 0.997, 0.996, 0.995]
  defaults = dict(learning_rate=0.001, beta_1=0.9, beta_2=0.99,
                  weight_decay=0.0)
  grads = [np.full(10, 0.01, np.float32)
          ] + [np.arange(1, 11, dtype=np.float32) / 10] * 4
  for g, want in zip(grads, golden):
    ops.resource_apply_lion(w, m, tf.constant(g), fused=fused, **defaults)
    np.testing.assert_allclose(w.numpy(), want, rtol=5e-4, atol=5e-4)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_gradient_behaves_like_reference(fused, bad):
  w0 = np.linspace(-1, 1, 12).reshape(4, 3)
  g = np.full((4, 3), 0.5)
  g[1, 2] = bad
  w, m = tf.Variable(w0, dtype=tf.float32), tf.Variable(tf.zeros((4, 3)))
  ops.resource_apply_lion(w, m, tf.constant(g, tf.float32), fused=fused, **HP)
  want_w, want_m = R.lion_step(w0, np.zeros((4, 3)), g, **HP)
  np.testing.assert_allclose(w.numpy(), want_w, rtol=1e-6, equal_nan=True)
  np.testing.assert_allclose(m.numpy(), want_m, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", [(0, 4), (0,)])
def test_zero_size_variable_is_a_no_op(fused, shape):
  w, m = tf.Variable(tf.zeros(shape)), tf.Variable(tf.zeros(shape))
  ops.resource_apply_lion(w, m, tf.zeros(shape), fused=fused, **HP)
  assert w.shape == shape and m.shape == shape


@pytest.mark.parametrize("fused", [True, False])
def test_scalars_as_tensors_and_variables(fused):
  rng = np.random.default_rng(3)
  w0 = rng.normal(size=(5, 2))
  grads = [rng.normal(size=(5, 2)) for _ in range(4)]
  want = (w0, np.zeros_like(w0))
  for g in grads:
    want = R.lion_step(*want, g, **HP)
  for kind in (
      float,
      lambda x: tf.constant(x, tf.float64),
      lambda x: tf.Variable(x, dtype=tf.float64),
  ):
    w, m = tf.Variable(w0), tf.Variable(np.zeros_like(w0))
    hp = {k: kind(v) for k, v in HP.items()}
    for g in grads:
      ops.resource_apply_lion(w, m, tf.constant(g), fused=fused, **hp)
    np.testing.assert_allclose(w.numpy(), want[0], rtol=1e-12)


def test_use_locking_false_gives_same_result():
  out = []
  for locking in (True, False):
    w, m = tf.Variable(np.linspace(-1, 1, 15)), tf.Variable(np.zeros(15))
    for t in range(1, 4):
      ops.resource_apply_lion(
          w,
          m,
          tf.constant(np.full(15, 0.1 * t - 0.15)),
          use_locking=locking,
          fused=True,
          **HP,
      )
    out.append(w.numpy())
  np.testing.assert_array_equal(out[0], out[1])


def test_raw_op_matches_reference():
  w0, m0 = np.array([1.0, -2.0, 3.0]), np.array([0.1, 0.0, -0.3])
  g = np.array([0.5, 0.0, 1.0])
  var, m = tf.Variable(w0), tf.Variable(m0)
  ops.load_library().resource_apply_lion(
      absmax=[],
      rounding_key=[],
      var=var.handle,
      m=m.handle,
      lr=tf.constant(0.1, tf.float64),
      beta_1=tf.constant(0.9, tf.float64),
      beta_2=tf.constant(0.99, tf.float64),
      weight_decay=tf.constant(0.01, tf.float64),
      grad=tf.constant(g),
      use_locking=True,
  )
  want_w, want_m = R.lion_step(w0, m0, g, learning_rate=0.1, beta_1=0.9,
                               beta_2=0.99, weight_decay=0.01)
  np.testing.assert_allclose(var.numpy(), want_w, rtol=1e-12)
  np.testing.assert_allclose(m.numpy(), want_m, rtol=1e-12)


# --- bad input: a typed error naming the argument, nothing written -----------
def _state_and_snapshot():
  w, m = tf.Variable(tf.ones((3, 2))), tf.Variable(tf.fill((3, 2), 0.5))
  return (w, m), [w.numpy(), m.numpy()]


def _assert_unchanged(state, snapshot):
  for variable, before in zip(state, snapshot):
    np.testing.assert_array_equal(variable.numpy(), before)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("argument",
                         ["learning_rate", "beta_1", "beta_2", "weight_decay"])
def test_non_scalar_hyperparameter(argument, fused):
  (w, m), before = _state_and_snapshot()
  hp = dict(HP, **{argument: tf.constant([0.1, 0.2])})
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=f"`{argument}` must be a scalar"):
    ops.resource_apply_lion(w, m, tf.ones((3, 2)), fused=fused, **hp)
  _assert_unchanged((w, m), before)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("multi_tensor", [False, True])
@pytest.mark.parametrize(
    "defect,pattern",
    [
        ("grad-shape", r"`grad(\[0\])?` must have the shape of `var(\[0\])?`"),
        ("m-shape", r"`m(\[0\])?` must have the shape of `var(\[0\])?`"),
        # The kernels print TF's dtype names, the Python checks numpy's.
        ("grad-dtype", r"`var(\[0\])?` must have dtype (float64|double)"),
        ("m-dtype", r"`m(\[0\])?` must have dtype float(32)? "),
    ],
)
def test_bad_shapes_and_dtypes(defect, pattern, multi_tensor, fused):
  (w, m), before = _state_and_snapshot()
  grad = tf.ones((3, 2))
  m_used = m
  if defect == "grad-shape":
    grad = tf.ones((2, 3))
  elif defect == "m-shape":
    m_used = tf.Variable(tf.zeros((6,)))
  elif defect == "grad-dtype":
    grad = tf.ones((3, 2), tf.float64)
  else:
    m_used = tf.Variable(tf.zeros((3, 2), tf.float64))
  with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
    if multi_tensor:
      ops.multi_tensor_apply_lion([w], [m_used], [grad], fused=fused, **HP)
    else:
      ops.resource_apply_lion(w, m_used, grad, fused=fused, **HP)
  _assert_unchanged((w, m), before)


def test_multi_tensor_list_lengths():
  (w, m), before = _state_and_snapshot()
  with pytest.raises(ValueError, match="`ms` must hold one entry per variable"):
    ops.multi_tensor_apply_lion([w], [], [tf.ones((3, 2))], **HP)
  with pytest.raises(ValueError,
                     match="`apply_weight_decay` must hold one bool"):
    ops.multi_tensor_apply_lion([w], [m], [tf.ones((3, 2))],
                                apply_weight_decay=[True, False], **HP)
  _assert_unchanged((w, m), before)


# --- the reference against Keras 3's published Lion tests (float64) ----------
LION_DEFAULTS = dict(learning_rate=0.001, beta_1=0.9, beta_2=0.99,
                     weight_decay=0.0)


def test_lion_keras3_single_step():
  # keras/src/optimizers/lion_test.py::test_single_step: Lion(learning_rate
  # =0.5), grads [1,6,7,2], vars [1,2,3,4] -> [0.5, 1.5, 2.5, 3.5].
  hp = dict(LION_DEFAULTS, learning_rate=0.5)
  G.assert_single_step(A.get("lion"), [0.5, 1.5, 2.5, 3.5], **hp)


def test_lion_keras3_weight_decay():
  # keras/src/optimizers/lion_test.py::test_weight_decay: a zero gradient,
  # Lion(learning_rate=1.0, weight_decay=0.004) applied by three optimizers
  # to var1 = 2.0 -> 1.9760959 (decimal=6).
  hp = dict(LION_DEFAULTS, learning_rate=1.0, weight_decay=0.004)
  w = G.weight_decay_steps(A.get("lion"), **hp)
  assert abs(w - 1.9760959) < 1e-6


def test_lion_keras3_golden():
  # keras/src/optimizers/lion_test.py::test_correctness_with_golden: Lion().
  traj = G.golden_trajectory(A.get("lion"), **LION_DEFAULTS)
  G.assert_matches_golden(traj, G.LION)


def test_lion_paper_algorithm_2_by_hand():
  # One step written out: c = 0.5 * 0.2 + 0.5 * (-1) = -0.4 -> sign -1;
  # w = 2 - 0.1 * (-1 + 0.25 * 2) = 2.05; m = 0.75 * 0.2 + 0.25 * (-1) =
  # -0.1.
  w, m = R.lion_step(2.0, 0.2, -1.0, learning_rate=0.1, beta_1=0.5, beta_2=0.75,
                     weight_decay=0.25)
  np.testing.assert_allclose([w, m], [2.05, -0.1], rtol=1e-15)


@pytest.mark.parametrize("weight_decay", [None, 0.0625])
def test_lion_matches_keras3(weight_decay):
  # Keras 3's Lion in float64, against the reference (hyperparameters exactly
  # representable in float32, as Keras keeps them).
  rng = np.random.default_rng(4)
  w0 = rng.normal(size=(4, 3))
  grads = [rng.normal(size=(4, 3)) for _ in range(10)]
  hp = dict(learning_rate=0.125, beta_1=0.875, beta_2=1 - 2.0**-10)
  variable = keras.Variable(w0, dtype="float64")
  optimizer = keras.optimizers.Lion(weight_decay=weight_decay, **hp)
  for g in grads:
    optimizer.apply_gradients([(g, variable)])
  got = np.asarray(variable.numpy())
  w, m = w0, np.zeros_like(w0)
  for g in grads:
    w, m = R.lion_step(w, m, g, weight_decay=weight_decay or 0.0, **hp)
  np.testing.assert_allclose(got, w, rtol=1e-10, atol=1e-12)
