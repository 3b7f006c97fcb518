"""Adam, AdamW, Lamb and Lion update each device's variables with multi-tensor
ops.

In a traced step of either front end (Keras 3, tf-keras) the graph holds one
`ResourceMultiTensorApply*` op per (device, dtype) group, whatever its size,
and no per-variable `ResourceApply*` op;
TF_OPT_PLUGIN_MULTI_TENSOR=0 (and gradient accumulation) update one variable
per call: one multi-tensor op of one variable each. Every case
also checks the numbers against the float64 references
(tests/support/references.py through keras_harness.reference_run): the
exclusion lists, mixed dtypes,
MirroredStrategy over 2 logical CPUs (a subprocess, multi_tensor_worker.py),
a step skipped by the LossScaleOptimizer, gradient accumulation (which stays
per variable), XLA (the twin) and fit().
"""

import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf

import algorithms as A
import keras_harness as H
from optimizer_configs import CONFIGS
from optimizer_configs import reference
import subprocess_helpers
from tf_opt_plugin.optimizers import _by_device
from tf_opt_plugin.optimizers import keras3

tf_keras_front = pytest.importorskip("tf_opt_plugin.optimizers.tf_keras")
pytestmark = pytest.mark.needs_tf_keras

STEPS = 20
FRONT_ENDS = {"keras3": keras3, "tf_keras": tf_keras_front}
PER_VARIABLE_OPS = tuple(a.op_type for a in A.with_fused_op())
# The configurations of tests/support/optimizer_configs.py whose algorithm has
# a multi-tensor op.
MULTI_TENSOR_CONFIGS = [
    config for config, (_, _, algorithm, _) in CONFIGS.items()
    if algorithm.spec.multi_tensor
]


@pytest.fixture(autouse=True)
def _multi_tensor_default(monkeypatch):
  monkeypatch.delenv(_by_device.MULTI_TENSOR_ENV, raising=False)


# ----------------------------------------------------------------------------
# Helpers.
# ----------------------------------------------------------------------------
def update_ops(concrete_function):
  """The update ops of a traced function, cond branches and nested functions
  included: ([(op type, N, dtype) of multi-tensor ops], [per-variable types])."""
  graph_def = concrete_function.graph.as_graph_def()
  nodes = list(graph_def.node) + [
      node for f in graph_def.library.function for node in f.node_def
  ]
  multi = [(n.op, n.attr["N"].i, tf.as_dtype(n.attr["T"].type))
           for n in nodes
           if n.op.startswith("ResourceMultiTensorApply")]
  single = [n.op for n in nodes if n.op in PER_VARIABLE_OPS]
  return multi, single


def make_variables(front_end, w0, dtypes=None):
  """Variables named by path; `dtypes` maps a path to its dtype (float32)."""
  dtypes = dtypes or {}
  if front_end == "keras3":
    return [
        H.make_variables({path: value}, dtypes.get(path, "float32"))[0]
        for path, value in w0.items()
    ]
  return [
      tf.Variable(value, dtype=dtypes.get(path, "float32"), name=path)
      for path, value in w0.items()
  ]


def run_traced(optimizer, front_end, w0, grads, dtypes=None, jit_compile=False):
  """Applies `grads` in a tf.function; returns ({path: float64}, step)."""
  variables = make_variables(front_end, w0, dtypes)
  optimizer.build(variables)

  @tf.function(jit_compile=jit_compile)
  def step(gs):
    optimizer.apply_gradients(zip(gs, variables))

  def inputs(g):
    return [tf.constant(g[path], v.dtype) for path, v in zip(w0, variables)]

  for g in grads:
    step(inputs(g))
  weights = {
      path: np.asarray(tf.cast(tf.convert_to_tensor(v), tf.float64))
      for path, v in zip(w0, variables)
  }
  return weights, step.get_concrete_function(inputs(grads[0]))


def op_name(class_name):
  return A.for_keras_class(class_name).multi_tensor_op_type


# ----------------------------------------------------------------------------
# One op per group, the reference numbers.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("front_end", sorted(FRONT_ENDS))
@pytest.mark.parametrize("config", MULTI_TENSOR_CONFIGS)
def test_one_multi_tensor_op_for_all_variables(config, front_end):
  class_name, kwargs, _, _ = CONFIGS[config]
  w0, grads = H.random_problem(STEPS, seed=3)
  optimizer = getattr(FRONT_ENDS[front_end], class_name)(**kwargs)
  got, step = run_traced(optimizer, front_end, w0, grads)
  H.assert_trajectory_close(got, reference(config, w0, grads))
  multi, single = update_ops(step)
  assert multi == [(op_name(class_name), len(w0), tf.float32)]
  assert single == []


@pytest.mark.parametrize("front_end", sorted(FRONT_ENDS))
def test_adamw_exclude_from_weight_decay(front_end):
  w0, grads = H.random_problem(STEPS, seed=4)
  optimizer = H.adamw_with_exclusions(FRONT_ENDS[front_end].AdamW)
  got, step = run_traced(optimizer, front_end, w0, grads)
  want = H.adamw_with_exclusions_reference(w0, grads)
  H.assert_trajectory_close(got, want)
  # The excluded variables really were spared: with decay they would differ.
  decayed = H.reference_run(H.Algorithm("adam"), w0, grads, learning_rate=0.01,
                            weight_decay=0.2)
  assert not np.allclose(got["dense/bias"], decayed["dense/bias"], rtol=1e-4)
  assert update_ops(step) == ([("ResourceMultiTensorApplyAdamW", 4, tf.float32)
                              ], [])


@pytest.mark.parametrize("front_end", sorted(FRONT_ENDS))
@pytest.mark.parametrize("config", MULTI_TENSOR_CONFIGS)
def test_switched_off_by_environment(config, front_end, monkeypatch):
  monkeypatch.setenv(_by_device.MULTI_TENSOR_ENV, "0")
  class_name, kwargs, _, _ = CONFIGS[config]
  w0, grads = H.random_problem(STEPS, seed=5)
  optimizer = getattr(FRONT_ENDS[front_end], class_name)(**kwargs)
  got, step = run_traced(optimizer, front_end, w0, grads)
  H.assert_trajectory_close(got, reference(config, w0, grads))
  # One call per variable: a multi-tensor op of one variable each.
  assert update_ops(step) == ([(op_name(class_name), 1, tf.float32)] * len(w0),
                              [])


@pytest.mark.parametrize("front_end", sorted(FRONT_ENDS))
@pytest.mark.parametrize("config", MULTI_TENSOR_CONFIGS)
def test_mixed_dtypes_give_one_op_per_dtype(config, front_end):
  class_name, kwargs, _, _ = CONFIGS[config]
  w0, grads = H.random_problem(STEPS, seed=6)
  dtypes = {"dense/kernel": "float64", "conv/kernel": "float64"}
  optimizer = getattr(FRONT_ENDS[front_end], class_name)(**kwargs)
  got, step = run_traced(optimizer, front_end, w0, grads, dtypes)
  H.assert_trajectory_close(got, reference(config, w0, grads))
  multi, single = update_ops(step)
  assert sorted(multi, key=lambda op: op[2].name) == [
      (op_name(class_name), 2, tf.float32), (op_name(class_name), 2, tf.float64)
  ]
  assert single == []


@pytest.mark.parametrize("front_end", sorted(FRONT_ENDS))
def test_single_variable_of_a_dtype_gets_its_own_multi_tensor_op(front_end):
  w0, grads = H.random_problem(STEPS, seed=7)
  optimizer = FRONT_ENDS[front_end].Adam(learning_rate=0.01)
  got, step = run_traced(optimizer, front_end, w0, grads,
                         {"norm/gamma": "float64"})
  H.assert_trajectory_close(got, reference("adam", w0, grads))
  multi, single = update_ops(step)
  assert sorted(multi, key=lambda op: op[2].name) == [
      ("ResourceMultiTensorApplyAdamW", 3, tf.float32),
      ("ResourceMultiTensorApplyAdamW", 1, tf.float64)
  ]
  assert single == []


@pytest.mark.parametrize("front_end", sorted(FRONT_ENDS))
@pytest.mark.parametrize("config", ["adamw", "lamb"])
def test_xla_runs_the_twin(config, front_end):
  class_name, kwargs, _, _ = CONFIGS[config]
  w0, grads = H.random_problem(STEPS, seed=8)
  optimizer = getattr(FRONT_ENDS[front_end], class_name)(**kwargs)
  got, step = run_traced(optimizer, front_end, w0, grads, jit_compile=True)
  H.assert_trajectory_close(got, reference(config, w0, grads))
  assert update_ops(step) == ([], [])


@pytest.mark.parametrize("front_end", sorted(FRONT_ENDS))
def test_fused_false_runs_the_twin(front_end):
  w0, grads = H.random_problem(STEPS, seed=9)
  optimizer = FRONT_ENDS[front_end].Lamb(learning_rate=0.01, fused=False)
  got, step = run_traced(optimizer, front_end, w0, grads)
  H.assert_trajectory_close(got, reference("lamb", w0, grads))
  assert update_ops(step) == ([], [])


@pytest.mark.parametrize("front_end", sorted(FRONT_ENDS))
def test_fused_true_takes_the_multi_tensor_op_and_raises_under_xla(front_end):
  w0, grads = H.random_problem(3, seed=14)
  optimizer = FRONT_ENDS[front_end].AdamW(fused=True, **CONFIGS["adamw"][1])
  got, step = run_traced(optimizer, front_end, w0, grads)
  H.assert_trajectory_close(got, reference("adamw", w0, grads))
  assert update_ops(step) == ([("ResourceMultiTensorApplyAdamW", 4, tf.float32)
                              ], [])
  optimizer = FRONT_ENDS[front_end].Lamb(learning_rate=0.01, fused=True)
  # Raised while tracing; tf.function re-raises it wrapped in a StagingError.
  with pytest.raises(Exception, match="dispatch_reason='xla'") as info:
    run_traced(optimizer, front_end, w0, grads, jit_compile=True)
  assert "FusedOpUnavailableError" in str(info.value)


# ----------------------------------------------------------------------------
# Keras 3's pipeline around the batched update.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("inner", ["adam", "lamb"])
def test_loss_scale_optimizer_skips_a_non_finite_step(inner):
  class_name, kwargs, _, _ = CONFIGS[inner]
  w0, grads = H.random_problem(2, seed=10)
  scale = 8.0
  optimizer = keras3.LossScaleOptimizer(
      getattr(keras3, class_name)(**kwargs), initial_scale=scale)
  variables = H.make_variables(w0)
  optimizer.build(variables)

  @tf.function
  def step(gs):
    optimizer.apply(gs, variables)

  def scaled(g, poison=False):
    values = [g[path] * scale for path in w0]
    if poison:
      values[1] = values[1].copy()
      values[1][0] = np.inf
    return [tf.constant(v, tf.float32) for v in values]

  step(scaled(grads[0]))
  state = [np.array(v.numpy()) for v in optimizer.inner_optimizer.variables]
  weights = [np.array(v.numpy()) for v in variables]
  step(scaled(grads[1], poison=True))
  for before, variable in zip(state, optimizer.inner_optimizer.variables):
    np.testing.assert_array_equal(variable.numpy(), before,
                                  err_msg=variable.path)
  for before, variable in zip(weights, variables):
    np.testing.assert_array_equal(variable.numpy(), before)
  got = {v.path: v.numpy().astype(np.float64) for v in variables}
  H.assert_trajectory_close(got, reference(inner, w0, grads[:1]))
  multi, single = update_ops(step.get_concrete_function(scaled(grads[0])))
  assert multi == [(op_name(class_name), 4, tf.float32)]
  assert single == []


@pytest.mark.parametrize("config", ["adamw", "lamb"])
def test_gradient_accumulation(config):
  class_name, kwargs, _, _ = CONFIGS[config]
  w0, grads = H.random_problem(12, seed=11)
  optimizer = getattr(keras3, class_name)(gradient_accumulation_steps=3,
                                          **kwargs)
  got, step = run_traced(optimizer, "keras3", w0, grads)
  mean_grads = [{
      p: np.mean([g[p] for g in grads[i:i + 3]], axis=0) for p in w0
  } for i in range(0, 12, 3)]
  want = reference(config, w0, mean_grads)
  H.assert_trajectory_close(got, want)
  assert int(optimizer.iterations) == 4
  # Accumulation decides per variable: one update call, and op, per variable.
  assert update_ops(step) == ([(op_name(class_name), 1, tf.float32)] * len(w0),
                              [])


def test_constraint_and_ema_after_the_batched_update():
  w0, grads = H.random_problem(6, seed=12)
  optimizer = keras3.Adam(learning_rate=0.05, use_ema=True, ema_momentum=0.5)
  variables = H.make_variables(w0)
  variables[1].constraint = keras.constraints.NonNeg()  # dense/bias
  optimizer.build(variables)

  @tf.function
  def step(gs):
    optimizer.apply_gradients(zip(gs, variables))

  for g in grads:
    step([tf.constant(g[p], tf.float32) for p in w0])
  algorithm = H.Algorithm("adam")
  for path, variable in zip(w0, variables):
    w, slots, average = np.array(w0[path]), algorithm.init(w0[path]), None
    for t, g in enumerate(grads):
      w, slots = algorithm.step(w, slots, g[path], t + 1, 0.05, path, 0.0)
      if path == "dense/bias":
        w = np.maximum(w, 0.0)
      average = w.copy() if t == 0 else 0.5 * average + 0.5 * w
    H.assert_weight_and_average(optimizer, variable, w, average, rtol=2e-5,
                                atol=2e-6)
  assert update_ops(
      step.get_concrete_function([
          tf.constant(grads[0][p], tf.float32) for p in w0
      ])) == ([("ResourceMultiTensorApplyAdamW", 4, tf.float32)], [])


def test_fit_of_a_linear_model():
  """fit() on a linear model, whose MSE gradients numpy computes exactly."""
  rng = np.random.default_rng(13)
  x = rng.normal(size=(64, 5)).astype("float32")
  y = rng.normal(size=(64, 3)).astype("float32")
  kernel0 = rng.normal(size=(5, 3)).astype("float32")
  model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
  model.set_weights([kernel0, np.zeros(3, "float32")])
  model.compile(optimizer=keras3.AdamW(learning_rate=0.01, weight_decay=0.1),
                loss="mse", jit_compile=False)
  model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)

  algorithm = H.Algorithm("adam")
  w = {"kernel": kernel0.astype(np.float64), "bias": np.zeros(3)}
  slots = {p: algorithm.init(v) for p, v in w.items()}
  t = 0
  for _ in range(2):
    for start in range(0, 64, 16):
      xb, yb = x[start:start + 16].astype(np.float64), y[start:start + 16]
      residual = 2.0 * (xb @ w["kernel"] + w["bias"] - yb) / residual_size(yb)
      g = {"kernel": xb.T @ residual, "bias": residual.sum(axis=0)}
      t += 1
      for p in w:
        w[p], slots[p] = algorithm.step(w[p], slots[p], g[p], t,
                                        float(np.float32(0.01)), p, 0.1)
  kernel, bias = model.get_weights()
  np.testing.assert_allclose(kernel, w["kernel"], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(bias, w["bias"], rtol=1e-4, atol=1e-5)

  # fit()'s train step, traced: one op for kernel and bias.
  train_step = tf.function(model.train_step)
  concrete = train_step.get_concrete_function(
      (tf.constant(x[:16]), tf.constant(y[:16])))
  assert update_ops(concrete) == ([("ResourceMultiTensorApplyAdamW", 2,
                                    tf.float32)], [])


def residual_size(y):
  return y.shape[0] * y.shape[1]


# ----------------------------------------------------------------------------
# MirroredStrategy over 2 logical CPUs.
# ----------------------------------------------------------------------------
MIRRORED_CONFIGS = [
    "adam", "adamw", "lamb-adaptation-exclusions", "lion-weight-decay"
]
_mirrored = {}


def mirrored_results():
  if not _mirrored:
    cmd = subprocess_helpers.command("multi_tensor_worker.py",
                                     *MIRRORED_CONFIGS)
    proc = subprocess.run(cmd, env=subprocess_helpers.environment(),
                          capture_output=True, text=True, timeout=420,
                          check=False)
    result = subprocess_helpers.parse_result(proc.stdout)
    if proc.returncode != 0 or result is None:
      pytest.fail(f"{cmd} exited with {proc.returncode}:\n"
                  f"{subprocess_helpers.tail(proc.stderr)}")
    _mirrored.update(result)
  return _mirrored


# One worker process (about 20 s) serves every case; slow as a whole.
@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("front_end", sorted(FRONT_ENDS))
@pytest.mark.parametrize("config", MIRRORED_CONFIGS)
def test_mirrored_strategy_one_op_per_device(config, front_end):
  run = mirrored_results()[f"{front_end}/{config}"]
  if "error" in run:
    pytest.fail(f"{run['error']}\n{run.get('traceback', '')}")
  w0, grads = H.random_problem(10, seed=5)  # as in multi_tensor_worker.py
  got = {p: np.asarray(v) for p, v in run["weights"].items()}
  H.assert_trajectory_close(got, reference(config, w0, grads))
  assert run["replica_spread"] == 0.0
  class_name = CONFIGS[config][0]
  assert sorted(tuple(op) for op in run["ops"]) == [
      (op_name(class_name), f"/job:localhost/replica:0/task:0/device:CPU:{i}",
       len(w0), "float32") for i in range(2)
  ]
