"""Mixed precision: fit() under mixed_float16 / mixed_bfloat16 policies,
half-precision variables without a policy, and dynamic loss scaling."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_harness as H
import tf_opt_plugin as top

OPTIMIZERS = H.optimizer_factories("mixed_precision", top)


@pytest.fixture
def policy():
  previous = keras.mixed_precision.global_policy()
  yield keras.mixed_precision.set_global_policy
  keras.mixed_precision.set_global_policy(previous)


def _fit(optimizer):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 16)).astype("float32")
  y = (x[:, :1] * 2.0 - x[:, 1:2]).astype("float32")
  keras.utils.set_random_seed(0)
  model = keras.Sequential([
      keras.Input((16,)),
      keras.layers.Dense(32, activation="relu"),
      keras.layers.Dense(1, dtype="float32"),
  ])
  model.compile(optimizer=optimizer, loss="mse")
  history = model.fit(x, y, epochs=5, batch_size=32, verbose=0)
  return model, history.history["loss"]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("policy_name", ["mixed_float16", "mixed_bfloat16"])
def test_fit_under_a_mixed_policy(name, policy_name, policy):
  policy(policy_name)
  model, losses = _fit(OPTIMIZERS[name]())
  assert model.layers[0].kernel.dtype == "float32"
  assert np.isfinite(losses).all()
  assert losses[-1] < 0.5 * losses[0], losses
  if policy_name == "mixed_float16":  # Keras adds dynamic loss scaling
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_our_loss_scale_optimizer_is_not_wrapped_again(policy):
  policy("mixed_float16")
  optimizer = top.LossScaleOptimizer(top.Lamb(0.01))
  model, losses = _fit(optimizer)
  assert model.optimizer is optimizer
  assert losses[-1] < 0.5 * losses[0]
  assert int(optimizer.iterations) == 5 * 8


@pytest.mark.parametrize("dtype,tol", [("float16", 1e-2), ("bfloat16", 6e-2)])
@pytest.mark.parametrize("name", ["adam", "lamb", "adafactor"])
def test_half_precision_variables_without_a_policy(dtype, tol, name):
  cls, algorithm = {
      "adam": (top.Adam, H.Algorithm("adam")),
      "lamb": (top.Lamb, H.Algorithm("lamb")),
      "adafactor": (top.Adafactor, H.Algorithm("adafactor")),
  }[name]
  w0, grads = H.random_problem(10, seed=5)
  # Start from values the half type represents exactly.
  w0 = {
      p: np.asarray(tf.cast(tf.cast(v, dtype), tf.float64))
      for p, v in w0.items()
  }
  optimizer = cls(learning_rate=0.05)
  got = H.run_optimizer(optimizer, w0, grads, "function", dtype=dtype)
  want = H.reference_run(algorithm, w0, grads,
                         learning_rate=float(np.float32(0.05)))
  assert all(v.dtype == dtype for v in optimizer.variables[2:])
  H.assert_trajectory_close(got, want, rtol=tol, atol=tol)
  moved = np.max(np.abs(got["dense/kernel"] - w0["dense/kernel"]))
  assert moved > 0.1


def test_loss_scale_optimizer_skips_non_finite_steps_and_adapts_the_scale():
  variable = keras.Variable(np.ones((2, 2), np.float32))
  optimizer = top.LossScaleOptimizer(top.SGD(0.5), initial_scale=8.0,
                                     dynamic_growth_steps=2)
  scale = 8.0
  # The gradients reach the optimizer multiplied by the loss scale.
  optimizer.apply_gradients([(tf.fill((2, 2), np.inf), variable)])
  np.testing.assert_array_equal(variable.numpy(), 1.0)
  assert float(optimizer.dynamic_scale.numpy()) == scale / 2
  assert int(optimizer.iterations) == 0
  scale /= 2
  for expected_scale in (scale, scale * 2):
    optimizer.apply_gradients([(tf.fill((2, 2), scale * 0.25), variable)])
    assert float(optimizer.dynamic_scale.numpy()) == expected_scale
    scale = float(optimizer.dynamic_scale.numpy())
  np.testing.assert_allclose(variable.numpy(), 1.0 - 2 * 0.5 * 0.25)
  assert int(optimizer.iterations) == 2
  optimizer.apply_gradients([(tf.constant([[np.nan, 0.0], [0.0,
                                                           0.0]]), variable)])
  np.testing.assert_allclose(variable.numpy(), 0.75)
  assert float(optimizer.dynamic_scale.numpy()) == scale / 2
