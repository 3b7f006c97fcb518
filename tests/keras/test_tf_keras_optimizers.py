"""The tf-keras front end (`tf_opt_plugin.optimizers.tf_keras`).

The same configurations and float64 references as the Keras 3 classes
(tests/support/optimizer_configs.py), the documented examples of tf-keras's
DTensor SGD and Keras 2's Adam, parity with tf-keras's own classes, tf-keras's
API (slot names, `exclude_from_weight_decay`, `minimize`, `set_weights`,
configs, EMA), fit(), and the flavour switch of `tf_opt_plugin.optimizers` by
TF_USE_LEGACY_KERAS, which needs a fresh process.
"""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

tf_keras = pytest.importorskip("tf_keras")
pytestmark = pytest.mark.needs_tf_keras

import algorithms as A  # pylint: disable=g-import-not-at-top
import keras_harness as H  # pylint: disable=g-import-not-at-top
from optimizer_configs import CONFIGS  # pylint: disable=g-import-not-at-top
from optimizer_configs import reference  # pylint: disable=g-import-not-at-top
import subprocess_helpers  # pylint: disable=g-import-not-at-top
from tf_opt_plugin import ops  # pylint: disable=g-import-not-at-top
from tf_opt_plugin.optimizers import tf_keras as front  # pylint: disable=g-import-not-at-top

STEPS = 30


def run(optimizer, w0, grads, mode):
  """Applies `grads` to tf.Variables named by path; returns {path: float64}."""
  variables = [
      tf.Variable(value, dtype=tf.float32, name=path)
      for path, value in w0.items()
  ]

  def step(gs):
    optimizer.apply_gradients(zip(gs, variables))

  if mode == "function":
    step = tf.function(step)
  for g in grads:
    step([tf.constant(g[path], tf.float32) for path in w0])
  return {path: v.numpy().astype(np.float64) for path, v in zip(w0, variables)}


@pytest.mark.parametrize("mode", ["eager", "function", "twin"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_matches_reference(config, mode):
  class_name, kwargs, _, _ = CONFIGS[config]
  w0, grads = H.random_problem(STEPS, seed=11)
  optimizer = getattr(front,
                      class_name)(fused=False if mode == "twin" else None,
                                  **kwargs)
  got = run(optimizer, w0, grads, "eager" if mode == "twin" else mode)
  want = reference(config, w0, grads)
  H.assert_trajectory_close(got, want)
  assert not np.allclose(got["dense/kernel"], w0["dense/kernel"], atol=1e-3)


# The examples in the docs of tf.keras.dtensor.experimental.optimizers.SGD
# and of the Keras 2 Adam (keras/optimizer_v2/adam.py).
def test_seed_sgd_examples():
  var = tf.Variable(1.0)
  loss = lambda: (var**2) / 2.0
  front.SGD(learning_rate=0.1).minimize(loss, [var])
  np.testing.assert_allclose(var.numpy(), 0.9, rtol=1e-7)

  opt = front.SGD(0.1, momentum=0.9)
  var = tf.Variable(1.0)
  val0 = var.value()
  opt.minimize(loss, [var])
  val1 = var.value()
  np.testing.assert_allclose((val0 - val1).numpy(), 0.1, rtol=1e-6)
  opt.minimize(loss, [var])
  val2 = var.value()
  np.testing.assert_allclose((val1 - val2).numpy(), 0.18, rtol=1e-6)


def test_seed_adam_example():
  opt = front.Adam(learning_rate=0.1)
  var1 = tf.Variable(10.0)
  opt.minimize(lambda: (var1**2) / 2.0, [var1])
  np.testing.assert_allclose(var1.numpy(), 9.9, rtol=1e-7)
  assert int(opt.iterations.numpy()) == 1


@pytest.mark.parametrize("case", list(A.keras_cases("tf_keras_parity")))
def test_parity_with_tf_keras(case):
  ours = H.make_optimizer(front, A.keras_cases("tf_keras_parity")[case])
  theirs = H.make_optimizer(tf_keras.optimizers,
                            A.keras_cases("tf_keras_parity")[case])
  w0, grads = H.random_problem(STEPS, seed=3)
  H.assert_trajectory_close(run(ours, w0, grads, "function"),
                            run(theirs, w0, grads, "function"), rtol=1e-5,
                            atol=1e-6)


def test_slots_have_tf_keras_names_and_order():
  w0, _ = H.random_problem(1, seed=0)
  for ours, theirs in H.slot_name_pairs(front, tf_keras.optimizers):
    variables = [tf.Variable(v, name=p) for p, v in w0.items()]
    ours.build(variables)
    theirs.build(variables)
    assert ([(v.name, v.shape) for v in ours.variables
            ] == [(v.name, v.shape) for v in theirs.variables])


def test_adafactor_keeps_only_factored_accumulators():
  w0, _ = H.random_problem(1, seed=0)
  optimizer = front.Adafactor()
  optimizer.build([tf.Variable(v, name=p) for p, v in w0.items()])
  assert [(v.name, tuple(v.shape)) for v in optimizer.variables[1:]] == [
      ("row/dense/kernel:0", (6,)), ("column/dense/kernel:0", (4,)),
      ("velocity/dense/bias:0", (4,)), ("row/conv/kernel:0", (2, 3)),
      ("column/conv/kernel:0", (2, 5)), ("velocity/norm/gamma:0", (5,))
  ]


def test_exclude_from_weight_decay_by_name_and_by_variable():
  kept, by_name, by_var = (tf.Variable([1.0, 2.0], name=n)
                           for n in ("dense/kernel", "dense/bias", "other"))
  opt = front.AdamW(learning_rate=0.1, weight_decay=0.5)
  opt.exclude_from_weight_decay(var_list=[by_var], var_names=["bias"])
  zero = tf.zeros([2])
  opt.apply_gradients([(zero, kept), (zero, by_name), (zero, by_var)])
  np.testing.assert_allclose(kept.numpy(), [0.95, 1.9], rtol=1e-6)
  np.testing.assert_allclose(by_name.numpy(), [1.0, 2.0])
  np.testing.assert_allclose(by_var.numpy(), [1.0, 2.0])


def test_fused_op_runs_and_matches_the_twin():
  w0, grads = H.random_problem(5, seed=5)
  variable = tf.Variable(w0["dense/kernel"], dtype=tf.float32)
  assert ops.dispatch_reason(variable) is None
  fused = run(front.Lamb(0.01, weight_decay_rate=0.01), w0, grads, "function")
  twin = run(front.Lamb(0.01, weight_decay_rate=0.01, fused=False), w0, grads,
             "function")
  H.assert_trajectory_close(fused, twin, rtol=1e-6, atol=1e-7)


def test_schedule_and_callable_hyperparameters():
  schedule = tf_keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5)
  w0, grads = H.random_problem(4, seed=2)
  got = run(front.SGD(learning_rate=schedule), w0, grads, "function")
  want = H.reference_run(H.Algorithm("sgd"), w0, grads,
                         learning_rate=lambda step: 0.1 * 0.5**step)
  H.assert_trajectory_close(got, want)
  rate = tf.Variable(0.05)
  got = run(front.Lamb(learning_rate=lambda: rate * 2.0), w0, grads, "eager")
  want = H.reference_run(H.Algorithm("lamb"), w0, grads, learning_rate=0.1)
  H.assert_trajectory_close(got, want)


def test_set_weights_and_config_round_trip():
  opt = front.Lamb(0.02, weight_decay_rate=0.01,
                   exclude_from_weight_decay=["bias"], clipnorm=1.0,
                   fused=False)
  config = opt.get_config()
  assert config["learning_rate"] == pytest.approx(0.02)
  restored = front.Lamb.from_config(config)
  assert restored.get_config() == config
  serialized = tf_keras.optimizers.serialize(opt)
  assert serialized["registered_name"] == "tf_opt_plugin>Lamb"
  assert isinstance(tf_keras.optimizers.deserialize(serialized), front.Lamb)

  variables = [tf.Variable([1.0, 2.0])]
  opt.build(variables)
  fresh = front.Lamb()
  fresh.build([tf.Variable([0.0, 0.0])])
  opt.apply_gradients([(tf.constant([0.5, 0.5]), variables[0])])
  fresh.set_weights([v.numpy() for v in opt.variables])
  for a, b in zip(fresh.variables, opt.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_ema_overwrite_and_finalize():
  var = tf.Variable(2.0)
  opt = front.SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.5,
                  ema_overwrite_frequency=3)
  for _ in range(3):
    opt.apply_gradients([(tf.constant(1.0), var)])
  # tf-keras's documented EMA example: -0.125 after the third step.
  np.testing.assert_allclose(var.numpy(), -0.125, rtol=1e-6)


@pytest.mark.parametrize("class_name", A.keras_classes())
def test_fit_trains_a_tf_keras_model(class_name):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 6)).astype("float32")
  y = (x @ rng.normal(size=(6, 1))).astype("float32")
  tf_keras.utils.set_random_seed(0)
  model = tf_keras.Sequential(
      [tf_keras.layers.Dense(16, activation="tanh"),
       tf_keras.layers.Dense(1)])
  optimizer = getattr(front, class_name)(learning_rate=0.05)
  model.compile(optimizer=optimizer, loss="mse")
  history = model.fit(x, y, batch_size=32, epochs=8, verbose=0)
  losses = history.history["loss"]
  assert losses[-1] < 0.5 * losses[0], losses
  assert int(optimizer.iterations.numpy()) == 8 * 8


def test_bad_arguments_raise_clear_errors():
  with pytest.raises(
      ValueError, match=r"`beta_1` must be in \[0, 1\). "
      r"Received: beta_1=1.5"):
    front.Adam(beta_1=1.5)
  with pytest.raises(
      TypeError, match="`mesh` must be a "
      "`tf.experimental.dtensor.Mesh`. Received: mesh='x'"):
    front.SGD(mesh="x")
  with pytest.raises(TypeError, match="not a valid argument"):
    front.Lamb(gradient_accumulation_steps=2)


_FLAVOUR_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
import tf_opt_plugin as top
# Zero-initialised, so the loss starts at 1 and must fall (a random start may
# already fit and let the loss rise).
model = tf.keras.Sequential([tf.keras.layers.Dense(1, kernel_initializer="zeros")])
model.compile(optimizer=top.Lamb(0.05), loss="mse")
history = model.fit(np.ones((32, 3), "float32"), np.ones((32, 1), "float32"),
                    epochs=3, verbose=0)
print("RESULT_JSON " + json.dumps(dict(
    flavour=top.optimizers.FLAVOUR,
    module=type(top.Adam()).__module__,
    is_tf_keras_optimizer=isinstance(top.Adam(), tf.keras.optimizers.Optimizer),
    has_tf_keras="tf_keras" in sys.modules,
    losses=history.history["loss"])))
"""

_BLOCK_TF_KERAS = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name == "tf_keras" or name.startswith("tf_keras."):
      raise ModuleNotFoundError("No module named 'tf_keras'")
sys.meta_path.insert(0, _Block())
"""


def _run_script(source, **env):
  completed = subprocess.run([sys.executable, "-c", source],
                             capture_output=True, text=True, timeout=300,
                             env=subprocess_helpers.environment(**env),
                             check=False)
  result = subprocess_helpers.parse_result(completed.stdout)
  assert result is not None, subprocess_helpers.tail(completed.stderr)
  return result


@pytest.mark.subprocess
def test_legacy_keras_environment_gives_tf_keras_classes():
  result = _run_script(_FLAVOUR_SCRIPT, TF_USE_LEGACY_KERAS="1")
  assert result["flavour"] == "tf_keras"
  assert result["module"] == "tf_opt_plugin.optimizers.tf_keras"
  assert result["is_tf_keras_optimizer"]
  assert result["losses"][-1] < result["losses"][0]


@pytest.mark.subprocess
def test_without_tf_keras_the_keras3_classes_import():
  result = _run_script(_BLOCK_TF_KERAS + _FLAVOUR_SCRIPT,
                       TF_USE_LEGACY_KERAS="0")
  assert result["flavour"] == "keras3"
  assert result["module"] == "tf_opt_plugin.optimizers.keras3"
  assert not result["has_tf_keras"]
  assert result["losses"][-1] < result["losses"][0]
