"""Shared machinery for the op tests: algorithm adapters (from the registry in
tests/support/algorithms.py), execution modes, tolerances and the trajectory /
step-by-step comparison against the float64 references in
tests/support/references.py."""

import numpy as np
import tensorflow as tf

import algorithms as A
import tf_opt_plugin.ops as ops

DTYPES = {
    "float16": tf.float16,
    "bfloat16": tf.bfloat16,
    "float32": tf.float32,
    "float64": tf.float64,
}
HALF_DTYPES = ("float16", "bfloat16")

# fused=True / fused=False, eager / tf.function; the twin also under XLA.
MODES = ("fused-eager", "fused-function", "twin-eager", "twin-function",
         "twin-xla")

# Step-by-step tolerances for the half types (one update computed in float32
# and rounded to the storage type): relative plus an absolute part scaled by
# the largest magnitude of the compared array.
STEP_TOL = {
    "float16": dict(rtol=2e-3, atol_scale=1e-3),
    "bfloat16": dict(rtol=1.6e-2, atol_scale=8e-3),
}
# Whole-trajectory tolerances.
TRAJ_TOL = {
    "float32": dict(rtol=1e-4, atol_scale=1e-5),
    "float64": dict(rtol=1e-9, atol_scale=1e-11),
}


def compute_hp(hp, dtype_name):
  """Hyperparameters as the op sees them: float32 unless the variable is
    float64 (contract: Tscalar is double only for T=double)."""
  if dtype_name == "float64":
    return dict(hp)
  return {
      k: (float(np.float32(v)) if isinstance(v, float) else v)
      for k, v in hp.items()
  }


def to_np(x):
  return np.asarray(tf.cast(x, tf.float64).numpy())


def assert_close(actual, desired, rtol, atol_scale, what=""):
  actual = np.asarray(actual, np.float64)
  desired = np.asarray(desired, np.float64)
  assert actual.shape == desired.shape, (what, actual.shape, desired.shape)
  finite = desired[np.isfinite(desired)]
  scale = float(np.max(np.abs(finite))) if finite.size else 0.0
  np.testing.assert_allclose(actual, desired, rtol=rtol,
                             atol=atol_scale * scale + 1e-300, equal_nan=True,
                             err_msg=what)


# ---------------------------------------------------------------------------
# Algorithm adapters, one per entry of the registry (algorithms.py) that has a
# fused op.  State is a tuple of tf.Variables; the first is the model
# variable, the rest are the slots in the op's order.
# ---------------------------------------------------------------------------
class OpAlgorithm:
  """A registry entry with the options and hyperparameters of one test.

    Subclasses (AdamW, Lamb, Adafactor, ...) set `spec`; their constructors
    take the entry's options (amsgrad=..., use_layer_adaptation=...,
    relative_step=...) and hyperparameters overriding its `op_defaults`.
    """
  spec = None
  name = None
  op_type = None

  def __init__(self, **kwargs):
    self.options = {
        k: kwargs.pop(k, default) for k, default in self.spec.options.items()
    }
    for option, value in self.options.items():
      setattr(self, option, value)  # e.g. algo.amsgrad
    self.hp = dict(self.spec.op_defaults)
    self.hp.update(kwargs)

  def slot_shapes(self, shape):
    return self.spec.slot_shapes(shape, **self.options)

  def apply(self, state, grad, step, fused, use_locking=True, hp=None):
    hp = self.hp if hp is None else hp
    return self.spec.call_op(getattr(ops, self.spec.op), state[0],
                             tuple(state[1:]), grad, step=step,
                             use_locking=use_locking, fused=fused,
                             **self.options, **hp)

  def ref(self, state, grad, step, hp):
    w, slots = self.spec.reference_step(state[0], tuple(state[1:]), grad,
                                        step=step, **self.options, **hp)
    return (w,) + tuple(slots)


def _op_adapters():
  return {
      a.name:
          type(
              a.op_class, (OpAlgorithm,),
              dict(spec=a, name=a.name, op_type=a.op_type, __module__=__name__))
      for a in A.with_fused_op()
  }


# name -> adapter class.  Each class is also a module attribute under its
# `op_class` name (AdamW, Lamb, Adafactor), so a new registry entry gets its
# adapter without an edit here.
ADAPTERS = _op_adapters()
globals().update({cls.__name__: cls for cls in ADAPTERS.values()})


def with_every_option(adapter):
  """A maker of `adapter` with every option switched on: the op with all its
  inputs (AdamW's vhat too)."""
  return lambda: adapter(**{option: True for option in adapter.spec.options})


# name -> maker of the adapter whose op takes every input.
FULL_ADAPTERS = {name: with_every_option(cls) for name, cls in ADAPTERS.items()}


def make_state(algo, shape, dtype, w0=None, rng=None):
  """Model variable (random unless w0 is given) and zero slots."""
  shape = tuple(shape)
  if w0 is None:
    w0 = rng.normal(size=shape)
  var = tf.Variable(tf.cast(tf.constant(w0, tf.float64), dtype))
  slots = [tf.Variable(tf.zeros(s, dtype)) for s in algo.slot_shapes(shape)]
  return (var,) + tuple(slots)


def read_state(state):
  return tuple(to_np(v) for v in state)


def make_runner(algo, state, mode, use_locking=True):
  """Returns f(grad_tensor, step_tensor) applying one update in `mode`."""
  fused = mode.startswith("fused")

  def body(grad, step):
    algo.apply(state, grad, step, fused=fused, use_locking=use_locking)

  if mode.endswith("eager"):
    return body
  jit = mode == "twin-xla"

  @tf.function(jit_compile=jit, autograph=False)
  def fn(grad, step):
    body(grad, step)
    return tf.constant(0)

  return fn


def random_grads(shape, steps, dtype, rng, scale=1.0):
  out = []
  for _ in range(steps):
    g = tf.cast(tf.constant(rng.normal(size=shape) * scale, tf.float64), dtype)
    out.append(g)
  return out


def run_and_compare(algo, shape, dtype_name, mode, steps=100, seed=0,
                    grad_scale=1.0):
  """Runs `steps` updates and compares with the reference: the whole
    trajectory for float32/float64, one step at a time for half types."""
  rng = np.random.default_rng(seed)
  dtype = DTYPES[dtype_name]
  state = make_state(algo, shape, dtype, rng=rng)
  grads = random_grads(shape, steps, dtype, rng, grad_scale)
  runner = make_runner(algo, state, mode)
  hp = compute_hp(algo.hp, dtype_name)
  names = ["var"] + ["slot%d" % i for i in range(len(state) - 1)]

  if dtype_name in HALF_DTYPES:
    tol = STEP_TOL[dtype_name]
    for t, g in enumerate(grads, 1):
      before = read_state(state)
      expected = algo.ref(before, to_np(g), t, hp)
      runner(g, tf.constant(t, tf.int64))
      got = read_state(state)
      for name, a, e in zip(names, got, expected):
        assert_close(a, e, tol["rtol"], tol["atol_scale"],
                     "%s %s step %d" % (mode, name, t))
    return read_state(state)

  tol = TRAJ_TOL[dtype_name]
  ref_state = read_state(state)
  for t, g in enumerate(grads, 1):
    ref_state = algo.ref(ref_state, to_np(g), t, hp)
    runner(g, tf.constant(t, tf.int64))
    if t % 10 == 0 or t == steps:
      got = read_state(state)
      for name, a, e in zip(names, got, ref_state):
        assert_close(a, e, tol["rtol"], tol["atol_scale"],
                     "%s %s step %d" % (mode, name, t))
  return read_state(state)


def graph_op_types(concrete_fn):
  """All op types in a concrete function, including nested functions."""
  gd = concrete_fn.graph.as_graph_def()
  types = {n.op for n in gd.node}
  for f in gd.library.function:
    types.update(n.op for n in f.node_def)
  return types


def zero_state_slots(spec, shape, layout, var_dtype, options=None):
  """The zero slots of `spec`'s update of a variable of `shape` and
  `var_dtype`, stored in `layout` ("same", "float32", "bfloat16", "int8"):
  variables, or `ops.QuantizedState`s of codes and absmax variables."""
  out = []
  for _, slot_shape in spec.slots(tuple(shape), **(options or {})):
    if layout == "int8":
      out.append(
          ops.QuantizedState(
              tf.Variable(tf.zeros(slot_shape, tf.uint8)),
              tf.Variable(tf.zeros(ops.absmax_shape(slot_shape), tf.float32))))
    else:
      dtype = tf.as_dtype(var_dtype if layout == "same" else layout)
      out.append(tf.Variable(tf.zeros(slot_shape, dtype)))
  return out
