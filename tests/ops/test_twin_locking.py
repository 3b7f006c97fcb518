"""use_locking=True on the pure-TF twin (fused=False), eagerly: concurrent
updates of the same variables are serialised, as the fused op's are
(tests/ops/test_locking.py), so two threads x N updates equal 2N sequential
ones. Inside a graph no Python lock applies; what holds there is documented
in tf_opt_plugin/ops/_update.py and README.md ("Concurrent updates")."""

import gc
import threading

import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
import op_harness as H
import tf_opt_plugin.ops as ops

SHAPE = (128, 96)  # large enough for an eager twin step to take a while
PER_THREAD = 25
STEP = 3  # fixed: every update is the same map of the state.
ADAMW_HP = A.op_hp("adamw", step=STEP)

# kind -> (registry entry, number of variables per update): every fused op's
# twin, every multi-tensor op's twin (two variables), and SGD, whose
# resource_apply_sgd runs TensorFlow's own op under the same lock.
KINDS = {a.name: (a, 1) for a in A.with_fused_op()}
KINDS.update({
    f"multi_tensor_{a.name}": (a, 2) for a in A.with_fused_op() if a.multi_tensor
})
KINDS["sgd"] = (A.SGD, 1)
SGD_HP = dict(learning_rate=0.01, momentum=0.9)


def _state(n_vars, kind="adamw", rng_seed=7):
  """`n_vars` lists [variable, *slots], random; the slots are >= 0 (valid
  second moments)."""
  spec, _ = KINDS[kind]
  slot_shapes = spec.slot_shapes(
      SHAPE, **spec.options_in(SGD_HP if spec is A.SGD else {}))
  rng = np.random.default_rng(rng_seed)

  def variables():
    w = tf.Variable(rng.normal(size=SHAPE).astype(np.float32))
    return [w] + [
        tf.Variable(rng.random(size=s).astype(np.float32)) for s in slot_shapes
    ]

  return [variables() for _ in range(n_vars)]


def _grads(n_vars):
  rng = np.random.default_rng(11)
  return [
      tf.constant(rng.normal(size=SHAPE).astype(np.float32))
      for _ in range(n_vars)
  ]


def _update(kind, state, grads):
  spec, n_vars = KINDS[kind]
  if spec is A.SGD:
    (w, b), g = state[0], grads[0]
    ops.resource_apply_sgd(w, b, g, fused=False, **SGD_HP)
  elif n_vars == 1:
    H.ADAPTERS[spec.name]().apply(state[0], grads[0], step=STEP, fused=False)
  else:
    step = dict(step=STEP) if spec.counts_steps else {}
    getattr(ops, f"multi_tensor_apply_{spec.name}")(
        *[list(column) for column in zip(*state)],  # variables, each slot
        grads,
        fused=False,
        **step,
        **spec.op_defaults)


def _values(state):
  return [v.numpy() for variables in state for v in variables]


def _run_threads(workers, timeout=120):
  errors = []
  barrier = threading.Barrier(len(workers))

  def run(work):
    try:
      barrier.wait()
      work()
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=run, args=(w,)) for w in workers]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout)
  assert not any(t.is_alive() for t in threads), "deadlock: threads hang"
  assert not errors, errors


@pytest.mark.parametrize("kind", list(KINDS))
def test_two_threads_equal_sequential(kind):
  _, n_vars = KINDS[kind]
  grads = _grads(n_vars)
  sequential = _state(n_vars, kind)
  for _ in range(2 * PER_THREAD):
    _update(kind, sequential, grads)

  shared = _state(n_vars, kind)

  def work():
    for _ in range(PER_THREAD):
      _update(kind, shared, grads)

  _run_threads([work, work])
  for got, want in zip(_values(shared), _values(sequential)):
    np.testing.assert_array_equal(got, want)


def test_calls_sharing_variables_in_either_order_do_not_deadlock():
  # Thread 1 updates [a, b], thread 2 [b, a]: the locks are taken in one
  # global order, whatever the order of the lists.
  state = _state(2)
  grads = _grads(2)
  reverse = list(reversed(state))

  def forward():
    for _ in range(PER_THREAD):
      _update("multi_tensor_adamw", state, grads)

  def backward():
    for _ in range(PER_THREAD):
      _update("multi_tensor_adamw", reverse, list(reversed(grads)))

  _run_threads([forward, backward])


def test_use_locking_false_takes_no_lock():
  # Only checks that the flag is honoured both ways (no deadlock, same
  # single-threaded result); without locks concurrent results may differ.
  a, b = _state(1), _state(1)
  grads = _grads(1)
  (w, m, v), (w2, m2, v2) = a[0], b[0]
  ops.resource_apply_adamw(w, m, v, grads[0], fused=False, use_locking=False,
                           **ADAMW_HP)
  ops.resource_apply_adamw(w2, m2, v2, grads[0], fused=False, use_locking=True,
                           **ADAMW_HP)
  for x, y in zip(_values(a), _values(b)):
    np.testing.assert_array_equal(x, y)


def test_locks_are_forgotten_with_their_variables():
  from tf_opt_plugin.ops import _update  # pylint: disable=g-import-not-at-top

  locks = _update._TWIN_LOCKS._locks  # pylint: disable=protected-access
  before = len(locks)
  for _ in range(5):
    state = _state(1)
    ops.resource_apply_adamw(*state[0], _grads(1)[0], fused=False, **ADAMW_HP)
    del state
  gc.collect()
  assert len(locks) <= before
