"""MirroredStrategy runs with reduced-precision state, for
tests/keras/test_state_dtype_features.py.

Run in a fresh process (the logical CPU devices must be configured before
TensorFlow initialises):

    python state_dtype_distributed_worker.py

Per case (an optimizer class with a `state_dtype`), `fit()` and a custom
loop on one device and mirrored over 2 logical CPUs, from the same initial
weights on the same global batches. The process prints one line
`RESULT_JSON {...}`: per run the final weights, the optimizer's variables,
how far the replicas' copies are apart and each slot's layout (or the error
the run raised). Nothing is asserted here.
"""

import json
import os
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

NUM_DEVICES = 2

# One device kind only: a GPU would round the single-device run differently.
tf.config.set_visible_devices([], "GPU")
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * NUM_DEVICES)

import keras  # noqa: E402

import tf_opt_plugin as top  # noqa: E402

GLOBAL_BATCH = 32
NUM_EXAMPLES = 128  # 4 global batches per epoch
EPOCHS = 2
FEATURES, CLASSES = 64, 4

# The hidden kernel (64 x 64 = 4096 elements) gets 8-bit state; the biases
# and the output kernel (256 elements) keep float32 state under "int8".
CASES = {
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


def make_data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(NUM_EXAMPLES, FEATURES)).astype("float32")
  y = np.argmax(x @ rng.normal(size=(FEATURES, CLASSES)),
                axis=-1).astype("int32")
  return x, y


X, Y = make_data()


def make_model():
  # Named, so the slots' paths are the same in every run.
  return keras.Sequential([
      keras.Input((FEATURES,)),
      keras.layers.Dense(64, activation="tanh", name="hidden"),
      keras.layers.Dense(CLASSES, name="out"),
  ], name="model")


def initial_weights():
  keras.utils.set_random_seed(0)
  return [w.copy() for w in make_model().get_weights()]


INITIAL_WEIGHTS = initial_weights()


def per_replica_loss(model, x, y):
  logits = model(x, training=True)
  per_example = keras.losses.sparse_categorical_crossentropy(
      y, logits, from_logits=True)
  return tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_BATCH)


def build(strategy, make_optimizer):
  with strategy.scope():
    model = make_model()
    model.set_weights(INITIAL_WEIGHTS)
    optimizer = make_optimizer()
    # Slots made lazily inside `strategy.run` in a tf.function fail under
    # MirroredStrategy (Keras's own classes too); fit() builds first anyway.
    optimizer.build(model.trainable_variables)
  return model, optimizer


def result_of(strategy, model, optimizer):
  spread = 0.0
  for variable in model.trainable_variables + list(optimizer.variables):
    components = [
        np.asarray(c)
        for c in strategy.experimental_local_results(variable.value)
    ]
    for component in components[1:]:
      spread = max(
          spread,
          float(
              np.max(
                  np.abs(
                      component.astype(np.float64) -
                      components[0].astype(np.float64)))))
  layouts = [
      top.ops.state_layout(optimizer.as_tf_variable(v),
                           optimizer.slot(optimizer._momentums, v))  # pylint: disable=protected-access
      for v in model.trainable_variables
  ]
  return {
      "weights": [
          np.asarray(v.numpy()).tolist() for v in model.trainable_variables
      ],
      # In `optimizer.variables` order; the paths differ by the
      # optimizer's unique name.
      "optimizer_variables": [[
          v.path.split("/", 1)[1], v.dtype,
          np.asarray(v.numpy(), np.float64).tolist()
      ] for v in optimizer.variables],
      "replica_spread": spread,
      "layouts": layouts,
  }


def fit_run(strategy, make_optimizer):
  model, optimizer = build(strategy, make_optimizer)
  with strategy.scope():
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False)
  # One repeated dataset: each new iterator over a distributed dataset
  # stalls seconds on a 2-core machine.
  dataset = tf.data.Dataset.from_tensor_slices(
      (X, Y)).batch(GLOBAL_BATCH).repeat()
  model.fit(dataset, steps_per_epoch=NUM_EXAMPLES // GLOBAL_BATCH,
            epochs=EPOCHS, shuffle=False, verbose=0)
  return result_of(strategy, model, optimizer)


def replica_batch(strategy, start):
  """Global batch `X[start:start + GLOBAL_BATCH]` split over the replicas."""
  per_replica = GLOBAL_BATCH // strategy.num_replicas_in_sync

  def part(array):

    def value_fn(context):
      begin = start + context.replica_id_in_sync_group * per_replica
      return tf.constant(array[begin:begin + per_replica])

    return strategy.experimental_distribute_values_from_function(value_fn)

  return part(X), part(Y)


def loop_run(strategy, make_optimizer):
  """A tf.function custom loop: strategy.run + apply_gradients."""
  model, optimizer = build(strategy, make_optimizer)

  def replica_step(x, y):
    with tf.GradientTape() as tape:
      loss = per_replica_loss(model, x, y)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))

  @tf.function
  def step(x, y):
    strategy.run(replica_step, args=(x, y))

  for _ in range(EPOCHS):
    for start in range(0, NUM_EXAMPLES, GLOBAL_BATCH):
      step(*replica_batch(strategy, start))
  return result_of(strategy, model, optimizer)


def guarded(fn, *args):
  start = time.time()
  try:
    result = fn(*args)
    result["seconds"] = round(time.time() - start, 2)
    return result
  except Exception as e:  # pylint: disable=broad-except
    return {
        "error": f"{type(e).__name__}: {e}",
        "traceback": traceback.format_exc()[-4000:]
    }


def main():
  single = tf.distribute.get_strategy()
  mirrored = tf.distribute.MirroredStrategy(
      [f"/cpu:{i}" for i in range(NUM_DEVICES)])
  results = {"initial": [w.tolist() for w in INITIAL_WEIGHTS]}
  for name, make_optimizer in CASES.items():
    for mode, run in (("fit", fit_run), ("loop", loop_run)):
      results[f"{name}/{mode}"] = {
          "single": guarded(run, single, make_optimizer),
          "mirrored": guarded(run, mirrored, make_optimizer),
      }
  with tf.device("/cpu:1"):
    probe = tf.Variable([1.0])
  # Why the fused ops would not run on these CPUs (None: they run).
  results["dispatch_reason"] = top.ops.dispatch_reason(probe)
  print("RESULT_JSON " + json.dumps(results), flush=True)


if __name__ == "__main__":
  main()
