"""use_locking=True: concurrent fused updates of the same variables are
serialised, so two threads x 50 updates equal 100 sequential updates."""

import threading

import numpy as np
import pytest
import tensorflow as tf

import op_harness as H

ALGOS = H.FULL_ADAPTERS
SHAPE = (256, 192)  # large enough for the kernels to take a while
STEP = 3  # fixed step: every update is the same map of the state
PER_THREAD = 50


def _fresh(algo, w0):
  return H.make_state(algo, SHAPE, tf.float32, w0=w0)


def _apply_n(algo, state, grad, n):
  for _ in range(n):
    algo.apply(state, grad, STEP, fused=True, use_locking=True)


@pytest.mark.parametrize("algo_name", list(ALGOS))
def test_two_threads_equal_sequential(algo_name):
  algo = ALGOS[algo_name]()
  rng = np.random.default_rng(60)
  w0 = rng.normal(size=SHAPE)
  grad = tf.constant(rng.normal(size=SHAPE), tf.float32)
  step = tf.constant(STEP, tf.int64)

  sequential = _fresh(algo, w0)
  _apply_n(algo, sequential, grad, 2 * PER_THREAD)
  expected = H.read_state(sequential)

  # The op itself must be deterministic for the comparison to mean much.
  again = _fresh(algo, w0)
  _apply_n(algo, again, grad, 2 * PER_THREAD)
  for a, e in zip(H.read_state(again), expected):
    np.testing.assert_array_equal(a, e)

  shared = _fresh(algo, w0)
  barrier = threading.Barrier(2)
  errors = []

  def worker():
    try:
      barrier.wait()
      for _ in range(PER_THREAD):
        algo.apply(shared, grad, step, fused=True, use_locking=True)
    except Exception as e:  # pragma: no cover - reported below
      errors.append(e)

  threads = [threading.Thread(target=worker) for _ in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors, errors
  got = H.read_state(shared)
  for name, a, e in zip(["var", "slot0", "slot1", "slot2"], got, expected):
    np.testing.assert_array_equal(a, e, err_msg=name)
