"""Runs the tf_opt_plugin.dtensor optimizers on a CPU mesh; prints RESULT_JSON.

    python dtensor_worker.py SCENARIO BATCHxMODEL

Scenarios (tests/distributed/test_dtensor.py checks their results):
  loop        10 steps of a custom loop over plain DVariables (no Keras) with
              batch-sharded data, for each optimizer, next to the same loop
              on single-device tf.Variables with the tf-keras class; plus the
              layouts of every slot.
  fit         tf-keras fit() of a LayoutMap model on a DTensorDataset, next
              to fit() of the same model on one device.
  stale       SGD with momentum, 6 steps, several variables, batch-sharded
              data: ours and tf-keras's own DTensor SGD, next to one device.
              The environment decides the all-reduce combining optimization.
  checkpoint  5 steps, tf.train.Checkpoint on the mesh, 5 more steps; a new
              model and optimizer restored from it take the same 5 steps.
  errors      the messages of the bad-input cases.

The logical devices must be configured before TensorFlow initialises, hence a
process per run.
"""

import json
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
from tensorflow.experimental import dtensor  # pylint: disable=g-import-not-at-top

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 4)

import tf_keras  # pylint: disable=g-import-not-at-top

import algorithms  # pylint: disable=g-import-not-at-top
from tf_opt_plugin import dtensor as top_dtensor  # pylint: disable=g-import-not-at-top
from tf_opt_plugin.optimizers import tf_keras as top_tf_keras  # pylint: disable=g-import-not-at-top

RESULT_PREFIX = "RESULT_JSON "
STEPS = 10
GLOBAL_BATCH = 8

# name -> (class name, constructor arguments): the registry's "dtensor"
# cases; the classes come from the front end used.
OPTIMIZERS = algorithms.keras_cases("dtensor")

# Variables of the custom loop: name -> (shape, sharding of each axis).
VARIABLES = {
    "dense/kernel": ((8, 16), ("unsharded", "model")),
    "dense/bias": ((16,), ("model",)),
    "out/kernel": ((16, 4), ("model", "unsharded")),
    "out/bias": ((4,), ("unsharded",)),
    "stack/kernel": ((2, 4, 8), ("unsharded", "unsharded", "model")),
}


def make_mesh(spec):
  batch, model = (int(n) for n in spec.split("x"))
  return dtensor.create_mesh([("batch", batch), ("model", model)],
                             device_type="CPU")


def problem(seed=0):
  rs = np.random.RandomState(seed)
  weights = {
      name: rs.normal(0, 0.5, shape).astype(np.float32)
      for name, (shape, _) in VARIABLES.items()
  }
  batches = [(rs.normal(size=(GLOBAL_BATCH, 8)).astype(np.float32),
              rs.normal(size=(GLOBAL_BATCH, 4)).astype(np.float32))
             for _ in range(STEPS)]
  return weights, batches


def loss_fn(variables, x, y):
  hidden = tf.tanh(
      tf.matmul(x, variables["dense/kernel"]) + variables["dense/bias"])
  out = tf.matmul(hidden, variables["out/kernel"]) + variables["out/bias"]
  stack = variables["stack/kernel"]
  return (tf.reduce_mean(tf.square(out - y)) +
          tf.reduce_mean(tf.square(stack - tf.reduce_mean(x))))


def to_numpy(mesh, value):
  """The global value of a (possibly sharded) DTensor."""
  full = dtensor.relayout(value,
                          dtensor.Layout.replicated(mesh, value.shape.rank))
  return dtensor.unpack(full)[0].numpy()


def mesh_variables(mesh, weights):
  variables = {}
  for name, (_, specs) in VARIABLES.items():
    layout = dtensor.Layout(list(specs), mesh)
    value = dtensor.copy_to_mesh(tf.constant(weights[name]),
                                 dtensor.Layout.replicated(mesh, len(specs)))
    variables[name] = dtensor.DVariable(dtensor.relayout(value, layout),
                                        name=name)
  return variables


def batch_sharded(mesh, array):
  value = dtensor.copy_to_mesh(tf.constant(array),
                               dtensor.Layout.replicated(mesh, array.ndim))
  return dtensor.relayout(
      value, dtensor.Layout.batch_sharded(mesh, "batch", array.ndim))


def run_loop(optimizer, variables, batches, place):
  names = list(variables)

  @tf.function
  def step(x, y):
    with tf.GradientTape() as tape:
      loss = loss_fn(variables, x, y)
    grads = tape.gradient(loss, [variables[n] for n in names])
    optimizer.apply_gradients(zip(grads, [variables[n] for n in names]))

  for x, y in batches:
    step(place(x), place(y))


def scenario_loop(mesh):
  weights, batches = problem()
  results = {}
  for key, (class_name, kwargs) in OPTIMIZERS.items():
    on_mesh = mesh_variables(mesh, weights)
    optimizer = getattr(top_dtensor, class_name)(mesh=mesh, **kwargs)
    run_loop(optimizer, on_mesh, batches, lambda a: batch_sharded(mesh, a))

    single = {
        name: tf.Variable(value, name=name) for name, value in weights.items()
    }
    reference = getattr(top_tf_keras, class_name)(**kwargs)
    run_loop(reference, single, batches, tf.constant)

    slot_layouts = []
    for slot in optimizer.variables:
      slot_layouts.append(
          [slot.name,
           list(slot.layout.sharding_specs),
           slot.shape.as_list()])
    results[key] = dict(
        mesh={
            n: to_numpy(mesh, v.read_value()).tolist()
            for n, v in on_mesh.items()
        }, single={
            n: v.numpy().tolist() for n, v in single.items()
        }, iterations=int(to_numpy(mesh, optimizer.iterations.read_value())),
        slot_layouts=slot_layouts,
        reasons=sorted({str(top_dtensor_reason(v)) for v in on_mesh.values()}))
  return results


def top_dtensor_reason(variable):
  from tf_opt_plugin import ops  # pylint: disable=g-import-not-at-top
  return ops.dispatch_reason(variable)


def keras_model(layout_map=None):

  def build():
    return tf_keras.Sequential([
        tf_keras.layers.Dense(16, activation="tanh", name="dense",
                              input_shape=(8,)),
        tf_keras.layers.Dense(4, name="out")
    ])

  if layout_map is None:
    return build()
  with layout_map.scope():
    return build()


def scenario_fit(mesh):
  weights, batches = problem()
  x = np.concatenate([b[0] for b in batches])
  y = np.concatenate([b[1] for b in batches])
  layout_map = tf_keras.dtensor.experimental.LayoutMap(mesh=mesh)
  layout_map["dense.*kernel"] = dtensor.Layout(["unsharded", "model"], mesh)
  layout_map["dense.*bias"] = dtensor.Layout(["model"], mesh)
  layout_map["out.*kernel"] = dtensor.Layout(["model", "unsharded"], mesh)
  layout_map["out.*bias"] = dtensor.Layout.replicated(mesh, 1)
  initial = [
      weights["dense/kernel"], weights["dense/bias"], weights["out/kernel"],
      weights["out/bias"]
  ]
  results = {}
  for key, (class_name, kwargs) in OPTIMIZERS.items():
    model = keras_model(layout_map)
    model.set_weights(initial)
    model.compile(
        optimizer=getattr(top_dtensor, class_name)(mesh=mesh, **kwargs),
        loss="mse")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).repeat()
    sharded = dtensor.Layout.batch_sharded(mesh, "batch", 2)
    model.fit(
        dtensor.DTensorDataset(dataset=dataset, mesh=mesh,
                               layouts=(sharded, sharded),
                               global_batch_size=GLOBAL_BATCH,
                               batch_dim="batch"), epochs=1,
        steps_per_epoch=STEPS, verbose=0)

    reference = keras_model()
    reference.set_weights(initial)
    reference.compile(optimizer=getattr(top_tf_keras, class_name)(**kwargs),
                      loss="mse")
    reference.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False,
                  verbose=0)
    results[key] = dict(
        mesh=[
            to_numpy(mesh, w.read_value()).tolist()
            for w in model.trainable_variables
        ], single=[w.tolist() for w in reference.get_weights()])
  return results


def scenario_stale(mesh):
  weights, batches = problem(seed=3)
  batches = batches[:6]
  kwargs = dict(learning_rate=0.1, momentum=0.9)
  single = {n: tf.Variable(v, name=n) for n, v in weights.items()}
  run_loop(top_tf_keras.SGD(**kwargs), single, batches, tf.constant)
  results = {
      "single": {
          n: v.numpy().tolist() for n, v in single.items()
      },
      "env": os.environ.get(top_dtensor.COMBINE_ALL_REDUCES_ENV)
  }
  for key, make in (("ours", lambda: top_dtensor.SGD(mesh=mesh, **kwargs)),
                    ("tf_keras", lambda: tf_keras.dtensor.experimental.
                     optimizers.SGD(mesh=mesh, **kwargs))):
    on_mesh = mesh_variables(mesh, weights)
    run_loop(make(), on_mesh, batches, lambda a: batch_sharded(mesh, a))
    results[key] = {
        n: to_numpy(mesh, v.read_value()).tolist() for n, v in on_mesh.items()
    }
  return results


def scenario_checkpoint(mesh, directory):
  weights, batches = problem(seed=5)
  results = {}
  for key, (class_name, kwargs) in OPTIMIZERS.items():
    variables = mesh_variables(mesh, weights)
    optimizer = getattr(top_dtensor, class_name)(mesh=mesh, **kwargs)
    place = lambda a: batch_sharded(mesh, a)  # pylint: disable=cell-var-from-loop
    run_loop(optimizer, variables, batches[:5], place)
    checkpoint = tf.train.Checkpoint(
        optimizer=optimizer, **{
            n.replace("/", "_"): v for n, v in variables.items()
        })
    path = checkpoint.write(os.path.join(directory, key))
    run_loop(optimizer, variables, batches[5:], place)

    restored_variables = mesh_variables(mesh, {
        n: np.zeros_like(w) for n, w in weights.items()
    })
    restored = getattr(top_dtensor, class_name)(mesh=mesh, **kwargs)
    restored.build(list(restored_variables.values()))
    tf.train.Checkpoint(
        optimizer=restored, **{
            n.replace("/", "_"): v for n, v in restored_variables.items()
        }).read(path).assert_consumed()
    restored_iterations = int(to_numpy(mesh, restored.iterations.read_value()))
    run_loop(restored, restored_variables, batches[5:], place)
    results[key] = dict(
        continued={
            n: to_numpy(mesh, v.read_value()).tolist()
            for n, v in variables.items()
        }, restored={
            n: to_numpy(mesh, v.read_value()).tolist()
            for n, v in restored_variables.items()
        }, restored_iterations=restored_iterations, restored_layouts=[
            list(v.layout.sharding_specs) for v in restored.variables
        ], layouts=[list(v.layout.sharding_specs) for v in optimizer.variables])
  return results


def _error(fn):
  try:
    fn()
  except Exception as e:  # pylint: disable=broad-except
    return [type(e).__name__, str(e)]
  return None


def scenario_errors(mesh):
  weights, _ = problem()
  other = dtensor.create_mesh([("batch", 1), ("model", 4)], device_type="CPU")
  on_mesh = list(mesh_variables(mesh, weights).values())
  on_other = list(mesh_variables(other, weights).values())
  plain = [tf.Variable(weights["dense/kernel"], name="plain")]
  return {
      "other_mesh":
          _error(lambda: top_dtensor.Adam(mesh=mesh).build(on_other)),
      "plain_variable":
          _error(lambda: top_dtensor.Lamb(mesh=mesh).build(plain)),
      "no_mesh":
          _error(lambda: top_dtensor.SGD()),
      "not_a_mesh":
          _error(lambda: top_dtensor.AdamW(mesh="mesh")),
      "dvariables_without_mesh":
          _error(lambda: top_tf_keras.Adafactor().build(on_mesh)),
      "fused_true":
          _error(lambda: top_dtensor.AdamW(mesh=mesh, fused=True).
                 apply_gradients([(tf.zeros_like(on_mesh[0]), on_mesh[0])])),
  }


# state_dtype (issue 16).
STATE_STEPS = 3


def _state_on_mesh(mesh, value, specs, name):
  replicated = dtensor.copy_to_mesh(tf.constant(value),
                                    dtensor.Layout.replicated(mesh, value.ndim))
  return dtensor.DVariable(
      dtensor.relayout(replicated, dtensor.Layout(list(specs), mesh)),
      name=name)


def _state_steps(optimizer, variables, grads, place):

  @tf.function
  def step(gs):
    optimizer.apply_gradients(zip(gs, variables))

  for gs in grads:
    step([place(g) for g in gs])


def _state_compare(mesh, class_name, kwargs, specs):
  """Steps on the mesh and on one device; returns (optimizer, difference)."""
  rng = np.random.default_rng(0)
  shapes = {"big": (64, 128), "small": (16,)}
  weights = {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}
  grads = [[rng.normal(size=s).astype(np.float32)
            for s in shapes.values()]
           for _ in range(STATE_STEPS)]
  meshed = [_state_on_mesh(mesh, weights[n], specs[n], n) for n in shapes]
  optimizer = getattr(top_dtensor, class_name)(mesh=mesh, **kwargs)
  _state_steps(
      optimizer, meshed, grads, lambda g: dtensor.copy_to_mesh(
          tf.constant(g), dtensor.Layout.replicated(mesh, g.ndim)))
  single = [tf.Variable(weights[n], name=n) for n in shapes]
  _state_steps(
      getattr(top_tf_keras, class_name)(fused=False, **kwargs), single, grads,
      tf.constant)
  difference = max(
      float(np.max(np.abs(to_numpy(mesh, m) - s.numpy())))
      for m, s in zip(meshed, single))
  return optimizer, difference


def scenario_state_dtype(mesh):
  """state_dtype on a 1x4 mesh: bfloat16 state on sharded variables equals
  one device and takes their layouts; 8-bit state on replicated ones equals
  one device; 8-bit state on a sharded variable is refused at build()."""
  result = {}
  sharded = {"big": ("unsharded", "model"), "small": ("model",)}
  optimizer, difference = _state_compare(
      mesh, "Adam", dict(learning_rate=0.01, state_dtype="bfloat16"), sharded)
  result["bfloat16_max_difference"] = difference
  variable_layouts = {
      "big": dtensor.Layout(list(sharded["big"]), mesh).to_string(),
      "small": dtensor.Layout(list(sharded["small"]), mesh).to_string(),
  }
  result["bfloat16_layouts"] = {
      slot.name: (slot.dtype.name, slot.layout.to_string(),
                  variable_layouts[slot.name.split("/")[-1].split(":")[0]])
      for slot in optimizer.variables
      if slot.name.split("/")[-1].split(":")[0] in variable_layouts
  }

  replicated = {"big": ("unsharded", "unsharded"), "small": ("unsharded",)}
  optimizer, difference = _state_compare(
      mesh, "Lamb", dict(learning_rate=0.01, state_dtype="int8"), replicated)
  result["replicated_int8_max_difference"] = difference
  result["replicated_int8_layouts"] = [
      v.dtype.name for v in optimizer.variables if "big" in v.name
  ][:2]

  optimizer = top_dtensor.Adam(mesh=mesh, state_dtype="int8")
  big = _state_on_mesh(mesh, np.zeros((64, 128), np.float32), sharded["big"],
                       "big")
  try:
    optimizer.build([big])
    result["sharded_int8"] = ("no error", "")
  except Exception as e:  # pylint: disable=broad-except
    result["sharded_int8"] = (type(e).__name__, str(e))
  result["sharded_int8_slots"] = len(optimizer.variables) - 1
  return result


def main():
  scenario, spec = sys.argv[1], sys.argv[2]
  mesh = make_mesh(spec)
  if scenario == "checkpoint":
    result = scenario_checkpoint(mesh, sys.argv[3])
  else:
    result = globals()[f"scenario_{scenario}"](mesh)
  print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
