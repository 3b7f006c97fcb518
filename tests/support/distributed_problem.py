"""The classification problem both distributed worker scripts train on.

Import it only after the worker has configured its devices / strategy:
building the model initialises TensorFlow.
"""

import keras
import numpy as np

GLOBAL_BATCH = 32
FEATURES, CLASSES = 12, 4


def make_data(num_examples):
  """(X, Y): Gaussian features, labels of a noisy linear classifier."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(num_examples, FEATURES)).astype("float32")
  y = np.argmax(x @ rng.normal(size=(FEATURES, CLASSES)) +
                0.5 * rng.normal(size=(num_examples, CLASSES)),
                axis=-1).astype("int32")
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
