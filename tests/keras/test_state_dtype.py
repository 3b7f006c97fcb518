"""`state_dtype` of Adam, AdamW, Lamb and Lion: reduced-precision state.

The front ends' side of issue 16 (docs/quantization.md has the formats):
construction and build-time checks, the slot variables each layout creates
(dtype, shape, name, order), configs, steps against a float64 reference of
the update with the state stored in its layout, checkpoints and `.keras`
files, `fit()` (also under XLA), tf-keras, and DTensor (a subprocess on
virtual CPU devices).

The reference steps are teacher-forced: each step starts the float64 model
(tests/support/references.py for the algorithm, quantization_reference.py for
the storage) from the state the optimizer has stored, so one flipped 8-bit
code at a bucket boundary (float32 against float64 arithmetic) cannot grow
into a trajectory difference, and the tolerances can stay tight.
"""

import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
import quantization_reference as Q
import references as R
import subprocess_helpers
import tf_opt_plugin as top
from tf_opt_plugin import ops

CLASSES = ("Adam", "AdamW", "Lamb", "Lion")
LAYOUTS = (None, "float32", "bfloat16", "int8")

# Keras 3 slot names per class, first moments (signed map) first.
SLOTS = {
    "Adam": ("momentum", "velocity"),
    "AdamW": ("momentum", "velocity"),
    "Lamb": ("momentum", "velocity"),
    "Lion": ("momentum",),
}
TF_KERAS_NAMES = {"momentum": "m", "velocity": "v", "velocity_hat": "vhat"}

# The hyperparameters of the reference runs (each class's defaults
# otherwise); the registry says which reference each class follows.
HP = {
    "Adam": dict(learning_rate=0.01),
    "AdamW": dict(learning_rate=0.01, weight_decay=0.05),
    "Lamb": dict(learning_rate=0.01, weight_decay_rate=0.01),
    "Lion": dict(learning_rate=0.001, weight_decay=0.1),
}

# 50 x 90 = 4500 elements: 8-bit state, 18 blocks, the last one partial.
BIG, SMALL = (50, 90), (5, 7)


def _fused_values():
  """`fused=False` (the twin) and `fused=None` (the op where it runs)."""
  return [False, None]


def _variables(shapes, dtype="float32", seed=0):
  rng = np.random.default_rng(seed)
  variables = []
  for path, shape in shapes.items():
    scope, name = path.split("/")
    with keras.name_scope(scope):
      variables.append(
          keras.Variable(rng.normal(size=shape), dtype=dtype, name=name))
  return variables


# ----------------------------------------------------------------------------
# Construction and build.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("class_name", CLASSES)
@pytest.mark.parametrize(
    "value",
    ["int4", "float16", "Float32", tf.float16, np.float64, 8, True, tf.uint8])
def test_bad_state_dtype_raises_at_construction(class_name, value):
  with pytest.raises(ValueError) as info:
    getattr(top, class_name)(state_dtype=value)
  assert str(info.value) == (
      "`state_dtype` must be None, 'float32', 'bfloat16' or 'int8'. "
      f"Received: state_dtype={value!r}")


@pytest.mark.parametrize("value, expected", [
    (None, None),
    ("bfloat16", "bfloat16"),
    (tf.float32, "float32"),
    (tf.bfloat16, "bfloat16"),
    (np.float32, "float32"),
    (np.dtype("int8"), "int8"),
    (tf.int8, "int8"),
])
def test_state_dtype_spellings_are_normalised(value, expected):
  optimizer = top.AdamW(state_dtype=value)
  assert optimizer.state_dtype == expected
  assert optimizer.get_config()["state_dtype"] == expected


@pytest.mark.parametrize("class_name", CLASSES)
@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16", "int8"])
def test_float64_variable_with_reduced_state_raises_at_build(
    class_name, state_dtype):
  variables = _variables({"dense/kernel": BIG, "dense/bias": (3,)}, "float64")
  optimizer = getattr(top, class_name)(state_dtype=state_dtype)
  with pytest.raises(ValueError) as info:
    optimizer.build(variables)
  assert str(info.value) == (
      "`state_dtype` must be None for float64 variables (their state is "
      f"float64). Received: state_dtype='{state_dtype}' for the variable "
      "`dense/kernel` of dtype float64")
  assert not optimizer.variables[2:]  # no slot was made


def test_float64_variable_keeps_float64_state_by_default():
  variables = _variables({"dense/kernel": BIG}, "float64")
  optimizer = top.Lamb()
  optimizer.build(variables)
  assert {v.dtype for v in optimizer.variables[2:]} == {"float64"}


def _expected_slots(class_name, state_dtype, var_dtype, amsgrad=False):
  """[(path suffix, dtype, shape)] of the slots of BIG then SMALL, Keras 3."""
  names = SLOTS[class_name]
  passes = [names] + ([("velocity_hat",)] if amsgrad else [])
  result = []
  for pass_names in passes:  # velocity_hat after all others, as Keras's
    for path, shape in (("dense_kernel", BIG), ("dense_bias", SMALL)):
      size = int(np.prod(shape))
      for name in pass_names:
        if state_dtype == "int8" and size >= 4096:
          result.append((f"{path}_{name}", "uint8", shape))
          result.append(
              (f"{path}_{name}_absmax", "float32", (-(-size // 256),)))
        else:
          dtype = {
              None: var_dtype,
              "int8": "float32"
          }.get(state_dtype, state_dtype)
          result.append((f"{path}_{name}", dtype, shape))
  return result


@pytest.mark.parametrize("var_dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("state_dtype", LAYOUTS)
@pytest.mark.parametrize("class_name", CLASSES)
def test_slots_per_layout(class_name, state_dtype, var_dtype):
  amsgrad = class_name == "Adam"
  kwargs = dict(amsgrad=True) if amsgrad else {}
  optimizer = getattr(top, class_name)(state_dtype=state_dtype, **kwargs)
  optimizer.build(
      _variables({
          "dense/kernel": BIG,
          "dense/bias": SMALL
      }, var_dtype))
  got = [(v.path, v.dtype, tuple(v.shape)) for v in optimizer.variables]
  prefix = optimizer.name + "/"
  assert got[:2] == [(prefix + "iteration", "int64", ()),
                     (prefix + "learning_rate", "float32", ())]
  assert got[2:] == [(prefix + p, d, s) for p, d, s in _expected_slots(
      class_name, state_dtype, var_dtype, amsgrad)]
  # Each slot as the ops see it has the layout the contract names.
  kernel = optimizer._trainable_variables[0]  # pylint: disable=protected-access
  slot = optimizer.slot(optimizer._momentums, kernel)  # pylint: disable=protected-access
  want = {None: "same", "int8": "int8"}.get(state_dtype, state_dtype)
  if want == var_dtype:
    want = "same"
  assert ops.state_layout(optimizer.as_tf_variable(kernel), slot) == want


def test_variables_order_is_stable_across_builds():
  paths = []
  for _ in range(2):
    optimizer = top.Adam(state_dtype="int8", amsgrad=True, name="adam")
    optimizer.build(_variables({"a/kernel": BIG, "b/kernel": (70, 60)}))
    paths.append([v.path for v in optimizer.variables])
  assert paths[0] == paths[1]
  assert paths[0][2:6] == [
      "adam/a_kernel_momentum", "adam/a_kernel_momentum_absmax",
      "adam/a_kernel_velocity", "adam/a_kernel_velocity_absmax"
  ]


@pytest.mark.parametrize("state_dtype", LAYOUTS)
@pytest.mark.parametrize("class_name", CLASSES)
def test_config_round_trip(class_name, state_dtype):
  cls = getattr(top, class_name)
  optimizer = cls(state_dtype=state_dtype, fused=False)
  config = optimizer.get_config()
  assert config["state_dtype"] == state_dtype
  clone = cls.from_config(config)
  assert clone.state_dtype == state_dtype
  assert clone.get_config() == config
  serialized = keras.optimizers.serialize(optimizer)
  assert keras.optimizers.deserialize(serialized).state_dtype == state_dtype


# ----------------------------------------------------------------------------
# Steps against the float64 reference.
# ----------------------------------------------------------------------------
def _store(x, layout, signed):
  """float64 values of `x` as the layout stores them (the reference model)."""
  x32 = np.asarray(x, np.float32)
  if layout == "bfloat16":
    return Q.bfloat16_bits_to_float32(
        Q.bfloat16_round_nearest_even(x32)).astype(np.float64)
  if layout == "int8":
    codes, absmax = Q.quantize_blockwise(x32, signed)
    return Q.dequantize_blockwise(codes, absmax,
                                  signed).reshape(x32.shape).astype(np.float64)
  return x32.astype(np.float64)


def _reference(class_name, w, state, g, step, hp):
  """One float64 step from the stored state.

  Returns `(new_w, moments)`: `new_w(stored)` the variable after the step,
  given the new moments as stored (only LAMB's step reads them), and the
  new moments before storage rounding.
  """
  if class_name in ("Adam", "AdamW"):
    w_new, m, v, _ = R.adamw_step(w, state[0], state[1], g, beta_1=0.9,
                                  beta_2=0.999, epsilon=1e-7, step=step,
                                  learning_rate=hp["learning_rate"],
                                  weight_decay=hp.get("weight_decay", 0.0))
    return lambda stored: w_new, (m, v)
  if class_name == "Lion":
    w_new, m = R.lion_step(w, state[0], g, beta_1=0.9, beta_2=0.99, **hp)
    return lambda stored: w_new, (m,)
  # LAMB with stored state (the contract): the trust ratio r from the
  # moments before storage rounding (references.lamb_step's), the step
  # `w - lr * r * u` with u recomputed from the moments as stored.
  hp = dict(hp, beta_1=0.9, beta_2=0.999, epsilon=1e-6)
  w_plain, m, v = R.lamb_step(w, state[0], state[1], g, step=step, **hp)
  lr, wd = hp["learning_rate"], hp["weight_decay_rate"]

  def direction(m_, v_):
    m_hat = m_ / (1 - 0.9**step)
    v_hat = v_ / (1 - 0.999**step)
    return m_hat / (np.sqrt(v_hat) + 1e-6) + wd * w

  ratio_times_u = (w - w_plain) / lr  # r * u of the unrounded moments
  ratio = np.linalg.norm(ratio_times_u) / np.linalg.norm(direction(m, v))
  return lambda stored: w - lr * ratio * direction(*stored), (m, v)


def _stored_state(optimizer, variable, name, signed, front="keras3"):
  """The state the optimizer stores for `variable`, decoded independently:
  (float64 values, codes or None, absmax or None)."""
  if front == "keras3":
    by_path = {v.path: v for v in optimizer.variables}
    key = f"{optimizer.name}/{variable.path.replace('/', '_')}_{name}"
    slot = by_path[key]
    absmax = by_path.get(key + "_absmax")
  else:
    by_name = {v.name: v for v in optimizer.variables}
    base = variable.name.split("/")[-1]
    slot = by_name[f"{TF_KERAS_NAMES[name]}/{base}"]
    absmax = by_name.get(f"{TF_KERAS_NAMES[name]}_absmax/{base}")
  if absmax is None:
    return np.asarray(tf.cast(slot, tf.float64)), None, None
  codes, absmax = np.asarray(slot.numpy()), absmax.numpy()
  values = Q.dequantize_blockwise(codes, absmax, signed)
  return values.reshape(codes.shape).astype(np.float64), codes, absmax


def _check_state(stored, moment, layout, signed):
  """The stored state against the reference's, exactly up to rounding
  boundaries: float32 arithmetic may put a value on the other side of a
  bucket (or bfloat16 rounding) boundary than float64 does."""
  got, got_codes, got_absmax = stored
  if layout == "int8":
    assert got_codes is not None, "no 8-bit state"
    codes, absmax = Q.quantize_blockwise(np.float32(moment), signed)
    np.testing.assert_allclose(got_absmax, absmax, rtol=5e-5)
    step = np.abs(got_codes.reshape(-1).astype(int) - codes.astype(int))
    assert step.max() <= 1 and (step != 0).mean() <= 0.01, step.mean()
    return
  assert got_codes is None
  want = _store(moment, layout, signed)
  if layout == "bfloat16":  # at most one bfloat16 step, rarely
    np.testing.assert_allclose(got, want, rtol=2.0**-7, atol=0)
    assert (got != want).mean() <= 0.01
  else:
    # float32 arithmetic: 1 - beta_2 alone is 1.3e-5 off, and m's update
    # cancels (an absolute error of the tensor's scale).
    np.testing.assert_allclose(got, want, rtol=5e-5,
                               atol=2e-6 * np.max(np.abs(want)))


STEP_CASES = {
    # id: (state_dtype, variable dtype)
    "none": (None, "float32"),
    "bfloat16": ("bfloat16", "float32"),
    "int8": ("int8", "float32"),
    "float32-for-bfloat16": ("float32", "bfloat16"),
}


def _run_reference_steps(optimizer, variables, class_name, state_dtype,
                         var_dtype, front="keras3", steps=3):
  """`steps` steps of `optimizer`, each checked against the reference."""
  if not optimizer.built:
    optimizer.build(variables)
  rng = np.random.default_rng(5)
  names = SLOTS[class_name]
  signed = [n == "momentum" for n in names]
  layouts = [
      "int8" if state_dtype == "int8" and np.prod(v.shape) >= 4096 else
      "float32" if state_dtype == "int8" else state_dtype or "same"
      for v in variables
  ]
  moved = 0.0
  for step in range(1, steps + 1):
    grads = [
        tf.constant(rng.normal(size=tuple(v.shape)), var_dtype)
        for v in variables
    ]
    before = [(np.asarray(tf.cast(v, tf.float64)),
               tuple(
                   _stored_state(optimizer, v, n, s, front)[0]
                   for n, s in zip(names, signed)))
              for v in variables]
    optimizer.apply_gradients(zip(grads, variables))
    for variable, grad, layout, (w, state) in zip(variables, grads, layouts,
                                                  before):
      new_w, moments = _reference(class_name, w, state,
                                  np.asarray(tf.cast(grad, tf.float64)), step,
                                  HP[class_name])
      stored = [
          _stored_state(optimizer, variable, n, s, front)
          for n, s in zip(names, signed)
      ]
      for one, moment, s in zip(stored, moments, signed):
        _check_state(one, moment, layout, s)
      got_w = np.asarray(tf.cast(variable, tf.float64))
      want_w = new_w([one[0] for one in stored])
      if var_dtype == "bfloat16":  # the variable's own rounding
        np.testing.assert_allclose(got_w, want_w, rtol=2.0**-8, atol=1e-30)
      else:
        np.testing.assert_allclose(got_w, want_w, rtol=2e-6, atol=2e-7)
      moved = max(moved, np.max(np.abs(got_w - w)))
  assert moved > 1e-4  # the steps moved the variables


@pytest.mark.parametrize("fused", _fused_values())
@pytest.mark.parametrize("case", sorted(STEP_CASES))
@pytest.mark.parametrize("class_name", CLASSES)
def test_steps_match_float64_reference(class_name, case, fused):
  state_dtype, var_dtype = STEP_CASES[case]
  variables = _variables({"dense/kernel": BIG, "dense/bias": SMALL}, var_dtype)
  optimizer = getattr(top, class_name)(state_dtype=state_dtype, fused=fused,
                                       **HP[class_name])
  _run_reference_steps(optimizer, variables, class_name, state_dtype, var_dtype)


@pytest.mark.parametrize("claimed", ["bfloat16", "int8"])
def test_reference_check_fails_for_float32_state(claimed):
  """The checks above cannot pass with state kept in float32."""
  variables = _variables({"dense/kernel": BIG})
  optimizer = top.AdamW(fused=False, **HP["AdamW"])
  with pytest.raises(AssertionError):
    _run_reference_steps(optimizer, variables, "AdamW", claimed, "float32")


# ----------------------------------------------------------------------------
# Checkpoints, `.keras` files, fit.
# ----------------------------------------------------------------------------
def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 64)).astype(np.float32)
  y = np.tanh(x @ rng.normal(size=(64, 4))).astype(np.float32)
  return x, y


def _model(seed=1):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([
      keras.Input((64,)),
      keras.layers.Dense(64, activation="tanh", name="hidden"),  # 4096: int8
      keras.layers.Dense(4, name="out"),
  ])


def _fit(model, optimizer, epochs, jit_compile=False):
  x, y = _data()
  if optimizer is not None:
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
  return model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0)


def _snapshot(model):
  return ([w.numpy() for w in model.weights],
          [v.numpy() for v in model.optimizer.variables])


def _assert_bitwise_equal(a, b):
  for group_a, group_b in zip(a, b):
    assert len(group_a) == len(group_b)
    for x, y in zip(group_a, group_b):
      np.testing.assert_array_equal(x, y)


RESUME_CASES = {
    "adam-amsgrad-int8": ("Adam", dict(amsgrad=True, state_dtype="int8")),
    "lamb-bfloat16": ("Lamb",
                      dict(weight_decay_rate=0.01, state_dtype="bfloat16")),
    "lion-int8": ("Lion", dict(learning_rate=3e-4, state_dtype="int8")),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_checkpoint_and_keras_file_resume_bit_for_bit(case, tmp_path):
  class_name, kwargs = RESUME_CASES[case]
  make = lambda: getattr(top, class_name)(fused=False, **kwargs)
  uninterrupted = _model()
  _fit(uninterrupted, make(), 4)

  first = _model()
  _fit(first, make(), 2)
  state_dtype = kwargs["state_dtype"]
  if state_dtype == "int8":
    codes = [v for v in first.optimizer.variables if v.dtype == "uint8"]
    assert codes and all(np.any(v.numpy()) for v in codes)
  first.save(tmp_path / "model.keras")
  tf.train.Checkpoint(model=first,
                      optimizer=first.optimizer).write(str(tmp_path / "ckpt"))
  saved = _snapshot(first)

  loaded = keras.models.load_model(tmp_path / "model.keras")
  assert loaded.optimizer.state_dtype == state_dtype
  _assert_bitwise_equal(_snapshot(loaded), saved)
  _fit(loaded, None, 2)

  restored = _model(seed=7)  # other initial weights: all must come back
  restored.compile(optimizer=make(), loss="mse", jit_compile=False)
  restored.optimizer.build(restored.trainable_variables)
  tf.train.Checkpoint(model=restored, optimizer=restored.optimizer).read(
      str(tmp_path / "ckpt")).assert_consumed()
  _assert_bitwise_equal(_snapshot(restored), saved)
  _fit(restored, None, 2)

  _assert_bitwise_equal(_snapshot(loaded), _snapshot(uninterrupted))
  _assert_bitwise_equal(_snapshot(restored), _snapshot(uninterrupted))


FIT_CASES = {
    # id: (class, state_dtype, fused, jit_compile); under XLA the twin runs.
    **{
        f"adamw-{s}-twin": ("AdamW", s, False, False) for s in ("float32", "bfloat16")
    },
    **{
        f"{c.lower()}-int8-xla": (c, "int8", None, True) for c in CLASSES
    },
    "lamb-bfloat16-xla": ("Lamb", "bfloat16", None, True),
}


@pytest.mark.parametrize("case", sorted(FIT_CASES) + ["lamb-int8-fused"])
def test_fit_trains(case):
  class_name, state_dtype, fused, jit_compile = FIT_CASES.get(
      case, ("Lamb", "int8", None, False))
  lr = 3e-3 if class_name == "Lion" else 1e-2
  model = _model()
  history = _fit(
      model,
      getattr(top, class_name)(learning_rate=lr, state_dtype=state_dtype,
                               fused=fused), 4, jit_compile=jit_compile)
  loss = history.history["loss"]
  assert loss[-1] < 0.9 * loss[0], loss
  layouts = {
      ops.state_layout(model.optimizer.as_tf_variable(v),
                       model.optimizer.slot(model.optimizer._momentums, v))  # pylint: disable=protected-access
      for v in model.trainable_variables
  }
  want = {"int8": {"int8", "same"}, "bfloat16": {"bfloat16"}}
  assert layouts == want.get(state_dtype, {"same"})


# ----------------------------------------------------------------------------
# tf-keras.
# ----------------------------------------------------------------------------
@pytest.mark.needs_tf_keras
@pytest.mark.parametrize("class_name", CLASSES)
def test_tf_keras_slots_and_steps(class_name):
  pytest.importorskip("tf_keras")
  from tf_opt_plugin.optimizers import tf_keras as front  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  variables = [
      tf.Variable(rng.normal(size=BIG), dtype=tf.float32, name="kernel"),
      tf.Variable(rng.normal(size=SMALL), dtype=tf.float32, name="bias"),
  ]
  optimizer = getattr(front, class_name)(state_dtype="int8", fused=False,
                                         **HP[class_name])
  assert optimizer.get_config()["state_dtype"] == "int8"
  optimizer.build(variables)
  got = [(v.name, v.dtype.name, tuple(v.shape)) for v in optimizer.variables]
  want = [("iteration:0", "int64", ())]
  for name, shape in (("kernel", BIG), ("bias", SMALL)):
    for slot in SLOTS[class_name]:
      short = TF_KERAS_NAMES[slot]
      if shape == BIG:
        want += [(f"{short}/{name}:0", "uint8", shape),
                 (f"{short}_absmax/{name}:0", "float32", (18,))]
      else:
        want.append((f"{short}/{name}:0", "float32", shape))
  assert got == want
  _run_reference_steps(optimizer, variables, class_name, "int8", "float32",
                       front="tf_keras", steps=2)


# ----------------------------------------------------------------------------
# DTensor (virtual CPU devices need a fresh process).
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dtensor_result():
  pytest.importorskip("tf_keras")
  completed = subprocess.run(
      subprocess_helpers.command("dtensor_worker.py", "state_dtype",
                                 "1x4"), capture_output=True, text=True,
      timeout=300, check=False, env=subprocess_helpers.environment())
  result = subprocess_helpers.parse_result(completed.stdout)
  assert completed.returncode == 0 and result is not None, (
      subprocess_helpers.tail(completed.stderr))
  return result


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.needs_tf_keras
def test_dtensor_bfloat16_state_takes_the_variable_layout(dtensor_result):
  layouts = dtensor_result["bfloat16_layouts"]
  assert layouts, "no slots"
  for slot, (dtype, layout, var_layout) in layouts.items():
    assert dtype == "bfloat16", slot
    assert layout == var_layout, slot
  assert any(
      layout.startswith("sharding_specs:unsharded,model,")
      for _, layout, _ in layouts.values())
  # The mesh gives the single-device result.
  assert dtensor_result["bfloat16_max_difference"] <= 1e-6
  assert dtensor_result["replicated_int8_max_difference"] <= 1e-6
  assert dtensor_result["replicated_int8_layouts"] == ["uint8", "float32"]


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.needs_tf_keras
def test_dtensor_int8_on_a_sharded_variable_raises_at_build(dtensor_result):
  kind, message = dtensor_result["sharded_int8"]
  assert kind == "ValueError"
  assert message.startswith(
      "`state_dtype` must be None, 'float32' or 'bfloat16' for a variable "
      "whose DTensor layout shards an axis")
  assert "Received: state_dtype='int8' for the variable `big:0`" in message
  assert "sharding_specs:unsharded,model" in message
  assert dtensor_result["sharded_int8_slots"] == 0  # nothing was made
