"""`stochastic_rounding` of Adam, AdamW, Lamb and Lion (issue 16): bfloat16
variables rounded stochastically after each step, keyed by the global seed
(read when the optimizer is built), the step and the variable's index.

The headline is TensorFlow issue 58138's failure mode: in pure-bfloat16
training an update smaller than half a bfloat16 step is lost by round to
nearest every time, so the weight never moves; with stochastic rounding
the stored weight W_t is a martingale around the exact trajectory
(E[W_{t+1} | W_t] = W_t - d_t, where the step d_t does not depend on the
weight for Adam without weight decay and a constant gradient, nor for
Lion), so E[W_T] is the float64 reference's w_T. Each step adds a rounding
error of variance p (1 - p) ulp^2 <= ulp^2 / 4, uncorrelated across steps,
so Var[W_T] <= T ulp^2 / 4, and the mean of N independently rounded weights
is within 5 sqrt(T / (4 N)) ulp of w_T.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
import tf_opt_plugin as top

CLASSES = ("Adam", "AdamW", "Lamb", "Lion")


def _fused_values():
  """`fused=False` (the twin) and `fused=None` (the op where it runs)."""
  return [pytest.param(False, id="twin"), pytest.param(None, id="fused")]


# ----------------------------------------------------------------------------
# Construction and configuration.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("class_name", CLASSES)
def test_default_and_config_round_trip(class_name):
  cls = getattr(top, class_name)
  assert cls().stochastic_rounding is False
  assert cls().get_config()["stochastic_rounding"] is False
  config = cls(stochastic_rounding=True).get_config()
  assert config["stochastic_rounding"] is True
  restored = cls.from_config(config)
  assert restored.stochastic_rounding is True
  assert restored.get_config() == config


@pytest.mark.parametrize("class_name", CLASSES)
@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_value_raises_at_construction(class_name, value):
  with pytest.raises(TypeError) as info:
    getattr(top, class_name)(stochastic_rounding=value)
  assert str(info.value) == ("`stochastic_rounding` must be True or False. "
                             f"Received: stochastic_rounding={value!r}")


# ----------------------------------------------------------------------------
# Seeds and determinism on a small bfloat16 model.
# ----------------------------------------------------------------------------
def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(32, 8)).astype(np.float32)
  y = np.tanh(x @ rng.normal(size=(8, 1))).astype(np.float32)
  return x, y


def _model(dtype="bfloat16"):
  """The same initial weights every time (seed 1), whatever seed is set
  later for the optimizer."""
  keras.utils.set_random_seed(1)
  return keras.Sequential([
      keras.Input((8,)),
      keras.layers.Dense(16, activation="tanh", dtype=dtype, name="hidden"),
      keras.layers.Dense(1, dtype=dtype, name="out"),
  ])


def _train(class_name, seed, steps, *, stochastic_rounding=True, fused=False,
           dtype="bfloat16", model=None, optimizer=None):
  """`steps` full-batch steps of a custom loop; the optimizer is built right
  after `keras.utils.set_random_seed(seed)`. Returns (model, optimizer)."""
  model = model or _model(dtype)
  if optimizer is None:
    optimizer = getattr(top,
                        class_name)(learning_rate=0.01,
                                    stochastic_rounding=stochastic_rounding,
                                    fused=fused)
    keras.utils.set_random_seed(seed)
    optimizer.build(model.trainable_variables)
  x, y = _data()

  def step():  # eager: tracing each fresh model would cost more
    with tf.GradientTape() as tape:
      prediction = tf.cast(model(x), tf.float32)
      loss = tf.reduce_mean(tf.square(prediction - y))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))

  for _ in range(steps):
    step()
  return model, optimizer


def _weights(model):
  return [
      tf.bitcast(w.value, tf.uint16).numpy()
      if w.dtype == "bfloat16" else w.numpy() for w in model.weights
  ]


def _fraction_different(a, b):
  return np.mean(np.concatenate([(x != y).reshape(-1) for x, y in zip(a, b)]))


def _assert_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("fused", _fused_values())
@pytest.mark.parametrize("class_name", CLASSES)
def test_same_seed_same_weights_other_seed_other_weights(class_name, fused):
  run = lambda seed, **kwargs: _weights(
      _train(class_name, seed, 5, fused=fused, **kwargs)[0])
  first = run(3)
  _assert_equal(run(3), first)
  # Only the optimizer's seed differs (the model starts the same): the
  # rounding of some weights differs.
  assert _fraction_different(run(4), first) > 0.05
  # Round to nearest is another result again (the keys are used).
  assert _fraction_different(run(3, stochastic_rounding=False), first) > 0.05


@pytest.mark.parametrize("fused", _fused_values())
@pytest.mark.parametrize("class_name", CLASSES)
def test_float32_model_unchanged(class_name, fused):
  """A float32 model trains bit for bit the same with and without it."""
  with_rounding = _weights(
      _train(class_name, 3, 5, fused=fused, dtype="float32")[0])
  without = _weights(
      _train(class_name, 3, 5, fused=fused, dtype="float32",
             stochastic_rounding=False)[0])
  _assert_equal(with_rounding, without)


@pytest.mark.parametrize("fused", _fused_values())
@pytest.mark.parametrize("class_name", ("Adam", "Lion"))
def test_checkpoint_resume_bit_for_bit(class_name, fused, tmp_path):
  """3 steps, a checkpoint, 3 more steps in a new model and optimizer equal
  6 uninterrupted steps (the step count comes back with `iterations`, the
  seed from the global seed at build)."""
  uninterrupted = _weights(_train(class_name, 5, 6, fused=fused)[0])
  first, first_optimizer = _train(class_name, 5, 3, fused=fused)
  assert _fraction_different(_weights(first), uninterrupted) > 0.05
  tf.train.Checkpoint(model=first,
                      optimizer=first_optimizer).write(str(tmp_path / "ckpt"))

  keras.utils.set_random_seed(9)  # other initial weights: all must come back
  model = keras.Sequential([
      keras.Input((8,)),
      keras.layers.Dense(16, activation="tanh", dtype="bfloat16",
                         name="hidden"),
      keras.layers.Dense(1, dtype="bfloat16", name="out"),
  ])
  optimizer = getattr(top, class_name)(learning_rate=0.01,
                                       stochastic_rounding=True, fused=fused)
  keras.utils.set_random_seed(5)
  optimizer.build(model.trainable_variables)
  tf.train.Checkpoint(model=model, optimizer=optimizer).read(
      str(tmp_path / "ckpt")).assert_consumed()
  _assert_equal(_weights(model), _weights(first))
  resumed, _ = _train(class_name, 5, 3, model=model, optimizer=optimizer)
  _assert_equal(_weights(resumed), uninterrupted)


# ----------------------------------------------------------------------------
# The headline: updates below half a bfloat16 step.
# ----------------------------------------------------------------------------
N_WEIGHTS = 4096
STEPS = 300
LEARNING_RATE = 1e-4  # < 2^-9, half the bfloat16 step below 1.0
GRADIENT = 0.5


def _reference_trajectory(class_name):
  """w_T of the float64 reference from w = 1, without any storage
  rounding (Keras's defaults, no weight decay)."""
  spec = A.for_keras_class(class_name)
  hp = dict(spec.keras_defaults, learning_rate=LEARNING_RATE, weight_decay=0.0)
  w = np.ones(1)
  slots = spec.zero_slots((1,))
  for step in range(1, STEPS + 1):
    w, slots = spec.reference_step(w, slots, np.full(1, GRADIENT), step=step,
                                   **hp)
  return float(w[0])


def test_reference_trajectory_moves():
  """The reference moves by about lr per step (|m_hat / sqrt(v_hat)| = 1
  for a constant gradient; sign = 1 for Lion), so its w_T is no artefact."""
  for class_name in ("Adam", "Lion"):
    assert abs(_reference_trajectory(class_name) -
               (1 - STEPS * LEARNING_RATE)) < 1e-6


@pytest.mark.parametrize("fused", _fused_values())
@pytest.mark.parametrize("class_name", ("Adam", "Lion"))
def test_pure_bfloat16_small_updates(class_name, fused):
  """TensorFlow issue 58138: round to nearest leaves every weight at 1.0;
  stochastic rounding moves the mean weight to the float64 reference's w_T
  within 5 sqrt(T / (4 N)) bfloat16 steps (module docstring)."""
  expected = _reference_trajectory(class_name)
  ulp = 2.0**-8  # the bfloat16 step in [0.5, 1), where the weights stay

  def run(stochastic_rounding):
    variable = keras.Variable(np.ones(N_WEIGHTS), dtype="bfloat16", name="w")
    optimizer = getattr(top,
                        class_name)(learning_rate=LEARNING_RATE,
                                    stochastic_rounding=stochastic_rounding,
                                    fused=fused)
    keras.utils.set_random_seed(11)
    optimizer.build([variable])
    gradient = tf.fill([N_WEIGHTS], tf.constant(GRADIENT, tf.bfloat16))

    @tf.function
    def steps():
      for _ in tf.range(STEPS):
        optimizer.apply_gradients([(gradient, variable)])

    steps()
    assert int(optimizer.iterations) == STEPS
    return variable.numpy().astype(np.float64)

  np.testing.assert_array_equal(run(False), 1.0)
  stored = run(True)
  bound = 5 * np.sqrt(STEPS / (4 * N_WEIGHTS)) * ulp
  assert abs(np.mean(stored) - expected) < bound, (np.mean(stored), expected,
                                                   bound)
  # Far from 1.0: the bound is a tenth of the expected displacement.
  assert bound < 0.1 * (1 - expected)
