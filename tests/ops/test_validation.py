"""A rejected call writes nothing, on every path, and says what is wrong.

Whatever runs the update (the fused op or the pure-TF twin; eagerly, in a
tf.function or in a TF1 graph run by a Session), the whole call is validated
before any variable is written, and the error is typed and names the argument
and the value received. Where both paths can reject a call, they raise the
same error type with the same message (the kernel's message is found in the
error of either path).
"""

import math

import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
import op_harness as H
import tf_opt_plugin.ops as ops

InvalidArgumentError = tf.errors.InvalidArgumentError
FailedPreconditionError = tf.errors.FailedPreconditionError

ADAMW_HP = A.op_hp("adamw", learning_rate=0.1)
LAMB_HP = A.op_hp("lamb", learning_rate=0.1)
ADAFACTOR_HP = A.op_hp("adafactor", learning_rate=0.01)
# Every multi-tensor function, from the registry.
MULTI_TENSOR = [spec for spec in A.with_fused_op() if spec.multi_tensor]


def _multi_tensor_call(spec, variables, slots, grads, **kwargs):
  """`multi_tensor_apply_<spec.name>` over `slots` (as many lists as the
  algorithm has slots), with its op-test hyperparameters and, where it takes
  one, step 1."""
  step = dict(step=1) if spec.counts_steps else {}
  apply = getattr(ops, "multi_tensor_apply_" + spec.name)
  return apply(variables, *slots[:len(spec.slots((1,)))], grads, **step,
               **A.op_hp(spec.name, learning_rate=0.1), **kwargs)


PATHS = [True, False]  # fused: the kernel, the twin


def _variable(value, dtype=tf.float32):
  return tf.Variable(tf.cast(value, dtype))


def _snapshot(variables):
  return [v.numpy().copy() for v in variables]


def _assert_unchanged(variables, snapshot):
  for i, (v, s) in enumerate(zip(variables, snapshot)):
    np.testing.assert_array_equal(v.numpy(), s, err_msg=f"variable {i}")


def _raises(error, fn, variables, *fragments):
  """`fn()` raises `error` whose message holds every fragment, and leaves
  every one of `variables` as it was."""
  snapshot = _snapshot(variables)
  with pytest.raises(error) as info:
    fn()
  message = str(info.value)
  for fragment in fragments:
    assert fragment in message, (fragment, message)
  _assert_unchanged(variables, snapshot)
  return message


def _in_function(fn, *specs):
  """`fn` as a tf.function with an input signature of `specs`."""

  def body(*args):
    fn(*args)

  return tf.function(body, input_signature=list(specs), autograph=False)


def _adamw_state(shape=(2,), dtype=tf.float32):
  w = _variable(np.arange(1, np.prod(shape) + 1).reshape(shape), dtype)
  return w, _variable(tf.zeros(shape), dtype), _variable(tf.zeros(shape), dtype)


def _apply_adamw(state, **kwargs):
  """resource_apply_adamw of a gradient of ones to `state` ((2,) variables:
  var, m, v), with ADAMW_HP at step 1 unless `kwargs` say otherwise."""
  hp = dict(ADAMW_HP, step=1)
  hp.update(kwargs)
  return ops.resource_apply_adamw(*state, tf.ones([2]), **hp)


def _assert_adamw_rejects(error, *fragments, **kwargs):
  """_apply_adamw(**kwargs) raises `error` with every fragment in its message
  and writes nothing."""
  state = _adamw_state((2,))
  _raises(error, lambda: _apply_adamw(state, **kwargs), state, *fragments)


def _assert_same_update(fused, argument, values):
  """_apply_adamw updates a fresh state the same, to the bit, with `argument`
  at each of `values`."""
  results = []
  for value in values:
    state = _adamw_state((2,))
    _apply_adamw(state, fused=fused, **{argument: value})
    results.append(_snapshot(state))
  for r in results[1:]:
    for a, b in zip(r, results[0]):
      np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# A1. Multi-tensor calls are checked whole.
# ---------------------------------------------------------------------------
def _two_groups():
  """A float32 variable and a float64 one: two groups, two ops or twins."""
  a, ma, va = _adamw_state((2,), tf.float32)
  b, mb, vb = _adamw_state((2,), tf.float64)
  return [a, b], [ma, mb], [va, vb]


@pytest.mark.parametrize("fused", [None, False])
@pytest.mark.parametrize("algo", ["adamw", "lamb"])
def test_bad_last_group_writes_no_group_eagerly(algo, fused):
  ws, ms, vs = _two_groups()
  grads = [tf.ones([2]), tf.ones([3], tf.float64)]
  apply, hp = ((ops.multi_tensor_apply_adamw, ADAMW_HP) if algo == "adamw" else
               (ops.multi_tensor_apply_lamb, LAMB_HP))
  _raises(
      InvalidArgumentError,
      lambda: apply(ws, ms, vs, grads, step=1, fused=fused, **hp),
      ws + ms + vs,
      "grad[1]",
      "[3]",
  )


@pytest.mark.parametrize("fused", [None, False])
@pytest.mark.parametrize("algo", ["adamw", "lamb"])
@pytest.mark.parametrize("bad_shape", [[3], [1]], ids=["3", "broadcastable"])
def test_bad_last_gradient_known_only_at_run_time(algo, fused, bad_shape):
  # The last gradient's shape is unknown when the function is traced: the
  # first group (its own op, or its twin) must wait for the check.
  ws, ms, vs = _two_groups()
  apply, hp = ((ops.multi_tensor_apply_adamw, ADAMW_HP) if algo == "adamw" else
               (ops.multi_tensor_apply_lamb, LAMB_HP))
  f = _in_function(
      lambda g: apply(ws, ms, vs, [tf.ones([2]), g], step=1, fused=fused, **hp),
      tf.TensorSpec(None, tf.float64),
  )
  shape = ",".join(str(d) for d in bad_shape)
  _raises(
      InvalidArgumentError,
      lambda: f(tf.ones(bad_shape, tf.float64)),
      ws + ms + vs,
      f"`grad[1]` must have the shape of `var[1]`. Received: var[1].shape=[2], "
      f"grad[1].shape=[{shape}]",
  )


@pytest.mark.parametrize("fused", PATHS)
def test_twin_of_one_variable_rejects_broadcastable_gradient(fused):
  w, m, v = _adamw_state((2,))
  f = _in_function(
      lambda g: ops.resource_apply_adamw(w, m, v, g, step=1, fused=fused, **
                                         ADAMW_HP),
      tf.TensorSpec(None, tf.float32),
  )
  _raises(
      InvalidArgumentError,
      lambda: f(tf.ones([1])),
      [w, m, v],
      "`grad` must have the shape of `var`. Received: var.shape=[2], "
      "grad.shape=[1]",
  )


# ---------------------------------------------------------------------------
# A2. TF1 graph mode: every read and write depends on the checks.
# ---------------------------------------------------------------------------
class _Session:
  """A TF1 graph and Session; variables are resource variables."""

  def __enter__(self):
    self._graph = tf.Graph()
    self._graph_context = self._graph.as_default()
    self._graph_context.__enter__()
    self.session = tf.compat.v1.Session(graph=self._graph)
    return self

  def __exit__(self, *exc):
    self.session.close()
    self._graph_context.__exit__(*exc)

  def variable(self, value, dtype=tf.float32, initialize=True):
    v = tf.Variable(tf.cast(value, dtype))
    if initialize:
      self.session.run(v.initializer)
    return v

  def read(self, variables):
    return self.session.run([v.read_value() for v in variables])


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("uninitialized", ["var", "m"])
def test_tf1_graph_uninitialized_variable_writes_nothing(uninitialized, fused):
  with _Session() as s:
    names = ["var", "m", "v"]
    state = [
        s.variable([1.0, 2.0], initialize=(n != uninitialized)) for n in names
    ]
    live = [v for n, v in zip(names, state) if n != uninitialized]
    before = s.read(live)
    update = _apply_adamw(state, fused=fused)
    with pytest.raises(FailedPreconditionError):
      s.session.run(update)
    for a, b in zip(s.read(live), before):
      np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fused", [None, False])
def test_tf1_graph_multi_tensor_uninitialized_last_variable(fused):
  with _Session() as s:
    a, ma, va = (s.variable([1.0, 2.0]) for _ in range(3))
    b = s.variable([1.0, 2.0], tf.float64, initialize=False)
    mb, vb = (s.variable([0.0, 0.0], tf.float64) for _ in range(2))
    live = [a, ma, va, mb, vb]
    before = s.read(live)
    update = ops.multi_tensor_apply_adamw(
        [a, b],
        [ma, mb],
        [va, vb],
        [tf.ones([2]), tf.ones([2], tf.float64)],
        step=1,
        fused=fused,
        **ADAMW_HP,
    )
    with pytest.raises(FailedPreconditionError):
      s.session.run(update)
    for x, y in zip(s.read(live), before):
      np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("fused", PATHS)
def test_tf1_graph_step_fed_at_run_time(fused):
  with _Session() as s:
    state = [s.variable([1.0, 2.0]) for _ in range(3)]
    step = tf.compat.v1.placeholder(tf.int64, shape=[])
    update = _apply_adamw(state, step=step, fused=fused)
    before = s.read(state)
    with pytest.raises(InvalidArgumentError) as info:
      s.session.run(update, {step: 0})
    assert "`step` must be >= 1" in str(info.value)
    for x, y in zip(s.read(state), before):
      np.testing.assert_array_equal(x, y)
    s.session.run(update, {step: 1})  # a valid step still runs


# ---------------------------------------------------------------------------
# A3. Both paths reject the same calls with the same message.
# ---------------------------------------------------------------------------
def _adafactor_state():
  w = _variable([[1.0, 2.0], [3.0, 4.0]])
  return [w] + [_variable(tf.zeros(s)) for s in ops.accumulator_shapes(w.shape)]


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("value,shown", [(0.0, "0"), (-1.0, "-1"),
                                         (math.nan, "nan")])
@pytest.mark.parametrize("when", ["python", "run-time"])
def test_adafactor_clip_threshold_must_be_positive(value, shown, when, fused):
  state = _adafactor_state()
  hp = dict(ADAFACTOR_HP)

  def apply(clip_threshold):
    ops.resource_apply_adafactor(
        state[0],
        state[1:],
        tf.ones([2, 2]),
        step=1,
        fused=fused,
        **dict(hp, clip_threshold=clip_threshold),
    )

  if when == "python":
    fn = lambda: apply(value)  # noqa: E731
  else:
    f = _in_function(apply, tf.TensorSpec([], tf.float32))
    fn = lambda: f(tf.constant(value))  # noqa: E731
  _raises(
      InvalidArgumentError,
      fn,
      state,
      f"`clip_threshold` must be > 0. Received: clip_threshold={shown}",
  )


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("algo", list(H.ADAPTERS))
def test_hyperparameter_of_unknown_rank(algo, fused):
  adapter = H.ADAPTERS[algo]()
  # (2, 2): Adafactor's accumulators are factored.
  state = H.make_state(adapter, (2, 2), tf.float32, w0=[[1.0, 2.0], [3.0, 4.0]])
  grad = tf.ones([2, 2])

  def apply(lr):
    adapter.apply(state, grad, step=1, fused=fused,
                  hp=dict(adapter.hp, learning_rate=lr))

  f = _in_function(apply, tf.TensorSpec(None, tf.float32))
  _raises(
      InvalidArgumentError,
      lambda: f(tf.constant([0.1, 0.1])),
      state,
      "`learning_rate` must be a scalar. Received: learning_rate.shape=[2]",
  )
  f(tf.constant(0.1))  # a scalar of the same signature runs


@pytest.mark.parametrize("fused", PATHS)
def test_step_of_unknown_rank(fused):
  state = _adamw_state((2,))
  f = _in_function(
      lambda t: _apply_adamw(state, step=t, fused=fused),
      tf.TensorSpec(None, tf.int64),
  )
  _raises(
      InvalidArgumentError,
      lambda: f(tf.constant([1, 1], tf.int64)),
      state,
      "`step` must be a scalar. Received: step.shape=[2]",
  )


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("mode", ["eager", "function"])
def test_slot_that_is_the_variable(mode, fused):
  w, _, v = _adamw_state((2,))

  def apply():
    _apply_adamw((w, w, v), fused=fused)

  fn = apply if mode == "eager" else _in_function(apply)
  _raises(
      InvalidArgumentError,
      fn,
      [w, v],
      "`var` and `m` must be distinct variables. Received the same variable "
      "twice.",
  )


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("mode", ["eager", "function"])
def test_variable_listed_twice(mode, fused):
  w, m, v = _adamw_state((2,))
  m2, v2 = _variable([0.0, 0.0]), _variable([0.0, 0.0])

  def apply():
    ops.multi_tensor_apply_adamw([w, w], [m, m2], [v, v2], [tf.ones([2])] * 2,
                                 step=1, fused=fused, **ADAMW_HP)  # fmt: skip

  fn = apply if mode == "eager" else _in_function(apply)
  _raises(
      InvalidArgumentError,
      fn,
      [w, m, v, m2, v2],
      "`var[0]` and `var[1]` must be distinct variables. Received the same "
      "variable twice.",
  )


@pytest.mark.parametrize("fused", PATHS)
def test_uninitialized_variable_same_message(fused):
  from tensorflow.python.ops import resource_variable_ops

  w = resource_variable_ops.UninitializedVariable(shape=[2], dtype=tf.float32)
  m, v = _variable([0.0, 0.0]), _variable([0.0, 0.0])
  _raises(
      FailedPreconditionError,
      lambda: _apply_adamw((w, m, v), fused=fused),
      [m, v],
      "Attempting to use uninitialized variable `var`",
  )


# ---------------------------------------------------------------------------
# C7. Arguments of the wrong type.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize(
    "value,shown",
    [
        ("0.1", "learning_rate='0.1'"),
        (0.1 + 0.5j, "learning_rate=(0.1+0.5j)"),
        (True, "learning_rate=True"),
        (None, "learning_rate=None"),
        (tf.constant("0.1"), "dtype string"),
        (tf.constant(0.1 + 0.5j), "dtype complex128"),
        (tf.constant(True), "dtype bool"),
    ],
    ids=[
        "str", "complex", "bool", "none", "str-tensor", "complex-tensor",
        "bool-tensor"
    ],
)  # fmt: skip
def test_learning_rate_of_wrong_type(value, shown, fused):
  _assert_adamw_rejects(TypeError, "`learning_rate` must be a real number",
                        shown, fused=fused, learning_rate=value)


@pytest.mark.parametrize("fused", PATHS)
def test_integer_learning_rate_is_its_float_value(fused):
  _assert_same_update(fused, "learning_rate",
                      (tf.constant(1, tf.int32), 1, 1.0, np.float64(1.0)))


@pytest.mark.parametrize("value", ["no", 1, 0, "False", np.True_])
def test_fused_must_be_none_true_or_false(value):
  _assert_adamw_rejects(
      TypeError, "`fused` must be None, True or False. Received: fused=",
      fused=value)


@pytest.mark.parametrize("value", ["no", 1, "False", np.True_])
def test_fused_of_every_function_checked(value):
  ws, ms, vs = ([_variable([1.0])] for _ in range(3))
  checks = [
      lambda spec=spec: _multi_tensor_call(spec, ws, (ms, vs), [tf.ones([1])],
                                           fused=value) for spec in MULTI_TENSOR
  ] + [
      lambda: ops.resource_apply_sgd(ws[0], ms[0], tf.ones([1]), learning_rate=
                                     0.1, momentum=0.9, fused=value),
  ]
  for check in checks:
    _raises(TypeError, check, ws + ms + vs, "`fused` must be None, True or")


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(use_locking="no"), "use_locking"),
        (dict(apply_weight_decay=["no"]), "apply_weight_decay"),
        (dict(apply_weight_decay=[None]), "apply_weight_decay"),
    ],
)
def test_flags_must_be_bools(kwargs, name, fused):
  ws, ms, vs = ([_variable([1.0])] for _ in range(3))
  _raises(
      TypeError,
      lambda: ops.multi_tensor_apply_adamw(ws, ms, vs, [tf.ones([1])], step=1,
                                           fused=fused, **ADAMW_HP, **kwargs),
      ws + ms + vs,
      f"`{name}",
      "must be",
  )


@pytest.mark.parametrize("fused", PATHS)
def test_one_variable_flag_must_be_bool(fused):
  w = _variable([[1.0, 2.0], [3.0, 4.0]])
  acc = [_variable(tf.zeros(s)) for s in ops.accumulator_shapes(w.shape)]
  _raises(
      TypeError,
      lambda: ops.resource_apply_adafactor(
          w,
          acc,
          tf.ones([2, 2]),
          step=1,
          relative_step="no",
          fused=fused,
          **ADAFACTOR_HP,
      ),
      [w] + acc,
      "`relative_step` must be a bool. Received: relative_step='no'",
  )


# ---------------------------------------------------------------------------
# C8. `step` is a finite integer.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize(
    "step,shown",
    [
        (0.5, "step=0.5"),
        (1.5, "step=1.5"),
        (math.nan, "step=nan"),
        (math.inf, "step=inf"),
        (-math.inf, "step=-inf"),
        (np.float32(2.5), "step=2.5"),
        (tf.constant(1.5), "step=1.5"),
        (tf.constant(math.nan, tf.float64), "step=nan"),
    ],
    ids=["0.5", "1.5", "nan", "inf", "-inf", "np", "tensor", "tensor-nan"],
)
def test_step_must_be_a_finite_integer(step, shown, fused):
  _assert_adamw_rejects(InvalidArgumentError, "`step` must be an integer",
                        shown, step=step, fused=fused)


@pytest.mark.parametrize("fused", PATHS)
def test_step_fed_as_a_float_at_run_time(fused):
  state = _adamw_state((2,))
  f = _in_function(
      lambda t: _apply_adamw(state, step=t, fused=fused),
      tf.TensorSpec([], tf.float32),
  )
  _raises(
      InvalidArgumentError,
      lambda: f(tf.constant(1.5)),
      state,
      "`step` must be an integer",
  )
  _raises(
      InvalidArgumentError,
      lambda: f(tf.constant(math.nan)),
      state,
      "`step` must be an integer",
  )


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("step,shown", [("1", "step='1'"), (True, "step=True"),
                                        (None, "step=None")])
def test_step_of_wrong_type(step, shown, fused):
  _assert_adamw_rejects(TypeError, "`step` must be an integer", shown,
                        step=step, fused=fused)


@pytest.mark.parametrize("fused", PATHS)
def test_integral_float_step_is_that_step(fused):
  _assert_same_update(
      fused, "step",
      (2, 2.0, np.float32(2.0), tf.constant(2.0), tf.constant(2)))


# ---------------------------------------------------------------------------
# C9. Resources that are not variables; empty lists.
# ---------------------------------------------------------------------------
def _table():
  return tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer([1, 2], [1.0, 2.0]), -1.0)


def _iterator_resource():
  iterator = iter(tf.data.Dataset.range(3))
  return iterator, iterator._iterator_resource  # pylint: disable=protected-access


@pytest.mark.parametrize("which", ["table", "iterator"])
def test_raw_op_with_a_resource_that_is_not_a_variable(which):
  if which == "table":
    owner = _table()
    handle = owner.resource_handle
  else:
    owner, handle = _iterator_resource()
  w, m, v = _adamw_state((2,))
  lib = ops.load_library()
  message = _raises(
      InvalidArgumentError,
      lambda: lib.resource_apply_adam_w(
          absmax=[],
          rounding_key=[],
          var=w.handle,
          m=handle,
          v=v.handle,
          vhat=[],
          grad=tf.ones([2]),
          lr=0.1,
          beta_1=0.9,
          beta_2=0.999,
          epsilon=1e-7,
          weight_decay=0.0,
          step=tf.constant(1, tf.int64),
          use_locking=True,
      ),
      [w, m, v],
      "`m` must be a resource variable",
  )
  assert "uninitialized" not in message, message
  del owner


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("which", ["table", "iterator", "tensor", "none"])
def test_slot_that_is_not_a_variable(which, fused):
  w, _, v = _adamw_state((2,))
  owner = None
  if which == "table":
    owner = _table()
    slot = owner
  elif which == "iterator":
    owner, slot = _iterator_resource()
  elif which == "tensor":
    slot = tf.zeros([2])
  else:
    slot = None
  message = _raises(
      TypeError,
      lambda: _apply_adamw((w, slot, v), fused=fused),
      [w, v],
      "`m` must be a tf.Variable. Received: m=",
  )
  assert "uninitialized" not in message, message


@pytest.mark.parametrize("fused", [None, True, False])
def test_empty_lists_are_a_no_op(fused):
  for spec in MULTI_TENSOR:
    call = lambda spec=spec: _multi_tensor_call(spec, [],
                                                ([], [], []), [], fused=fused)
    assert call() is None
    _in_function(call)()


@pytest.mark.parametrize("fused", PATHS)
def test_empty_lists_still_check_the_shared_arguments(fused):
  with pytest.raises(TypeError, match="learning_rate"):
    ops.multi_tensor_apply_adamw([], [], [], [], step=1, fused=fused,
                                 **dict(ADAMW_HP, learning_rate="x"))
  with pytest.raises(InvalidArgumentError, match="step"):
    ops.multi_tensor_apply_adamw([], [], [], [], step=0, fused=fused,
                                 **ADAMW_HP)
  with pytest.raises(ValueError, match="grads"):
    ops.multi_tensor_apply_adamw([], [], [], [tf.ones([1])], step=1,
                                 fused=fused, **ADAMW_HP)


# ---------------------------------------------------------------------------
# C10. IndexedSlices indices out of range.
# ---------------------------------------------------------------------------
def _slices(index, rows=1):
  return tf.IndexedSlices(tf.ones([rows, 2]),
                          tf.constant([0] * (rows - 1) + [index]), [2, 2])


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("index", [-1, 2, 7, -5])
@pytest.mark.parametrize("mode", ["eager", "function"])
def test_sparse_index_out_of_range(index, mode, fused):
  state = _adamw_state((2, 2))

  def apply(indices):
    grad = tf.IndexedSlices(tf.ones([2, 2]), indices,
                            tf.constant([2, 2], tf.int64))
    ops.resource_apply_adamw(*state, grad, step=1, fused=fused, **ADAMW_HP)

  indices = tf.constant([0, index], tf.int64)
  fn = ((lambda: apply(indices)) if mode == "eager" else
        (lambda: _in_function(apply, tf.TensorSpec([2], tf.int64))(indices)))
  _raises(
      InvalidArgumentError,
      fn,
      state,
      "`grad.indices` must be in [0, 2) (the first dimension of `var`). "
      f"Received: grad.indices[1]={index}",
  )


@pytest.mark.parametrize("fused", [None, False])
def test_sparse_index_out_of_range_in_a_multi_tensor_call(fused):
  ws, ms, vs = _two_groups()
  bad = tf.IndexedSlices(tf.ones([1], tf.float64), tf.constant([-1]),
                         tf.constant([2]))
  _raises(
      InvalidArgumentError,
      lambda: ops.multi_tensor_apply_adamw(ws, ms, vs, [tf.ones([2]), bad], step
                                           =1, fused=fused, **ADAMW_HP),
      ws + ms + vs,
      "`grad[1].indices` must be in [0, 2) (the first dimension of `var[1]`). "
      "Received: grad[1].indices[0]=-1",
  )


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("index", [-1, 2])
def test_sparse_index_out_of_range_in_a_tf1_graph(index, fused):
  with _Session() as s:
    state = [s.variable(tf.ones([2, 2])) for _ in range(3)]
    indices = tf.compat.v1.placeholder(tf.int32, shape=[None])
    grad = tf.IndexedSlices(tf.ones([1, 2]), indices, tf.constant([2, 2]))
    update = ops.resource_apply_adamw(*state, grad, step=1, fused=fused,
                                      **ADAMW_HP)
    before = s.read(state)
    with pytest.raises(InvalidArgumentError) as info:
      s.session.run(update, {indices: [index]})
    assert "`grad.indices` must be in [0, 2)" in str(info.value)
    for x, y in zip(s.read(state), before):
      np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("index", [-1, 2])
def test_sgd_sparse_index_out_of_range(index, momentum, fused):
  w = _variable([[1.0, 2.0], [3.0, 4.0]])
  buffer = _variable(tf.zeros([2, 2])) if momentum else None
  grad = tf.IndexedSlices(tf.ones([2, 2]), tf.constant([0, index]),
                          tf.constant([2, 2]))
  _raises(
      InvalidArgumentError,
      lambda: ops.resource_apply_sgd(w, buffer, grad, learning_rate=0.1,
                                     momentum=momentum, fused=fused),
      [w] + ([buffer] if momentum else []),
      "`grad.indices` must be in [0, 2) (the first dimension of `var`). "
      f"Received: grad.indices[1]={index}",
  )
