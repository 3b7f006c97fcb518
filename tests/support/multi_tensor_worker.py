"""Multi-tensor updates under MirroredStrategy, for test_keras_multi_tensor.py.

Run in a fresh process, because the logical CPU devices must be configured
before TensorFlow initialises:

    python multi_tensor_worker.py CONFIG [CONFIG ...]

For each front end (Keras 3, tf-keras) and each configuration of
tests/support/optimizer_configs.py named, the variables of
keras_harness.SHAPES are mirrored over 2 logical CPUs and a tf.function runs
`strategy.run` of `apply_gradients` on half of each step's gradient per
replica (so the summed gradient is the step's gradient). The process prints
one line `RESULT_JSON {...}`: per case the final weights, how far the
replicas' copies differ, and the multi-tensor / per-variable update ops of the
traced step with their devices. Nothing is asserted here.
"""

import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

NUM_DEVICES = 2
STEPS = 10
SEED = 5

tf.config.set_visible_devices([], "GPU")
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * NUM_DEVICES)

import algorithms as A  # noqa: E402
import keras_harness as H  # noqa: E402
from optimizer_configs import CONFIGS  # noqa: E402
from subprocess_helpers import RESULT_PREFIX  # noqa: E402
from tf_opt_plugin.optimizers import keras3  # noqa: E402
from tf_opt_plugin.optimizers import tf_keras  # noqa: E402

PER_VARIABLE_OPS = tuple(a.op_type for a in A.with_fused_op())

FRONT_ENDS = {"keras3": keras3, "tf_keras": tf_keras}


def update_ops(concrete_function):
  """[op type, device, N, dtype] of each update op, nested functions too."""
  graph_def = concrete_function.graph.as_graph_def()
  nodes = list(graph_def.node) + [
      node for function in graph_def.library.function
      for node in function.node_def
  ]
  return [
      [n.op, n.device,
       int(n.attr["N"].i),
       tf.as_dtype(n.attr["T"].type).name]
      for n in nodes
      if n.op.startswith("ResourceMultiTensorApply") or n.op in PER_VARIABLE_OPS
  ]


def make_variables(front_end, w0):
  if front_end == "keras3":
    return H.make_variables(w0)
  return [
      tf.Variable(value, dtype=tf.float32, name=path)
      for path, value in w0.items()
  ]


def run_case(strategy, front_end, config):
  class_name, kwargs, _, _ = CONFIGS[config]
  w0, grads = H.random_problem(STEPS, seed=SEED)
  with strategy.scope():
    variables = make_variables(front_end, w0)
    optimizer = getattr(FRONT_ENDS[front_end], class_name)(**kwargs)
    optimizer.build(variables)

  def replica_step(gs):
    optimizer.apply_gradients(zip([g * 0.5 for g in gs], variables))

  @tf.function
  def step(gs):
    strategy.run(replica_step, args=(gs,))

  inputs = [[tf.constant(g[path], tf.float32) for path in w0] for g in grads]
  for gs in inputs:
    step(gs)
  weights, spread = {}, 0.0
  for path, variable in zip(w0, variables):
    tf_variable = getattr(variable, "_value", variable)  # keras.Variable
    copies = [
        np.asarray(c, np.float64)
        for c in strategy.experimental_local_results(tf_variable)
    ]
    spread = max([spread] +
                 [float(np.max(np.abs(c - copies[0]))) for c in copies[1:]])
    weights[path] = copies[0].tolist()
  return {
      "weights": weights,
      "replica_spread": spread,
      "ops": update_ops(step.get_concrete_function(inputs[0]))
  }


def main(configs):
  strategy = tf.distribute.MirroredStrategy(
      [f"/cpu:{i}" for i in range(NUM_DEVICES)])
  results = {}
  for front_end in FRONT_ENDS:
    for config in configs:
      try:
        results[f"{front_end}/{config}"] = run_case(strategy, front_end, config)
      except Exception as e:  # pylint: disable=broad-except
        results[f"{front_end}/{config}"] = {
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc()[-4000:]
        }
  print(RESULT_PREFIX + json.dumps(results))


if __name__ == "__main__":
  main(sys.argv[1:])
