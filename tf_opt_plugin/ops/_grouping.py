"""The (device, dtype) groups of a multi-tensor update, and how each runs.

`multi_tensor_apply_*` update each group with one multi-tensor op where the
fused op can run for all of its variables, and with the pure-TF twin per
variable elsewhere. A group runs fused whatever its size: the per-variable
ops run the same kernel with a list of one, so a group of one saves nothing
by leaving the multi-tensor op.
"""

import collections

import tensorflow as tf

from tf_opt_plugin.ops import _dispatch


class MultiTensorGroup(
    collections.namedtuple("MultiTensorGroup",
                           ["device", "dtype", "indices", "reason", "layout"],
                           defaults=("same",))):
  """Variables of one device, dtype and state layout, and how they are
  updated.

  `indices` index the variable list; `reason` is None when the group runs as
  one multi-tensor op, else the `dispatch_reason()` why its variables run the
  pure-TF twin, one variable at a time; `layout` is how their slots are
  stored ("same", "float32", "bfloat16", "int8": `_state`).

  >>> g = MultiTensorGroup("/device:CPU:0", tf.float32, (0, 2), None)
  >>> g.reason is None, len(g.indices)
  (True, 2)
  """

  __slots__ = ()


def _group_key(variable, layout):
  device = getattr(variable, "device", "") or ""
  if device:
    device = tf.DeviceSpec.from_string(device).to_string()
  return device, tf.as_dtype(variable.dtype).base_dtype, layout


def multi_tensor_groups(variables, gradients=None, layouts=None,
                        stochastic_rounding=False):
  """How `multi_tensor_apply_*` would update `variables`: a list of groups.

  Variables are grouped by (device, dtype, state layout), in order of first
  appearance; `layouts` gives each variable's ("same" for all when None),
  `stochastic_rounding` whether bfloat16 variables are rounded
  stochastically (all of them or none).
  Each `MultiTensorGroup(device, dtype, indices, reason, layout)` has `reason`
  None when the group runs as one multi-tensor op (one variable or many),
  else the `dispatch_reason()` of one of its variables ("disabled",
  "not_loaded", "xla", "dtensor", "device", "dtype", "state_layout") why its
  variables run the pure-TF twin.

  >>> a, b = tf.Variable([1.0]), tf.Variable([2.0])
  >>> c = tf.Variable([3.0], dtype=tf.float64)
  >>> [(len(g.indices), g.dtype.name) for g in multi_tensor_groups([a, b, c])]
  [(2, 'float32'), (1, 'float64')]
  """
  gradients = [None] * len(variables) if gradients is None else list(gradients)
  layouts = ["same"] * len(variables) if layouts is None else list(layouts)
  members = {}  # insertion-ordered: groups in order of first appearance
  for i, variable in enumerate(variables):
    members.setdefault(_group_key(variable, layouts[i]), []).append(i)
  groups = []
  for (device, dtype, layout), indices in members.items():
    reason = None
    for i in indices:
      reason = _dispatch.dispatch_reason(
          variables[i], gradients[i], layout, stochastic_rounding and
          dtype == tf.bfloat16)
      if reason is not None:
        break
    groups.append(
        MultiTensorGroup(device, dtype, tuple(indices), reason, layout))
  return groups
