"""Adafactor: fused op and pure-TF twin against the float64 reference."""

import numpy as np
import pytest
import tensorflow as tf

import op_harness as H
import references as R
import tf_opt_plugin.ops as ops

RANK_SHAPES = [(), (5,), (4, 3), (2, 3, 4), (2, 2, 3, 4)]


@pytest.mark.parametrize("mode", ["fused-eager", "twin-eager", "twin-xla"])
@pytest.mark.parametrize("relative_step", [True, False])
@pytest.mark.parametrize("shape", RANK_SHAPES, ids=str)
def test_ranks_0_to_4(shape, relative_step, mode):
  algo = H.Adafactor(relative_step=relative_step, learning_rate=0.5)
  H.run_and_compare(algo, shape, "float64", mode, steps=12, seed=40)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", [(6,), (4, 3)], ids=str)
def test_relative_step_false_differs_from_true(fused, shape):
  # lr = 0.5 > 1/sqrt(t) for t >= 5, so relative_step must matter
  # (Keras 3 ignores it: defect 5 in docs/keras_defects.md).
  rng = np.random.default_rng(41)
  w0 = rng.normal(size=shape)
  grads = [rng.normal(size=shape) for _ in range(8)]
  out = {}
  for rs in (True, False):
    algo = H.Adafactor(relative_step=rs, learning_rate=0.5)
    state = H.make_state(algo, shape, tf.float64, w0=w0)
    ref = H.read_state(state)
    for t, g in enumerate(grads, 1):
      algo.apply(state, tf.constant(g), t, fused=fused)
      ref = algo.ref(ref, g, t, algo.hp)
    out[rs] = state[0].numpy()
    np.testing.assert_allclose(out[rs], ref[0], rtol=1e-9)
  assert np.max(np.abs(out[True] - out[False])) > 1e-3


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (0,), (2, 0, 3)], ids=str)
def test_zero_size_variable_is_a_no_op(fused, shape):
  algo = H.Adafactor()
  state = H.make_state(algo, shape, tf.float32, w0=np.zeros(shape))
  algo.apply(state, tf.zeros(shape), 1, fused=fused)
  assert state[0].shape == shape
  for slot, slot_shape in zip(state[1:], algo.slot_shapes(shape)):
    assert slot.shape == slot_shape
    # Nothing to do: the accumulators stay as they were (zeros, no NaN).
    np.testing.assert_array_equal(slot.numpy(), np.zeros(slot_shape))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("dtype", list(H.DTYPES))
@pytest.mark.parametrize("shape", [(), (5,), (4, 3), (2, 3, 4)], ids=str)
def test_all_zero_gradient_gives_no_nan(fused, dtype, shape):
  algo = H.Adafactor()
  w0 = np.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape)
  state = H.make_state(algo, shape, H.DTYPES[dtype], w0=w0)
  for t in range(1, 4):
    algo.apply(state, tf.zeros(shape, H.DTYPES[dtype]), t, fused=fused)
  got = H.read_state(state)
  for v in got:
    assert np.all(np.isfinite(v)), got
  # A zero gradient gives a zero update.
  np.testing.assert_array_equal(
      got[0], H.to_np(tf.cast(tf.constant(w0), H.DTYPES[dtype])))


@pytest.mark.parametrize("mode", ["fused-eager", "twin-eager", "twin-xla"])
def test_zero_row_and_zero_column_float32(mode):
  # Keras defect 9 (docs/keras_defects.md): a float32 gradient with an
  # all-zero row and an all-zero column (constant-zero input feature and a
  # dead unit) must not turn the weight into NaN; r_i*c_j/mean(r) underflows
  # to 0.
  rng = np.random.default_rng(50)
  shape = (6, 5)
  algo = H.Adafactor(learning_rate=0.01)
  state = H.make_state(algo, shape, tf.float32, rng=rng)
  runner = H.make_runner(algo, state, mode)
  hp = H.compute_hp(algo.hp, "float32")
  ref = H.read_state(state)
  for t in range(1, 11):
    g = rng.normal(size=shape) * 10.0
    g[2, :] = 0.0
    g[:, 3] = 0.0
    g = H.to_np(tf.constant(g, tf.float32))
    runner(tf.constant(g, tf.float32), tf.constant(t, tf.int64))
    ref = algo.ref(ref, g, t, hp)
  got = H.read_state(state)
  assert np.all(np.isfinite(got[0]))
  H.assert_close(got[0], ref[0], rtol=1e-4, atol_scale=1e-5, what="var")
  for a, e in zip(got[1:], ref[1:]):
    np.testing.assert_allclose(a, e, rtol=1e-4)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("shape", [(5,), (4, 3)], ids=str)
def test_non_finite_gradient_behaves_like_reference(fused, bad, shape):
  algo = H.Adafactor()
  w0 = np.linspace(-1, 1, int(np.prod(shape))).reshape(shape)
  state = H.make_state(algo, shape, tf.float32, w0=w0)
  g = np.full(shape, 0.5)
  g.flat[2] = bad
  algo.apply(state, tf.constant(g, tf.float32), 1, fused=fused)
  ref = algo.ref((w0,) + R.adafactor_zero_accumulators(shape), g, 1,
                 H.compute_hp(algo.hp, "float32"))
  for a, e in zip(H.read_state(state), ref):
    np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("fused", [True, False])
def test_clipping_is_applied(fused):
  # One step from zero accumulators: u = sign(g) elementwise (RMS 1), so
  # with clip_threshold 0.5 the update is halved relative to threshold 1.
  moves = {}
  for d in (1.0, 0.5):
    algo = H.Adafactor(clip_threshold=d, learning_rate=0.1, relative_step=False)
    w0 = np.array([3.0, -4.0])
    state = H.make_state(algo, (2,), tf.float64, w0=w0)
    algo.apply(state, tf.constant([1.0, 2.0], tf.float64), 1, fused=fused)
    moves[d] = state[0].numpy() - w0
  rms_w = np.sqrt((9.0 + 16.0) / 2)
  np.testing.assert_allclose(moves[1.0], -0.1 * rms_w * np.ones(2), rtol=1e-9)
  np.testing.assert_allclose(moves[0.5], 0.5 * moves[1.0], rtol=1e-9)


def test_raw_op_matches_reference():
  lib = ops.load_library()
  w0 = np.array([[1.0, -2.0, 0.5], [3.0, 0.5, -1.0]])
  g = np.array([[0.5, 0.25, 1.0], [-1.0, 2.0, 0.1]])
  var = tf.Variable(w0)
  row, col = tf.Variable(np.zeros(2)), tf.Variable(np.zeros(3))
  f64 = lambda x: tf.constant(x, tf.float64)  # noqa: E731
  hp = dict(learning_rate=0.5, beta_2_decay=-0.8, epsilon_1=1e-30,
            epsilon_2=1e-3, clip_threshold=1.0)
  for t in (1, 2):
    lib.resource_apply_adafactor(
        var=var.handle, accumulators=[row.handle, col.handle], lr=f64(0.5),
        beta_2_decay=f64(-0.8), epsilon_1=f64(1e-30), epsilon_2=f64(1e-3),
        clip_threshold=f64(1.0), step=tf.constant(t, tf.int64),
        grad=tf.constant(g * t), relative_step=False, use_locking=True)
  ew, acc = w0, R.adafactor_zero_accumulators((2, 3))
  for t in (1, 2):
    ew, acc = R.adafactor_step(ew, acc, g * t, step=t, relative_step=False,
                               **hp)
  np.testing.assert_allclose(var.numpy(), ew, rtol=1e-12)
  np.testing.assert_allclose(row.numpy(), acc[0], rtol=1e-12)
  np.testing.assert_allclose(col.numpy(), acc[1], rtol=1e-12)
