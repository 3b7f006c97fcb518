"""Checks tests/support/references.py against public golden values.

This is what makes the references independent of the code under test: every
number below was published by a third party (Keras, TF Addons, the Keras 2
Adam docstring) and is quoted with its source.  A second group of tests runs
the optimizers that ship with Keras 3.15 (installed next to TensorFlow) on
random data and compares them with the references where their semantics
agree.
"""

import numpy as np
import pytest

import keras_goldens as G
import algorithms as A
import references as R

ADAM_DEFAULTS = dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999,
                     epsilon=1e-7)
LAMB_DEFAULTS = dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999,
                     epsilon=1e-6, weight_decay_rate=0.0)
ADAFACTOR_DEFAULTS = dict(learning_rate=0.001, beta_2_decay=-0.8,
                          epsilon_1=1e-30, epsilon_2=1e-3, clip_threshold=1.0)


# ---------------------------------------------------------------------------
# Adam / AdamW
# ---------------------------------------------------------------------------
def test_adam_keras2_docstring_first_step():
  # Keras 2 keras/optimizer_v2/adam.py docstring: Adam(learning_rate=0.1),
  # var1 = 10.0, loss = var1**2/2 so grad = var1; after one minimize()
  # "var1.numpy() 9.9" ("The first step is `-learning_rate*sign(grad)`").
  hp = dict(ADAM_DEFAULTS, learning_rate=0.1, weight_decay=0.0)
  w, *_ = R.adamw_step(10.0, 0.0, 0.0, 10.0, step=1, **hp)
  np.testing.assert_allclose(w, 9.9, rtol=1e-6)


def test_adam_keras3_single_step():
  # keras/src/optimizers/adam_test.py::test_single_step:
  # Adam(learning_rate=0.5), grads [1,6,7,2], vars [1,2,3,4]
  # -> [0.5, 1.5, 2.5, 3.5] (rtol=atol=1e-4).
  hp = dict(ADAM_DEFAULTS, learning_rate=0.5, weight_decay=0.0)
  G.assert_single_step(A.get("adamw"), [0.5, 1.5, 2.5, 3.5], **hp)


def test_adam_amsgrad_keras3_golden():
  # keras/src/optimizers/adam_test.py::test_correctness_with_golden:
  # Adam(amsgrad=True) (lr 1e-3, eps 1e-7).
  golden = np.tile([[0.999], [0.9982], [0.9974], [0.9965], [0.9955]], (1, 10))
  traj = G.golden_trajectory(A.get("adamw"), amsgrad=True, weight_decay=0.0,
                             **ADAM_DEFAULTS)
  G.assert_matches_golden(traj, golden)


def test_adamw_keras3_single_step():
  # keras/src/optimizers/adamw_test.py::test_single_step:
  # AdamW(learning_rate=0.5) (default weight_decay=0.004), grads [1,6,7,2],
  # vars [1,2,3,4] -> [0.4980, 1.4960, 2.494, 3.492] (rtol=atol=1e-4).
  hp = dict(ADAM_DEFAULTS, learning_rate=0.5, weight_decay=0.004)
  G.assert_single_step(A.get("adamw"), [0.4980, 1.4960, 2.494, 3.492], **hp)


def test_adamw_keras3_weight_decay():
  # keras/src/optimizers/adamw_test.py::test_weight_decay: a zero gradient,
  # AdamW(learning_rate=1.0, weight_decay=0.004) applied by three fresh
  # optimizers (each at step 1) to var1 = 2.0 -> 1.9760959 (decimal=6).
  hp = dict(ADAM_DEFAULTS, learning_rate=1.0, weight_decay=0.004)
  w = G.weight_decay_steps(A.get("adamw"), **hp)
  assert abs(w - 1.9760959) < 1.5e-6


def test_adamw_keras3_golden():
  # keras/src/optimizers/adamw_test.py::test_correctness_with_golden:
  # AdamW(learning_rate=1.0, weight_decay=0.5, epsilon=2).
  golden = G.ADAMW
  hp = dict(ADAM_DEFAULTS, **G.ADAMW_HP)
  traj = G.golden_trajectory(A.get("adamw"), **hp)
  G.assert_matches_golden(traj, golden)


# ---------------------------------------------------------------------------
# LAMB
# ---------------------------------------------------------------------------
def test_lamb_keras3_single_step():
  # keras/src/optimizers/lamb_test.py::test_single_step: Lamb(lr=0.5),
  # grads [1,6,7,2], vars [1,2,3,4] -> [-0.3693, 0.6306, 1.6306, 2.6306]
  # (rtol=atol=1e-4).  No weight decay, so Keras Lamb == paper LAMB.
  hp = dict(LAMB_DEFAULTS, learning_rate=0.5)
  G.assert_single_step(A.get("lamb"), [-0.3693, 0.6306, 1.6306, 2.6306], **hp)


def test_lamb_keras3_golden():
  # keras/src/optimizers/lamb_test.py::test_correctness_with_golden:
  # Lamb() defaults (lr 1e-3, eps 1e-6 as in the paper / Model Garden).
  golden = np.tile([[0.999], [0.9982], [0.9974], [0.9965], [0.9955]], (1, 10))
  traj = G.golden_trajectory(A.get("lamb"), **LAMB_DEFAULTS)
  G.assert_matches_golden(traj, golden)


def test_lamb_addons_minimize_with_weight_decay():
  # tensorflow/addons optimizers/tests/lamb_test.py::
  # test_minimize_mean_square_loss_with_weight_decay: w = [0.1, -0.2, -0.1],
  # x = [0.4, 0.2, -0.5], loss = mean((x - w)^2), LAMB(0.02,
  # weight_decay=0.01), 200 minimize steps -> w == x (rtol=atol=1e-2).
  x = np.array([0.4, 0.2, -0.5])
  w = np.array([0.1, -0.2, -0.1])
  m = np.zeros(3)
  v = np.zeros(3)
  hp = dict(LAMB_DEFAULTS, learning_rate=0.02, weight_decay_rate=0.01)
  for t in range(1, 201):
    g = -2.0 * (x - w) / 3.0
    w, m, v = R.lamb_step(w, m, v, g, step=t, **hp)
  np.testing.assert_allclose(w, x, rtol=1e-2, atol=1e-2)


def test_lamb_matches_addons_numpy_formula_trust_ratio_with_decay():
  # The TF Addons / Model Garden numpy update (lamb_update_numpy) puts the
  # weight decay inside the trust ratio: ratio = ||w|| / ||u + wd*w||.
  # One step from w=[1, 2], g=[0.1, 0.1], wd=0.01, lr=1e-3, eps=1e-6 (the
  # defaults there): m_hat/(sqrt(v_hat)+eps) = 0.1/(0.1+1e-6) per element.
  w0 = np.array([1.0, 2.0])
  hp = dict(LAMB_DEFAULTS, weight_decay_rate=0.01)
  w, _, _ = R.lamb_step(w0, np.zeros(2), np.zeros(2), [0.1, 0.1], step=1, **hp)
  u = np.full(2, 0.1 / (0.1 + 1e-6)) + 0.01 * w0
  expected = w0 - 1e-3 * (np.linalg.norm(w0) / np.linalg.norm(u)) * u
  np.testing.assert_allclose(w, expected, rtol=1e-14)


def test_lamb_zero_weight_trust_ratio_is_one():
  w, _, _ = R.lamb_step(np.zeros(3), np.zeros(3), np.zeros(3), [1.0, -2.0, 3.0],
                        step=1, **LAMB_DEFAULTS)
  # First step: u = sign(g) * 1/(1+eps/|g|) ~= sign(g); ratio 1.
  np.testing.assert_allclose(w, -1e-3 * np.sign([1.0, -2.0, 3.0]), rtol=1e-5)


# ---------------------------------------------------------------------------
# Adafactor
# ---------------------------------------------------------------------------
ADAFACTOR_GOLDEN = G.ADAFACTOR
ADAFACTOR_GOLDEN_HP = G.ADAFACTOR_HP


def test_adafactor_keras3_golden():
  # keras/src/optimizers/adafactor_test.py::test_correctness_with_golden:
  # Adafactor(learning_rate=0.5, beta_2_decay=-0.65, epsilon_1=1e-15,
  # epsilon_2=1e-4, clip_threshold=0.9, relative_step=False).
  # Keras ignores relative_step (defect 5 in docs/keras_defects.md): it always
  # uses rho = min(lr, 1/sqrt(t)), so its golden values are those of
  # relative_step=True.
  traj = G.golden_trajectory(A.get("adafactor"), relative_step=True,
                             **ADAFACTOR_GOLDEN_HP)
  G.assert_matches_golden(traj, ADAFACTOR_GOLDEN)


def test_adafactor_keras3_golden_relative_step_false():
  # With relative_step honoured, the first four rows (t <= 4, where
  # 1/sqrt(t) >= lr = 0.5) are identical to Keras's golden values; at t = 5
  # rho is lr = 0.5 instead of 1/sqrt(5) = 0.447, so the last row differs.
  traj = G.golden_trajectory(A.get("adafactor"), relative_step=False,
                             **ADAFACTOR_GOLDEN_HP)
  G.assert_matches_golden(traj[:4], ADAFACTOR_GOLDEN[:4])
  assert np.all(np.abs(traj[4] - ADAFACTOR_GOLDEN[4]) > 2e-3)


def test_adafactor_keras3_single_step_1d():
  # keras/src/optimizers/adafactor_test.py::test_single_step_1d:
  # Adafactor(learning_rate=0.5), grads [1,6,7,2], vars [1,2,3,4]
  # -> [-0.3693, 0.6307, 1.6307, 2.6307] (rtol=atol=1e-4).
  hp = dict(ADAFACTOR_DEFAULTS, learning_rate=0.5)
  G.assert_single_step(A.get("adafactor"), [-0.3693, 0.6307, 1.6307, 2.6307],
                       **hp)


def test_adafactor_keras3_single_step_2d():
  # keras/src/optimizers/adafactor_test.py::test_single_step_2d:
  # Adafactor(learning_rate=0.5), grads [[1,6],[7,2]], vars [[1,2],[3,4]]
  # -> [[0.7007, -0.0081], [1.2492, 3.4407]] (rtol=atol=1e-4).
  hp = dict(ADAFACTOR_DEFAULTS, learning_rate=0.5)
  w, (r, c) = R.adafactor_step([[1.0, 2.0], [3.0, 4.0]],
                               R.adafactor_zero_accumulators((2, 2)),
                               [[1.0, 6.0], [7.0, 2.0]], step=1, **hp)
  np.testing.assert_allclose(w, [[0.7007, -0.0081], [1.2492, 3.4407]],
                             rtol=1e-4, atol=1e-4)
  assert r.shape == (2,) and c.shape == (2,)


def test_adafactor_accumulator_shapes():
  assert R.adafactor_accumulator_shapes(()) == ((),)
  assert R.adafactor_accumulator_shapes((5,)) == ((5,),)
  assert R.adafactor_accumulator_shapes((4, 3)) == ((4,), (3,))
  assert R.adafactor_accumulator_shapes((2, 3, 4)) == ((2, 3), (2, 4))
  assert R.adafactor_accumulator_shapes((2, 2, 3, 4)) == ((2, 2, 3), (2, 2, 4))


def test_adafactor_zero_row_and_column_is_finite_in_float64():
  # Keras defect 9 (docs/keras_defects.md): the reference must stay finite.
  g = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [0.0, 3.0, 4.0]])
  w, (r, c) = R.adafactor_step(np.ones((3, 3)),
                               R.adafactor_zero_accumulators((3, 3)), g, step=1,
                               **ADAFACTOR_DEFAULTS)
  assert np.all(np.isfinite(w))
  np.testing.assert_array_equal(w[0, :], 1.0)
  np.testing.assert_array_equal(w[:, 0], 1.0)


# ---------------------------------------------------------------------------
# Cross-checks against the optimizers shipped with Keras 3 (float64).
# Keras keeps the learning rate in a float32 variable and casts beta_1/beta_2
# through float32 when it forms beta**t, so the hyperparameters below are
# exactly representable in float32 (0.875, 1 - 2**-10, powers of two).
# ---------------------------------------------------------------------------
def _keras_run(opt, w0, grads):
  import keras
  var = keras.Variable(w0, dtype="float64")
  for g in grads:
    opt.apply_gradients([(g, var)])
  return np.asarray(var.numpy())


def _random_problem(shape, steps, seed):
  rng = np.random.default_rng(seed)
  w0 = rng.normal(size=shape)
  grads = [rng.normal(size=shape) for _ in range(steps)]
  return w0, grads


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.0625])
def test_adamw_matches_keras3(amsgrad, weight_decay):
  import keras
  w0, grads = _random_problem((4, 3), 10, seed=1)
  hp = dict(learning_rate=0.125, beta_1=0.875, beta_2=1 - 2.0**-10,
            epsilon=1e-7)
  if weight_decay:
    opt = keras.optimizers.AdamW(weight_decay=weight_decay, amsgrad=amsgrad,
                                 **hp)
  else:
    opt = keras.optimizers.Adam(amsgrad=amsgrad, **hp)
  got = _keras_run(opt, w0, grads)
  w, m, v = w0, np.zeros_like(w0), np.zeros_like(w0)
  vhat = np.zeros_like(w0) if amsgrad else None
  for t, g in enumerate(grads, 1):
    w, m, v, vhat = R.adamw_step(w, m, v, g, step=t, vhat=vhat,
                                 weight_decay=weight_decay, **hp)
  np.testing.assert_allclose(got, w, rtol=1e-10, atol=1e-12)


def test_lamb_without_decay_matches_keras3():
  import keras
  w0, grads = _random_problem((4, 3), 10, seed=2)
  hp = dict(learning_rate=0.125, beta_1=0.875, beta_2=1 - 2.0**-10,
            epsilon=1e-6)
  got = _keras_run(keras.optimizers.Lamb(**hp), w0, grads)
  w, m, v = w0, np.zeros_like(w0), np.zeros_like(w0)
  for t, g in enumerate(grads, 1):
    w, m, v = R.lamb_step(w, m, v, g, step=t, weight_decay_rate=0.0, **hp)
  np.testing.assert_allclose(got, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)])
def test_adafactor_relative_step_matches_keras3(shape):
  import keras
  w0, grads = _random_problem(shape, 10, seed=3)
  hp = dict(learning_rate=0.5, beta_2_decay=-0.8, epsilon_1=1e-30,
            epsilon_2=1e-3, clip_threshold=1.0)
  got = _keras_run(keras.optimizers.Adafactor(**hp), w0, grads)
  w, acc = w0, R.adafactor_zero_accumulators(shape)
  for t, g in enumerate(grads, 1):
    w, acc = R.adafactor_step(w, acc, g, step=t, relative_step=True, **hp)
  np.testing.assert_allclose(got, w, rtol=1e-10, atol=1e-12)
