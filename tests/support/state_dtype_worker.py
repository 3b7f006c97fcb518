"""`state_dtype` of the tf_opt_plugin.dtensor optimizers on a CPU mesh.

    python state_dtype_worker.py

Prints one RESULT_JSON line (tests/keras/test_state_dtype.py checks it):
  bfloat16_layouts            per slot of Adam(state_dtype="bfloat16") on a
                              1x4 mesh: (dtype, its layout, its variable's
                              layout)
  bfloat16_max_difference     after 3 steps, the largest difference of the
                              variables from the same steps on one device
  replicated_int8_*           Lamb(state_dtype="int8") on fully replicated
                              variables: slot dtypes of the big variable and
                              the difference from one device
  sharded_int8                (error type, message) of
                              Adam(state_dtype="int8").build() with a
                              sharded variable of 8192 elements
  sharded_int8_slots          the slots that build made (none)

The logical devices must be configured before TensorFlow initialises, hence
a process of its own.
"""

import json
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
from tensorflow.experimental import dtensor  # pylint: disable=g-import-not-at-top

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 4)

from tf_opt_plugin import dtensor as top_dtensor  # pylint: disable=g-import-not-at-top
from tf_opt_plugin.optimizers import tf_keras as top_tf_keras  # pylint: disable=g-import-not-at-top

RESULT_PREFIX = "RESULT_JSON "
STEPS = 3


def on_mesh(mesh, value, specs, name):
  replicated = dtensor.copy_to_mesh(tf.constant(value),
                                    dtensor.Layout.replicated(mesh, value.ndim))
  return dtensor.DVariable(
      dtensor.relayout(replicated, dtensor.Layout(list(specs), mesh)),
      name=name)


def global_value(mesh, value):
  full = dtensor.relayout(value,
                          dtensor.Layout.replicated(mesh, value.shape.rank))
  return dtensor.unpack(full)[0].numpy()


def run(optimizer, variables, grads, place):

  @tf.function
  def step(gs):
    optimizer.apply_gradients(zip(gs, variables))

  for gs in grads:
    step([place(g) for g in gs])


def compare(mesh, class_name, kwargs, specs):
  """Steps on the mesh and on one device; returns (optimizer, difference)."""
  rng = np.random.default_rng(0)
  shapes = {"big": (64, 128), "small": (16,)}
  weights = {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}
  grads = [[rng.normal(size=s).astype(np.float32)
            for s in shapes.values()]
           for _ in range(STEPS)]
  meshed = [on_mesh(mesh, weights[n], specs[n], n) for n in shapes]
  optimizer = getattr(top_dtensor, class_name)(mesh=mesh, **kwargs)
  run(
      optimizer, meshed, grads, lambda g: dtensor.copy_to_mesh(
          tf.constant(g), dtensor.Layout.replicated(mesh, g.ndim)))
  single = [tf.Variable(weights[n], name=n) for n in shapes]
  run(
      getattr(top_tf_keras, class_name)(fused=False, **kwargs), single, grads,
      tf.constant)
  difference = max(
      float(np.max(np.abs(global_value(mesh, m) - s.numpy())))
      for m, s in zip(meshed, single))
  return optimizer, difference


def main():
  mesh = dtensor.create_mesh([("batch", 1), ("model", 4)], device_type="CPU")
  result = {}
  sharded = {"big": ("unsharded", "model"), "small": ("model",)}
  optimizer, difference = compare(
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
  optimizer, difference = compare(mesh, "Lamb",
                                  dict(learning_rate=0.01, state_dtype="int8"),
                                  replicated)
  result["replicated_int8_max_difference"] = difference
  result["replicated_int8_layouts"] = [
      v.dtype.name for v in optimizer.variables if "big" in v.name
  ][:2]

  optimizer = top_dtensor.Adam(mesh=mesh, state_dtype="int8")
  big = on_mesh(mesh, np.zeros((64, 128), np.float32), sharded["big"], "big")
  try:
    optimizer.build([big])
    result["sharded_int8"] = ("no error", "")
  except Exception as e:  # pylint: disable=broad-except
    result["sharded_int8"] = (type(e).__name__, str(e))
  result["sharded_int8_slots"] = len(optimizer.variables) - 1
  print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
