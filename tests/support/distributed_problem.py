"""The classification problems the distributed worker scripts train on.

`make_model` for the optimizer classes and their semantics; `make_wide_model`
for reduced-precision state, whose hidden kernel is big enough for 8-bit state.

Import it only after the worker has configured its devices / strategy:
building the model initialises TensorFlow.
"""

import keras
import numpy as np
import tensorflow as tf

GLOBAL_BATCH = 32
FEATURES, CLASSES = 12, 4
# 64 x 64 = 4096 elements: the smallest kernel that gets 8-bit state.
WIDE_FEATURES = WIDE_UNITS = 64


def make_data(num_examples, features=FEATURES, label_noise=0.5):
  """(X, Y): Gaussian features X, labels `argmax(X W + label_noise * N)` of
  a linear classifier W with Gaussian noise N (none if `label_noise` is 0)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(num_examples, features)).astype("float32")
  logits = x @ rng.normal(size=(features, CLASSES))
  if label_noise:
    logits = logits + label_noise * rng.normal(size=(num_examples, CLASSES))
  return x, np.argmax(logits, axis=-1).astype("int32")


def make_model():
  return keras.Sequential([
      keras.Input((FEATURES,)),
      keras.layers.Dense(16, activation="relu"),
      keras.layers.LayerNormalization(),
      keras.layers.Dense(CLASSES),
  ])


def make_wide_model():
  """Inputs of `WIDE_FEATURES`; under `state_dtype="int8"` the hidden kernel
  gets 8-bit state, the biases and the output kernel keep float32 state."""
  # Named, so the slots' paths are the same in every run.
  return keras.Sequential([
      keras.Input((WIDE_FEATURES,)),
      keras.layers.Dense(WIDE_UNITS, activation="tanh", name="hidden"),
      keras.layers.Dense(CLASSES, name="out"),
  ], name="model")


def initial_weights(model_fn=make_model):
  """The weights every run of `model_fn()` starts from (seeded, identical in
  every process)."""
  keras.utils.set_random_seed(0)
  return [w.copy() for w in model_fn().get_weights()]


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
