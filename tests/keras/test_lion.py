"""tf_opt_plugin.Lion against keras.optimizers.Lion (and tf-keras's Lion).

Lion's update is the sign of a momentum interpolation, so float32 results are
either equal to Keras's or an element is off by 2 * learning_rate: the
comparisons here are to the last bit, in the tf.function Keras's training
steps run in (there TensorFlow's graph optimizer groups Keras's decay
`w - w * wd * lr` as `w - w * (wd * lr)`, the rounding the fused op and the
twin use; eager Keras rounds `w * wd` first and may differ in the last bit
where weight decay is on). The float64 references of every configuration run
in test_keras_optimizers.py (optimizer_configs.py: "lion", "lion-weight-decay").
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_harness as H
import tf_opt_plugin as top

STEPS = 30


@pytest.mark.parametrize(
    "make,error,message",
    [
        # Keras's rule for beta_1, 0 < beta_1 <= 1 (at 0, SignSGD).
        (lambda: top.Lion(beta_1=0.0), ValueError,
         "`beta_1` must be in (0, 1]: at 0 Lion degenerates to SignSGD. "
         "Received: beta_1=0.0"),
        (lambda: top.Lion(beta_1=1.1), ValueError, "Received: beta_1=1.1"),
        (lambda: top.Lion(beta_1=-0.1), ValueError, "Received: beta_1=-0.1"),
        (lambda: top.Lion(beta_2=1.0), ValueError,
         "`beta_2` must be in [0, 1). Received: beta_2=1.0"),
        (lambda: top.Lion(beta_1="0.9"), TypeError,
         "`beta_1` must be a number. Received: beta_1='0.9'"),
    ])
def test_bad_arguments(make, error, message):
  with pytest.raises(error) as info:
    make()
  assert message in str(info.value)


def _run_in_function(optimizer, w0, grads):
  """`grads` applied by `optimizer` in one tf.function; weights and slots."""
  variables = H.make_variables(w0)
  optimizer.build(variables)
  step = tf.function(lambda gs: optimizer.apply(gs, variables))
  for g in grads:
    step([tf.constant(g[path], tf.float32) for path in w0])
  return (
      [v.numpy() for v in variables],
      [v.numpy() for v in optimizer.variables],
  )


@pytest.mark.parametrize("fused", [None, False], ids=["fused", "twin"])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(learning_rate=0.01),
        dict(learning_rate=0.01, beta_1=0.8, beta_2=0.95, weight_decay=0.3),
        dict(learning_rate=0.01, weight_decay=0.2, clipnorm=0.5),
    ],
    ids=["defaults", "weight-decay", "decay-and-clipnorm"],
)
def test_equals_keras_lion_bit_for_bit(kwargs, fused):
  w0, grads = H.random_problem(STEPS, seed=41)
  ours_w, ours_slots = _run_in_function(top.Lion(fused=fused, **kwargs), w0,
                                        grads)
  keras_w, keras_slots = _run_in_function(keras.optimizers.Lion(**kwargs), w0,
                                          grads)
  for got, want in zip(ours_w + ours_slots, keras_w + keras_slots):
    np.testing.assert_array_equal(got, want)
  assert not np.allclose(ours_w[0], w0["dense/kernel"], atol=1e-3)


def test_eager_steps_equal_keras_without_weight_decay():
  w0, grads = H.random_problem(10, seed=42)
  got = H.run_optimizer(top.Lion(learning_rate=0.01), w0, grads, "eager")
  want = H.run_optimizer(keras.optimizers.Lion(learning_rate=0.01), w0, grads,
                         "eager")
  for path in w0:
    np.testing.assert_array_equal(got[path], want[path])


def test_excluded_variables_get_no_weight_decay_as_in_keras():
  w0, grads = H.random_problem(STEPS, seed=43)
  results = []
  for cls in (top.Lion, keras.optimizers.Lion):
    optimizer = cls(learning_rate=0.01, weight_decay=0.3)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma"])
    results.append(_run_in_function(optimizer, w0, grads)[0])
  for got, want in zip(*results):
    np.testing.assert_array_equal(got, want)
  # The exclusion mattered: with decay everywhere the bias ends elsewhere.
  decayed = _run_in_function(top.Lion(learning_rate=0.01, weight_decay=0.3), w0,
                             grads)[0]
  assert not np.allclose(decayed[1], results[0][1])


def _regression(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(256, 8)).astype("float32")
  y = (x @ rng.normal(size=(8, 1))).astype("float32")
  return x, y


def _fit(optimizer, x, y, jit_compile=False):
  keras.utils.set_random_seed(0)
  model = keras.Sequential([
      keras.Input((8,)),
      keras.layers.Dense(16, activation="tanh"),
      keras.layers.Dense(1),
  ])
  model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
  history = model.fit(x, y, batch_size=32, epochs=6, shuffle=False, verbose=0)
  return model, history.history["loss"]


def test_fit_trains_and_equals_keras_lion():
  x, y = _regression()
  ours, our_losses = _fit(top.Lion(0.003, weight_decay=0.01), x, y)
  theirs, _ = _fit(keras.optimizers.Lion(0.003, weight_decay=0.01), x, y)
  assert our_losses[-1] < 0.5 * our_losses[0], our_losses
  for got, want in zip(ours.get_weights(), theirs.get_weights()):
    np.testing.assert_array_equal(got, want)


def test_fit_under_xla_runs_the_twin_and_trains():
  x, y = _regression()
  _, losses = _fit(top.Lion(0.003, weight_decay=0.01), x, y, jit_compile=True)
  assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0], losses


def test_config_round_trips_and_reads_keras_lion_configs():
  kwargs = dict(learning_rate=0.002, beta_1=0.8, beta_2=0.95, weight_decay=0.1,
                clipnorm=1.0, name="my_lion")
  optimizer = top.Lion(**kwargs)
  config = optimizer.get_config()
  assert (config["beta_1"], config["beta_2"], config["name"]) == (
      0.8,
      0.95,
      "my_lion",
  )
  restored = top.Lion.from_config(json.loads(json.dumps(config)))
  assert restored.get_config() == config
  # Drop-in: a keras.optimizers.Lion config builds the same optimizer.
  theirs = keras.optimizers.Lion(**kwargs).get_config()
  from_keras = top.Lion.from_config(theirs).get_config()
  assert {k: from_keras[k] for k in theirs} == theirs
  # And registered: keras.optimizers.deserialize finds our class.
  assert (type(
      keras.optimizers.deserialize(keras.optimizers.serialize(optimizer)))
          is top.Lion)


@pytest.mark.needs_tf_keras
@pytest.mark.parametrize("fused", [None, False], ids=["fused", "twin"])
def test_tf_keras_flavour_equals_tf_keras_lion_bit_for_bit(fused):
  tf_keras = pytest.importorskip("tf_keras")
  from tf_opt_plugin.optimizers import tf_keras as front  # pylint: disable=g-import-not-at-top

  w0, grads = H.random_problem(STEPS, seed=44)
  results = []
  for optimizer in (
      front.Lion(0.01, weight_decay=0.1, fused=fused),
      tf_keras.optimizers.Lion(0.01, weight_decay=0.1),
  ):
    variables = [
        tf.Variable(v, dtype=tf.float32, name=p) for p, v in w0.items()
    ]
    step = tf.function(
        lambda gs, o=optimizer, vs=variables: o.apply_gradients(zip(gs, vs)))
    for g in grads:
      step([tf.constant(g[p], tf.float32) for p in w0])
    results.append((
        [v.numpy() for v in variables],
        [(v.name, v.numpy()) for v in optimizer.variables],
    ))
  (ours_w, ours_slots), (theirs_w, theirs_slots) = results
  for got, want in zip(ours_w, theirs_w):
    np.testing.assert_array_equal(got, want)
  assert [n for n, _ in ours_slots] == [n for n, _ in theirs_slots]  # "m"
  for (_, got), (_, want) in zip(ours_slots, theirs_slots):
    np.testing.assert_array_equal(got, want)
