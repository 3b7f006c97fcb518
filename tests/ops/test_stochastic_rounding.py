"""Stochastic rounding of bfloat16 variables (issue 16): the `rounding_key`
of the AdamW, LAMB and Lion ops, on the fused op and the twin.

The stored bits are checked against the float64/numpy reference of the hash
and the rounding (tests/support/quantization_reference.py) on updates whose
float32 value is exact, so the reference's bits are the only right answer:
a bfloat16 weight w with |w| in [0.25, 4) (8 significant bits, the lowest at
2^-10 or above), a gradient of +0.5, a learning rate that is a multiple of
2^-12 below 2^-8, and hyperparameters under which the step is exactly
w - lr: AdamW with beta_1 = beta_2 = epsilon = weight_decay = 0 (m = g,
v = g^2, lr_t = lr, m / sqrt(v) = 1), LAMB the same without layer adaptation
(its second pass reads the moments as stored: 0.5 and 0.25, exact in every
layout, including 8-bit blocks of one value whose ratio to absmax is 1, a
code of both maps), Lion without weight decay (sign(c) = 1). w - lr then
spans at most 14 bits, so float32 holds it exactly (the test checks that).

The statistics: with the exact value x between the bfloat16 neighbours
lo < x < lo + ulp, each element rounds up with probability p = (x - lo) / ulp,
independently of the others (its own 16 hash bits), so over N elements the
fraction rounded up has standard deviation sqrt(p (1 - p) / N) and the mean
stored value ulp times that; both must be within 5 of those of their
expectations (p and x).
"""

import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
import op_harness as H
import quantization_reference as Q
import tf_opt_plugin.ops as ops

SPECS = {spec.name: spec for spec in A.with_state_layouts()}
FUSED = [False, True]
LAYOUTS = ("same", "float32", "int8")
# 40,000 elements: three 16,384-element work blocks of the CPU op, the last
# one partial, and 157 8-bit blocks, the last one partial.
BIG = 40_000
LR = 2.0**-10
SEED, STEP, VARIABLE_ID = 7, 3, 2


def _exact_hp(spec, learning_rate=LR):
  """Hyperparameters (and options) under which a step from the zero state
  with gradient +0.5 is exactly w - learning_rate (module docstring)."""
  return {
      "adamw":
          dict(learning_rate=learning_rate, beta_1=0.0, beta_2=0.0, epsilon=0.0,
               weight_decay=0.0),
      "lamb":
          dict(learning_rate=learning_rate, beta_1=0.0, beta_2=0.0, epsilon=0.0,
               weight_decay_rate=0.0, use_layer_adaptation=False),
      "lion":
          dict(learning_rate=learning_rate, beta_1=0.9, beta_2=0.99,
               weight_decay=0.0),
  }[spec.name]


def _bits(variable):
  """The stored bits of a bfloat16 variable as uint16."""
  return tf.bitcast(variable, tf.uint16).numpy().reshape(-1)


def _bf16_weights(n, rng):
  """n bfloat16-representable float32 weights with |w| in [0.25, 4), random
  signs and mantissas."""
  magnitude = rng.uniform(0.25, 4.0, n).astype(np.float32)
  w = np.where(rng.random(n) < 0.5, -magnitude, magnitude).astype(np.float32)
  # Truncating to the top 16 bits gives a bfloat16 value, still in range.
  return (w.view(np.uint32) & 0xFFFF0000).view(np.float32)


def _split(spec, hp):
  """(options, hyperparameters) of `hp`."""
  options = {k: v for k, v in hp.items() if k in spec.options}
  return options, {k: v for k, v in hp.items() if k not in spec.options}


def _apply(spec, var, slots, grad, *, hp, fused, step=STEP, **kwargs):
  options, hyper = _split(spec, hp)
  return spec.call_op(getattr(ops, spec.op), var, tuple(slots), grad, step=step,
                      fused=fused, **options, **hyper, **kwargs)


def _apply_multi(spec, variables, slot_lists, grads, *, hp, fused, keys):
  """The multi-tensor op of `spec` on `variables`; `slot_lists` holds one
  list per slot (in the op's order), per-variable options as lists."""
  options, hyper = _split(spec, hp)
  options = {k: [v] * len(variables) for k, v in options.items()}
  if spec.counts_steps:
    hyper["step"] = STEP
  function = getattr(ops, f"multi_tensor_apply_{spec.name}")
  return function(variables, *slot_lists, grads, rounding_keys=keys,
                  fused=fused, **options, **hyper)


def _exact_update(spec, w0, hp):
  """The float64 reference update from the zero state, gradient +0.5, as
  float32 (asserted exact)."""
  options, hyper = _split(spec, hp)
  g = np.full(w0.shape, 0.5)
  w, _ = spec.reference_step(w0.astype(np.float64),
                             spec.zero_slots(w0.shape, **options), g, step=STEP,
                             **options, **hyper)
  exact = w.astype(np.float32)
  np.testing.assert_array_equal(exact.astype(np.float64), w)
  return exact


_REFERENCE_BITS = {}


def _reference_bits(exact, key):
  """The reference's stochastically rounded bits (cached: the pure-Python
  hash takes about a second for BIG elements, and every case of one test
  rounds the same values)."""
  cache_key = (exact.tobytes(), key)
  if cache_key not in _REFERENCE_BITS:
    _REFERENCE_BITS[cache_key] = Q.bfloat16_round_stochastic(exact, key)
  return _REFERENCE_BITS[cache_key]


def test_key_equals_reference():
  """The op's key function is the reference's hash chain, arguments taken
  mod 2**32."""
  for seed, step, variable_id in [(0, 0, 0), (0, 1, 0), (7, 3, 2),
                                  (2**32 + 5, 2**40 + 1, 3),
                                  (123456789, 1, 2**31)]:
    expected = Q.stochastic_rounding_key(seed, step, variable_id)
    actual = ops.stochastic_rounding_key(seed, step, variable_id)
    assert actual.dtype == tf.uint32
    assert int(actual) == expected, (seed, step, variable_id)


@pytest.mark.parametrize("fused", FUSED, ids=["twin", "fused"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", SPECS)
def test_bits_equal_reference(name, layout, fused):
  """A bfloat16 variable of several CPU work blocks, updated exactly in
  float32, is stored as the reference's stochastic rounding, bit for bit,
  with slots of every layout."""
  spec = SPECS[name]
  hp = _exact_hp(spec)
  w0 = _bf16_weights(BIG, np.random.default_rng(0))
  exact = _exact_update(spec, w0, hp)
  key = Q.stochastic_rounding_key(SEED, STEP, VARIABLE_ID)
  expected = _reference_bits(exact, key)
  # Round to nearest differs on 13% of the elements (lr is 1/16 to 1/2 of
  # their bfloat16 step): a key that is ignored fails the test.
  assert np.mean(expected != Q.bfloat16_round_nearest_even(exact)) > 0.1

  var = tf.Variable(w0, dtype=tf.bfloat16)
  slots = H.zero_state_slots(spec, (BIG,), layout, tf.bfloat16,
                             _split(spec, hp)[0])
  _apply(spec, var, slots, tf.constant(0.5, tf.bfloat16,
                                       (BIG,)), hp=hp, fused=fused,
         rounding_key=ops.stochastic_rounding_key(SEED, STEP, VARIABLE_ID))
  actual = _bits(var)
  np.testing.assert_array_equal(actual, expected,
                                err_msg=f"{np.sum(actual != expected)} differ")


@pytest.mark.parametrize("fused", FUSED, ids=["twin", "fused"])
@pytest.mark.parametrize("name", SPECS)
def test_multi_tensor_keys_per_variable(name, fused):
  """A multi-tensor call rounds each bfloat16 variable with its own key (the
  same values under different keys get different bits) and leaves a float32
  variable in the same call as round to nearest leaves it."""
  spec = SPECS[name]
  hp = _exact_hp(spec)
  options = _split(spec, hp)[0]
  rng = np.random.default_rng(1)
  w_big = _bf16_weights(BIG, rng)
  shapes = [(BIG,), (BIG,), (7, 45)]
  initial = [w_big, w_big, _bf16_weights(315, rng).reshape(7, 45)]
  variables = [tf.Variable(w, dtype=tf.bfloat16) for w in initial]
  # A float32 variable: its key is ignored, its update exact in float32.
  w32 = _bf16_weights(50, rng)
  variables.append(tf.Variable(w32))
  shapes.append((50,))
  slots = [
      H.zero_state_slots(spec, shape, "same", v.dtype, options)
      for shape, v in zip(shapes, variables)
  ]
  slot_lists = [list(s) for s in zip(*slots)]
  grads = [
      tf.constant(0.5, v.dtype, shape) for v, shape in zip(variables, shapes)
  ]
  ids = [0, 1, 2, 3]
  _apply_multi(spec, variables, slot_lists, grads, hp=hp, fused=fused,
               keys=[ops.stochastic_rounding_key(SEED, STEP, i) for i in ids])
  for i, (w0, var) in enumerate(zip(initial[:3], variables[:3])):
    exact = _exact_update(spec, w0.reshape(-1), hp)
    expected = _reference_bits(exact,
                               Q.stochastic_rounding_key(SEED, STEP, ids[i]))
    np.testing.assert_array_equal(_bits(var), expected, err_msg=f"var[{i}]")
  # The two equal variables got different keys, so different bits.
  assert np.mean(_bits(variables[0]) != _bits(variables[1])) > 0.2
  np.testing.assert_array_equal(variables[3].numpy(),
                                _exact_update(spec, w32, hp))


# Exact values between two bfloat16 neighbours: (w0, learning rate,
# gradient); the step is w0 - lr * sign(gradient). The magnitude lies in
# [0.5, 1), where the bfloat16 step is 2^-8, between 1 - 2^-8 and 1.
STATISTICS_CASES = {
    "p-11/16": (1.0, 5 * 2.0**-12, 0.5),  # 1 - 5/4096: up with p = 11/16
    "p-1/4": (1.0, 12 * 2.0**-12, 0.5),  # 1 - 12/4096: p = 4/16
    "negative-p-13/16": (-1.0, 3 * 2.0**-12, -0.5),  # -1 + 3/4096: p = 13/16
}
N_STAT = 131_072


@pytest.mark.parametrize("fused", FUSED, ids=["twin", "fused"])
@pytest.mark.parametrize("case", STATISTICS_CASES)
@pytest.mark.parametrize("name", SPECS)
def test_unbiased(name, case, fused):
  """Many elements with the same exact value: the mean stored value and the
  fraction rounded up (in magnitude) match the exact value and the distance
  ratio within 5 standard errors; without a key every element is the
  nearest."""
  spec = SPECS[name]
  w0, lr, g = STATISTICS_CASES[case]
  hp = _exact_hp(spec, learning_rate=lr)
  x = w0 - lr * np.sign(g)  # exact in float64 and float32
  magnitude = abs(x)
  ulp = 2.0**-8
  lo = np.floor(magnitude / ulp) * ulp
  p = (magnitude - lo) / ulp
  assert 0 < p < 1
  sigma = np.sqrt(p * (1 - p) / N_STAT)

  def run(key):
    var = tf.Variable(tf.fill([N_STAT], tf.constant(w0, tf.bfloat16)))
    slots = H.zero_state_slots(spec, (N_STAT,), "same", tf.bfloat16,
                               _split(spec, hp)[0])
    _apply(spec, var, slots, tf.constant(g, tf.bfloat16, (N_STAT,)), hp=hp,
           fused=fused, rounding_key=key)
    return np.abs(var.numpy().astype(np.float64))

  stored = run(ops.stochastic_rounding_key(SEED, STEP, VARIABLE_ID))
  assert set(np.unique(stored)) <= {lo, lo + ulp}
  up = np.mean(stored == lo + ulp)
  assert abs(up - p) < 5 * sigma, (up, p, sigma)
  assert abs(np.mean(stored) - magnitude) < 5 * sigma * ulp
  nearest = lo + ulp if p > 0.5 else lo
  np.testing.assert_array_equal(run(None), nearest)


def _random_problem(spec, shape, layout, dtype, seed, steps=3):
  """(initial weight, gradients, options, hyperparameters): the op tests'
  defaults on random values, several steps (so the state is not zero)."""
  rng = np.random.default_rng(seed)
  w0 = rng.standard_normal(shape).astype(np.float32)
  grads = rng.standard_normal((steps,) + tuple(shape)).astype(np.float32)
  options, hyper = _split(spec, dict(spec.op_defaults))
  return w0, grads, options, hyper


def _run(spec, shape, layout, dtype, *, fused, keys, seed=0):
  """The variable's bits (and the slots' values) after len(keys) steps, step
  i rounded with keys[i] (None: to nearest)."""
  w0, grads, options, hyper = _random_problem(spec, shape, layout, dtype, seed,
                                              steps=len(keys))
  var = tf.Variable(tf.cast(w0, dtype))
  slots = H.zero_state_slots(spec, shape, layout, dtype, options)
  for i, key in enumerate(keys):
    _apply(spec, var, slots, tf.cast(grads[i], dtype),
           hp=dict(options, **hyper), fused=fused, step=i + 1, rounding_key=key)
  stored = [
      tf.bitcast(v, tf.uint16).numpy() if v.dtype == tf.bfloat16 else v.numpy()
      for s in slots
      for v in (s if isinstance(s, ops.QuantizedState) else (s,))
  ]
  if dtype == tf.bfloat16:
    return _bits(var), stored
  return var.numpy(), stored


def _keys(seed, variable_id, steps=3, first_step=1):
  return [
      ops.stochastic_rounding_key(seed, step, variable_id)
      for step in range(first_step, first_step + steps)
  ]


# 5,000 elements: 8-bit state of 20 blocks, the last partial.
SHAPE = (50, 100)


@pytest.mark.parametrize("fused", FUSED, ids=["twin", "fused"])
@pytest.mark.parametrize("name", SPECS)
def test_deterministic(name, fused):
  """The same keys give the same bits on two runs; another seed, another
  step or another variable id gives other bits."""
  spec = SPECS[name]
  run = lambda keys: _run(spec, SHAPE, "same", tf.bfloat16, fused=fused, keys=
                          keys)[0]
  first = run(_keys(SEED, VARIABLE_ID))
  np.testing.assert_array_equal(run(_keys(SEED, VARIABLE_ID)), first)
  for other in (_keys(SEED + 1, VARIABLE_ID), _keys(SEED, VARIABLE_ID + 1),
                _keys(SEED, VARIABLE_ID, first_step=2)):
    # A random value rounds the other way with probability 2 p (1 - p), on
    # average 1/3 for p uniform; at least a tenth of the elements differ.
    assert np.mean(run(other) != first) > 0.1


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", SPECS)
def test_fused_equals_twin(name, layout):
  """The fused op and the twin store the same bits (variable and state)
  after several stochastically rounded steps, in every state layout."""
  spec = SPECS[name]
  keys = _keys(SEED, VARIABLE_ID)
  fused_var, fused_state = _run(spec, SHAPE, layout, tf.bfloat16, fused=True,
                                keys=keys)
  twin_var, twin_state = _run(spec, SHAPE, layout, tf.bfloat16, fused=False,
                              keys=keys)
  np.testing.assert_array_equal(fused_var, twin_var)
  for i, (f, t) in enumerate(zip(fused_state, twin_state)):
    np.testing.assert_array_equal(f, t, err_msg=f"state variable {i}")
  # The key was used: round to nearest stores other bits.
  nearest, _ = _run(spec, SHAPE, layout, tf.bfloat16, fused=True,
                    keys=[None] * len(keys))
  assert np.mean(nearest != fused_var) > 0.1


@pytest.mark.parametrize("fused", FUSED, ids=["twin", "fused"])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float16],
                         ids=["float32", "float16"])
@pytest.mark.parametrize("name", SPECS)
def test_key_ignored_for_other_dtypes(name, dtype, fused):
  """A float32 or float16 variable with a key is updated exactly as
  without one (variable and state)."""
  spec = SPECS[name]
  with_key = _run(spec, SHAPE, "same", dtype, fused=fused,
                  keys=_keys(SEED, VARIABLE_ID))
  without = _run(spec, SHAPE, "same", dtype, fused=fused, keys=[None] * 3)
  np.testing.assert_array_equal(with_key[0], without[0])
  for f, t in zip(with_key[1], without[1]):
    np.testing.assert_array_equal(f, t)


# ----------------------------------------------------------------------------
# Bad keys: a typed error naming the input, nothing written.
# ----------------------------------------------------------------------------
def _snapshot(var, slots):
  return [
      v.numpy().copy() for v in [var] + [
          x for s in slots
          for x in (s if isinstance(s, ops.QuantizedState) else (s,))
      ]
  ]


def _assert_unchanged(before, var, slots):
  for b, a in zip(before, _snapshot(var, slots)):
    np.testing.assert_array_equal(a, b)


BAD_KEYS = {
    "float": (0.5, TypeError, r"`rounding_key` must be an integer scalar"),
    "bool": (True, TypeError, r"`rounding_key` must be an integer scalar"),
    "float-tensor": (tf.constant(1.0), TypeError, r"`rounding_key`"),
    "vector": (tf.constant([1, 2], tf.uint32), ValueError,
               r"`rounding_key` must be a scalar"),
}


@pytest.mark.parametrize("fused", FUSED, ids=["twin", "fused"])
@pytest.mark.parametrize("bad", BAD_KEYS)
@pytest.mark.parametrize("name", SPECS)
def test_bad_rounding_key(name, bad, fused):
  spec = SPECS[name]
  key, error, pattern = BAD_KEYS[bad]
  hp = _exact_hp(spec)
  var = tf.Variable(_bf16_weights(10, np.random.default_rng(2)),
                    dtype=tf.bfloat16)
  slots = H.zero_state_slots(spec, (10,), "same", tf.bfloat16,
                             _split(spec, hp)[0])
  before = _snapshot(var, slots)
  with pytest.raises(error, match=pattern):
    _apply(spec, var, slots, tf.constant(0.5, tf.bfloat16, (10,)), hp=hp,
           fused=fused, rounding_key=key)
  _assert_unchanged(before, var, slots)


@pytest.mark.parametrize("fused", FUSED, ids=["twin", "fused"])
@pytest.mark.parametrize("keys", [1, 3], ids=["too-few", "too-many"])
@pytest.mark.parametrize("name", SPECS)
def test_rounding_keys_wrong_length(name, keys, fused):
  spec = SPECS[name]
  hp = _exact_hp(spec)
  options = _split(spec, hp)[0]
  variables = [
      tf.Variable(_bf16_weights(10, np.random.default_rng(i)),
                  dtype=tf.bfloat16) for i in range(2)
  ]
  slots = [
      H.zero_state_slots(spec, (10,), "same", tf.bfloat16, options)
      for _ in range(2)
  ]
  before = [_snapshot(v, s) for v, s in zip(variables, slots)]
  with pytest.raises(ValueError, match=r"rounding_keys"):
    _apply_multi(spec, variables, [list(s) for s in zip(*slots)],
                 [tf.constant(0.5, tf.bfloat16, (10,))] * 2, hp=hp, fused=fused,
                 keys=list(range(keys)))
  for b, v, s in zip(before, variables, slots):
    _assert_unchanged(b, v, s)


@pytest.mark.parametrize("name", SPECS)
def test_raw_op_key_for_other_dtype(name):
  """The raw op refuses a key for a variable that is not bfloat16 (the
  wrapper drops it; a key there means the caller mixed up its lists)."""
  spec = SPECS[name]
  raw_op = getattr(ops.load_library(), A.raw_op_name(spec.op_type))
  var = tf.Variable(np.linspace(-1.0, 1.0, 10, dtype=np.float32))
  slots = H.zero_state_slots(spec, (10,), "same", tf.float32)
  before = _snapshot(var, slots)
  hyper = {
      ("lr" if k == "learning_rate" else k): tf.constant(v, tf.float32)
      for k, v in spec.op_defaults.items()
  }
  if spec.counts_steps:
    hyper["step"] = tf.constant(1, tf.int64)
  inputs = dict(var=var.handle, grad=tf.ones([10]), absmax=[],
                rounding_key=[tf.constant(5, tf.uint32)], **hyper)
  names = [n for n, _ in spec.slots((10,))]
  inputs.update({n: s.handle for n, s in zip(names, slots)})
  if spec.name == "adamw":
    inputs["vhat"] = []
  if spec.name == "lamb":
    inputs["use_layer_adaptation"] = True
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"rounding_key"):
    raw_op(**inputs)
  _assert_unchanged(before, var, slots)
