"""Every Keras optimizer and option against the float64 references, 50 steps,
in eager mode, in a tf.function (fused op), under XLA (twin) and with the
twin forced; plus Keras's and TF Model Garden's published test scenarios.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
import keras_goldens as G
import keras_harness as H
from optimizer_configs import CONFIGS
from optimizer_configs import reference
import tf_opt_plugin as top

STEPS = 50


@pytest.mark.parametrize("mode", H.MODES)
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_matches_reference(config, mode):
  class_name, kwargs, _, _ = CONFIGS[config]
  w0, grads = H.random_problem(STEPS, seed=7)
  optimizer = getattr(top, class_name)(fused=H.fused_arg(mode), **kwargs)
  got = H.run_optimizer(optimizer, w0, grads, mode)
  want = reference(config, w0, grads)
  H.assert_trajectory_close(got, want)
  assert not np.allclose(got["dense/kernel"], w0["dense/kernel"], atol=1e-3)


@pytest.mark.parametrize("case", list(A.keras_cases("schedules")))
@pytest.mark.parametrize("mode", ["function", "xla"])
def test_schedules(case, mode):
  class_name, options = A.keras_cases("schedules")[case]
  schedule = keras.optimizers.schedules.ExponentialDecay(
      0.05, decay_steps=10, decay_rate=0.5)
  wd_schedule = keras.optimizers.schedules.PiecewiseConstantDecay([20],
                                                                  [0.02, 0.005])
  w0, grads = H.random_problem(30, seed=11)
  optimizer = getattr(top, class_name)(learning_rate=schedule,
                                       weight_decay=wd_schedule, **options)
  got = H.run_optimizer(optimizer, w0, grads, mode)
  want = H.reference_run(
      H.Algorithm(A.for_keras_class(class_name).name, **options), w0, grads,
      learning_rate=lambda t: float(np.float32(0.05 * 0.5**(t / 10))),
      weight_decay=lambda t: 0.02 if t <= 20 else 0.005)
  H.assert_trajectory_close(got, want)


def test_lamb_weight_decay_rate_schedule_and_callable_learning_rate():
  lr = keras.Variable(0.02, dtype="float32", trainable=False)
  optimizer = top.Lamb(
      learning_rate=lambda: lr * 0.5,
      weight_decay_rate=keras.optimizers.schedules.PiecewiseConstantDecay(
          [5], [0.1, 0.0]))
  w0, grads = H.random_problem(10, seed=12)
  got = H.run_optimizer(optimizer, w0, grads, "function")
  # The schedule's boundary is inclusive: steps 0..5 decay, then none.
  want = H.reference_run(_PerStepLamb(lambda t: 0.1 if t <= 5 else 0.0), w0,
                         grads, learning_rate=0.01)
  H.assert_trajectory_close(got, want)


class _PerStepLamb(H.Algorithm):

  def __init__(self, rate):
    super().__init__("lamb", beta_1=0.9, beta_2=0.999, epsilon=1e-6)
    self.rate = rate

  def step(self, w, slots, g, t, lr, path, fused_decay):
    self.hp["weight_decay_rate"] = self.rate(t - 1)
    return super().step(w, slots, g, t, lr, path, fused_decay)


@pytest.mark.parametrize(
    "clipping",
    [dict(clipnorm=0.5),
     dict(global_clipnorm=0.7),
     dict(clipvalue=0.1)], ids=["clipnorm", "global_clipnorm", "clipvalue"])
@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_clipping(clipping, mode):
  w0, grads = H.random_problem(20, seed=13, scale=3.0)
  optimizer = top.AdamW(learning_rate=0.01, **clipping)
  got = H.run_optimizer(optimizer, w0, grads, mode)
  want = H.reference_run(H.Algorithm("adam"), w0, grads, learning_rate=0.01,
                         weight_decay=0.004, **clipping)
  H.assert_trajectory_close(got, want)


def test_excluded_variables_get_no_decoupled_decay():
  w0, grads = H.random_problem(10, seed=14)
  optimizer = H.adamw_with_exclusions(top.AdamW)
  got = H.run_optimizer(optimizer, w0, grads, "function")
  want = H.adamw_with_exclusions_reference(w0, grads)
  H.assert_trajectory_close(got, want)


# ----------------------------------------------------------------------------
# Keras 3's published test scenarios, run on our classes.
# ----------------------------------------------------------------------------
def _single_step(optimizer, grads, values):
  variable = keras.Variable(values)
  optimizer.apply_gradients([(tf.constant(grads), variable)])
  return variable.numpy()


# keras/src/optimizers/<algorithm>_test.py::test_single_step (rtol=atol=1e-4
# there), at learning_rate 0.5.
@pytest.mark.parametrize("case", list(A.keras_cases("single_step")))
def test_keras_single_step_values(case):
  class_name, expected = A.keras_cases("single_step")[case]
  optimizer = getattr(top, class_name)(learning_rate=0.5)
  got = _single_step(optimizer, [1.0, 6.0, 7.0, 2.0], [1.0, 2.0, 3.0, 4.0])
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_keras_adafactor_single_step_2d_values():
  variable = keras.Variable([[1.0, 2.0], [3.0, 4.0]])
  top.Adafactor(learning_rate=0.5).apply_gradients([(tf.constant([[1.0, 6.0],
                                                                  [7.0, 2.0]]),
                                                     variable)])
  np.testing.assert_allclose(variable.numpy(),
                             [[0.7007, -0.0081], [1.2492, 3.4407]], rtol=1e-4,
                             atol=1e-4)


def test_keras_weight_decay_values():
  # keras/src/optimizers/sgd_test.py::test_weight_decay: three optimizers,
  # one excluding by name and one by variable -> 1.9760959, 2.0, 2.0.
  zero = tf.zeros(())
  var1 = keras.Variable(2.0)
  var2 = keras.Variable(2.0, name="exclude")
  var3 = keras.Variable(2.0)
  top.SGD(learning_rate=1.0, weight_decay=0.004).apply_gradients([(zero, var1)])
  opt2 = top.SGD(learning_rate=1.0, weight_decay=0.004)
  opt2.exclude_from_weight_decay(var_names=["exclude"])
  opt2.apply_gradients([(zero, var1), (zero, var2)])
  opt3 = top.AdamW(learning_rate=1.0, weight_decay=0.004)
  opt3.exclude_from_weight_decay(var_list=[var3])
  opt3.apply_gradients([(zero, var1), (zero, var3)])
  np.testing.assert_allclose(var1.numpy(), 1.9760959, atol=1e-6)
  assert var2.numpy() == 2.0 and var3.numpy() == 2.0


# keras/src/optimizers/<algorithm>_test.py::test_correctness_with_golden.
@pytest.mark.parametrize("case", list(A.keras_cases("goldens")))
def test_keras_golden_trajectories(case):
  class_name, kwargs, golden = A.keras_cases("goldens")[case]
  optimizer = getattr(top, class_name)(**kwargs)
  x = keras.Variable(np.ones([10], np.float32))
  optimizer.apply_gradients([(tf.constant(G.FIRST_GRADS, tf.float32), x)])
  for row in golden:
    np.testing.assert_allclose(x.numpy(), row, rtol=G.RTOL, atol=G.RTOL)
    optimizer.apply_gradients([(tf.constant(G.GRADS, tf.float32), x)])


# ----------------------------------------------------------------------------
# TF Model Garden's LAMB test scenarios (official/modeling/optimization/
# lamb_test.py), whose expectations come from its numpy lamb_update_numpy.
# ----------------------------------------------------------------------------
def test_model_garden_lamb_sparse():
  var0 = keras.Variable(np.array([1.0, 1.0, 2.0], np.float32))
  var1 = keras.Variable(np.array([3.0, 3.0, 4.0], np.float32))
  dense0 = np.array([0.1, 0.0, 0.1])
  dense1 = np.array([0.01, 0.0, 0.01])
  indices = np.array([0, 2], np.int32)
  grads = [
      tf.IndexedSlices(tf.constant(d[indices],
                                   tf.float32), tf.constant(indices),
                       tf.constant([3])) for d in (dense0, dense1)
  ]
  optimizer = top.Lamb()
  algorithm = H.Algorithm("lamb")
  want = H.reference_run(algorithm, {
      "a/0": [1.0, 1.0, 2.0],
      "a/1": [3.0, 3.0, 4.0]
  }, [{
      "a/0": dense0,
      "a/1": dense1
  }] * 3, learning_rate=0.001)
  for _ in range(3):
    optimizer.apply_gradients(zip(grads, [var0, var1]))
  np.testing.assert_allclose(var0.numpy(), want["a/0"], rtol=1e-6)
  np.testing.assert_allclose(var1.numpy(), want["a/1"], rtol=1e-6)


def test_model_garden_lamb_learning_rate_decay_with_weight_decay():
  # lr_t = 0.001 / (1 + 0.5 t) (Keras 2's `decay`), lamb_wd = 0.01,
  # epsilon = 1e-7, three steps of constant gradients.
  schedule = keras.optimizers.schedules.InverseTimeDecay(
      0.001, decay_steps=1, decay_rate=0.5)
  optimizer = top.Lamb(learning_rate=schedule, epsilon=1e-7,
                       weight_decay_rate=0.01)
  w0 = {"a/var0": [1.0, 2.0], "a/var1": [3.0, 4.0]}
  grads = [{"a/var0": [0.1, 0.1], "a/var1": [0.01, 0.01]}] * 3
  got = H.run_optimizer(optimizer, w0, grads)
  want = H.reference_run(
      H.Algorithm("lamb", epsilon=1e-7, weight_decay_rate=0.01), w0, grads,
      learning_rate=lambda t: float(np.float32(0.001 / (1 + 0.5 * t))))
  H.assert_trajectory_close(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs,decayed,adapted",
    [
        # test_exclude_weight_decay: ["var1"] excludes var1 and var1_weight; the
        # adaptation list defaults to the decay list.
        (dict(weight_decay_rate=0.01, exclude_from_weight_decay=["var1"]), {
            "var0": True,
            "var1": False,
            "var1_weight": False
        }, {
            "var0": True,
            "var1": False,
            "var1_weight": False
        }),
        # test_exclude_layer_adaptation
        (dict(exclude_from_layer_adaptation=["var1"]), {
            "var0": False,
            "var1": False,
            "var1_weight": False
        }, {
            "var0": True,
            "var1": False,
            "var1_weight": False
        }),
    ])
def test_model_garden_lamb_exclusions(kwargs, decayed, adapted):
  w0 = {f"layer/{name}": [3.0, -4.0] for name in decayed}
  grads = [{path: [0.5, 0.25] for path in w0}] * 2
  got = H.run_optimizer(top.Lamb(learning_rate=0.01, **kwargs), w0, grads)
  rate = kwargs.get("weight_decay_rate", 0.0)
  for name in decayed:
    path = f"layer/{name}"
    w, m, v = np.array(w0[path]), np.zeros(2), np.zeros(2)
    for t, g in enumerate(grads, 1):
      w, m, v = H.R.lamb_step(w, m, v, g[path], learning_rate=0.01, beta_1=0.9,
                              beta_2=0.999, epsilon=1e-6,
                              weight_decay_rate=rate if decayed[name] else 0.0,
                              step=t, use_layer_adaptation=adapted[name])
    np.testing.assert_allclose(got[path], w, rtol=1e-6, err_msg=path)
  # The three cases are distinguishable: adaptation scales the step by ~5.
  assert not np.allclose(got["layer/var0"], got["layer/var1"])


# ----------------------------------------------------------------------------
# Keras 3 parity where the math is the same (float32, 50 steps).
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(A.keras_cases("keras_parity")))
def test_parity_with_keras(case):
  class_name, kwargs, keras_extra = A.keras_cases("keras_parity")[case]
  ours = getattr(top, class_name)(**kwargs)
  theirs = getattr(keras.optimizers, class_name)(**kwargs, **keras_extra)
  w0, grads = H.random_problem(STEPS, seed=21)
  got = H.run_optimizer(ours, w0, grads, "function")
  want = H.run_optimizer(theirs, w0, grads, "function")
  H.assert_trajectory_close(got, want, rtol=1e-5, atol=1e-6)


def test_slots_have_keras_names_and_order():
  w0, grads = H.random_problem(1, seed=0)
  for ours, theirs in H.slot_name_pairs(top, keras.optimizers):
    variables = H.make_variables(w0)
    ours.build(variables)
    theirs.build(variables)
    assert ([(v.name, v.shape) for v in ours.variables
            ] == [(v.name, v.shape) for v in theirs.variables])


def test_adafactor_slots_are_factored():
  variables = H.make_variables(H.random_problem(1, seed=0)[0])
  optimizer = top.Adafactor()
  optimizer.build(variables)
  assert [(v.name, tuple(v.shape)) for v in optimizer.variables[2:]
         ] == [("dense_kernel_row", (6,)), ("dense_kernel_column", (4,)),
               ("dense_bias_velocity", (4,)), ("conv_kernel_row", (2, 3)),
               ("conv_kernel_column", (2, 5)), ("norm_gamma_velocity", (5,))]


@pytest.mark.parametrize("cls",
                         [getattr(top, name) for name in A.keras_classes()])
def test_fused_and_twin_paths_create_the_same_slots(cls):
  w0, grads = H.random_problem(2, seed=0)
  kwargs = dict(momentum=0.9) if cls is top.SGD else {}
  # One name for both: without, Keras numbers the second ("adam_1").
  fused = cls(fused=None, name="optimizer", **kwargs)
  twin = cls(fused=False, name="optimizer", **kwargs)
  H.run_optimizer(fused, w0, grads, "function")
  H.run_optimizer(twin, w0, grads, "xla")
  assert ([(v.path, v.shape, v.dtype) for v in fused.variables
          ] == [(v.path, v.shape, v.dtype) for v in twin.variables])
  for a, b in zip(fused.variables, twin.variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------
# Gradient accumulation and EMA (single device;
# tests/distributed/test_keras_distributed.py repeats them under
# MirroredStrategy).
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["eager", "function"])
def test_gradient_accumulation_clips_and_decays_once_per_real_step(mode):
  w0, grads = H.random_problem(12, seed=31, scale=2.0)
  optimizer = top.AdamW(learning_rate=0.01, weight_decay=0.1,
                        global_clipnorm=0.5, gradient_accumulation_steps=3)
  got = H.run_optimizer(optimizer, w0, grads, mode)
  mean_grads = [{
      p: np.mean([g[p] for g in grads[i:i + 3]], axis=0) for p in w0
  } for i in range(0, 12, 3)]
  want = H.reference_run(H.Algorithm("adam"), w0, mean_grads,
                         learning_rate=0.01, weight_decay=0.1,
                         global_clipnorm=0.5)
  H.assert_trajectory_close(got, want)
  assert int(optimizer.iterations) == 4


def test_gradient_accumulation_holds_weights_between_real_steps():
  w0, grads = H.random_problem(2, seed=32)
  optimizer = top.Lamb(learning_rate=0.01, gradient_accumulation_steps=4)
  got = H.run_optimizer(optimizer, w0, grads, "function")
  for path in w0:
    np.testing.assert_array_equal(got[path], np.float32(w0[path]))


@pytest.mark.parametrize("overwrite_frequency", [None, 4])
def test_ema_of_the_weights(overwrite_frequency):
  w0, grads = H.random_problem(10, seed=33)
  optimizer = top.SGD(learning_rate=0.1, momentum=0.5, use_ema=True,
                      ema_momentum=0.8,
                      ema_overwrite_frequency=overwrite_frequency)
  variables = H.make_variables(w0)
  for g in grads:
    optimizer.apply_gradients(
        zip([tf.constant(g[p], tf.float32) for p in w0], variables))
  # Reference: Keras's EMA (average = w on the first step), optionally
  # copied into the weights every `overwrite_frequency` steps.
  for path, variable in zip(w0, variables):
    w, b, average = np.array(w0[path]), np.zeros_like(w0[path]), None
    for t, g in enumerate(grads):
      w, b = H.R.sgd_step(w, b, g[path], learning_rate=0.1, momentum=0.5)
      average = w.copy() if t == 0 else 0.8 * average + 0.2 * w
      if overwrite_frequency and (t + 1) % overwrite_frequency == 0:
        w = average.copy()
    H.assert_weight_and_average(optimizer, variable, w, average, rtol=1e-5,
                                atol=1e-6)
