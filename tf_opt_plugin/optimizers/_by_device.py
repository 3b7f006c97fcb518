"""One batched update per device, for the front ends' `merge_call`.

The algorithms' `update_steps(gradients, variables, learning_rate)` updates
all variables of one device with one multi-tensor op per dtype
(`tf_opt_plugin.ops.multi_tensor_apply_*`). A front end hands it the local
copies of one device at a time: `update_by_device` calls a function once per
device with that device's variables and gradients, inside the same
`strategy.extended.update` context the per-variable path runs in (so slots
and `iterations` resolve to the same local copies).

`TF_OPT_PLUGIN_MULTI_TENSOR=0` turns this off: the front ends then call
`update_step` once per variable, as before. It is read at trace time.
"""

import tensorflow as tf

from tf_opt_plugin.ops import _env_flags

MULTI_TENSOR_ENV = "TF_OPT_PLUGIN_MULTI_TENSOR"

# Strategies whose `extended.update(var, fn)` runs `fn` once per local copy of
# a mirrored variable, on that copy's device, in the same device order for
# every variable. Others (parameter servers, TPUs) keep per-variable updates.
_MIRRORED_STRATEGIES = (tf.distribute.MirroredStrategy,
                        tf.distribute.MultiWorkerMirroredStrategy)


def multi_tensor_enabled():
  """False when `TF_OPT_PLUGIN_MULTI_TENSOR=0` (or "false", "off", "no")
  asks for one update call per variable; True when unset (the default) or
  "1", "true", "on", "yes"; any other value raises a ValueError."""
  return _env_flags.read_flag(MULTI_TENSOR_ENV, True)


def _devices(distribution, variable):
  return tuple(
      component.device
      for component in distribution.experimental_local_results(variable))


def can_update_by_device(distribution, variables):
  """Whether `update_by_device` may update `variables` under `distribution`.

  True when multi-tensor updates are enabled and either no strategy is in
  use (the default strategy: one call, the ops group by device themselves)
  or a mirrored strategy holds every variable as one copy per local device,
  on the same devices.
  """
  if not variables or not multi_tensor_enabled():
    return False
  if isinstance(distribution, _MIRRORED_STRATEGIES):
    devices = _devices(distribution, variables[0])
    return all(_devices(distribution, v) == devices for v in variables[1:])
  return not tf.distribute.has_strategy()


def update_by_device(distribution, variables, gradients, fn, *args):
  """Calls `fn(local_variables, local_gradients, *local_args)` per device.

  Runs inside `distribution.extended.update` of the first variable, which
  places each call on its device and selects each device's component of
  `gradients` and `args` (per-replica values). `local_variables[i]` is the
  copy of `variables[i]` on that device. Check `can_update_by_device` first.
  Returns the calls' results, one per device.
  """
  components = [distribution.experimental_local_results(v) for v in variables]

  def on_device(local_anchor, local_gradients, *local_args):
    # The anchor's position among its copies is the device's position.
    replica = _position(local_anchor, components[0])
    return fn([copies[replica] for copies in components], list(local_gradients),
              *local_args)

  return distribution.extended.update(variables[0], on_device,
                                      args=(list(gradients),) + tuple(args),
                                      group=False)


def _position(component, copies):
  for i, copy in enumerate(copies):
    if copy is component:
      return i
  for i, copy in enumerate(copies):
    if copy.device == component.device:
      return i
  raise ValueError(
      f"`variable` must be one of the local copies {[c.device for c in copies]}"
      f". Received: a variable on {component.device!r}")
