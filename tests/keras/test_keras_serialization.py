"""Serialization: get_config/from_config round-trips, .keras files with the
optimizer state, and tf.train.Checkpoint resuming on the same trajectory."""

import copy
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
import keras_harness as H
import tf_opt_plugin as top

CONFIGURED = A.keras_cases("every_argument")


def _configured(name):
  """The optimizer of the registry's "every_argument" case `name`, its
  schedules built from their Keras configs."""
  class_name, kwargs = CONFIGURED[name]
  kwargs = {
      k:
          keras.optimizers.schedules.deserialize(copy.deepcopy(v))
          if isinstance(v, dict) else v for k, v in kwargs.items()
  }
  return getattr(top, class_name)(**kwargs)


@pytest.mark.parametrize("name", sorted(CONFIGURED))
def test_get_config_round_trips_every_argument(name):
  optimizer = _configured(name)
  config = optimizer.get_config()
  restored = type(optimizer).from_config(json.loads(json.dumps(config)))
  assert restored.get_config() == config
  # Nothing was left at its default by accident: compare with a fresh one.
  defaults = type(optimizer)().get_config()
  changed = {k for k in config if config[k] != defaults.get(k)}
  assert len(changed) >= 6, changed


@pytest.mark.parametrize("name", sorted(CONFIGURED))
def test_keras_serialize_round_trips(name):
  optimizer = _configured(name)
  restored = keras.optimizers.deserialize(
      json.loads(json.dumps(keras.optimizers.serialize(optimizer))))
  assert type(restored) is type(optimizer)
  assert restored.get_config() == optimizer.get_config()


def test_loss_scale_optimizer_round_trips():
  optimizer = top.LossScaleOptimizer(_configured("lamb"), initial_scale=64.0,
                                     dynamic_growth_steps=10)
  restored = keras.optimizers.deserialize(
      json.loads(json.dumps(keras.optimizers.serialize(optimizer))))
  assert isinstance(restored, top.LossScaleOptimizer)
  assert isinstance(restored.inner_optimizer, top.Lamb)
  assert restored.get_config() == optimizer.get_config()


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(96, 8)).astype("float32")
  y = (x @ rng.normal(size=(8, 1))).astype("float32")
  return x, y


def _compiled_model(optimizer):
  keras.utils.set_random_seed(1)
  model = keras.Sequential([
      keras.Input((8,)),
      keras.layers.Dense(16, activation="tanh"),
      keras.layers.Dense(1)
  ])
  model.compile(optimizer=optimizer, loss="mse")
  return model


_LOAD_IN_FRESH_PROCESS = r"""
import json, sys
import numpy as np
import keras
import tf_opt_plugin  # registers the classes; no custom_objects below
model = keras.models.load_model(sys.argv[1])
x, y = np.load(sys.argv[2])["x"], np.load(sys.argv[2])["y"]
state = [v.numpy().tolist() for v in model.optimizer.variables]
model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
print(json.dumps({"class": type(model.optimizer).__name__,
                  "module": type(model.optimizer).__module__,
                  "state": state,
                  "weights": [w.tolist() for w in model.get_weights()]}))
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("name", sorted(A.keras_cases("keras_file")))
def test_keras_file_loads_in_a_fresh_process_with_state(name, tmp_path):
  x, y = _data()
  optimizer = H.make_optimizer(top, A.keras_cases("keras_file")[name])
  model = _compiled_model(optimizer)
  model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
  path = str(tmp_path / "model.keras")
  model.save(path)
  np.savez(tmp_path / "data.npz", x=x, y=y)
  saved_state = [v.numpy() for v in model.optimizer.variables]
  model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)

  out = subprocess.run([
      sys.executable, "-c", _LOAD_IN_FRESH_PROCESS, path,
      str(tmp_path / "data.npz")
  ], capture_output=True, text=True, timeout=300, env=dict(os.environ),
                       check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  loaded = json.loads(out.stdout.strip().splitlines()[-1])
  assert loaded["class"] == type(optimizer).__name__
  assert loaded["module"].startswith("tf_opt_plugin.optimizers")
  assert len(loaded["state"]) == len(saved_state)
  for got, want in zip(loaded["state"], saved_state):
    np.testing.assert_array_equal(np.asarray(got, want.dtype), want)
  # Training resumed from the restored state continues the same trajectory.
  for got, want in zip(loaded["weights"], model.get_weights()):
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=1e-5,
                               atol=1e-6)


CHECKPOINTED = dict(
    H.optimizer_factories("checkpoint", top),
    **{"loss-scale": lambda: top.LossScaleOptimizer(top.AdamW(0.01))})


@pytest.mark.parametrize("make", list(CHECKPOINTED.values()),
                         ids=list(CHECKPOINTED))
def test_checkpoint_resumes_the_uninterrupted_trajectory(make, tmp_path):
  x, y = _data()
  batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 96, 16)]

  def train(model, optimizer, steps):

    @tf.function
    def step(xb, yb):
      with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(xb) - yb))
        loss = optimizer.scale_loss(loss)
      grads = tape.gradient(loss, model.trainable_variables)
      optimizer.apply_gradients(zip(grads, model.trainable_variables))

    for xb, yb in steps:
      step(xb, yb)

  def fresh():
    model = _compiled_model(None)
    optimizer = make()
    optimizer.build(model.trainable_variables)
    return model, optimizer

  model, optimizer = fresh()
  train(model, optimizer, batches)
  uninterrupted = [w.copy() for w in model.get_weights()]

  model, optimizer = fresh()
  train(model, optimizer, batches[:3])
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
  path = checkpoint.save(str(tmp_path / "ckpt"))

  model, optimizer = fresh()
  tf.train.Checkpoint(model=model,
                      optimizer=optimizer).restore(path).assert_consumed()
  train(model, optimizer, batches[3:])
  for got, want in zip(model.get_weights(), uninterrupted):
    np.testing.assert_array_equal(got, want)
