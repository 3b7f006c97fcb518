"""MirroredStrategy scenarios for tests/distributed/test_keras_distributed.py.

Run in a fresh process, because the logical CPU devices must be configured
before TensorFlow initialises:

    python distributed_worker.py GROUP NUM_DEVICES

GROUP is `optimizers` (every optimizer class, `fit()` and a custom loop, on
one device and mirrored over NUM_DEVICES CPUs), `semantics` (clipping, loss
scaling, gradient accumulation and EMA on one device and mirrored over 2 CPUs,
plus the plain Keras classes for contrast) or `state_dtype` (optimizers with
reduced-precision state, as `optimizers` does, for
tests/keras/test_state_dtype_features.py). The process prints one line
`RESULT_JSON {...}`: per case the final weights of each run (or the error the
run raised), and for `state_dtype` the optimizer's variables and each slot's
layout too, which the test compares. Nothing is asserted here.
"""

import json
import os
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

GROUP = sys.argv[1]
NUM_DEVICES = int(sys.argv[2])

# One device kind only: a GPU would make the single-device run round
# differently from the mirrored CPU runs.
tf.config.set_visible_devices([], "GPU")
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * NUM_DEVICES)

import keras  # noqa: E402

import tf_opt_plugin as top  # noqa: E402

from distributed_problem import GLOBAL_BATCH  # noqa: E402
from distributed_problem import make_data  # noqa: E402
from distributed_problem import make_model  # noqa: E402
from distributed_problem import make_wide_model  # noqa: E402
from distributed_problem import per_replica_loss  # noqa: E402
from distributed_problem import train_in_loop  # noqa: E402
from distributed_problem import initial_weights  # noqa: E402
from distributed_problem import WIDE_FEATURES  # noqa: E402

EPOCHS = 2
if GROUP == "state_dtype":
  # A hidden kernel big enough for 8-bit state; 4 global batches per epoch.
  NUM_EXAMPLES, MODEL_FN = 128, make_wide_model
  X, Y = make_data(NUM_EXAMPLES, features=WIDE_FEATURES, label_noise=0.0)
else:
  NUM_EXAMPLES, MODEL_FN = 256, make_model  # 8 global batches per epoch
  X, Y = make_data(NUM_EXAMPLES)
INITIAL_WEIGHTS = initial_weights(MODEL_FN)


def mirrored(num_devices):
  return tf.distribute.MirroredStrategy(
      [f"/cpu:{i}" for i in range(num_devices)])


def strategies(counts):
  """(name, strategy) for one device and each replica count in `counts`."""
  result = [("single", tf.distribute.get_strategy())]
  result += [(f"mirrored{n}", mirrored(n)) for n in counts]
  return result


def build(strategy, make_optimizer, build_optimizer=False):
  with strategy.scope():
    model = MODEL_FN()
    model.set_weights(INITIAL_WEIGHTS)
    optimizer = make_optimizer()
    if build_optimizer:
      # A custom loop must build the optimizer before its first step: slot
      # variables created lazily inside `strategy.run` in a tf.function fail
      # under MirroredStrategy ("You must feed a value for placeholder
      # tensor"), with Keras's own classes too. fit() builds it first.
      optimizer.build(model.trainable_variables)
  return model, optimizer


def weights_of(strategy, model, optimizer=None):
  """The weights, and how far any replica's copy is from the first's.

  With `optimizer`, its variables too (in the spread as well) and the state
  layout of each weight's first slot.
  """
  variables = list(model.trainable_variables)
  if optimizer is not None:
    variables += list(optimizer.variables)
  spread = 0.0
  for variable in variables:
    # float64: integer codes would wrap around when subtracted.
    components = [
        np.asarray(c, np.float64)
        for c in strategy.experimental_local_results(variable.value)
    ]
    for component in components[1:]:
      spread = max(spread, float(np.max(np.abs(component - components[0]))))
  result = {
      "weights": [
          np.asarray(v.numpy()).tolist() for v in model.trainable_variables
      ],
      "replica_spread": spread
  }
  if optimizer is not None:
    # In `optimizer.variables` order; the paths without their first part,
    # the optimizer's unique name.
    result["optimizer_variables"] = [[
        v.path.split("/", 1)[1], v.dtype,
        np.asarray(v.numpy(), np.float64).tolist()
    ] for v in optimizer.variables]
    result["layouts"] = [
        top.ops.state_layout(optimizer.as_tf_variable(v),
                             optimizer.slot(optimizer._momentums, v))  # pylint: disable=protected-access
        for v in model.trainable_variables
    ]
  return result


def fit_run(strategy, make_optimizer, epochs=EPOCHS, with_state=False):
  """fit(); the result of `weights_of`, with the optimizer's state if
  `with_state`."""
  model, optimizer = build(strategy, make_optimizer)
  with strategy.scope():
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False)
  # A repeated dataset and steps_per_epoch keep one iterator for all epochs:
  # each new iterator over a distributed dataset stalls 2-20 s with 4
  # replicas on a 2-core machine (the batches are the same as fit(X, Y)).
  dataset = tf.data.Dataset.from_tensor_slices(
      (X, Y)).batch(GLOBAL_BATCH).repeat()
  model.fit(dataset, steps_per_epoch=NUM_EXAMPLES // GLOBAL_BATCH,
            epochs=epochs, shuffle=False, verbose=0)
  return weights_of(strategy, model, optimizer if with_state else None)


def replica_batch(strategy, start):
  """Global batch `X[start:start + GLOBAL_BATCH]` split over the replicas.

  No tf.data: a new iterator over a distributed dataset stalls 2-20 s with 4
  replicas on a 2-core machine.
  """
  per_replica = GLOBAL_BATCH // strategy.num_replicas_in_sync

  def part(array):

    def value_fn(context):
      begin = start + context.replica_id_in_sync_group * per_replica
      return tf.constant(array[begin:begin + per_replica])

    return strategy.experimental_distribute_values_from_function(value_fn)

  return part(X), part(Y)


def loop_run(strategy, make_optimizer, epochs=EPOCHS, with_state=False):
  """strategy.run + optimizer.apply_gradients on the same global batches, in
  a tf.function; the result as `fit_run`'s."""
  model, optimizer = build(strategy, make_optimizer, build_optimizer=True)
  batches = (replica_batch(strategy, start)
             for _ in range(epochs)
             for start in range(0, NUM_EXAMPLES, GLOBAL_BATCH))
  train_in_loop(strategy, model, optimizer, batches)
  return weights_of(strategy, model, optimizer if with_state else None)


def guarded(fn, *args, **kwargs):
  start = time.time()
  try:
    result = fn(*args, **kwargs)
    result["seconds"] = round(time.time() - start, 2)
    return result
  except Exception as e:  # pylint: disable=broad-except
    return {
        "error": f"{type(e).__name__}: {e}",
        "traceback": traceback.format_exc()[-4000:]
    }


# ---------------------------------------------------------------------------
# Group "optimizers": every class, fit() and a custom loop.
# ---------------------------------------------------------------------------
OPTIMIZERS = {
    "sgd_momentum":
        lambda: top.SGD(learning_rate=0.05, momentum=0.9),
    "adam":
        lambda: top.Adam(learning_rate=0.01),
    "adamw":
        lambda: top.AdamW(learning_rate=0.01, weight_decay=0.1),
    "lamb":
        lambda: top.Lamb(learning_rate=0.01, weight_decay_rate=0.1,
                         exclude_from_weight_decay=[r"bias|gamma|beta"]),
    "adafactor":
        lambda: top.Adafactor(learning_rate=0.01),
}


def fit_and_loop(optimizers, **kwargs):
  """Each of `optimizers`, `fit()` and a custom loop, on one device and
  mirrored over NUM_DEVICES CPUs."""
  # One replica count per process: two MirroredStrategy objects of different
  # sizes in one process share collective group keys and abort each other.
  results = {"initial": [w.tolist() for w in INITIAL_WEIGHTS]}
  for name, make_optimizer in optimizers.items():
    for mode, run in (("fit", fit_run), ("loop", loop_run)):
      results[f"{name}/{mode}"] = {
          strategy_name: guarded(run, strategy, make_optimizer, **kwargs)
          for strategy_name, strategy in strategies([NUM_DEVICES])
      }
  return results


def optimizers_group():
  return fit_and_loop(OPTIMIZERS)


# ---------------------------------------------------------------------------
# Group "semantics": defects 1-3 of Keras 3, ours and Keras's classes.
# ---------------------------------------------------------------------------
CLIPPING = {
    "clipnorm": {
        "clipnorm": 0.05
    },
    "global_clipnorm": {
        "global_clipnorm": 0.05
    },
    "clipvalue": {
        "clipvalue": 0.002
    },
}


def clipping_cases(results):
  """Ours on one device and on 2 replicas; Keras's SGD on 2 replicas.

  Keras's SGD on one device computes what ours does (plain SGD, clipped), so
  our one-device run stands for it.
  """
  for clip_name, clip in CLIPPING.items():
    ours = lambda clip=clip: top.SGD(learning_rate=0.5, **clip)
    results[f"clip/{clip_name}/ours"] = {
        name: guarded(fit_run, strategy, ours, epochs=1)
        for name, strategy in strategies([2])
    }
    results[f"clip/{clip_name}/keras"] = {
        "mirrored2":
            guarded(
                fit_run, mirrored(2), lambda clip=clip: keras.optimizers.SGD(
                    learning_rate=0.5, **clip), epochs=1)
    }


def loss_scale_run(strategy, make_optimizer, bad_replicas):
  """Custom loop; at step i the loss of replica `bad_replicas[i]` is inf.

  Records, after every step, each replica's weights, the loss scale and the
  inner optimizer's iterations.
  """
  model, optimizer = build(strategy, make_optimizer, build_optimizer=True)
  x_dist, y_dist = replica_batch(strategy, 0)

  def replica_step(x, y, bad_replica):
    replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
    factor = tf.where(tf.equal(replica_id, bad_replica), np.inf, 1.0)
    with tf.GradientTape() as tape:
      loss = optimizer.scale_loss(per_replica_loss(model, x, y) * factor)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))

  @tf.function
  def step(x, y, bad_replica):
    strategy.run(replica_step, args=(x, y, bad_replica))

  history = []
  for bad_replica in bad_replicas:
    step(x_dist, y_dist, tf.constant(bad_replica, tf.int32))
    replicas = [[
        np.asarray(c).tolist()
        for c in strategy.experimental_local_results(v.value)
    ]
                for v in model.trainable_variables]  # [variable][replica]
    history.append({
        "replicas":
            replicas,
        "scale":
            float(np.asarray(optimizer.dynamic_scale.numpy())),
        "inner_iterations":
            int(np.asarray(optimizer.inner_optimizer.iterations.numpy())),
    })
  return {"history": history}


def loss_scale_cases(results):
  # Step 2 has one non-finite replica (replica 1 of 2); -1: none.
  plan = [-1, 1, -1]
  ours = lambda: top.LossScaleOptimizer(  # pylint: disable=g-long-lambda
      top.Adam(learning_rate=0.01), initial_scale=16.0)
  keras_lso = lambda: keras.optimizers.LossScaleOptimizer(  # pylint: disable=g-long-lambda
      keras.optimizers.Adam(learning_rate=0.01), initial_scale=16.0)
  results["loss_scale/ours"] = {
      "mirrored2":
          guarded(loss_scale_run, mirrored(2), ours, plan),
      # One device: step 2's only replica is non-finite.
      "single":
          guarded(loss_scale_run, tf.distribute.get_strategy(), ours,
                  [-1, 0, -1]),
  }
  results["loss_scale/keras"] = {
      "mirrored2": guarded(loss_scale_run, mirrored(2), keras_lso, plan)
  }


def accumulation_reference_run(make_optimizer, steps):
  """One device, no accumulation: the mean gradient of `steps` micro-batches
  applied once per `steps` micro-steps; then the EMA finalisation fit does."""
  model, optimizer = build(tf.distribute.get_strategy(), make_optimizer,
                           build_optimizer=True)
  batches = list(
      tf.data.Dataset.from_tensor_slices((X, Y)).batch(GLOBAL_BATCH)) * EPOCHS
  assert len(batches) % steps == 0

  def grads_of(x, y):
    with tf.GradientTape() as tape:
      loss = per_replica_loss(model, x, y)
    return tape.gradient(loss, model.trainable_variables)

  @tf.function
  def real_step(xs, ys):
    per_micro = [grads_of(x, y) for x, y in zip(xs, ys)]
    mean = [tf.add_n(list(g)) / steps for g in zip(*per_micro)]
    optimizer.apply_gradients(zip(mean, model.trainable_variables))

  for i in range(0, len(batches), steps):
    chunk = batches[i:i + steps]
    real_step([b[0] for b in chunk], [b[1] for b in chunk])
  optimizer.finalize_variable_values(model.trainable_variables)
  return weights_of(tf.distribute.get_strategy(), model)


ACCUMULATION = {
    # AdamW's op fuses the decay; SGD decays in a separate assign.
    "adamw":
        lambda **kw: top.AdamW(learning_rate=0.01, weight_decay=0.5,
                               global_clipnorm=0.1, **kw),
    "sgd_momentum":
        lambda **kw: top.SGD(learning_rate=0.05, momentum=0.9, weight_decay=0.5,
                             clipnorm=0.1, **kw),
}
ACCUMULATION_ARGS = dict(gradient_accumulation_steps=2, use_ema=True,
                         ema_momentum=0.9, ema_overwrite_frequency=3)


def accumulation_cases(results):
  for name, make in ACCUMULATION.items():
    make_accumulating = lambda make=make: make(**ACCUMULATION_ARGS)
    runs = {
        strategy_name: guarded(fit_run, strategy, make_accumulating)
        for strategy_name, strategy in strategies([2])
    }
    no_accumulation = {
        k: v
        for k, v in ACCUMULATION_ARGS.items()
        if k != "gradient_accumulation_steps"
    }
    runs["reference"] = guarded(
        accumulation_reference_run, lambda make=make: make(**no_accumulation),
        ACCUMULATION_ARGS["gradient_accumulation_steps"])
    results[f"accumulation/{name}"] = runs
  # Keras 3's own classes under MirroredStrategy (defect 3).
  for name, kwargs in (("accumulation", dict(gradient_accumulation_steps=2)),
                       ("ema_overwrite",
                        dict(use_ema=True, ema_overwrite_frequency=3))):
    results[f"keras_mirrored/{name}"] = guarded(
        fit_run, mirrored(2), lambda kwargs=kwargs: keras.optimizers.AdamW(
            learning_rate=0.01, **kwargs), epochs=1)


def semantics_group():
  results = {"initial": [w.tolist() for w in INITIAL_WEIGHTS]}
  clipping_cases(results)
  loss_scale_cases(results)
  accumulation_cases(results)
  return results


# ---------------------------------------------------------------------------
# Group "state_dtype": reduced-precision state, fit() and a custom loop.
# ---------------------------------------------------------------------------
STATE_DTYPE_OPTIMIZERS = {
    "adamw-int8":
        lambda: top.AdamW(0.01, weight_decay=0.05, state_dtype="int8"),
    "lamb-int8":
        lambda: top.Lamb(0.01, weight_decay_rate=0.01, state_dtype="int8"),
    "lion-int8":
        lambda: top.Lion(0.003, weight_decay=0.1, state_dtype="int8"),
    "adam-bfloat16":
        lambda: top.Adam(0.01, amsgrad=True, state_dtype="bfloat16"),
    # Accumulation (a per-variable cond), clipping of the summed gradient
    # and EMA with its overwrite, all inside the strategy's update.
    "adamw-int8-accumulation":
        lambda: top.
        AdamW(0.01, weight_decay=0.05, state_dtype="int8", global_clipnorm=0.5,
              gradient_accumulation_steps=2, use_ema=True, ema_momentum=0.9,
              ema_overwrite_frequency=3),
}


def state_dtype_group():
  return fit_and_loop(STATE_DTYPE_OPTIMIZERS, with_state=True)


GROUPS = {
    "optimizers": optimizers_group,
    "semantics": semantics_group,
    "state_dtype": state_dtype_group
}

if __name__ == "__main__":
  output = GROUPS[GROUP]()
  # Why the custom ops would not run on these CPUs (None: they run).
  with tf.device("/cpu:1" if NUM_DEVICES > 1 else "/cpu:0"):
    probe = tf.Variable([1.0])
  output["dispatch_reason"] = top.ops.dispatch_reason(probe)
  print("RESULT_JSON " + json.dumps(output), flush=True)
