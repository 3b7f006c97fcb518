"""Drop-in behaviour at the edges of `apply()`, against Keras's own classes.

What Keras's (and tf-keras's) own optimizers do with a gradient of another
dtype, a variable marked `overwrite_with_gradient` under loss scaling, default
names, a Keras inner optimizer in `LossScaleOptimizer`, configs, and what a
rejected `apply()` leaves behind (nothing: validation runs before any write).
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
from tf_opt_plugin.optimizers import _registry
from tf_opt_plugin.optimizers import keras3

ALGORITHMS = list(_registry.NAMES)

# Keras's classes that reject a gradient broadcastable to its variable (the
# others broadcast it in their elementwise math).
KERAS_REJECTS_BROADCAST = ("SGD", "Adafactor")


def _keras_equivalent(name):
  """(our kwargs, Keras's kwargs) under which Keras's class `name` computes
  what ours does: the class's first `keras_parity` case of the registry
  (Lamb's gives Keras's class our epsilon, 1e-6, TF Model Garden's, not
  Keras's 1e-7), at learning rate 0.1."""
  _, kwargs, keras_extra = next(
      case for case in A.keras_cases("keras_parity").values()
      if case[0] == name)
  ours = dict(kwargs, learning_rate=0.1)
  return ours, dict(ours, **keras_extra)


KERAS_EQUIVALENT = {name: _keras_equivalent(name) for name in ALGORITHMS}


def _state(optimizer, variables):
  """Every number an `apply()` may change: variables, slots, iterations."""
  return ([v.numpy().copy() for v in variables] +
          [v.numpy().copy() for v in optimizer.variables])


def _assert_same_state(before, after):
  assert len(before) == len(after)
  for b, a in zip(before, after):
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# 1. A gradient of another dtype is cast to the variable's, as Keras does.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize(
    "grad_dtype,var_dtype",
    [
        ("float64", "float32"),  # a NumPy gradient for a float32 variable
        ("float32", "float16"),
        ("float16", "float32"),
    ])
def test_gradient_of_another_dtype_is_cast_as_keras_does(
    name, grad_dtype, var_dtype):
  ours_kwargs, keras_kwargs = KERAS_EQUIVALENT[name]
  w0 = np.array([[1.0, 2.0], [3.0, -4.0]])
  grads = [
      np.array([[0.1, 0.2], [-0.3, 0.4]]),
      np.array([[0.5, -0.1], [0.2, 0.3]])
  ]
  ours = keras.Variable(w0, dtype=var_dtype)
  theirs = keras.Variable(w0, dtype=var_dtype)
  ours_opt = getattr(keras3, name)(**ours_kwargs)
  keras_opt = getattr(keras.optimizers, name)(**keras_kwargs)
  for g in grads:
    g = g.astype(grad_dtype)  # a NumPy array: what a user may pass
    ours_opt.apply_gradients([(g, ours)])
    keras_opt.apply_gradients([(g, theirs)])
  assert ours.dtype == var_dtype
  tol = 2e-3 if "float16" in (grad_dtype, var_dtype) else 1e-6
  np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=tol, atol=tol)
  assert int(ours_opt.iterations) == 2


def test_numpy_float64_gradient_for_adam_gives_keras_result():
  # The reproduction of the report, verbatim.
  ours = keras.Variable([1.0, 2.0])
  theirs = keras.Variable([1.0, 2.0])
  keras3.Adam(0.1).apply_gradients([(np.array([0.1, 0.2]), ours)])
  keras.optimizers.Adam(0.1).apply_gradients([(np.array([0.1, 0.2]), theirs)])
  # Keras's unfused float32 ops round differently from the fused kernel.
  np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
  # The gradient is cast once, to float32, then the float32 step runs.
  cast_first = keras.Variable([1.0, 2.0])
  keras3.Adam(0.1).apply_gradients([(np.array([0.1, 0.2]).astype(np.float32),
                                     cast_first)])
  np.testing.assert_array_equal(ours.numpy(), cast_first.numpy())


def test_gradient_of_another_dtype_is_cast_inside_a_tf_function():
  variable = keras.Variable(np.ones((2, 3)), dtype="float16")
  optimizer = keras3.Adam(0.1)

  @tf.function
  def step(g):
    optimizer.apply_gradients([(g, variable)])

  step(tf.ones((2, 3), tf.float32))
  np.testing.assert_allclose(variable.numpy(), 0.9, atol=1e-3)


def test_sparse_gradient_of_another_dtype_is_cast():
  ours = keras.Variable(np.ones((4, 2)), dtype="float32")
  theirs = keras.Variable(np.ones((4, 2)), dtype="float32")
  grad = tf.IndexedSlices(tf.constant([[0.5, 1.0], [2.0, -1.0]], tf.float64),
                          tf.constant([0, 2]), tf.constant([4, 2]))
  keras3.SGD(0.1).apply_gradients([(grad, ours)])
  keras.optimizers.SGD(0.1).apply_gradients([(grad, theirs)])
  np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-7)


def test_a_gradient_that_cannot_be_cast_is_rejected_before_any_write():
  variables = [keras.Variable(np.ones((2,))), keras.Variable(np.ones((3,)))]
  optimizer = keras3.SGD(0.1, momentum=0.9)
  optimizer.build(variables)
  before = _state(optimizer, variables)
  with pytest.raises(TypeError, match=r"`grads\[1\]`.*complex64"):
    optimizer.apply([tf.ones(
        (2,)), tf.complex(tf.ones((3,)), tf.ones((3,)))], variables)
  _assert_same_state(before, _state(optimizer, variables))


# ---------------------------------------------------------------------------
# 2. LossScaleOptimizer leaves `overwrite_with_gradient` gradients unscaled.
# ---------------------------------------------------------------------------
def _float8_dense_after_fit(optimizer):
  keras.utils.set_random_seed(1)
  layer = keras.layers.Dense(4)
  layer.build((None, 3))
  layer.quantize("float8")
  model = keras.Sequential([keras.Input((3,)), layer])
  model.compile(optimizer=optimizer, loss="mse")
  x = np.linspace(-1.0, 1.0, 24).reshape(8, 3)
  model.fit(x, np.zeros((8, 4)), epochs=2, batch_size=4, verbose=0)
  return {v.path.split("/", 1)[1]: v.numpy() for v in layer.trainable_variables}


def test_float8_layer_under_loss_scaling_matches_keras():
  ours = _float8_dense_after_fit(keras3.LossScaleOptimizer(keras3.SGD(0.1)))
  theirs = _float8_dense_after_fit(
      keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)))
  assert sorted(ours) == sorted(theirs)
  for path in theirs:
    np.testing.assert_allclose(ours[path], theirs[path], rtol=1e-6,
                               err_msg=path)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_loss_scale_optimizer_overwrites_with_the_unscaled_gradient(name):
  scale_variable = keras.Variable([1.0, 2.0, 3.0])
  scale_variable.overwrite_with_gradient = True
  weight = keras.Variable([1.0, 2.0])
  optimizer = keras3.LossScaleOptimizer(
      getattr(keras3, name)(0.1), initial_scale=1024.0)
  optimizer.apply([tf.constant([4.0, 5.0, 6.0]),
                   tf.constant([1.0, 1.0])], [scale_variable, weight])
  np.testing.assert_array_equal(scale_variable.numpy(), [4.0, 5.0, 6.0])
  assert int(optimizer.iterations) == 1


def test_loss_scale_optimizer_skips_the_overwrite_of_a_skipped_step():
  # Keras checks every gradient, those that overwrite included, and a
  # skipped step writes nothing.
  scale_variable = keras.Variable([1.0, 2.0])
  scale_variable.overwrite_with_gradient = True
  weight = keras.Variable([1.0, 2.0])
  for optimizer in (keras3.LossScaleOptimizer(keras3.SGD(0.1)),
                    keras3.LossScaleOptimizer(keras3.Adam(0.1))):
    optimizer.apply([tf.constant([np.inf, 5.0]),
                     tf.constant([1.0, 1.0])], [scale_variable, weight])
    np.testing.assert_array_equal(scale_variable.numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(weight.numpy(), [1.0, 2.0])
    assert int(optimizer.iterations) == 0
    assert float(optimizer.dynamic_scale.numpy()) == 2.0**14


# ---------------------------------------------------------------------------
# 3. Default names: Keras 3 derives them from the class and numbers repeats.
# ---------------------------------------------------------------------------
def _names(module):
  keras.backend.clear_session()  # resets Keras's name counters
  return [getattr(module, name)().name for name in ALGORITHMS + ["Adam"]
         ] + [module.LossScaleOptimizer(module.SGD()).name]


def _snake_case(class_name):
  """Keras 3's default name of a class: "AdamW" -> "adam_w", "SGD" -> "sgd"."""
  name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
  return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def test_default_names_are_those_of_keras():
  assert _names(keras3) == _names(keras.optimizers)
  # The repeated Adam is numbered.
  assert _names(keras3) == [_snake_case(name) for name in ALGORITHMS
                           ] + ["adam_1", "loss_scale_optimizer"]


@pytest.mark.parametrize("case", list(A.keras_cases("slot_names")))
def test_slot_paths_are_those_of_keras(case):
  name, kwargs = A.keras_cases("slot_names")[case]

  def paths(module):
    keras.backend.clear_session()
    variable = keras.Variable(np.ones((2,)), name="kernel")
    optimizer = getattr(module, name)(**kwargs)
    optimizer.build([variable])
    return [v.path for v in optimizer.variables]

  assert paths(keras3) == paths(keras.optimizers)


# ---------------------------------------------------------------------------
# 4. LossScaleOptimizer wraps a Keras optimizer as Keras's does.
# ---------------------------------------------------------------------------
def _loss_scaled_run(optimizer):
  variable = keras.Variable([1.0, 2.0, 3.0])
  grads = [[1.0, 6.0, 7.0], [np.inf, 1.0, 1.0], [2.0, 2.0, 2.0],
           [0.5, 1.0, 4.0]]
  for g in grads:
    optimizer.apply([tf.constant(g)], [variable])
  return (variable.numpy(), float(optimizer.dynamic_scale.numpy()),
          int(optimizer.iterations))


def test_loss_scale_optimizer_wraps_a_keras_optimizer_as_keras_does():
  ours = _loss_scaled_run(
      keras3.LossScaleOptimizer(keras.optimizers.SGD(0.5, momentum=0.5),
                                initial_scale=4.0, dynamic_growth_steps=2))
  theirs = _loss_scaled_run(
      keras.optimizers.LossScaleOptimizer(
          keras.optimizers.SGD(0.5, momentum=0.5), initial_scale=4.0,
          dynamic_growth_steps=2))
  np.testing.assert_array_equal(ours[0], theirs[0])
  assert ours[1:] == theirs[1:]


def test_a_config_of_keras_loss_scale_optimizer_loads_through_ours():
  config = keras.optimizers.LossScaleOptimizer(
      keras.optimizers.SGD(0.5), initial_scale=2.0,
      dynamic_growth_steps=2).get_config()
  optimizer = keras3.LossScaleOptimizer.from_config(config)
  assert isinstance(optimizer.inner_optimizer, keras.optimizers.SGD)
  variable = keras.Variable([1.0, 2.0])
  optimizer.apply([tf.constant([2.0, 4.0])], [variable])  # scale 2: g/2
  np.testing.assert_allclose(variable.numpy(), [0.5, 1.0])


def test_loss_scale_optimizer_refuses_what_is_not_an_optimizer():
  with pytest.raises(TypeError, match="`inner_optimizer` must be a Keras "
                     "optimizer"):
    keras3.LossScaleOptimizer("sgd")


# ---------------------------------------------------------------------------
# 6, 7. A rejected apply() writes nothing; lengths must match.
# ---------------------------------------------------------------------------
def _three_variables():
  return [
      keras.Variable(np.ones((2, 3)), name="a"),
      keras.Variable(np.ones((4,)), name="b"),
      keras.Variable(np.ones((3, 2)), name="c")
  ]


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("traced", [False, True], ids=["eager", "function"])
def test_a_misshapen_gradient_rejects_the_call_before_any_write(name, traced):
  variables = _three_variables()
  optimizer = getattr(keras3, name)(0.1)
  optimizer.build(variables)
  before = _state(optimizer, variables)
  grads = [tf.ones((2, 3)), tf.ones((4,)), tf.ones((2, 3))]  # c is (3, 2)

  def apply():
    optimizer.apply(grads, variables)

  with pytest.raises(ValueError) as info:
    (tf.function(apply) if traced else apply)()
  assert "`grads[2]`" in str(info.value)
  assert "var.shape=[3,2], grad.shape=[2,3]" in str(info.value)
  _assert_same_state(before, _state(optimizer, variables))
  # A retry with the right gradient applies one step, not two.
  grads[2] = tf.ones((3, 2))
  apply()
  assert int(optimizer.iterations) == 1


def test_a_gradient_of_unknown_shape_is_checked_before_any_write():
  variables = _three_variables()
  optimizer = keras3.SGD(0.1, momentum=0.9)
  optimizer.build(variables)
  before = _state(optimizer, variables)

  @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
  def apply(last):
    optimizer.apply([tf.ones((2, 3)), tf.ones((4,)), last], variables)

  with pytest.raises(tf.errors.InvalidArgumentError, match=r"`grads\[2\]`"):
    apply(tf.ones((2, 3)))
  _assert_same_state(before, _state(optimizer, variables))
  apply(tf.ones((3, 2)))
  assert int(optimizer.iterations) == 1


def test_a_sparse_gradient_out_of_range_is_rejected_before_any_write():
  variables = [keras.Variable(np.ones((3,))), keras.Variable(np.ones((4, 2)))]
  optimizer = keras3.SGD(0.1)
  optimizer.build(variables)
  before = _state(optimizer, variables)
  grad = tf.IndexedSlices(tf.ones((2, 2)), tf.constant([1, 4]),
                          tf.constant([4, 2]))
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"`grads\[1\]`"):
    optimizer.apply([tf.ones((3,)), grad], variables)
  _assert_same_state(before, _state(optimizer, variables))


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("grad_shape", [(), (3,), (1, 3)])
def test_a_gradient_that_broadcasts_to_its_variable_is_broadcast(
    name, grad_shape):
  # Keras's classes but those of KERAS_REJECTS_BROADCAST (and tf-keras's
  # optimizers) broadcast such a gradient in their elementwise math; ours
  # broadcast it first, for every algorithm.
  ours_kwargs, keras_kwargs = KERAS_EQUIVALENT[name]
  grad = np.linspace(0.5, 1.5, int(np.prod(grad_shape))).reshape(grad_shape)
  broadcast, explicit = (keras.Variable(np.ones((2, 3))) for _ in range(2))
  getattr(keras3, name)(**ours_kwargs).apply_gradients([
      (tf.constant(grad, tf.float32), broadcast)
  ])
  getattr(keras3, name)(**ours_kwargs).apply_gradients([
      (tf.constant(np.broadcast_to(grad, (2, 3)), tf.float32), explicit)
  ])
  np.testing.assert_array_equal(broadcast.numpy(), explicit.numpy())
  if name not in KERAS_REJECTS_BROADCAST:
    theirs = keras.Variable(np.ones((2, 3)))
    getattr(keras.optimizers, name)(**keras_kwargs).apply_gradients([
        (tf.constant(grad, tf.float32), theirs)
    ])
    np.testing.assert_allclose(broadcast.numpy(), theirs.numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_mismatched_lengths_raise_for_every_optimizer(name):
  variables = _three_variables()[:2]
  optimizer = getattr(keras3, name)(0.1)
  with pytest.raises(ValueError, match="Received: 3 gradients and 2 "
                     "variables"):
    optimizer.apply([tf.ones(
        (2, 3)), tf.ones((4,)), tf.ones((3, 2))], variables)
  with pytest.raises(ValueError, match="Received: 1 gradients and 2 "
                     "variables"):
    optimizer.apply([tf.ones((2, 3))], variables)
  assert not optimizer.built  # nothing happened, not even the build
  np.testing.assert_array_equal(variables[0].numpy(), 1.0)


# ---------------------------------------------------------------------------
# 8. LossScaleOptimizer.apply(grads) before build().
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("inner", ["ours", "keras"])
def test_loss_scale_apply_without_variables_before_build_is_a_clear_error(
    inner):
  module = keras3 if inner == "ours" else keras.optimizers
  optimizer = keras3.LossScaleOptimizer(module.SGD(0.1))
  with pytest.raises(ValueError, match="must already be built"):
    optimizer.apply([tf.ones((2,))])
  assert not optimizer.built


# ---------------------------------------------------------------------------
# tf-keras: what tf-keras's own classes do.
# ---------------------------------------------------------------------------
@pytest.fixture(name="tf_keras_front")
def _tf_keras_front():
  pytest.importorskip("tf_keras")
  from tf_opt_plugin.optimizers import tf_keras as front  # pylint: disable=g-import-not-at-top
  return front


@pytest.mark.needs_tf_keras
def test_tf_keras_config_learning_rate_equals_the_argument(tf_keras_front):
  import tf_keras  # pylint: disable=g-import-not-at-top
  for name in ALGORITHMS:
    config = getattr(tf_keras_front, name)(1e-4).get_config()
    assert config["learning_rate"] == 1e-4, name
    assert isinstance(config["learning_rate"], float)
    again = getattr(tf_keras_front, name).from_config(config)
    assert again.get_config()["learning_rate"] == 1e-4
  assert (tf_keras.optimizers.Adam(1e-4).get_config()["learning_rate"] == 1e-4)


@pytest.mark.needs_tf_keras
def test_tf_keras_default_names_are_those_of_tf_keras(tf_keras_front):
  import tf_keras  # pylint: disable=g-import-not-at-top
  for name in ALGORITHMS:
    # A class tf-keras lacks (Lamb) is named after itself, as tf-keras names
    # its own.
    theirs = getattr(tf_keras.optimizers, name, None)
    assert getattr(tf_keras_front,
                   name)().name == (theirs().name if theirs else name), name


@pytest.mark.needs_tf_keras
@pytest.mark.parametrize("name", ALGORITHMS)
def test_tf_keras_refuses_another_dtype_as_tf_keras_does_but_first(
    name, tf_keras_front):
  # tf-keras does not cast gradients (InvalidArgumentError); ours refuses the
  # same calls, before anything is written.
  variables = [
      tf.Variable(np.ones((2,)), dtype=tf.float32),
      tf.Variable(np.ones((3,)), dtype=tf.float32)
  ]
  optimizer = getattr(tf_keras_front, name)(0.1)
  optimizer.build(variables)
  before = _state(optimizer, variables)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"`grads\[1\]`"):
    optimizer.apply_gradients(zip([tf.ones((2,)), np.ones((3,))], variables))
  _assert_same_state(before, _state(optimizer, variables))


@pytest.mark.needs_tf_keras
def test_tf_keras_broadcasts_a_gradient_as_tf_keras_does(tf_keras_front):
  # tf-keras's optimizer_test.py, testVariableConstraints: a (1,) gradient
  # for a (1, 1) kernel.
  import tf_keras  # pylint: disable=g-import-not-at-top
  ours, theirs = (
      tf.Variable(np.full((1, 1), -2.0), dtype=tf.float32) for _ in range(2))
  tf_keras_front.Adam(0.1).apply_gradients([(tf.constant([0.5]), ours)])
  tf_keras.optimizers.Adam(0.1).apply_gradients([(tf.constant([0.5]), theirs)])
  np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


@pytest.mark.needs_tf_keras
@pytest.mark.parametrize("name", ALGORITHMS)
def test_tf_keras_misshapen_gradient_rejects_the_call_before_any_write(
    name, tf_keras_front):
  variables = [
      tf.Variable(np.ones((2, 3)), dtype=tf.float32),
      tf.Variable(np.ones((3, 2)), dtype=tf.float32)
  ]
  optimizer = getattr(tf_keras_front, name)(0.1, weight_decay=0.1)
  optimizer.build(variables)
  before = _state(optimizer, variables)
  with pytest.raises(ValueError, match="var.shape=.3,2., grad.shape=.2,3."):
    optimizer.apply_gradients(zip([tf.ones(
        (2, 3)), tf.ones((2, 3))], variables))
  _assert_same_state(before, _state(optimizer, variables))
