"""multi_tensor_apply_adamw / _lamb and the ResourceMultiTensorApply* ops (CPU).

The multi-tensor ops must give exactly what one per-variable op per variable
gives (the CPU kernels share blocks and summation order), validate like them
before writing anything, and the Python wrappers must group by (device,
dtype) and fall back per variable where the multi-tensor op cannot run.
"""

import numpy as np
import pytest
import tensorflow as tf

import references as R
import tf_opt_plugin.ops as ops

DTYPES = {
    "float16": tf.float16,
    "bfloat16": tf.bfloat16,
    "float32": tf.float32,
    "float64": tf.float64
}
# Shapes like a model's: matrices, biases, a >1-block vector, a 3-D kernel,
# an empty variable.
SHAPES = [(7, 5), (3,), (40000,), (2, 3, 4), (0,)]
ADAMW_HP = dict(learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
LAMB_HP = dict(learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6)


# The updates under test, with the hyperparameters above.
def _adamw(ws, ms, vs, grads, **kwargs):
  return ops.multi_tensor_apply_adamw(ws, ms, vs, grads, **ADAMW_HP, **kwargs)


def _lamb(ws, ms, vs, grads, **kwargs):
  return ops.multi_tensor_apply_lamb(ws, ms, vs, grads, **LAMB_HP, **kwargs)


def _adamw_one(w, m, v, grad, **kwargs):
  return ops.resource_apply_adamw(w, m, v, grad, **ADAMW_HP, **kwargs)


def _lamb_one(w, m, v, grad, **kwargs):
  return ops.resource_apply_lamb(w, m, v, grad, **LAMB_HP, **kwargs)


def _state(dtype, shapes=SHAPES, seed=0, amsgrad=False):
  rng = np.random.default_rng(seed)
  ws, ms, vs, vhats = [], [], [], []
  for shape in shapes:
    w = rng.normal(size=shape)
    ws.append(tf.Variable(tf.constant(w, dtype)))
    ms.append(tf.Variable(tf.constant(rng.normal(size=shape) * 0.1, dtype)))
    v = np.abs(rng.normal(size=shape)) * 0.01
    vs.append(tf.Variable(tf.constant(v, dtype)))
    vhats.append(tf.Variable(tf.constant(v * 1.5, dtype)))
  return ws, ms, vs, (vhats if amsgrad else None)


def _grads(dtype, shapes=SHAPES, seed=1):
  rng = np.random.default_rng(seed)
  return [tf.constant(rng.normal(size=s), dtype) for s in shapes]


def _values(*lists):
  return [v.numpy() for values in lists if values is not None for v in values]


def _run_both(run_multi, run_single, dt, mode):
  """Steps 1-3 of both update functions on the same gradients."""
  if mode == "tf.function":
    run_multi, run_single = tf.function(run_multi), tf.function(run_single)
  for step in range(1, 4):
    grads = _grads(dt, seed=step)
    run_multi(grads, tf.constant(step, tf.int64))
    run_single(grads, tf.constant(step, tf.int64))


def _assert_identical(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x, np.float64),
                                  np.asarray(y, np.float64))


def _assert_multi_equals_per_variable(multi_update, one_update, decay_rate,
                                      flags, dtype, mode, amsgrad=False):
  """Steps 1-3 of one multi-tensor call over SHAPES equal one per-variable
  call per variable, to the bit.

  `decay_rate` names the decay argument: the multi-tensor call takes 0.1 with
  `apply_weight_decay`, a per-variable call 0.1 or 0.0. `flags` maps an
  argument to one value per variable: the multi-tensor call takes the list,
  variable i's call its i-th value.
  """
  dt = DTYPES[dtype]
  decay = flags.pop("apply_weight_decay")
  multi, single = _state(dt, amsgrad=amsgrad), _state(dt, amsgrad=amsgrad)

  def run_multi(grads, step):
    vhats = dict(vhats=multi[3]) if amsgrad else {}
    multi_update(*multi[:3], grads, apply_weight_decay=decay, step=step,
                 fused=True, **{decay_rate: 0.1}, **flags, **vhats)

  def run_single(grads, step):
    for i, (w, m, v) in enumerate(zip(*single[:3])):
      vhat = dict(vhat=single[3][i]) if amsgrad else {}
      one_update(w, m, v, grads[i], step=step, fused=True,
                 **{decay_rate: 0.1 if decay[i] else 0.0}, **{
                     name: values[i] for name, values in flags.items()
                 }, **vhat)

  _run_both(run_multi, run_single, dt, mode)
  _assert_identical(_values(*multi), _values(*single))


@pytest.mark.parametrize("mode", ["eager", "tf.function"])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_adamw_equals_per_variable_ops_bit_for_bit(dtype, amsgrad, mode):
  flags = dict(apply_weight_decay=[True, False, True, False, True])
  _assert_multi_equals_per_variable(_adamw, _adamw_one, "weight_decay", flags,
                                    dtype, mode, amsgrad)


@pytest.mark.parametrize("mode", ["eager", "tf.function"])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_lamb_equals_per_variable_ops_bit_for_bit(dtype, mode):
  flags = dict(apply_weight_decay=[True, False, True, True, False],
               use_layer_adaptation=[True, True, False, True, False])
  _assert_multi_equals_per_variable(_lamb, _lamb_one, "weight_decay_rate",
                                    flags, dtype, mode)


def test_adamw_and_lamb_match_the_float64_references():
  shapes = [(6, 4), (5,)]
  ws, ms, vs, _ = _state(tf.float64, shapes)
  lamb = _state(tf.float64, shapes)
  ref = [[w.numpy(), m.numpy(), v.numpy()] for w, m, v in zip(ws, ms, vs)]
  ref_lamb = [list(x) for x in ref]
  for step in range(1, 6):
    grads = _grads(tf.float64, shapes, seed=step)
    _adamw(ws, ms, vs, grads, weight_decay=0.01,
           apply_weight_decay=[True, False], step=step)
    _lamb(*lamb[:3], grads, weight_decay_rate=0.01,
          use_layer_adaptation=[True, False], step=step)
    for i, g in enumerate(grads):
      ref[i] = list(
          R.adamw_step(*ref[i], g.numpy(), step=step,
                       weight_decay=0.01 if i == 0 else 0.0, **ADAMW_HP)[:3])
      ref_lamb[i] = list(
          R.lamb_step(*ref_lamb[i], g.numpy(), step=step,
                      weight_decay_rate=0.01, use_layer_adaptation=i == 0,
                      **LAMB_HP))
  for got, want in zip(_values(ws, ms, vs),
                       [r[k] for k in range(3) for r in ref]):
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
  for got, want in zip(_values(*lamb[:3]),
                       [r[k] for k in range(3) for r in ref_lamb]):
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_groups_by_dtype_whatever_their_size():
  a, b = tf.Variable([1.0, 2.0]), tf.Variable([3.0])
  c = tf.Variable([1.0], dtype=tf.float64)
  h = tf.Variable([1.0], dtype=tf.float16)
  i = tf.Variable([1.0], dtype=tf.float16)
  groups = ops.multi_tensor_groups([a, c, b, h, i])
  # A group of one runs the multi-tensor op too (the per-variable op is the
  # same kernel with a list of one).
  assert [(g.dtype, g.indices, g.reason) for g in groups
         ] == [(tf.float32, (0, 2), None), (tf.float64, (1,), None),
               (tf.float16, (3, 4), None)]


def test_mixed_dtypes_update_like_per_variable_calls():
  dtypes = [tf.float32, tf.float64, tf.float32, tf.bfloat16, tf.float64]
  shapes = [(3, 2), (4,), (5,), (2, 2), (3,)]

  def state():
    rng = np.random.default_rng(3)
    return [[
        tf.Variable(tf.constant(f(rng.normal(size=s)), d))
        for s, d in zip(shapes, dtypes)
    ]
            for f in (lambda x: x, lambda x: 0.1 * x, lambda x: 0.01 * x * x)]

  grads = [tf.constant(np.full(s, 0.3), d) for s, d in zip(shapes, dtypes)]
  multi, single = state(), state()
  _adamw(*multi, grads, weight_decay=0.1, step=2)
  for i in range(len(shapes)):
    _adamw_one(single[0][i], single[1][i], single[2][i], grads[i],
               weight_decay=0.1, step=2)
  _assert_identical(_values(*multi), _values(*single))


def test_fused_false_runs_the_twins_with_the_same_values():
  fused, twin = _state(tf.float64), _state(tf.float64)
  grads = _grads(tf.float64)
  _lamb(*fused[:3], grads, weight_decay_rate=0.1, step=4, fused=True)
  _lamb(*twin[:3], grads, weight_decay_rate=0.1, step=4, fused=False)
  for x, y in zip(_values(*fused[:3]), _values(*twin[:3])):
    np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)


def test_disabled_custom_ops_fall_back(monkeypatch):
  monkeypatch.setenv("TF_OPT_PLUGIN_DISABLE_CUSTOM_OPS", "1")
  ws, ms, vs, _ = _state(tf.float32, [(3,), (2,)])
  grads = _grads(tf.float32, [(3,), (2,)])
  assert [g.reason for g in ops.multi_tensor_groups(ws)] == ["disabled"]
  _adamw(ws, ms, vs, grads, weight_decay=0.0, step=1)
  with pytest.raises(ops.FusedOpUnavailableError, match="disabled"):
    _adamw(ws, ms, vs, grads, weight_decay=0.0, step=1, fused=True)


def test_xla_falls_back_to_the_twins():
  fused, xla = _state(tf.float32, [(4, 3),
                                   (3,)]), _state(tf.float32, [(4, 3), (3,)])
  grads = _grads(tf.float32, [(4, 3), (3,)])

  @tf.function(jit_compile=True)
  def step_xla():
    _lamb(*xla[:3], grads, weight_decay_rate=0.1, step=2)

  step_xla()
  _lamb(*fused[:3], grads, weight_decay_rate=0.1, step=2)
  for x, y in zip(_values(*fused[:3]), _values(*xla[:3])):
    np.testing.assert_allclose(x, y, rtol=2e-6, atol=1e-7)


def test_indexed_slices_equal_dense():
  sparse, dense = _state(tf.float32, [(5, 2)]), _state(tf.float32, [(5, 2)])
  extra = _state(tf.float32, [(3,)]), _state(tf.float32, [(3,)])
  values = tf.constant([[1.0, 2.0], [3.0, 4.0], [0.5, 0.5]])
  slices = tf.IndexedSlices(values, tf.constant([1, 3, 1]), tf.constant([5, 2]))
  g3 = tf.constant([0.1, 0.2, 0.3])
  _adamw(sparse[0] + extra[0][0], sparse[1] + extra[0][1],
         sparse[2] + extra[0][2], [slices, g3], weight_decay=0.0, step=1)
  _adamw(dense[0] + extra[1][0], dense[1] + extra[1][1], dense[2] + extra[1][2],
         [tf.convert_to_tensor(slices), g3], weight_decay=0.0, step=1)
  _assert_identical(_values(*sparse[:3]), _values(*dense[:3]))


# --- validation of the whole call before any group runs --------------------
# A float32 group (variables 0, 1) runs before a float64 group (2, 3); a defect
# in the float64 group must leave the float32 group unwritten too.
_TWO_GROUP_SHAPES = {tf.float32: [(3,), (2, 2)], tf.float64: [(4,), (4,)]}


def _two_groups():
  """(variables, ms, vs, grads) of both groups, as lists."""
  state = {dt: _state(dt, shapes) for dt, shapes in _TWO_GROUP_SHAPES.items()}
  grads = {dt: _grads(dt, shapes) for dt, shapes in _TWO_GROUP_SHAPES.items()}
  return ([x for dt in state for x in state[dt][k]] for k in range(3)), [
      g for dt in grads for g in grads[dt]
  ]


def _uninitialized(shape, dtype):
  from tensorflow.python.ops import resource_variable_ops  # pylint: disable=g-import-not-at-top
  return resource_variable_ops.UninitializedVariable(shape=shape, dtype=dtype)


# defect -> (what it does to (ws, ms, vs, grads), error, message pattern)
_DEFECTS = {
    "slot-shape": (lambda ws, ms, vs, gs: ms.__setitem__(
        3, tf.Variable(tf.zeros([5], tf.float64))),
                   tf.errors.InvalidArgumentError,
                   r"`m\[3\]` must have the shape of `var\[3\]`"),
    "grad-dtype":
        (lambda ws, ms, vs, gs: gs.__setitem__(2, tf.zeros([4], tf.float32)),
         tf.errors.InvalidArgumentError, r"`var\[2\]` must have dtype"),
    "same-variable-twice": (lambda ws, ms, vs, gs: vs.__setitem__(3, ms[2]),
                            tf.errors.InvalidArgumentError,
                            r"`m\[2\]` and `v\[3\]` must be distinct"),
    "uninitialised": (lambda ws, ms, vs, gs: vs.__setitem__(
        3, _uninitialized([4], tf.float64)), tf.errors.FailedPreconditionError,
                      r"uninitialized variable `v\[3\]`"),
    "list-length": (lambda ws, ms, vs, gs: gs.pop(), ValueError,
                    r"`grads` must hold one entry per variable"),
}


@pytest.mark.parametrize("fused", [None, False])
@pytest.mark.parametrize("defect", list(_DEFECTS))
def test_a_defect_in_a_later_group_writes_nothing(defect, fused):
  (ws, ms, vs), grads = _two_groups()
  damage, error, pattern = _DEFECTS[defect]
  damage(ws, ms, vs, grads)
  live = [x for x in ws + ms + vs if bool(x.is_initialized())]
  before = _values(live)
  with pytest.raises(error, match=pattern):
    _adamw(ws, ms, vs, grads, weight_decay=0.1, step=1, fused=fused)
  _assert_identical(_values(live), before)


def test_fused_true_refuses_before_any_group_runs(monkeypatch):
  (ws, ms, vs), grads = _two_groups()
  before = _values(ws, ms, vs)
  real_reason = ops.dispatch_reason
  # As if float64 variables lived on a device without a kernel.
  monkeypatch.setattr(
      "tf_opt_plugin.ops._dispatch.dispatch_reason",
      lambda v, g=None, *rest: "device"
      if v.dtype == tf.float64 else real_reason(v, g, *rest))
  with pytest.raises(ops.FusedOpUnavailableError, match="'device'"):
    _lamb(ws, ms, vs, grads, weight_decay_rate=0.1, step=1, fused=True)
  _assert_identical(_values(ws, ms, vs), before)


@pytest.mark.parametrize("fused", [None, False])
def test_step_known_at_run_time_below_one_writes_nothing(fused):
  (ws, ms, vs), grads = _two_groups()
  before = _values(ws, ms, vs)

  @tf.function
  def step_fn(step):
    _adamw(ws, ms, vs, grads, weight_decay=0.1, step=step, fused=fused)

  with pytest.raises(tf.errors.InvalidArgumentError, match="`step` must be"):
    step_fn(tf.constant(0, tf.int64))
  _assert_identical(_values(ws, ms, vs), before)


# --- validation: raw ops, nothing written before every check passed ---------


def _raw_adamw(ws, ms, vs, grads, step=1, **kwargs):
  lib = ops.load_library()
  return lib.resource_multi_tensor_apply_adam_w(
      absmax=[], rounding_key=[], var=[w.handle for w in ws],
      m=[m.handle for m in ms], v=[v.handle for v in vs],
      vhat=kwargs.pop("vhat", []), grad=grads, lr=0.1, beta_1=0.9, beta_2=0.999,
      epsilon=1e-7, weight_decay=0.0, step=tf.constant(step,
                                                       tf.int64), **kwargs)


def test_slot_shape_mismatch_names_the_variable_and_writes_nothing():
  ws, ms, vs, _ = _state(tf.float32, [(3,), (2, 2)])
  before = _values(ws, ms, vs)
  bad_m = [ms[0], tf.Variable(tf.zeros([4]))]
  with pytest.raises(
      tf.errors.InvalidArgumentError,
      match=r"`m\[1\]` must have the shape of `var\[1\]`.*"
      r"var\[1\]\.shape=\[2,2\], m\[1\]\.shape=\[4\]"):
    _raw_adamw(ws, bad_m, vs, _grads(tf.float32, [(3,), (2, 2)]))
  _assert_identical(_values(ws, ms, vs), before)


def test_grad_shape_mismatch():
  ws, ms, vs, _ = _state(tf.float32, [(3,), (2, 2)])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"`grad\[0\]` must have the shape of `var\[0\]`"):
    _raw_adamw(ws, ms, vs, [tf.zeros([4]), tf.zeros([2, 2])])


def test_step_below_one_writes_nothing():
  ws, ms, vs, _ = _state(tf.float32, [(3,), (2,)])
  grads = _grads(tf.float32, [(3,), (2,)])
  before = _values(ws, ms, vs)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="`step` must be >= 1"):
    _raw_adamw(ws, ms, vs, grads, step=0)
  _assert_identical(_values(ws, ms, vs), before)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="`step` must be >= 1"):
    _adamw(ws, ms, vs, grads, weight_decay=0.0, step=0)


def test_uninitialised_variable():
  ws, ms, vs, _ = _state(tf.float32, [(3,), (2,)])
  grads = _grads(tf.float32, [(3,), (2,)])
  from tensorflow.python.ops import resource_variable_ops  # pylint: disable=g-import-not-at-top
  uninit = resource_variable_ops.UninitializedVariable(shape=[2],
                                                       dtype=tf.float32)
  with pytest.raises(tf.errors.FailedPreconditionError, match=r"`v\[1\]`"):
    _raw_adamw(ws, ms, [vs[0], uninit], grads)


def test_same_variable_twice():
  ws, ms, vs, _ = _state(tf.float32, [(3,), (3,)])
  with pytest.raises(tf.errors.InvalidArgumentError, match="must be distinct"):
    _raw_adamw([ws[0], ws[1]], [ms[0], ws[0]], vs,
               _grads(tf.float32, [(3,), (3,)]))


def test_dtype_mismatch():
  ws, ms, vs, _ = _state(tf.float32, [(3,), (2,)])
  grads = _grads(tf.float32, [(3,), (2,)])
  vs[1] = tf.Variable(tf.zeros([2], tf.float64))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"`v\[1\]` must have dtype float"):
    _raw_adamw(ws, ms, vs, grads)


def test_vhat_count_and_flag_length():
  ws, ms, vs, vhats = _state(tf.float32, [(3,), (2,)], amsgrad=True)
  grads = _grads(tf.float32, [(3,), (2,)])
  with pytest.raises((tf.errors.InvalidArgumentError, ValueError),
                     match="`vhat` must hold 0 variables"):
    _raw_adamw(ws, ms, vs, grads, vhat=[vhats[0].handle])
  with pytest.raises(
      (tf.errors.InvalidArgumentError, ValueError),
      match="`apply_weight_decay` must hold one value per variable"):
    _raw_adamw(ws, ms, vs, grads, apply_weight_decay=[True])
  with pytest.raises(ValueError, match="`apply_weight_decay` must hold one"):
    _adamw(ws, ms, vs, grads, weight_decay=0.0, step=1,
           apply_weight_decay=[True])
  with pytest.raises(ValueError, match="`ms` must hold one entry per variable"):
    _lamb(ws, ms[:1], vs, grads, weight_decay_rate=0.0, step=1)


def test_non_scalar_hyperparameter():
  ws, ms, vs, _ = _state(tf.float32, [(3,), (2,)])
  grads = _grads(tf.float32, [(3,), (2,)])
  lib = ops.load_library()
  with pytest.raises((tf.errors.InvalidArgumentError, ValueError),
                     match="`lr` must be a scalar"):
    lib.resource_multi_tensor_apply_lamb(
        absmax=[], rounding_key=[], var=[w.handle for w in ws],
        m=[m.handle for m in ms], v=[v.handle for v in vs], grad=grads,
        lr=[0.1, 0.2], beta_1=0.9, beta_2=0.999, epsilon=1e-6,
        weight_decay_rate=0.0, step=tf.constant(1, tf.int64))
