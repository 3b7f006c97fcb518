"""Multi-tensor AdamW and LAMB: one op for all variables of a device and dtype.

`multi_tensor_apply_adamw` / `multi_tensor_apply_lamb` take lists of
variables, slots and gradients, group them by (device, dtype) and update each
group with one `ResourceMultiTensorApplyAdamW` / `ResourceMultiTensorApplyLamb`
op: on a GPU one kernel launch per group for AdamW (three for LAMB, whose
per-variable norms are reduced on the device), after NVIDIA apex's
multi_tensor_apply. On CPU the op runs the blocks of all variables in one
parallel loop. Its results are those of the per-variable ops, bit for bit on
CPU.

A group the multi-tensor op cannot take (see `multi_tensor_groups`) falls back
to one `resource_apply_adamw` / `resource_apply_lamb` call per variable, which
runs the fused per-variable op or the pure-TF twin by the usual rules
(`dispatch_reason`). Arguments follow the per-variable functions: scalars as
Python numbers, tensors or variables, `step` the 1-based count of this update,
dense or `tf.IndexedSlices` gradients, `fused=None|True|False`.
"""

import collections

import tensorflow as tf

from tf_opt_plugin.ops import _dispatch
from tf_opt_plugin.ops import _inputs
from tf_opt_plugin.ops import _library
from tf_opt_plugin.ops.adamw import resource_apply_adamw
from tf_opt_plugin.ops.lamb import resource_apply_lamb

class MultiTensorGroup(collections.namedtuple(
    "MultiTensorGroup", ["device", "dtype", "indices", "reason"])):
  """Variables of one device and dtype, and how they are updated.

  `indices` index the variable list; `reason` is None when the group runs as
  one multi-tensor op, else why its variables get one call each: a
  `dispatch_reason()` or "single" (a group of one variable, for which the
  per-variable op is the same update with less bookkeeping).

  >>> g = MultiTensorGroup("/device:CPU:0", tf.float32, (0, 2), None)
  >>> g.reason is None, len(g.indices)
  (True, 2)
  """

  __slots__ = ()


def _group_key(variable):
  device = getattr(variable, "device", "") or ""
  if device:
    device = tf.DeviceSpec.from_string(device).to_string()
  return device, tf.as_dtype(variable.dtype).base_dtype


def multi_tensor_groups(variables, gradients=None):
  """How `multi_tensor_apply_*` would update `variables`: a list of groups.

  Variables are grouped by (device, dtype), in order of first appearance.
  Each `MultiTensorGroup(device, dtype, indices, reason)` has `reason` None
  when the group runs as one multi-tensor op, else why its variables are
  updated one call at a time: a `dispatch_reason()` of one of its variables
  ("disabled", "not_loaded", "xla", "dtensor", "device", "dtype"), or
  "single" for a group of one variable.

  >>> a, b = tf.Variable([1.0]), tf.Variable([2.0])
  >>> c = tf.Variable([3.0], dtype=tf.float64)
  >>> [(len(g.indices), g.dtype.name) for g in multi_tensor_groups([a, b, c])]
  [(2, 'float32'), (1, 'float64')]
  """
  gradients = [None] * len(variables) if gradients is None else list(gradients)
  order, members = [], {}
  for i, variable in enumerate(variables):
    key = _group_key(variable)
    if key not in members:
      order.append(key)
      members[key] = []
    members[key].append(i)
  groups = []
  for key in order:
    indices = members[key]
    reason = None
    for i in indices:
      reason = _dispatch.dispatch_reason(variables[i], gradients[i])
      if reason is not None:
        break
    if reason is None and len(indices) == 1:
      reason = "single"
    groups.append(MultiTensorGroup(key[0], key[1], tuple(indices), reason))
  return groups


def _check_lengths(variables, named_lists):
  n = len(variables)
  for name, values in named_lists.items():
    if values is not None and len(values) != n:
      raise ValueError(
          f"`{name}` must hold one entry per variable ({n}). Received "
          f"{len(values)}.")


def _flags(values, n, name):
  if values is None:
    return [True] * n
  flags = [bool(x) for x in values]
  if len(flags) != n:
    raise ValueError(f"`{name}` must hold one bool per variable ({n}). "
                     f"Received {len(flags)}.")
  return flags


def _run_groups(variables, gradients, fused, fused_group, per_variable):
  """Calls fused_group(indices) per multi-tensor group, else per_variable(i)."""
  if fused is False:
    groups = [MultiTensorGroup("", None, tuple(range(len(variables))), "off")]
  else:
    groups = multi_tensor_groups(variables, gradients)
  updates = []
  for group in groups:
    if group.reason is None:
      updates.append(fused_group(list(group.indices)))
    else:
      updates.extend(per_variable(i) for i in group.indices)
  if tf.executing_eagerly():
    return None
  return tf.group(*[u for u in updates if u is not None])


def multi_tensor_apply_adamw(variables, ms, vs, grads, *, learning_rate,
                             beta_1, beta_2, epsilon, weight_decay, step,
                             vhats=None, apply_weight_decay=None,
                             use_locking=True, fused=None):
  """One AdamW step for every variable of `variables`, in place.

  Args:
    variables, ms, vs, grads: lists of equal length: the variables, their
      first and second moment slots and their gradients (tensors or
      `tf.IndexedSlices`), as for `resource_apply_adamw`.
    learning_rate, beta_1, beta_2, epsilon, weight_decay, step: shared by all
      variables, as for `resource_apply_adamw`.
    vhats: None (Adam / AdamW) or the amsgrad slots, one per variable.
    apply_weight_decay: None (decay for all) or one bool per variable; False
      updates that variable as if weight_decay were 0 (exclusion lists).
    use_locking: hold the variables' locks during the update.
    fused: None runs the multi-tensor op where it can run and per-variable
      calls elsewhere; True insists on fused ops (raises
      `FusedOpUnavailableError` for a variable where none can run); False
      runs every variable's pure-TF twin.

  Returns:
    The update op in graph mode, None eagerly.

  >>> ws = [tf.Variable([1.0, 2.0]), tf.Variable([3.0])]
  >>> ms = [tf.Variable(tf.zeros_like(w)) for w in ws]
  >>> vs = [tf.Variable(tf.zeros_like(w)) for w in ws]
  >>> _ = multi_tensor_apply_adamw(ws, ms, vs, [tf.constant([0.1, 0.1]),
  ...     tf.constant([0.1])], learning_rate=0.1, beta_1=0.9, beta_2=0.999,
  ...     epsilon=1e-7, weight_decay=0.0, step=1)
  >>> [[round(float(x), 4) for x in w.numpy()] for w in ws]
  [[0.9, 1.9], [2.9]]
  """
  variables, ms, vs, grads = list(variables), list(ms), list(vs), list(grads)
  _check_lengths(variables, {"ms": ms, "vs": vs, "grads": grads,
                             "vhats": vhats,
                             "apply_weight_decay": apply_weight_decay})
  decay = _flags(apply_weight_decay, len(variables), "apply_weight_decay")
  grads = [_inputs.as_dense_gradient(g) for g in grads]
  step = _inputs.as_step(step)
  hyper = dict(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
               epsilon=epsilon, step=step)

  def per_variable(i):
    return resource_apply_adamw(
        variables[i], ms[i], vs[i], grads[i],
        weight_decay=weight_decay if decay[i] else 0.0,
        vhat=None if vhats is None else vhats[i], use_locking=use_locking,
        fused=fused, **hyper)

  def fused_group(indices):
    compute = _inputs.compute_dtype(variables[indices[0]].dtype)
    return _library.load_library().resource_multi_tensor_apply_adam_w(
        var=[variables[i].handle for i in indices],
        m=[ms[i].handle for i in indices],
        v=[vs[i].handle for i in indices],
        vhat=[] if vhats is None else [vhats[i].handle for i in indices],
        grad=[grads[i] for i in indices],
        step=step, apply_weight_decay=[decay[i] for i in indices],
        use_locking=use_locking,
        **_inputs.as_scalars(compute, learning_rate=learning_rate,
                             beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                             weight_decay=weight_decay))

  return _run_groups(variables, grads, fused, fused_group, per_variable)


def multi_tensor_apply_lamb(variables, ms, vs, grads, *, learning_rate, beta_1,
                            beta_2, epsilon, weight_decay_rate, step,
                            apply_weight_decay=None, use_layer_adaptation=None,
                            use_locking=True, fused=None):
  """One LAMB step for every variable of `variables`, in place.

  Each variable gets its own trust ratio ||w|| / ||u||, as with
  `resource_apply_lamb`; on a GPU the norms are reduced on the device.

  Args:
    variables, ms, vs, grads: lists of equal length, as for
      `resource_apply_lamb`.
    learning_rate, beta_1, beta_2, epsilon, weight_decay_rate, step: shared.
    apply_weight_decay: None (all) or one bool per variable; False updates
      that variable as if weight_decay_rate were 0.
    use_layer_adaptation: None (all) or one bool per variable; False fixes
      that variable's trust ratio at 1.
    use_locking: hold the variables' locks during the update.
    fused: None, True or False, as for `multi_tensor_apply_adamw`.

  Returns:
    The update op in graph mode, None eagerly.

  >>> ws = [tf.Variable([3.0, 4.0]), tf.Variable([1.0])]
  >>> ms = [tf.Variable(tf.zeros_like(w)) for w in ws]
  >>> vs = [tf.Variable(tf.zeros_like(w)) for w in ws]
  >>> _ = multi_tensor_apply_lamb(ws, ms, vs, [tf.constant([1.0, 1.0]),
  ...     tf.constant([1.0])], learning_rate=0.1, beta_1=0.9, beta_2=0.999,
  ...     epsilon=0.0, weight_decay_rate=0.0, step=1,
  ...     use_layer_adaptation=[True, False])
  >>> [[round(float(x), 4) for x in w.numpy()] for w in ws]
  [[2.6464, 3.6464], [0.9]]
  """
  variables, ms, vs, grads = list(variables), list(ms), list(vs), list(grads)
  _check_lengths(variables, {"ms": ms, "vs": vs, "grads": grads,
                             "apply_weight_decay": apply_weight_decay,
                             "use_layer_adaptation": use_layer_adaptation})
  n = len(variables)
  decay = _flags(apply_weight_decay, n, "apply_weight_decay")
  adapt = _flags(use_layer_adaptation, n, "use_layer_adaptation")
  grads = [_inputs.as_dense_gradient(g) for g in grads]
  step = _inputs.as_step(step)
  hyper = dict(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
               epsilon=epsilon, step=step)

  def per_variable(i):
    return resource_apply_lamb(
        variables[i], ms[i], vs[i], grads[i],
        weight_decay_rate=weight_decay_rate if decay[i] else 0.0,
        use_layer_adaptation=adapt[i], use_locking=use_locking, fused=fused,
        **hyper)

  def fused_group(indices):
    compute = _inputs.compute_dtype(variables[indices[0]].dtype)
    return _library.load_library().resource_multi_tensor_apply_lamb(
        var=[variables[i].handle for i in indices],
        m=[ms[i].handle for i in indices],
        v=[vs[i].handle for i in indices],
        grad=[grads[i] for i in indices],
        step=step, apply_weight_decay=[decay[i] for i in indices],
        use_layer_adaptation=[adapt[i] for i in indices],
        use_locking=use_locking,
        **_inputs.as_scalars(compute, learning_rate=learning_rate,
                             beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                             weight_decay_rate=weight_decay_rate))

  return _run_groups(variables, grads, fused, fused_group, per_variable)
