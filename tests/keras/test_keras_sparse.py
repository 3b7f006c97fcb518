"""Sparse gradients (tf.IndexedSlices, e.g. from Embedding): repeated indices
are summed before any nonlinear math, so a sparse update equals the dense
one (Keras 3 squares each duplicate separately, defect 4)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_harness as H
import tf_opt_plugin as top

OPTIMIZERS = H.optimizer_factories("sparse", top)


def _sparse_gradients(steps, seed, rows=12, width=3):
  rng = np.random.default_rng(seed)
  grads = []
  for _ in range(steps):
    indices = rng.integers(0, rows // 2, size=8)  # many repeats, rows untouched
    values = rng.normal(size=(8, width)).astype(np.float32)
    grads.append(
        tf.IndexedSlices(tf.constant(values), tf.constant(indices),
                         tf.constant([rows, width])))
  return grads


def _make_step(optimizer, variable, densify):

  def step(grad):
    if densify:
      grad = tf.convert_to_tensor(grad)
    optimizer.apply_gradients([(grad, variable)])

  return step


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("mode", ["eager", "function"])
def test_sparse_update_equals_dense_update(name, mode):
  grads = _sparse_gradients(10, seed=3)
  w0 = np.random.default_rng(4).normal(size=(12, 3)).astype(np.float32)
  results = []
  for densify in (False, True):
    variable = keras.Variable(w0)
    step = _make_step(OPTIMIZERS[name](), variable, densify)
    if mode == "function":
      step = tf.function(step)
    for g in grads:
      step(g)
    results.append(variable.numpy())
  np.testing.assert_allclose(results[0], results[1], rtol=1e-6, atol=1e-7)
  assert not np.allclose(results[0], w0)


def test_repeated_index_moves_adam_by_the_learning_rate():
  # Adam's first step moves every coordinate by lr (m/sqrt(v) = sign(g)):
  # two gradients of 1 for the same row sum to 2, so the row moves by 0.1.
  grad = tf.IndexedSlices(tf.ones((2, 2)), tf.constant([0, 0]),
                          tf.constant([3, 2]))
  ours = keras.Variable(np.zeros((3, 2), np.float32))
  top.Adam(0.1).apply_gradients([(grad, ours)])
  np.testing.assert_allclose(ours.numpy()[0], [-0.1, -0.1], rtol=1e-5)
  np.testing.assert_array_equal(ours.numpy()[1:], 0.0)
  # Keras 3.15 moves it by 0.1414 (each duplicate squared separately).
  theirs = keras.Variable(np.zeros((3, 2), np.float32))
  keras.optimizers.Adam(0.1).apply_gradients([(grad, theirs)])
  assert not np.allclose(theirs.numpy()[0], -0.1, rtol=1e-3)


def test_plain_sgd_leaves_rows_without_gradient_untouched():
  variable = keras.Variable(np.ones((4, 2), np.float32))
  grad = tf.IndexedSlices(tf.constant([[1.0, 2.0], [3.0, 4.0]]),
                          tf.constant([2, 2]), tf.constant([4, 2]))
  top.SGD(0.5).apply_gradients([(grad, variable)])
  np.testing.assert_allclose(variable.numpy(),
                             [[1, 1], [1, 1], [-1, -2], [1, 1]])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fit_with_an_embedding(name):
  keras.utils.set_random_seed(0)
  tokens = np.random.default_rng(0).integers(0, 50, size=(256, 6))
  labels = (tokens[:, 0] % 2).astype("float32")
  model = keras.Sequential([
      keras.Input((6,), dtype="int32"),
      keras.layers.Embedding(50, 8),
      keras.layers.GlobalAveragePooling1D(),
      keras.layers.Dense(1),
  ])
  model.compile(optimizer=OPTIMIZERS[name](),
                loss=keras.losses.BinaryCrossentropy(from_logits=True))
  history = model.fit(tokens, labels, epochs=4, batch_size=32, verbose=0)
  losses = history.history["loss"]
  assert np.isfinite(losses).all() and losses[-1] < losses[0]
