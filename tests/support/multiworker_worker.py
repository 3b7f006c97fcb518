"""One worker of a MultiWorkerMirroredStrategy cluster for
tests/distributed/test_keras_multiworker.py.

    TF_CONFIG=... python multiworker_worker.py

The test starts two of these on 127.0.0.1. Each runs, in the same order (the
workers' collectives must match): a custom training loop (strategy.run +
apply_gradients), `model.fit()` as Keras 3.15 ships it, `model.fit()` with
Keras's two MWMS defects patched, then the loop and fit() on one device over
the same global batches as the references. It prints one line
`RESULT_JSON {...}`: per phase the final weights, or the error it raised.
Nothing is asserted here.
"""

import functools
import json
import os
import re
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.set_visible_devices([], "GPU")
# Must come first: it configures the collective ops of this process.
STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()
TASK = json.loads(os.environ["TF_CONFIG"])["task"]["index"]

import keras  # noqa: E402
from keras.src.backend.tensorflow import trainer as keras_tf_trainer  # noqa: E402

import tf_opt_plugin as top  # noqa: E402

from distributed_problem import GLOBAL_BATCH  # noqa: E402
from distributed_problem import make_data  # noqa: E402
from distributed_problem import make_model  # noqa: E402
from distributed_problem import train_in_loop  # noqa: E402
from distributed_problem import initial_weights  # noqa: E402

NUM_EXAMPLES = 128  # 4 global batches
EPOCHS = 2
X, Y = make_data(NUM_EXAMPLES)
INITIAL_WEIGHTS = initial_weights()


def make_optimizer():
  return top.Lamb(learning_rate=0.01, weight_decay_rate=0.1,
                  exclude_from_weight_decay=[r"bias|gamma|beta"],
                  global_clipnorm=0.5)


def build(strategy):
  with strategy.scope():
    model = make_model()
    model.set_weights(INITIAL_WEIGHTS)
    optimizer = make_optimizer()
  return model, optimizer


def loop_run(strategy):
  """strategy.run + apply_gradients; replica r takes its slice of each
  global batch."""
  model, optimizer = build(strategy)
  with strategy.scope():
    optimizer.build(model.trainable_variables)
  per_replica = GLOBAL_BATCH // strategy.num_replicas_in_sync

  def part(array, start):

    def value_fn(context):
      begin = start + context.replica_id_in_sync_group * per_replica
      return tf.constant(array[begin:begin + per_replica])

    return strategy.experimental_distribute_values_from_function(value_fn)

  batches = ((part(X, start), part(Y, start))
             for _ in range(EPOCHS)
             for start in range(0, NUM_EXAMPLES, GLOBAL_BATCH))
  train_in_loop(strategy, model, optimizer, batches)
  return [np.asarray(v.numpy()).tolist() for v in model.trainable_variables]


def fit_run(strategy, patch_keras=False):
  """model.fit() on the global batches; MWMS auto-shards each global batch
  of 32 into one batch of 16 per worker."""
  model, optimizer = build(strategy)
  with strategy.scope():
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False)
  dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(GLOBAL_BATCH)
  if patch_keras:
    model._maybe_symbolic_build = functools.partial(  # pylint: disable=protected-access
        symbolic_build_from_local_batch, model)
    original = keras_tf_trainer.reduce_per_replica
    keras_tf_trainer.reduce_per_replica = reduce_logs_first
    try:
      model.fit(dataset, epochs=EPOCHS, verbose=0)
    finally:
      keras_tf_trainer.reduce_per_replica = original
  else:
    model.fit(dataset, epochs=EPOCHS, verbose=0)
  return [np.asarray(v.numpy()).tolist() for v in model.trainable_variables]


# Two Keras 3.15 defects stop fit() under MultiWorkerMirroredStrategy before
# and after the optimizer runs (keras issue 20585). Patched here, for the
# test only, to show what the optimizer does once fit() gets that far.
_original_reduce_per_replica = keras_tf_trainer.reduce_per_replica


def reduce_logs_first(values, strategy, reduction="auto"):
  """`reduce_per_replica` for fit()'s logs: "auto" means `strategy.reduce(
  "MEAN", v, axis=0)` under MWMS, which fails on scalar logs; the logs of a
  train step are already aggregated, so take this worker's first replica."""
  if reduction == "auto":
    reduction = "first"
  return _original_reduce_per_replica(values, strategy, reduction)


def symbolic_build_from_local_batch(model, iterator=None, data_batch=None):
  """Keras 3.15's `Trainer._maybe_symbolic_build`, but taking the shapes from
  this worker's first replica instead of `strategy.reduce("MEAN", batch)`,
  which fails under MultiWorkerMirroredStrategy (keras issue 20585)."""
  strategy = model.distribute_strategy
  if iterator is not None:
    for _, _, it in iterator:
      data_batch = tf.nest.map_structure(
          lambda v: strategy.experimental_local_results(v)[0], next(it))
      break
  with strategy.scope():
    model._symbolic_build(data_batch=data_batch)  # pylint: disable=protected-access


def phase(result, name, fn, *args, **kwargs):
  try:
    result[name] = {"weights": fn(*args, **kwargs)}
  except Exception as e:  # pylint: disable=broad-except
    result[name] = {
        # A PerReplica's repr prints every tensor of the batch.
        "error":
            re.sub(r"PerReplica:\{.*?\}\)", "PerReplica:{...})",
                   f"{type(e).__name__}: {e}", flags=re.S)[:2000],
        "frames": [
            f"{os.path.basename(f.filename)}:{f.lineno} {f.name}"
            for f in traceback.extract_tb(e.__traceback__)
        ]
    }


def main():
  keras.config.disable_traceback_filtering()  # report where fit() fails
  result = {
      "task": TASK,
      "initial": [w.tolist() for w in INITIAL_WEIGHTS],
      "num_replicas": STRATEGY.num_replicas_in_sync
  }
  # Every worker runs the same phases in the same order (their collectives
  # must match); fit() fails before its first collective.
  phase(result, "loop", loop_run, STRATEGY)
  phase(result, "fit", fit_run, STRATEGY)
  phase(result, "fit_patched", fit_run, STRATEGY, patch_keras=True)
  # The references: one device, this process, the same global batches.
  single = tf.distribute.get_strategy()
  phase(result, "single_loop", loop_run, single)
  phase(result, "single_fit", fit_run, single)
  print("RESULT_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
