"""LAMB: fused op and pure-TF twin against the float64 reference."""

import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
import op_harness as H
import references as R
import tf_opt_plugin.ops as ops


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("weight_decay_rate", [0.0, 0.1])
@pytest.mark.parametrize("use_layer_adaptation", [True, False])
def test_adaptation_and_weight_decay(fused, weight_decay_rate,
                                     use_layer_adaptation):
  algo = H.Lamb(use_layer_adaptation=use_layer_adaptation,
                weight_decay_rate=weight_decay_rate, learning_rate=0.05)
  w = H.run_and_compare(algo, (6, 3), "float64",
                        "fused-eager" if fused else "twin-eager", steps=20,
                        seed=20)[0]
  assert np.all(np.isfinite(w))


@pytest.mark.parametrize("fused", [True, False])
def test_settings_change_the_result(fused):
  rng = np.random.default_rng(21)
  w0 = rng.normal(size=(4, 4)) * 3.0
  grads = [rng.normal(size=(4, 4)) for _ in range(5)]
  out = {}
  for ula in (True, False):
    for wd in (0.0, 0.1):
      algo = H.Lamb(use_layer_adaptation=ula, weight_decay_rate=wd)
      state = H.make_state(algo, (4, 4), tf.float64, w0=w0)
      for t, g in enumerate(grads, 1):
        algo.apply(state, tf.constant(g), t, fused=fused)
      out[(ula, wd)] = state[0].numpy()
  keys = list(out)
  for i in range(len(keys)):
    for j in range(i + 1, len(keys)):
      assert not np.allclose(out[keys[i]], out[keys[j]], rtol=1e-9,
                             atol=0), (keys[i], keys[j])


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("weight_decay_rate", [0.0, 0.1])
def test_zero_variable_uses_trust_ratio_one(fused, weight_decay_rate):
  algo = H.Lamb(weight_decay_rate=weight_decay_rate, learning_rate=0.1)
  g = np.array([[1.0, -2.0], [0.5, 4.0]])
  state = H.make_state(algo, (2, 2), tf.float64, w0=np.zeros((2, 2)))
  algo.apply(state, tf.constant(g), 1, fused=fused)
  # Step 1 from zero slots: m_hat = g, v_hat = g^2, u = g/(|g|+eps), r = 1.
  expected = -0.1 * g / (np.abs(g) + 1e-6)
  np.testing.assert_allclose(state[0].numpy(), expected, rtol=1e-12)
  ref = algo.ref(
      H.read_state(H.make_state(algo, (2, 2), tf.float64, w0=np.zeros((2, 2)))),
      g, 1, algo.hp)
  np.testing.assert_allclose(state[0].numpy(), ref[0], rtol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_trust_ratio_uses_whole_variable_norms(fused):
  # Two variables with the same gradient but weights of different norm move
  # by amounts proportional to ||w|| (first step, no weight decay).
  g = np.array([0.3, -0.4, 0.5])
  moves = []
  for scale in (1.0, 4.0):
    algo = H.Lamb(weight_decay_rate=0.0, learning_rate=0.01)
    w0 = scale * np.array([1.0, 2.0, 2.0])
    state = H.make_state(algo, (3,), tf.float64, w0=w0)
    algo.apply(state, tf.constant(g), 1, fused=fused)
    moves.append(state[0].numpy() - w0)
  np.testing.assert_allclose(moves[1], 4.0 * moves[0], rtol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", [(0, 4), (0,)])
def test_zero_size_variable_is_a_no_op(fused, shape):
  algo = H.Lamb()
  state = H.make_state(algo, shape, tf.float32, w0=np.zeros(shape))
  algo.apply(state, tf.zeros(shape), 1, fused=fused)
  for v in state:
    assert v.shape == shape


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("weight_decay_rate", [0.0, 0.01])
def test_zero_gradient_gives_no_nan(fused, weight_decay_rate):
  algo = H.Lamb(weight_decay_rate=weight_decay_rate)
  w0 = np.arange(12.0).reshape(4, 3) - 5.0
  state = H.make_state(algo, (4, 3), tf.float32, w0=w0)
  ref = (w0, np.zeros((4, 3)), np.zeros((4, 3)))
  hp = H.compute_hp(algo.hp, "float32")
  for t in range(1, 4):
    algo.apply(state, tf.zeros((4, 3)), t, fused=fused)
    ref = algo.ref(ref, np.zeros((4, 3)), t, hp)
  for v in state:
    assert np.all(np.isfinite(v.numpy()))
  np.testing.assert_allclose(state[0].numpy(), ref[0], rtol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_gradient_behaves_like_reference(fused, bad):
  algo = H.Lamb()
  w0 = np.linspace(-1, 1, 12).reshape(4, 3)
  state = H.make_state(algo, (4, 3), tf.float32, w0=w0)
  g = np.full((4, 3), 0.5)
  g[2, 1] = bad
  algo.apply(state, tf.constant(g, tf.float32), 1, fused=fused)
  ref = algo.ref((w0, np.zeros((4, 3)), np.zeros((4, 3))), g, 1,
                 H.compute_hp(algo.hp, "float32"))
  for a, e in zip(H.read_state(state), ref):
    np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_raw_op_matches_reference():
  lib = ops.load_library()
  w0 = np.array([[1.0, -2.0], [3.0, 0.5]])
  g = np.array([[0.5, 0.25], [-1.0, 2.0]])
  var, m, v = (tf.Variable(x) for x in (w0, np.zeros((2, 2)), np.zeros((2, 2))))
  f64 = lambda x: tf.constant(x, tf.float64)  # noqa: E731
  lib.resource_apply_lamb(absmax=[], rounding_key=[], var=var.handle,
                          m=m.handle, v=v.handle, lr=f64(0.1), beta_1=f64(0.9),
                          beta_2=f64(0.999), epsilon=f64(1e-6),
                          weight_decay_rate=f64(0.01),
                          step=tf.constant(1, tf.int64), grad=tf.constant(g),
                          use_layer_adaptation=True, use_locking=True)
  ew, em, ev = R.lamb_step(w0, 0, 0, g, step=1,
                           **A.op_hp("lamb", learning_rate=0.1))
  np.testing.assert_allclose(var.numpy(), ew, rtol=1e-12)
  np.testing.assert_allclose(m.numpy(), em, rtol=1e-12)
  np.testing.assert_allclose(v.numpy(), ev, rtol=1e-12)
