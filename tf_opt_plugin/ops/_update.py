"""The one body of every update: convert, dispatch, validate, fused op or twin.

Each algorithm module (`adamw.py`, `lamb.py`, `adafactor.py`, `lion.py`)
describes its ops and its pure-TF twin once, as an `UpdateRule`, and its
public functions are one call of

  * `apply_update` (one variable): the per-variable op where it can run
    (`dispatch_reason`), else the twin;
  * `apply_multi_tensor_update` (lists of variables): per (device, dtype)
    group (`multi_tensor_groups`) the multi-tensor op, else the twin per
    variable.

Both check the whole call before anything is written: the lists' lengths,
every dtype and shape, no variable passed twice, the hyperparameters are
scalars; the twin's run-time checks (initialised variables, `step >= 1` when
only known at run time) come before all of its writes. A multi-tensor call
rejected by any variable leaves every variable as it was.

Names follow the ops: a rule lists the op inputs of its slots and scalar
hyperparameters, and the twin takes them as keyword arguments of the same
names (or, with `twin_scalars`, the scalars derived from them once per call).
The Python functions call the `lr` input `learning_rate`.

Both build ops with no tensor-dependent Python control flow: AutoGraph, when
a tf.function calls them, leaves them as they are (`do_not_convert`).
"""

import dataclasses
from typing import Callable, Optional, Tuple

import tensorflow as tf

from tf_opt_plugin.ops import _dispatch
from tf_opt_plugin.ops import _grouping
from tf_opt_plugin.ops import _inputs
from tf_opt_plugin.ops import _library

# The public argument of an op input, where they differ (errors name it).
_ARGUMENT_NAMES = {"lr": "learning_rate"}


@dataclasses.dataclass(frozen=True)
class UpdateRule:
  """How one algorithm's update reaches its ops and its pure-TF twin.

  Attributes:
    per_variable_op: the raw op wrapper in the loaded library that updates
      one variable ("resource_apply_adam_w").
    multi_tensor_op: the wrapper that updates a list of variables
      ("resource_multi_tensor_apply_adam_w"), or None.
    slot_names: the op inputs holding the variable's slots, in op order.
    list_slots: those of `slot_names` that the per-variable op takes as a
      list of resources: optional slots (AdamW's `vhat`, none or one) and
      Adafactor's `accumulators`. In the multi-tensor op every slot input is
      a list: one per variable, or none for an optional slot not in use.
    scalar_names: the op's `Tscalar` inputs, in op order (the algorithm's
      `SCALAR_NAMES`).
    takes_step: whether the ops take `step`, the 1-based count of the update.
    per_tensor_flags: the multi-tensor op's list(bool) attrs, one value per
      variable ("apply_weight_decay"); the twin takes each as a bool.
    twin: `twin(var, grad, *, <slots>, <scalars>, [step], <flags>)` updates
      one variable in plain TF ops and returns the update op; with
      `twin_scalars`, `twin(var, grad, *, <slots>, <twin scalars>, <flags>)`.
    check_slots: `check_slots(var, slots, grad)` validates dtypes and shapes
      where the slots are not all shaped like the variable (Adafactor);
      None checks that they are.
    twin_scalars: `twin_scalars(**<scalars>, [step=])` returns {name: scalar
      tensor}, the twin's scalar arguments derived from the op's (bias
      corrections, `1 - beta_1`), computed once per call and shared by every
      variable the twin updates in it: the same values, but traced, and
      compiled by XLA, once instead of once per variable. None: the twin takes
      the op's scalars and step.
  """

  per_variable_op: str
  multi_tensor_op: Optional[str]
  slot_names: Tuple[str, ...]
  scalar_names: Tuple[str, ...]
  takes_step: bool
  twin: Callable[..., tf.Operation]
  list_slots: Tuple[str, ...] = ()
  per_tensor_flags: Tuple[str, ...] = ()
  check_slots: Optional[Callable[..., None]] = None
  twin_scalars: Optional[Callable[..., dict]] = None


@tf.autograph.experimental.do_not_convert
def apply_update(
  rule,
  var,
  slots,
  grad,
  *,
  hyperparameters,
  step=None,
  flags=None,
  use_locking=True,
  fused=None,
):
  """One update of `var` and its `slots`: the per-variable op or the twin.

  Args:
    rule: the algorithm's `UpdateRule`.
    var: the `tf.Variable` to update.
    slots: {slot input name: the slot variable}; a list slot takes None (an
      optional slot not in use), a variable or a list of variables.
    grad: a tensor shaped like `var` or `tf.IndexedSlices` (repeated indices
      are summed).
    hyperparameters: {scalar input name: a Python number, tensor or
      variable}, exactly `rule.scalar_names`.
    step: the 1-based count of this update when `rule.takes_step`.
    flags: {attr: bool} of the per-variable op, also passed to the twin.
    use_locking: hold the variables' locks during the update.
    fused: None (the op where it can run), True (the op or
      `FusedOpUnavailableError`) or False (the twin).

  Returns:
    The update op in graph mode, None eagerly.
  """
  flags = dict(flags or {})
  _check_names("slots", slots, rule.slot_names)
  grad = _inputs.as_dense_gradient(grad)
  scalars = _scalars(rule, hyperparameters, _inputs.compute_dtype(grad.dtype))
  step_input = _step_input(rule, step)
  if _dispatch.use_fused_op(fused, var, grad):
    # The kernel validates everything before it writes.
    return _op(rule.per_variable_op)(
      var=var.handle,
      grad=grad,
      use_locking=use_locking,
      **_per_variable_slot_handles(rule, slots),
      **scalars,
      **step_input,
      **flags,
    )
  named = _named_variables(rule, var, slots)
  _check_inputs(rule, var, slots, grad, named)
  _inputs.check_distinct(named)
  with tf.control_dependencies(
    _inputs.runtime_checks(dict(named), step_input.get("step"))
  ):
    return rule.twin(
      var,
      grad,
      **slots,
      **_twin_scalars(rule, scalars, step_input),
      **flags,
    )


@tf.autograph.experimental.do_not_convert
def apply_multi_tensor_update(
  rule,
  variables,
  slot_lists,
  grads,
  *,
  hyperparameters,
  step=None,
  per_tensor_flags=None,
  use_locking=True,
  fused=None,
):
  """One update of each of `variables`, grouped by (device, dtype).

  Each group (`multi_tensor_groups`) runs as one multi-tensor op where the
  fused op can run for it, else as the twin of each of its variables.

  Args:
    rule: the algorithm's `UpdateRule`.
    variables: the `tf.Variable`s to update.
    slot_lists: {slot input name: one slot variable per variable}; an
      optional (list) slot takes None when not in use. Errors call the list
      of slot `x` `xs`, as the public functions do (`ms` for `m`).
    grads: one gradient per variable (tensors or `tf.IndexedSlices`).
    hyperparameters: {scalar input name: value}, shared by all variables.
    step: the 1-based count of this update when `rule.takes_step`.
    per_tensor_flags: {flag: None (all True) or one bool per variable},
      exactly `rule.per_tensor_flags`.
    use_locking: hold the variables' locks during the update.
    fused: None (the multi-tensor op where it can run), True (raise
      `FusedOpUnavailableError` where it cannot, before anything runs) or
      False (the twins).

  Returns:
    The update op in graph mode, None eagerly.
  """
  variables, grads = list(variables), list(grads)
  n = len(variables)
  slot_lists = {
    name: None if values is None else list(values)
    for name, values in slot_lists.items()
  }
  per_tensor_flags = dict(per_tensor_flags or {})
  _check_names("slots", slot_lists, rule.slot_names)
  _check_names("flags", per_tensor_flags, rule.per_tensor_flags)
  for name, values in slot_lists.items():
    if values is None and name not in rule.list_slots:
      raise ValueError(
        f"`{name}s` must hold one slot per variable. Received: {name}s=None"
      )
  _check_lengths(
    n,
    {f"{name}s": values for name, values in slot_lists.items()}
    | {"grads": grads},
  )
  flag_values = {
    name: _flags(values, n, name) for name, values in per_tensor_flags.items()
  }
  grads = [_inputs.as_dense_gradient(g) for g in grads]
  step_input = _step_input(rule, step)
  plan = _plan(variables, grads, fused)
  scalars = {}  # compute dtype -> the scalar inputs converted to it
  for variable in variables:
    dtype = _inputs.compute_dtype(variable.dtype)
    if dtype not in scalars:
      scalars[dtype] = _scalars(rule, hyperparameters, dtype)

  # Variable i's slots and flags, as one variable's update takes them.
  slots = [
    {
      name: None if values is None else values[i]
      for name, values in slot_lists.items()
    }
    for i in range(n)
  ]
  flags = [
    {name: values[i] for name, values in flag_values.items()} for i in range(n)
  ]
  named = []
  for i in range(n):
    variable_named = _named_variables(rule, variables[i], slots[i], index=i)
    _check_inputs(
      rule, variables[i], slots[i], grads[i], variable_named, index=i
    )
    named.extend(variable_named)
  _inputs.check_distinct(named)
  # One multi-tensor op validates its variables before writing any; several
  # ops, or twins, need the run-time checks done for all of them first.
  one_op = len(plan) == 1 and plan[0][1]
  checks = (
    []
    if one_op
    else _inputs.runtime_checks(dict(named), step_input.get("step"))
  )

  def scalars_of(i):
    return scalars[_inputs.compute_dtype(variables[i].dtype)]

  twin_scalars = {}  # compute dtype -> the twin's scalars, made on first use

  def twin_scalars_of(i):
    dtype = _inputs.compute_dtype(variables[i].dtype)
    if dtype not in twin_scalars:
      twin_scalars[dtype] = _twin_scalars(rule, scalars[dtype], step_input)
    return twin_scalars[dtype]

  updates = []
  with tf.control_dependencies(checks):
    for indices, run_fused in plan:
      if not run_fused:
        updates.extend(
          rule.twin(
            variables[i],
            grads[i],
            **slots[i],
            **twin_scalars_of(i),
            **flags[i],
          )
          for i in indices
        )
        continue
      slot_handles = {
        name: [
          slots[i][name].handle for i in indices if slots[i][name] is not None
        ]  # an optional slot: none
        for name in rule.slot_names
      }
      updates.append(
        _op(rule.multi_tensor_op)(
          var=[variables[i].handle for i in indices],
          grad=[grads[i] for i in indices],
          use_locking=use_locking,
          **slot_handles,
          **scalars_of(indices[0]),
          **step_input,
          **{
            name: [values[i] for i in indices]
            for name, values in flag_values.items()
          },
        )
      )
  if tf.executing_eagerly():
    return None
  return tf.group(*[u for u in updates if u is not None])


# ----------------------------------------------------------------------------
# Inputs.
# ----------------------------------------------------------------------------
def _check_names(what, given, expected):
  """The algorithm module passes exactly the op's names (a wiring check)."""
  if set(given) != set(expected):
    raise TypeError(
      f"The {what} of this update are {tuple(expected)}. "
      f"Received: {tuple(given)}"
    )


def _scalars(rule, hyperparameters, dtype):
  """{op input: scalar tensor of `dtype`}, each checked to be a scalar."""
  _check_names("hyperparameters", hyperparameters, rule.scalar_names)
  return {
    name: _inputs.as_scalar(
      hyperparameters[name], dtype, _ARGUMENT_NAMES.get(name, name)
    )
    for name in rule.scalar_names
  }


def _twin_scalars(rule, scalars, step_input):
  """The twin's scalar keyword arguments (see `UpdateRule.twin_scalars`)."""
  if rule.twin_scalars is None:
    return {**scalars, **step_input}
  return rule.twin_scalars(**scalars, **step_input)


def _step_input(rule, step):
  """{"step": int64 scalar} for ops that take a step, else {}."""
  if rule.takes_step:
    return {"step": _inputs.as_step(step)}
  if step is not None:
    raise TypeError(f"This update takes no `step`. Received: step={step!r}")
  return {}


def _check_lengths(n, named_lists):
  for name, values in named_lists.items():
    if values is not None and len(values) != n:
      raise ValueError(
        f"`{name}` must hold one entry per variable ({n}). Received "
        f"{len(values)}."
      )


def _flags(values, n, name):
  if values is None:
    return [True] * n
  flags = [bool(x) for x in values]
  if len(flags) != n:
    raise ValueError(
      f"`{name}` must hold one bool per variable ({n}). Received {len(flags)}."
    )
  return flags


def _as_list(value):
  if value is None:
    return []
  if isinstance(value, (list, tuple)):
    return list(value)
  return [value]


def _named_variables(rule, var, slots, index=None):
  """[(name, variable)] of `var` and its slots, as errors name them: "var",
  "m", "vhat[0]" for one variable; "var[2]", "m[2]", "vhat[2]" for the third
  of a multi-tensor update."""
  if index is None:
    named = [("var", var)]
    for name in rule.slot_names:
      if name in rule.list_slots:
        named.extend(
          (f"{name}[{k}]", slot)
          for k, slot in enumerate(_as_list(slots.get(name)))
        )
      else:
        named.append((name, slots[name]))
    return named
  named = [(f"var[{index}]", var)]
  named.extend(
    (f"{name}[{index}]", slots[name])
    for name in rule.slot_names
    if slots.get(name) is not None
  )
  return named


def _check_inputs(rule, var, slots, grad, named, index=None):
  """Static dtype and shape checks of one variable, its slots and gradient."""
  if rule.check_slots is not None:
    rule.check_slots(var, slots, grad)
    return
  suffix = "" if index is None else f"[{index}]"
  _inputs.check_update_inputs(
    var, dict(named[1:]), grad, var_name=named[0][0], grad_name=f"grad{suffix}"
  )


# ----------------------------------------------------------------------------
# Ops.
# ----------------------------------------------------------------------------
def _op(name):
  return getattr(_library.load_library(), name)


def _per_variable_slot_handles(rule, slots):
  return {
    name: (
      [slot.handle for slot in _as_list(slots.get(name))]
      if name in rule.list_slots
      else slots[name].handle
    )
    for name in rule.slot_names
  }


def _plan(variables, grads, fused):
  """[(indices, run fused)] in the order the groups run."""
  if fused is False:
    return [(tuple(range(len(variables))), False)] if variables else []
  groups = _grouping.multi_tensor_groups(variables, grads)
  if fused:
    for group in groups:
      if group.reason is not None:
        raise _dispatch.unavailable_error(group.reason)
  return [(group.indices, group.reason is None) for group in groups]
