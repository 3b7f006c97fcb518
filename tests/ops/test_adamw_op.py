"""AdamW / Adam: fused op and pure-TF twin against the float64 reference."""

import numpy as np
import pytest
import tensorflow as tf

import op_harness as H
import references as R
import tf_opt_plugin.ops as ops


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_weight_decay_zero_equals_keras_adam(fused, amsgrad):
  import keras
  rng = np.random.default_rng(7)
  shape = (6, 4)
  w0 = rng.normal(size=shape).astype(np.float32)
  grads = [rng.normal(size=shape).astype(np.float32) for _ in range(20)]
  hp = dict(learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7)

  kvar = keras.Variable(w0, dtype="float32")
  opt = keras.optimizers.Adam(amsgrad=amsgrad, **hp)
  for g in grads:
    opt.apply_gradients([(tf.constant(g), kvar)])

  algo = H.AdamW(amsgrad=amsgrad, weight_decay=0.0, **hp)
  state = H.make_state(algo, shape, tf.float32, w0=w0)
  for t, g in enumerate(grads, 1):
    algo.apply(state, tf.constant(g), t, fused=fused)
  np.testing.assert_allclose(state[0].numpy(), kvar.numpy(), rtol=1e-5,
                             atol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_amsgrad_vhat_is_running_max(fused):
  # A large gradient followed by small ones: v decays, vhat keeps the max.
  algo = H.AdamW(amsgrad=True, learning_rate=0.1, weight_decay=0.0)
  state = H.make_state(algo, (3,), tf.float64, w0=np.ones(3))
  grads = [np.array([10.0, -10.0, 5.0])] + [np.full(3, 0.01)] * 5
  ref = H.read_state(state)
  for t, g in enumerate(grads, 1):
    algo.apply(state, tf.constant(g), t, fused=fused)
    ref = algo.ref(ref, g, t, algo.hp)
  got = H.read_state(state)
  for a, e in zip(got, ref):
    np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-15)
  assert np.all(got[3] > got[2])  # vhat > v after the decay


@pytest.mark.parametrize("fused", [True, False])
def test_amsgrad_differs_from_adam(fused):
  grads = [np.array([10.0, -10.0]), np.array([0.1, 0.1]), np.array([0.1, 0.1])]
  out = {}
  for ams in (False, True):
    algo = H.AdamW(amsgrad=ams, learning_rate=0.1, weight_decay=0.0)
    state = H.make_state(algo, (2,), tf.float64, w0=np.ones(2))
    for t, g in enumerate(grads, 1):
      algo.apply(state, tf.constant(g), t, fused=fused)
    out[ams] = state[0].numpy()
  assert not np.allclose(out[False], out[True], rtol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_weight_decay_is_decoupled(fused):
  # Zero gradient: only the decoupled decay moves the weight
  # (w <- w - lr*wd*w), as in Keras AdamW's published test_weight_decay.
  algo = H.AdamW(learning_rate=1.0, weight_decay=0.004)
  state = H.make_state(algo, (), tf.float64, w0=np.array(2.0))
  for _ in range(3):
    algo.apply(state, tf.constant(0.0, tf.float64), 1, fused=fused)
  assert abs(state[0].numpy() - 1.9760959) < 1.5e-6


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shape", [(0, 4), (0,)])
def test_zero_size_variable_is_a_no_op(fused, shape):
  algo = H.AdamW(amsgrad=True)
  state = H.make_state(algo, shape, tf.float32, w0=np.zeros(shape))
  algo.apply(state, tf.zeros(shape), 1, fused=fused)
  for v in state:
    assert v.shape == shape


@pytest.mark.parametrize("fused", [True, False])
def test_zero_gradient_gives_no_nan(fused):
  algo = H.AdamW(amsgrad=True)
  state = H.make_state(algo, (4, 3), tf.float32,
                       w0=np.arange(12.0).reshape(4, 3))
  for t in range(1, 4):
    algo.apply(state, tf.zeros((4, 3)), t, fused=fused)
  for v in state:
    assert np.all(np.isfinite(v.numpy()))
  ref = (np.arange(12.0).reshape(4, 3),) + (np.zeros((4, 3)),) * 3
  hp = H.compute_hp(algo.hp, "float32")
  for t in range(1, 4):
    ref = algo.ref(ref, np.zeros((4, 3)), t, hp)
  np.testing.assert_allclose(state[0].numpy(), ref[0], rtol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_gradient_behaves_like_reference(fused, bad):
  algo = H.AdamW(amsgrad=True)
  w0 = np.linspace(-1, 1, 12).reshape(4, 3)
  state = H.make_state(algo, (4, 3), tf.float32, w0=w0)
  g = np.full((4, 3), 0.5)
  g[1, 2] = bad
  algo.apply(state, tf.constant(g, tf.float32), 1, fused=fused)
  ref = algo.ref(H.read_state(H.make_state(algo, (4, 3), tf.float32, w0=w0)), g,
                 1, H.compute_hp(algo.hp, "float32"))
  for a, e in zip(H.read_state(state), ref):
    np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("fused", [True, False])
def test_scalars_as_tensors_and_variables(fused):
  rng = np.random.default_rng(3)
  w0 = rng.normal(size=(5, 2))
  grads = [rng.normal(size=(5, 2)) for _ in range(4)]
  algo = H.AdamW()
  results = []
  for kind in ("python", "tensor", "variable"):
    state = H.make_state(algo, (5, 2), tf.float64, w0=w0)
    if kind == "python":
      hp = dict(algo.hp)
    elif kind == "tensor":
      hp = {k: tf.constant(v, tf.float64) for k, v in algo.hp.items()}
    else:
      hp = {k: tf.Variable(v, dtype=tf.float64) for k, v in algo.hp.items()}
    step_var = tf.Variable(0, dtype=tf.int64)
    for t, g in enumerate(grads, 1):
      if kind == "python":
        step = t
      elif kind == "tensor":
        step = tf.constant(t, tf.int64)
      else:
        step_var.assign(t)
        step = step_var
      algo.apply(state, tf.constant(g), step, fused=fused, hp=hp)
    results.append(state[0].numpy())
  ref = (w0, np.zeros_like(w0), np.zeros_like(w0))
  for t, g in enumerate(grads, 1):
    ref = algo.ref(ref, g, t, algo.hp)
  for r in results:
    np.testing.assert_allclose(r, ref[0], rtol=1e-12)


def test_use_locking_false_gives_same_result():
  rng = np.random.default_rng(4)
  w0 = rng.normal(size=(5, 3))
  out = []
  for locking in (True, False):
    algo = H.AdamW()
    state = H.make_state(algo, (5, 3), tf.float64, w0=w0)
    for t in range(1, 4):
      algo.apply(state, tf.constant(np.full((5, 3), 0.1 * t)), t, fused=True,
                 use_locking=locking)
    out.append(state[0].numpy())
  np.testing.assert_array_equal(out[0], out[1])


def test_raw_op_matches_reference():
  lib = ops.load_library()
  w0 = np.array([1.0, -2.0, 3.0])
  g = np.array([0.5, 0.25, -1.0])
  var, m, v, vhat = (
      tf.Variable(x) for x in (w0, np.zeros(3), np.zeros(3), np.zeros(3)))
  hp = dict(learning_rate=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
            weight_decay=0.01)
  lib.resource_apply_adam_w(
      absmax=[], rounding_key=[], var=var.handle, m=m.handle, v=v.handle,
      vhat=[vhat.handle
           ], lr=tf.constant(0.1,
                             tf.float64), beta_1=tf.constant(0.9, tf.float64),
      beta_2=tf.constant(0.999,
                         tf.float64), epsilon=tf.constant(1e-7, tf.float64),
      weight_decay=tf.constant(0.01, tf.float64), step=tf.constant(1, tf.int64),
      grad=tf.constant(g), use_locking=True)
  ew, em, ev, evhat = R.adamw_step(w0, 0, 0, g, step=1, vhat=np.zeros(3), **hp)
  np.testing.assert_allclose(var.numpy(), ew, rtol=1e-12)
  np.testing.assert_allclose(m.numpy(), em, rtol=1e-12)
  np.testing.assert_allclose(v.numpy(), ev, rtol=1e-12)
  np.testing.assert_allclose(vhat.numpy(), evhat, rtol=1e-12)
