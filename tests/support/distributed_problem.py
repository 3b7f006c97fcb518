"""The classification problem both distributed worker scripts train on.

Import it only after the worker has configured its devices / strategy:
building the model initialises TensorFlow.
"""

import keras
import numpy as np
import tensorflow as tf

GLOBAL_BATCH = 32
FEATURES, CLASSES = 12, 4


def make_data(num_examples):
  """(X, Y): Gaussian features, labels of a noisy linear classifier."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(num_examples, FEATURES)).astype("float32")
  y = np.argmax(
      x @ rng.normal(size=(FEATURES, CLASSES)) +
      0.5 * rng.normal(size=(num_examples, CLASSES)), axis=-1).astype("int32")
  return x, y


def make_model():
  return keras.Sequential([
      keras.Input((FEATURES,)),
      keras.layers.Dense(16, activation="relu"),
      keras.layers.LayerNormalization(),
      keras.layers.Dense(CLASSES),
  ])


def initial_weights():
  """The weights every run starts from (seeded, identical in every process)."""
  keras.utils.set_random_seed(0)
  return [w.copy() for w in make_model().get_weights()]


def per_replica_loss(model, x, y):
  """The cross-entropy of one replica's batch, averaged over the global
  batch (the replicas' gradients are summed)."""
  logits = model(x, training=True)
  per_example = keras.losses.sparse_categorical_crossentropy(
      y, logits, from_logits=True)
  return tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_BATCH)


def train_in_loop(strategy, model, optimizer, batches):
  """A custom training loop: strategy.run + optimizer.apply_gradients on each
  (x, y) of `batches` (per-replica values), in one tf.function."""

  def replica_step(x, y):
    with tf.GradientTape() as tape:
      loss = per_replica_loss(model, x, y)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))

  @tf.function
  def step(x, y):
    strategy.run(replica_step, args=(x, y))

  for x, y in batches:
    step(x, y)
