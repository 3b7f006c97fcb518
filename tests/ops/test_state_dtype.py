"""The updates with reduced-precision state (issue 16) against float64
references (tests/support/state_references.py), on the fused op and the twin.

Every algorithm of the registry whose ops take state layouts
(`state_layouts`), in every (variable dtype, layout) pair that is not just
today's "same" state, on both paths: 100 steps against the reference, the
fused op's codes against the twin's, multi-tensor calls mixing layouts, the
edge blocks of docs/quantization.md and the bad inputs.

The fused tests need an op library whose ops have the `state_dtype` attr;
they skip only when the loaded library's op lacks it (a library built before
the fused kernels took state layouts), never for any other reason.
"""

import re

import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
import op_harness as H
import quantization_reference as Q
import state_references as S
import tf_opt_plugin.ops as ops


def _cases():
  """case id -> (registry entry, options): each entry with its default
  options and, where it has any, with every option switched on (AdamW's
  amsgrad: the vhat slot)."""
  cases = {}
  for spec in A.with_state_layouts():
    cases[spec.name] = (spec, dict(spec.options))
    every = {k: True for k in spec.options}
    if every != spec.options:
      cases[f"{spec.name}-every-option"] = (spec, every)
  return cases


CASES = _cases()
# (variable dtype, layout): float32 state for the half types, bfloat16 state
# for float16 and float32, 8-bit state for all three.
COMBOS = [("float16", "float32"), ("bfloat16", "float32"),
          ("float32", "bfloat16"), ("float16", "bfloat16"), ("float32", "int8"),
          ("float16", "int8"), ("bfloat16", "int8")]
FUSED = [False, True]
# Several blocks and a partial last one (900 = 3 * 256 + 132), and a
# variable smaller than one block.
SHAPES = [(3, 300), (10,)]
# The steps compared one at a time with the reference (the first from the
# zero state, then every fifth: checking all 100 would double the test's
# time for little; the free-running comparison covers every step).
CHECKED_STEPS = frozenset([1, 2, 3] + list(range(5, 101, 5)))

# One step from the same stored state, the variable (relative to the
# largest magnitude of the compared array): the implementation computes in
# float32 (a few float32 steps from the float64 value) and stores in the
# variable's dtype, where a float32 value near a rounding midpoint may land
# one storage step (2^-10 float16, 2^-7 bfloat16) either side.
W_TOL = {
    "float32": dict(rtol=2e-6, atol_scale=2e-6),
    "float16": dict(rtol=2e-3, atol_scale=1e-3),
    "bfloat16": dict(rtol=1.6e-2, atol_scale=8e-3),
}
# One step from the same stored state, a float slot: float32 state is a few
# float32 steps from the float64 value (the moment updates' own roundings,
# relative to the gradient's magnitude where m is small); bfloat16 state may
# be one bfloat16 step off (up to 2^-7 relative to the smaller of the two)
# where the float32 value sits next to a rounding midpoint (about one element
# in 10^4 per step).
SLOT_TOL = {
    "float32": dict(rtol=1e-5, atol_scale=1e-6),
    "bfloat16": dict(rtol=2**-7, atol_scale=1e-6),
}
# 8-bit state, one step from the same stored state: the new float32 values
# differ from the reference's by float32 steps, so absmax (a max of them)
# agrees to float32 steps, and a code may be one step away where a value
# falls on a bucket boundary; this happens to a few in 10^4 elements.
ABSMAX_RTOL = 1e-5
CODE_STEP_FRACTION = 2e-3
# Free-running trajectories (the implementation and the reference each from
# its own state) after 100 steps: a storage rounding or code that differs
# once changes the state for the later steps, so they drift apart. The
# variable is compared as its displacement w_100 - w_0 and the state as its
# dequantized values, each by the norm of the difference relative to the
# norm of the reference's; the bound is the per-step storage error (a
# storage step of the variable, a bfloat16 step or a code step of the
# state) accumulated over the steps. Measured on the twin: 0 to 1.1e-3
# (float16 variables with bfloat16 state), 3.4e-4 at most with 8-bit state;
# each bound is about 10x the largest measured for its pair. (bfloat16
# variables drift least: their steps of lr = 0.01 round identically.)
DRIFT_RTOL = {
    ("float32", "bfloat16"): 2e-3,
    ("float32", "int8"): 4e-3,
    ("float16", "float32"): 4e-3,
    ("float16", "bfloat16"): 1e-2,
    ("float16", "int8"): 4e-3,
    ("bfloat16", "float32"): 1e-3,
    ("bfloat16", "int8"): 1e-3,
}
TF_DTYPES = {
    "float16": tf.float16,
    "bfloat16": tf.bfloat16,
    "float32": tf.float32,
    "float64": tf.float64
}


def _hp(spec, options):
  """The op tests' hyperparameters as the op sees them (float32 values), with
  the options."""
  hp = H.compute_hp(spec.op_defaults, "float32")
  return dict(hp, **options)


def _read_slots(slots):
  """The stored slots as state_references holds them."""
  out = []
  for slot in slots:
    if isinstance(slot, ops.QuantizedState):
      out.append((slot.codes.numpy(), slot.absmax.numpy()))
    else:
      out.append(H.to_np(slot))
  return tuple(out)


def _variables(slots):
  """Every tf.Variable of the slots (codes and absmax of 8-bit ones)."""
  return [
      v for s in slots
      for v in (s if isinstance(s, ops.QuantizedState) else (s,))
  ]


def _apply(spec, var, slots, grad, step, fused, options, hp=None):
  hp = dict(spec.op_defaults) if hp is None else hp
  hp = {k: v for k, v in hp.items() if k not in spec.options}
  return spec.call_op(getattr(ops, spec.op), var, tuple(slots), grad, step=step,
                      use_locking=True, fused=fused, **options, **hp)


def _runner(spec, states, fused, options):
  """A tf.function applying one update to each (var, slots) of `states`
  (a graph: the twin's many small ops run eagerly would take most of the
  test's time)."""

  @tf.function(autograph=False)
  def run(grads, step):
    for (var, slots), grad in zip(states, grads):
      _apply(spec, var, slots, grad, step, fused, options)
    return tf.constant(0)

  return run


def _grad(rng, shape, var_dtype, scale=1.0):
  g = S.round_to(rng.normal(size=shape) * scale, var_dtype)
  return g, tf.cast(tf.constant(g, tf.float64), TF_DTYPES[var_dtype])


def _init(rng, shape, var_dtype):
  w0 = S.round_to(rng.normal(size=shape), var_dtype)
  return w0, tf.Variable(
      tf.cast(tf.constant(w0, tf.float64), TF_DTYPES[var_dtype]))


def _dequantized(stored, spec, names, layout, shape):
  return [
      S.load(s, layout, S.is_signed(spec, n), shape)
      for s, n in zip(stored, names)
  ]


def _assert_codes_near(got, want, what, max_fraction):
  """8-bit codes: at most one code step apart, in at most `max_fraction` of
  the elements. Returns the fraction that differ."""
  diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
  fraction = float(np.mean(diff != 0))
  assert diff.max(initial=0) <= 1, (what, diff.max())
  assert fraction <= max_fraction, (what, fraction)
  return fraction


def _assert_stored_close(got, want, layout, names, what, step):
  for name, a, e in zip(names, got, want):
    label = f"{what} {name} step {step}"
    if layout == "int8":
      (codes, absmax), (codes_e, absmax_e) = a, e
      np.testing.assert_allclose(absmax, absmax_e, rtol=ABSMAX_RTOL,
                                 err_msg=label)
      if step == 1:  # from the zero state: the same float32 values
        np.testing.assert_array_equal(codes, codes_e, err_msg=label)
      else:
        _assert_codes_near(codes, codes_e, label, CODE_STEP_FRACTION)
    else:
      H.assert_close(a, e, **SLOT_TOL[layout], what=label)


@pytest.mark.parametrize("fused", FUSED, ids=["twin", "fused"])
@pytest.mark.parametrize("var_dtype,layout", COMBOS,
                         ids=[f"{d}-{l}" for d, l in COMBOS])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference_100_steps(case, var_dtype, layout, fused):
  """The steps of CHECKED_STEPS against the reference from the
  implementation's own stored state (tight: W_TOL, SLOT_TOL, codes), and the
  free-running trajectories after 100 steps (DRIFT_RTOL)."""
  spec, options = CASES[case]
  hp = _hp(spec, options)
  rng = np.random.default_rng(16)
  names = _slot_names(spec, options)
  runs = []
  for shape in SHAPES:
    w0, var = _init(rng, shape, var_dtype)
    slots = H.zero_state_slots(spec, shape, layout, var_dtype, options)
    free = (w0, S.zero_state(spec, shape, layout, var_dtype, **options))
    runs.append(dict(shape=shape, w0=w0, var=var, slots=slots, free=free))
  runner = _runner(spec, [(r["var"], r["slots"]) for r in runs], fused, options)
  for step in range(1, 101):
    grads = [_grad(rng, run["shape"], var_dtype) for run in runs]
    checked = step in CHECKED_STEPS
    if checked:
      before = [(H.to_np(r["var"]), _read_slots(r["slots"])) for r in runs]
    runner([grad for _, grad in grads], tf.constant(step, tf.int64))
    for i, (run, (g, _)) in enumerate(zip(runs, grads)):
      if checked:
        w, stored = before[i]
        got_w, got = H.to_np(run["var"]), _read_slots(run["slots"])
        want_w, want = S.state_step(spec, w, stored, g, step=step,
                                    layout=layout, var_dtype=var_dtype,
                                    read_back=got, **hp)
        what = f"{case} {var_dtype}/{layout} {run['shape']}"
        H.assert_close(got_w, want_w, **W_TOL[var_dtype],
                       what=f"{what} var step {step}")
        _assert_stored_close(got, want, layout, names, what, step)
      fw, fs = run["free"]
      run["free"] = S.state_step(spec, fw, fs, g, step=step, layout=layout,
                                 var_dtype=var_dtype, **hp)
  for run in runs:
    fw, fs = run["free"]
    bound = DRIFT_RTOL[(var_dtype, layout)]
    what = f"{case} {var_dtype}/{layout} {run['shape']} after 100 steps"
    _assert_relative_norm(
        H.to_np(run["var"]) - run["w0"], fw - run["w0"], bound,
        f"{what}: displacement")
    got = _dequantized(_read_slots(run["slots"]), spec, names, layout,
                       run["shape"])
    want = _dequantized(fs, spec, names, layout, run["shape"])
    for name, a, e in zip(names, got, want):
      _assert_relative_norm(a, e, bound, f"{what}: {name}")


def _assert_relative_norm(got, want, bound, what):
  """||got - want|| <= bound * ||want|| (a few elements one storage step or
  one code apart, or Lion's sign of a moment near zero flipped, move the
  norm little)."""
  err = np.linalg.norm(np.asarray(got) - want)
  assert err <= bound * np.linalg.norm(want), (what, err / np.linalg.norm(want))


@pytest.mark.parametrize("case", list(CASES))
def test_fused_codes_match_twin(case):
  """The fused op's 8-bit codes against the twin's, from the same start on the
  same gradients: at most one code step apart (a float32 value on a bucket
  boundary), in few elements; the fractions are printed."""
  spec, options = CASES[case]
  shape = (3, 1000)
  rng = np.random.default_rng(7)
  w0, _ = _init(rng, shape, "float32")
  paths = {}
  for fused in (True, False):
    paths[fused] = (tf.Variable(w0.astype(np.float32)),
                    H.zero_state_slots(spec, shape, "int8", "float32", options))
  fractions = {}
  for step in range(1, 101):
    _, grad = _grad(rng, shape, "float32")
    for fused, (var, slots) in paths.items():
      _apply(spec, var, slots, grad, step, fused, options)
    if step in (1, 100):
      for i, (a, b) in enumerate(zip(paths[True][1], paths[False][1])):
        fractions[(step,
                   i)] = _assert_codes_near(a.codes.numpy(), b.codes.numpy(),
                                            f"{case} slot {i} step {step}",
                                            1e-3 if step == 1 else 1e-2)
  print(f"\n{case}: fraction of codes fused != twin: " + ", ".join(
      f"slot {i} step {s}: {f:.2e}" for (s, i), f in sorted(fractions.items())))


MULTI = [name for name, (spec, _) in CASES.items() if spec.multi_tensor]


def _multi_call(spec, variables, slot_lists, grads, step, fused, options):
  """multi_tensor_apply_<name>(variables, *slot lists, grads, ...)."""
  hp = {k: v for k, v in spec.op_defaults.items() if k not in spec.options}
  fn = getattr(ops, f"multi_tensor_apply_{spec.name}")
  names = _slot_names(spec, options)
  kwargs = dict(hp, use_locking=True, fused=fused)
  if spec.counts_steps:
    kwargs["step"] = step
  for name, slots in zip(names, slot_lists):
    if name == "vhat":
      kwargs["vhats"] = slots
  positional = [s for n, s in zip(names, slot_lists) if n != "vhat"]
  return fn(variables, *positional, grads, **kwargs)


@pytest.mark.parametrize("fused", FUSED, ids=["twin", "fused"])
@pytest.mark.parametrize("case", MULTI)
def test_multi_tensor_mixes_layouts(case, fused):
  """One multi-tensor call over a float16 variable with float32 state and one
  with 8-bit state gives each its own per-variable result: the single
  variable update's exactly, and the reference's."""
  spec, options = CASES[case]
  hp = _hp(spec, options)
  names = _slot_names(spec, options)
  layouts = ("float32", "int8")
  shapes = ((7, 5), (3, 1000))
  rng = np.random.default_rng(3)
  multi, single = [], []
  for shape, layout in zip(shapes, layouts):
    w0, var = _init(rng, shape, "float16")
    multi.append(
        (var, H.zero_state_slots(spec, shape, layout, "float16", options)))
    single.append((tf.Variable(var),
                   H.zero_state_slots(spec, shape, layout, "float16", options)))
  for step in (1, 2, 3):
    gs = [_grad(rng, s, "float16") for s in shapes]
    before = [(H.to_np(v), _read_slots(s)) for v, s in multi]
    _multi_call(spec, [v for v, _ in multi],
                [[s[i] for _, s in multi] for i in range(len(names))],
                [g for _, g in gs], step, fused, options)
    for (var, slots), (_, grad) in zip(single, gs):
      _apply(spec, var, slots, grad, step, fused, options)
    for (mv, ms), (sv, ss), (g, _), (w, stored), layout in zip(
        multi, single, gs, before, layouts):
      np.testing.assert_array_equal(H.to_np(mv), H.to_np(sv))
      for a, b in zip(_variables(ms), _variables(ss)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
      want_w, want = S.state_step(spec, w, stored, g, step=step, layout=layout,
                                  var_dtype="float16",
                                  read_back=_read_slots(ms), **hp)
      H.assert_close(H.to_np(mv), want_w, **W_TOL["float16"],
                     what=f"{layout} var step {step}")
      _assert_stored_close(_read_slots(ms), want, layout, names,
                           f"multi {layout}", step)


# ---------------------------------------------------------------------------
# Edge blocks of 8-bit state (docs/quantization.md)
# ---------------------------------------------------------------------------
EDGE_SHAPE = (1000,)  # blocks 0-2 of 256, block 3 partial (232 elements)


def _edge_gradient(rng):
  g = rng.normal(size=EDGE_SHAPE)
  g[:256] = 0.0  # block 0: all zero, absmax 0
  g[256 + 17] = 1e15  # block 1: one huge outlier (its square stays finite)
  g[512 + 40] = np.nan  # block 2: one NaN
  return S.round_to(g, "float32")


@pytest.mark.parametrize("fused", FUSED, ids=["twin", "fused"])
@pytest.mark.parametrize("case", list(CASES))
def test_edge_blocks(case, fused):
  """A zero block stays exactly zero; the outlier block follows the
  reference (its small elements lose their precision, none rounds to a zero
  second moment); the NaN block's absmax becomes NaN, so its whole state
  dequantizes to NaN and every weight of the block is NaN after the next
  step: visibly poisoned. The other blocks stay finite and follow the
  reference; the partial last block too."""
  spec, options = CASES[case]
  hp = _hp(spec, options)
  names = _slot_names(spec, options)
  rng = np.random.default_rng(5)
  w0, var = _init(rng, EDGE_SHAPE, "float32")
  slots = H.zero_state_slots(spec, EDGE_SHAPE, "int8", "float32", options)
  g1 = _edge_gradient(rng)
  g2 = S.round_to(rng.normal(size=EDGE_SHAPE), "float32")
  for step, g in ((1, g1), (2, g2)):
    w, stored = H.to_np(var), _read_slots(slots)
    _apply(spec, var, slots, tf.constant(g, tf.float32), step, fused, options)
    got_w, got = H.to_np(var), _read_slots(slots)
    want_w, want = S.state_step(spec, w, stored, g, step=step, layout="int8",
                                var_dtype="float32", read_back=got, **hp)
    np.testing.assert_array_equal(np.isnan(got_w), np.isnan(want_w))
    H.assert_close(got_w, want_w, **W_TOL["float32"], what=f"var step {step}")
    for name, (codes, absmax), (codes_e, absmax_e) in zip(names, got, want):
      label = f"{name} step {step}"
      # Block 2 is NaN in every slot, the other blocks finite.
      assert np.isnan(absmax[2]), (label, absmax)
      assert np.all(np.isfinite(absmax[[0, 1, 3]])), (label, absmax)
      np.testing.assert_allclose(absmax, absmax_e, rtol=ABSMAX_RTOL,
                                 err_msg=label)
      values = S.load((codes, absmax), "int8", S.is_signed(spec, name),
                      EDGE_SHAPE)
      assert np.all(np.isnan(values[512:768])), label
      assert np.all(np.isfinite(np.delete(values, np.s_[512:768]))), label
      if step == 1:
        np.testing.assert_array_equal(codes, codes_e, err_msg=label)
        assert absmax[0] == 0 and np.all(values[:256] == 0), label
        if not S.is_signed(spec, name):  # a positive moment never reads 0
          assert np.all(values[256:512] > 0), label
      else:
        _assert_codes_near(codes, codes_e, label, CODE_STEP_FRACTION)
  # After the second step the poisoned state reached every weight of block 2.
  assert np.all(np.isnan(got_w[512:768]))
  assert np.all(np.isfinite(np.delete(got_w, np.s_[512:768])))


# ---------------------------------------------------------------------------
# Bad inputs: a typed error naming the input, nothing written
# ---------------------------------------------------------------------------
ERRORS = (ValueError, TypeError, tf.errors.InvalidArgumentError)
BAD_SHAPE = (3, 300)  # 900 elements: 4 blocks


def _quantized(shape, codes_dtype=tf.uint8, absmax_len=None,
               absmax_dtype=tf.float32, codes_shape=None):
  codes_shape = shape if codes_shape is None else codes_shape
  n = ops.absmax_shape(shape)[0] if absmax_len is None else absmax_len
  return ops.QuantizedState(tf.Variable(tf.zeros(codes_shape, codes_dtype)),
                            tf.Variable(tf.ones([n], absmax_dtype)))


# bad case -> (variable dtype, slots maker (spec, options) -> slots, the
# strings the message must hold).
def _first_replaced(spec, options, bad):
  """8-bit slots, the first replaced by `bad`."""
  slots = [_quantized(s) for _, s in spec.slots(BAD_SHAPE, **options)]
  slots[0] = bad
  return slots


BAD = {
    "float32-codes": ("float32", lambda spec, o: _first_replaced(
        spec, o, _quantized(BAD_SHAPE, codes_dtype=tf.float32)),
                      ["uint8", "float32"]),
    "int8-codes": ("float32", lambda spec, o: _first_replaced(
        spec, o, _quantized(BAD_SHAPE, codes_dtype=tf.int8)), ["uint8",
                                                               "int8"]),
    "absmax-length": ("float32", lambda spec, o: _first_replaced(
        spec, o, _quantized(BAD_SHAPE, absmax_len=5)), ["absmax", (4,), (5,)]),
    "absmax-dtype": ("float32", lambda spec, o: _first_replaced(
        spec, o, _quantized(BAD_SHAPE, absmax_dtype=tf.float16)),
                     ["absmax", "float32", "float16"]),
    "codes-shape": ("float32", lambda spec, o: _first_replaced(
        spec, o, _quantized(BAD_SHAPE, codes_shape=(300, 3))), [(300, 3),
                                                                BAD_SHAPE]),
    "float64-int8":
        ("float64",
         lambda spec, o: [_quantized(s) for _, s in spec.slots(BAD_SHAPE, **o)],
         ["float64"]),
    "float64-bfloat16": ("float64", lambda spec, o: [
        tf.Variable(tf.zeros(s, tf.bfloat16))
        for _, s in spec.slots(BAD_SHAPE, **o)
    ], ["float64", "bfloat16"]),
}


def _mentions(msg, needle):
  """A name or dtype as a word, or a shape as TF ([3,5]) or Python ((3, 5))
  prints it."""
  if isinstance(needle, tuple):
    flat = "".join(msg.split())
    body = ",".join(str(d) for d in needle)
    return (f"[{body}]" in flat or f"({body})" in flat or f"({body},)" in flat)
  return re.search(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % re.escape(needle),
                   msg) is not None


def _mixed(spec, options):
  """The first slot float32 state, the others 8-bit."""
  slots = [_quantized(s) for _, s in spec.slots(BAD_SHAPE, **options)]
  slots[0] = tf.Variable(tf.zeros(BAD_SHAPE, tf.float32))
  return slots


def _slot_names(spec, options):
  return [n for n, _ in spec.slots((1,), **options)]


# (case, bad input): mixing layouts needs two slots (not Lion's one).
BAD_CASES = [
    (case, bad)
    for case, (spec, options) in CASES.items()
    for bad in list(BAD) + ["float-and-quantized"]
    if bad != "float-and-quantized" or len(_slot_names(spec, options)) > 1
]


@pytest.mark.parametrize("fused", FUSED, ids=["twin", "fused"])
@pytest.mark.parametrize("case,bad", BAD_CASES,
                         ids=[f"{c}-{b}" for c, b in BAD_CASES])
def test_bad_state_rejected(case, bad, fused):
  """Each bad slot raises a typed error whose message names the input and
  the dtypes / shapes received, before anything is written."""
  spec, options = CASES[case]
  names = _slot_names(spec, options)
  if bad == "float-and-quantized":
    var_dtype, make, needles = "float32", _mixed, names[:2]
  else:
    var_dtype, make, needles = BAD[bad]
    if "absmax" in needles:  # the absmax variable, named after its slot
      needles = [f"{names[0]}_absmax" if n == "absmax" else n for n in needles]
    elif not bad.startswith("float64"):
      needles = needles + [names[0]]
  var = tf.Variable(tf.ones(BAD_SHAPE, TF_DTYPES[var_dtype]))
  slots = make(spec, options)
  every = [var] + _variables(slots)
  before = [v.numpy().copy() for v in every]
  grad = tf.ones(BAD_SHAPE, var.dtype)
  with pytest.raises(ERRORS) as info:
    _apply(spec, var, slots, grad, 1, fused, options)
  msg = str(info.value)
  for needle in needles:
    assert _mentions(msg, needle), (needle, msg)
  for v, b in zip(every, before):
    np.testing.assert_array_equal(v.numpy(), b)
