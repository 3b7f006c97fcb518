"""Every Keras feature and distribution with reduced-precision state.

tests/keras/test_state_dtype.py checks the steps themselves against a
float64 reference; here each feature the Keras 3 base adds around the steps
(sparse gradients, clipping, gradient accumulation, EMA, loss scaling,
MirroredStrategy, tf.function and XLA) runs with `state_dtype="bfloat16"`
and `"int8"` and is compared with an independent expectation: the same
optimizer fed, without the feature, the gradients the feature must produce
(computed here in float64 NumPy), the dense gradient for a sparse one, the
single-device run for a mirrored one. A feature that changed the state (or
skipped the reduced layout) would fail the layout and slot checks.

Tolerances: where the expectation's gradients are computed in float64 and
the feature's in float32, the two differ by a float32 rounding, which can put
a stored 8-bit or bfloat16 value on the other side of a rounding boundary:
one code step of the moments moves a weight by at most a few percent of one
step (`STEP_TOLERANCE`), far less than the feature's own effect, which each
test checks is larger.
"""

import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf

import subprocess_helpers
import tf_opt_plugin as top
from tf_opt_plugin import ops

CLASSES = ("Adam", "AdamW", "Lamb", "Lion")
STATE_DTYPES = ("bfloat16", "int8")

HP = {
    "Adam": dict(learning_rate=0.01),
    "AdamW": dict(learning_rate=0.01, weight_decay=0.05),
    "Lamb": dict(learning_rate=0.01, weight_decay_rate=0.01),
    "Lion": dict(learning_rate=0.001, weight_decay=0.1),
}

# 72 x 64 = 4608 elements: 8-bit state under "int8" (18 blocks); the bias
# keeps float32 state.
KERNEL, BIAS = (72, 64), (64,)

# The largest weight difference allowed from a float32 rounding of the
# gradients (see the module docstring), as a fraction of the learning rate
# per step.
STEP_TOLERANCE = 0.05

# fused=True: the fused op, or FusedOpUnavailableError (so it surely ran).
FUSED = True


def _optimizer(class_name, state_dtype, **kwargs):
  return getattr(top, class_name)(state_dtype=state_dtype,
                                  **dict(HP[class_name], **kwargs))


def _variables(dtype="float32", seed=0):
  rng = np.random.default_rng(seed)
  result = []
  for name, shape in (("kernel", KERNEL), ("bias", BIAS)):
    with keras.name_scope("dense"):
      result.append(
          keras.Variable(rng.normal(size=shape), dtype=dtype, name=name))
  return result


def _expected_layout(state_dtype, variable):
  """`ops.state_layout` of a float32 variable's slots (float32 state of a
  float32 variable is "same")."""
  if state_dtype == "int8":
    return "int8" if np.prod(variable.shape) >= 4096 else "same"
  return state_dtype or "same"


def _assert_layouts(optimizer, variables, state_dtype):
  """Every slot of every variable is stored as `state_dtype` chooses, and
  8-bit codes were written (not left at zero)."""
  slot_lists = [optimizer._momentums]  # pylint: disable=protected-access
  if hasattr(optimizer, "_velocities"):
    slot_lists.append(optimizer._velocities)  # pylint: disable=protected-access
  for variable in variables:
    for slots in slot_lists:
      slot = optimizer.slot(slots, variable)
      layout = ops.state_layout(optimizer.as_tf_variable(variable), slot)
      assert layout == _expected_layout(state_dtype, variable), variable.path
      if layout == "int8":
        assert np.any(slot.codes.numpy()) and np.any(slot.absmax.numpy() > 0)


def _gradients(steps, scales, seed=1, shapes=(KERNEL, BIAS)):
  """`steps` lists of float32 gradients; step i scaled by scales[i]."""
  rng = np.random.default_rng(seed)
  return [[(scales[i % len(scales)] * rng.normal(size=s)).astype(np.float32)
           for s in shapes]
          for i in range(steps)]


def _run(optimizer, variables, grads, mode="eager"):
  """Applies each step's gradients; returns the weights after each step."""

  def step(step_grads):
    optimizer.apply_gradients(zip(step_grads, variables))

  if mode == "function":
    step = tf.function(step)
  elif mode == "xla":
    step = tf.function(step, jit_compile=True)
  trajectory = []
  for step_grads in grads:
    step([tf.constant(g) for g in step_grads])
    trajectory.append([np.asarray(v.numpy(), np.float64) for v in variables])
  return trajectory


def _max_difference(a, b):
  return max(
      float(
          np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
      for x, y in zip(a, b))


def _tolerance(class_name, steps):
  return STEP_TOLERANCE * HP[class_name]["learning_rate"] * steps


def _assert_close(got, want, class_name, steps):
  """Weights equal up to float32 rounding, except where a rounding put a
  stored value across a boundary: a few weights, by at most `_tolerance`."""
  assert _max_difference(got, want) <= _tolerance(class_name, steps)
  differ = sum(
      int(np.sum(np.abs(np.asarray(x) - np.asarray(y)) > 1e-6))
      for x, y in zip(got, want))
  assert differ <= 0.01 * sum(np.size(x) for x in want), differ


# ----------------------------------------------------------------------------
# Sparse gradients.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [FUSED, False])
@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
@pytest.mark.parametrize("class_name", CLASSES)
def test_sparse_gradients_of_an_embedding(class_name, state_dtype, fused):
  """An Embedding of 96 x 48 = 4608 elements: its tf.IndexedSlices
  gradients (repeated rows, untouched rows) give the dense gradients'
  result, with the state in the reduced layout."""
  rng = np.random.default_rng(2)
  tokens = [
      tf.constant(rng.integers(0, 48, size=(6, 5)), tf.int32) for _ in range(3)
  ]
  targets = [tf.constant(rng.normal(size=(6, 5, 48)), tf.float32)] * 3
  results = []
  for densify in (False, True):
    keras.utils.set_random_seed(0)
    embedding = keras.layers.Embedding(96, 48)
    embedding.build((None, 5))
    optimizer = _optimizer(class_name, state_dtype, fused=fused)

    for ids, target in zip(tokens, targets):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(embedding(ids) * target)
      grad, = tape.gradient(loss, embedding.trainable_variables)
      assert isinstance(grad, tf.IndexedSlices)
      if densify:
        grad = tf.convert_to_tensor(grad)
      optimizer.apply_gradients([(grad, embedding.embeddings)])
    _assert_layouts(optimizer, [embedding.embeddings], state_dtype)
    results.append(embedding.embeddings.numpy())
  sparse, dense = results
  # Both paths sum the repeated rows in float32 the same way.
  np.testing.assert_allclose(sparse, dense, rtol=1e-6, atol=1e-7)
  keras.utils.set_random_seed(0)
  initial = keras.layers.Embedding(96, 48)
  initial.build((None, 5))
  moved = np.max(np.abs(sparse - initial.embeddings.numpy()))
  # (LAMB's trust ratio scales its step by the small initial weights.)
  assert moved > 0.1 * HP[class_name]["learning_rate"]


# ----------------------------------------------------------------------------
# Clipping.
# ----------------------------------------------------------------------------
def _clip(grads, clip, threshold):
  """Keras's clipping of one step's gradients, in float64."""
  grads = [np.asarray(g, np.float64) for g in grads]
  if clip == "clipnorm":
    grads = [g * threshold / max(np.linalg.norm(g), threshold) for g in grads]
  elif clip == "global_clipnorm":
    norm = np.sqrt(sum(np.sum(g * g) for g in grads))
    grads = [g * threshold / max(norm, threshold) for g in grads]
  else:
    grads = [np.clip(g, -threshold, threshold) for g in grads]
  return [g.astype(np.float32) for g in grads]


CLIPPING = {"clipnorm": 2.0, "global_clipnorm": 3.0, "clipvalue": 0.5}

# id: (class, state_dtype, clipping): every class, clipping and layout.
CLIPPING_CASES = {
    "clipnorm-adam-int8": ("Adam", "int8", "clipnorm"),
    "clipnorm-lion-bfloat16": ("Lion", "bfloat16", "clipnorm"),
    "global_clipnorm-lamb-int8": ("Lamb", "int8", "global_clipnorm"),
    "global_clipnorm-adamw-bfloat16": ("AdamW", "bfloat16", "global_clipnorm"),
    "clipvalue-lion-int8": ("Lion", "int8", "clipvalue"),
    "clipvalue-lamb-bfloat16": ("Lamb", "bfloat16", "clipvalue"),
}


@pytest.mark.parametrize("case", sorted(CLIPPING_CASES))
def test_clipping(case):
  """Clipped steps equal unclipped steps of the clipped gradients."""
  class_name, state_dtype, clip = CLIPPING_CASES[case]
  threshold = CLIPPING[clip]
  grads = _gradients(4, scales=(3.0, 0.05, 1.0))
  clipped = [_clip(g, clip, threshold) for g in grads]
  variables = _variables()
  optimizer = _optimizer(class_name, state_dtype, **{clip: threshold})
  got = _run(optimizer, variables, grads)[-1]
  _assert_layouts(optimizer, variables, state_dtype)
  want = _run(_optimizer(class_name, state_dtype), _variables(), clipped)[-1]
  unclipped = _run(_optimizer(class_name, state_dtype), _variables(), grads)[-1]
  _assert_close(got, want, class_name, len(grads))
  # Clipping acted.
  assert _max_difference(unclipped,
                         want) > 5 * _tolerance(class_name, len(grads))


# ----------------------------------------------------------------------------
# Gradient accumulation.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
@pytest.mark.parametrize("class_name", CLASSES)
def test_gradient_accumulation(class_name, state_dtype):
  """3 micro-steps per step equal one step of their mean gradient; the
  state moves only at real steps."""
  micro = 3
  grads = _gradients(2 * micro, scales=(1.0, 0.2, 2.0, 0.5))
  means = [[
      np.mean([np.float64(g[k])
               for g in grads[i:i + micro]], axis=0).astype(np.float32)
      for k in range(2)
  ]
           for i in range(0, len(grads), micro)]
  variables = _variables()
  optimizer = _optimizer(class_name, state_dtype,
                         gradient_accumulation_steps=micro)
  trajectory = _run(optimizer, variables, grads)
  # Keras counts real steps (micro-steps // accumulation steps).
  assert int(optimizer.iterations) == len(means)
  _assert_layouts(optimizer, variables, state_dtype)
  initial = [np.asarray(v, np.float64) for v in _variables()]
  # Between real steps the weights do not move.
  assert _max_difference(trajectory[0], initial) == 0.0
  assert _max_difference(trajectory[micro], trajectory[micro - 1]) == 0.0
  want = _run(_optimizer(class_name, state_dtype), _variables(), means)
  _assert_close(trajectory[micro - 1], want[0], class_name, 1)
  _assert_close(trajectory[-1], want[-1], class_name, len(means))
  # Each micro-batch's gradient applied as a step would differ.
  plain = _run(_optimizer(class_name, state_dtype), _variables(), grads[:2])[-1]
  assert _max_difference(plain,
                         want[0]) > 5 * _tolerance(class_name, len(means))


# ----------------------------------------------------------------------------
# EMA.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
@pytest.mark.parametrize("class_name", CLASSES)
def test_ema_averages_in_the_model_variable_dtype(class_name, state_dtype):
  """Keras's EMA of the weights (`average = m * average + (1 - m) * w`
  after each step, the first step copying w) stays float32 like the model
  variables whatever the state's layout, and averages the trajectory."""
  momentum = 0.8
  variables = _variables()
  optimizer = _optimizer(class_name, state_dtype, use_ema=True,
                         ema_momentum=momentum)
  trajectory = _run(optimizer, variables, _gradients(4, scales=(1.0,)))
  _assert_layouts(optimizer, variables, state_dtype)
  averages = optimizer._model_variables_moving_average  # pylint: disable=protected-access
  assert [(a.dtype, tuple(a.shape)) for a in averages] == [("float32", KERNEL),
                                                           ("float32", BIAS)]
  want = trajectory[0]
  for weights in trajectory[1:]:
    want = [momentum * a + (1 - momentum) * w for a, w in zip(want, weights)]
  for average, expected in zip(averages, want):
    np.testing.assert_allclose(average.numpy(), expected, rtol=1e-5, atol=1e-6)
  assert _max_difference(want, trajectory[-1]) > 1e-4  # not just w


# ----------------------------------------------------------------------------
# Loss scaling under mixed_float16.
# ----------------------------------------------------------------------------
@pytest.fixture
def mixed_float16():
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy("mixed_float16")
  yield
  keras.mixed_precision.set_global_policy(previous)


def _mixed_model():
  keras.utils.set_random_seed(3)
  return keras.Sequential([
      keras.Input((64,)),
      keras.layers.Dense(64, activation="tanh", name="hidden"),  # 4096
      keras.layers.Dense(4, dtype="float32", name="out"),
  ])


def _mixed_data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(128, 64)).astype(np.float32)
  y = np.tanh(x @ rng.normal(size=(64, 4)) / 8).astype(np.float32)
  return x, y


# id: (class, state_dtype): every class and layout.
LOSS_SCALE_CASES = {
    "adam-int8": ("Adam", "int8"),
    "adamw-bfloat16": ("AdamW", "bfloat16"),
    "lamb-int8": ("Lamb", "int8"),
    "lion-bfloat16": ("Lion", "bfloat16"),
}


@pytest.mark.parametrize("case", sorted(LOSS_SCALE_CASES))
def test_loss_scale_optimizer_under_mixed_float16(case, mixed_float16):
  """fit() with our LossScaleOptimizer: float32 variables with the reduced
  state, training as with float32 state; then a step with an infinite
  gradient writes nothing (weights, codes, absmax, iterations) and halves
  the scale."""
  del mixed_float16
  class_name, state_dtype = LOSS_SCALE_CASES[case]
  x, y = _mixed_data()
  losses = {}
  for layout in (None, state_dtype):
    model = _mixed_model()
    optimizer = top.LossScaleOptimizer(_optimizer(class_name, layout),
                                       initial_scale=2.0**10)
    model.compile(optimizer=optimizer, loss="mse", jit_compile=False)
    history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    assert model.optimizer is optimizer
    losses[layout] = history.history["loss"]
  assert model.layers[0].kernel.dtype == "float32"
  _assert_layouts(optimizer.inner_optimizer, model.trainable_variables,
                  state_dtype)
  reduced, full = losses[state_dtype], losses[None]
  assert reduced[-1] < 0.9 * reduced[0], reduced
  # (measured: within 0.15%)
  assert abs(reduced[-1] - full[-1]) <= 0.01 * full[-1], (reduced, full)

  watched = model.weights + optimizer.inner_optimizer.variables
  before = [v.numpy() for v in watched]
  scale = float(optimizer.dynamic_scale.numpy())
  grads = [tf.zeros_like(v) for v in model.trainable_variables]
  grads[0] = tf.tensor_scatter_nd_update(grads[0], [[0, 0]], [np.inf])
  optimizer.apply_gradients(zip(grads, model.trainable_variables))
  assert float(optimizer.dynamic_scale.numpy()) == scale / 2
  for old, variable in zip(before, watched):
    np.testing.assert_array_equal(variable.numpy(), old, err_msg=variable.path)


def test_keras_wraps_our_optimizer_under_mixed_float16(mixed_float16):
  """compile() wraps a plain optimizer of ours in Keras's
  LossScaleOptimizer; the 8-bit state survives the wrapping."""
  del mixed_float16
  state_dtype = "int8"
  model = _mixed_model()
  model.compile(optimizer=_optimizer("AdamW", state_dtype), loss="mse")
  history = model.fit(*_mixed_data(), batch_size=32, epochs=3, verbose=0)
  assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
  loss = history.history["loss"]
  assert loss[-1] < 0.9 * loss[0], loss
  _assert_layouts(model.optimizer.inner_optimizer, model.trainable_variables,
                  state_dtype)


# ----------------------------------------------------------------------------
# tf.function custom loops and XLA.
# ----------------------------------------------------------------------------
def _codes(optimizer):
  return [v.numpy() for v in optimizer.variables if v.dtype == "uint8"]


@pytest.mark.parametrize("class_name", CLASSES)
def test_int8_custom_loop_in_tf_function_and_under_xla(class_name):
  """A tf.function loop with the fused op and a jit_compile=True loop
  (fused=None: the twin under XLA) give the eager twin's weights and 8-bit
  codes (a float32 value on a bucket boundary may take the neighbouring
  code: the op and XLA may order the float32 arithmetic differently)."""
  grads = _gradients(4, scales=(1.0, 0.3))
  runs = {}
  for mode, fused in (("eager", False), ("function", True), ("xla", None)):
    variables = _variables()
    optimizer = _optimizer(class_name, "int8", fused=fused)
    trajectory = _run(optimizer, variables, grads, mode=mode)
    _assert_layouts(optimizer, variables, "int8")
    runs[mode] = (trajectory[-1], _codes(optimizer))
  want_weights, want_codes = runs["eager"]
  assert len(want_codes) == (1 if class_name == "Lion" else 2)
  for mode in ("function", "xla"):
    weights, codes = runs[mode]
    _assert_close(weights, want_weights, class_name, len(grads))
    for got, want in zip(codes, want_codes):
      step = np.abs(got.astype(int) - want.astype(int))
      assert step.max() <= 1 and (step != 0).mean() <= 0.01, mode


# ----------------------------------------------------------------------------
# MirroredStrategy over 2 logical CPUs (a fresh process: group `state_dtype`
# of the distributed worker).
# ----------------------------------------------------------------------------
DISTRIBUTED_CASES = ("adamw-int8", "lamb-int8", "lion-int8", "adam-bfloat16",
                     "adamw-int8-accumulation")

_worker = {}


def _worker_result():
  if "result" not in _worker:
    command = subprocess_helpers.command("distributed_worker.py", "state_dtype",
                                         2)
    completed = subprocess.run(command, capture_output=True, text=True,
                               timeout=240, check=False,
                               env=subprocess_helpers.environment())
    result = subprocess_helpers.parse_result(completed.stdout)
    if completed.returncode != 0 or result is None:
      result = (f"the worker exited with {completed.returncode}:\n"
                f"{subprocess_helpers.tail(completed.stderr)}")
    _worker["result"] = result
  if isinstance(_worker["result"], str):
    pytest.fail(_worker["result"])
  return _worker["result"]


def _ok(run):
  if "error" in run:
    pytest.fail(f"{run['error']}\n{run.get('traceback', '')}")
  return run


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("mode", ["fit", "loop"])
@pytest.mark.parametrize("case", DISTRIBUTED_CASES)
def test_mirrored_strategy_gives_the_single_device_result(case, mode):
  """fit() and a custom loop mirrored over 2 CPUs end with the weights and
  the state of one device; every replica holds the same copy."""
  result = _worker_result()
  runs = result[f"{case}/{mode}"]
  single, mirrored = _ok(runs["single"]), _ok(runs["mirrored2"])
  state_dtype = case.split("-")[1]
  # hidden kernel (4096 elements), hidden bias, output kernel, output bias
  want = [state_dtype] + ["same" if state_dtype == "int8" else state_dtype] * 3
  assert single["layouts"] == want and mirrored["layouts"] == want
  assert mirrored["replica_spread"] == 0.0
  initial = result["initial"]
  assert _max_difference(single["weights"], initial) > 1e-2
  # The replicas' sums round differently from one device's batch mean.
  assert _max_difference(mirrored["weights"], single["weights"]) <= 1e-5
  # The state too, slot by slot (iterations and learning rate first).
  slots_single = single["optimizer_variables"]
  slots_mirrored = mirrored["optimizer_variables"]
  assert [s[:2] for s in slots_mirrored] == [s[:2] for s in slots_single]
  assert "model_hidden_kernel_momentum" in [s[0] for s in slots_single]
  assert any(dtype == {"int8": "uint8"}.get(state_dtype, state_dtype)
             for _, dtype, _ in slots_single)
  for (path, dtype, want), (_, _, got) in zip(slots_single, slots_mirrored):
    difference = np.abs(np.asarray(got) - np.asarray(want))
    if dtype == "uint8":  # a boundary value may take the neighbouring code
      assert difference.max() <= 1 and (difference != 0).mean() <= 0.01, path
    else:
      np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7, err_msg=path)


@pytest.mark.slow
@pytest.mark.subprocess
def test_mirrored_runs_used_the_fused_ops():
  assert _worker_result()["dispatch_reason"] is None
