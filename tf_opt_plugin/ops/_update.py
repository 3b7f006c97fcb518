"""The one body of every update: convert, dispatch, validate, fused op or twin.

Each algorithm module (`adamw.py`, `lamb.py`, `adafactor.py`, `lion.py`)
describes its ops and its pure-TF twin once, as an `UpdateRule`, and its
public functions are one call of

  * `apply_update` (one variable): the per-variable op where it can run
    (`dispatch_reason`), else the twin;
  * `apply_multi_tensor_update` (lists of variables): per (device, dtype)
    group (`multi_tensor_groups`) the multi-tensor op, else the twin per
    variable.

Both validate the whole call, on either path, before anything is written
(`_inputs`): the arguments' types, the lists' lengths, that every variable
is a variable and none is passed twice, dtypes and shapes, that the
hyperparameters are real scalars, `step` an integer >= 1 and the rule's
`positive_scalars` > 0, the indices of sparse gradients, that the variables
are initialised. What a graph only knows when it runs becomes a check op that
every read and write of the call depends on, so a call rejected by any
variable, eagerly, in a tf.function or in a TF1 graph, leaves every variable
as it was; both paths raise the same error with the same message. A twin
writes a variable and its slots only once it has computed all their new
values (`_Staged`).

With `use_locking=True` the twins of an eager call hold a lock per variable
for the whole update (`_TwinLocks`), as the fused op holds the variables'
locks: concurrent eager updates of the same variables are serialised. In a
graph no Python lock can be held while it runs: there each read and each
write is atomic (TensorFlow's resource-variable ops take the variable's lock)
and one call's run in program order, but two calls running at once may
interleave their reads and writes.

Both build ops with no tensor-dependent Python control flow: AutoGraph, when
a tf.function calls them, leaves them as they are (`do_not_convert`).

Names follow the ops: a rule lists the op inputs of its slots and scalar
hyperparameters, and the twin takes them as keyword arguments of the same
names (or, with `twin_scalars`, the scalars derived from them once per call).
The Python functions call the `lr` input `learning_rate`.
"""

import contextlib
import dataclasses
import threading
from typing import Callable, Optional, Tuple
import weakref

import tensorflow as tf

from tf_opt_plugin.ops import _dispatch
from tf_opt_plugin.ops import _grouping
from tf_opt_plugin.ops import _inputs
from tf_opt_plugin.ops import _library
from tf_opt_plugin.ops import _quantization
from tf_opt_plugin.ops import _state

# The public argument of an op input, where they differ (errors name it).
_ARGUMENT_NAMES = {"lr": "learning_rate"}


@dataclasses.dataclass(frozen=True)
class UpdateRule:
  """How one algorithm's update reaches its ops and its pure-TF twin.

  Attributes:
    per_variable_op: the raw op wrapper in the loaded library that updates
      one variable ("resource_apply_adam_w"); `_library.required_ops()` lists
      every one the package uses.
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
    twin: `twin(var, grad, *, <slots>, <scalars>, [step], <flags>)` computes
      one variable's update in plain TF ops: it reads the variable and its
      slots with `read_value()` and gives each new value to `assign()`
      (which, on the twin's arguments, only records it: `_Staged`).
    check_slots: `check_slots(var, slots, grad, checks)` validates dtypes and
      shapes where the slots are not all shaped like the variable
      (Adafactor) and returns the gradient; None checks that they are.
    positive_scalars: those of `scalar_names` the kernel requires to be > 0
      (Adafactor's `clip_threshold`); the twin checks them the same way.
    twin_scalars: `twin_scalars(**<scalars>, [step=])` returns {name: scalar
      tensor}, the twin's scalar arguments derived from the op's (bias
      corrections, `1 - beta_1`), computed once per call and shared by every
      variable the twin updates in it: the same values, but traced, and
      compiled by XLA, once instead of once per variable. None: the twin takes
      the op's scalars and step.
    state_layouts: whether the slots may be stored in another layout than
      their variable (`_state`: "float32", "bfloat16", "int8"): the ops then
      take the `state_dtype` attr and the `absmax` list, and the twin reads
      and writes each slot through its layout.
    non_negative_slots: those of `slot_names` that never hold a negative
      value (second moments): in 8-bit state they use the unsigned map.
  """

  per_variable_op: str
  multi_tensor_op: Optional[str]
  slot_names: Tuple[str, ...]
  scalar_names: Tuple[str, ...]
  takes_step: bool
  twin: Callable[..., tf.Operation]
  list_slots: Tuple[str, ...] = ()
  per_tensor_flags: Tuple[str, ...] = ()
  check_slots: Optional[Callable[..., tf.Tensor]] = None
  positive_scalars: Tuple[str, ...] = ()
  twin_scalars: Optional[Callable[..., dict]] = None
  state_layouts: bool = False
  non_negative_slots: Tuple[str, ...] = ()

  def scalars(self, *values):
    """{scalar input name: value} of `values`, given in op order.

    The public functions pass their hyperparameters in `scalar_names`
    order (`learning_rate` feeding "lr") to `apply_update` and
    `apply_multi_tensor_update` this way.
    """
    return dict(zip(self.scalar_names, values, strict=True))


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
    rounding_key=None,
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
    rounding_key: None (round the variable to nearest), or, with
      `rule.state_layouts`, the uint32 key (`stochastic_rounding_key`) that
      rounds a bfloat16 variable stochastically (ignored for other dtypes).
    use_locking: hold the variables' locks during the update (see the
      module docstring for what the twin guarantees).
    fused: None (the op where it can run), True (the op or
      `FusedOpUnavailableError`) or False (the twin).

  Returns:
    The update op in graph mode, None eagerly.
  """
  fused = _inputs.check_fused(fused)
  use_locking = _inputs.check_bool("use_locking", use_locking)
  flags = {
      name: _inputs.check_bool(name, value)
      for name, value in dict(flags or {}).items()
  }
  _check_names("slots", slots, rule.slot_names)
  named = _named_variables(rule, var, slots)
  _check_variable_objects(named)
  checks = _inputs.Checks([v for _, v in named])
  grad = _inputs.as_dense_gradient(grad, var, checks)
  key, = _rounding_keys(rule, [var],
                        None if rounding_key is None else [rounding_key],
                        "rounding_key")
  run_fused = _dispatch.use_fused_op(fused, var, grad,
                                     _layout_hint(rule, var, slots), key
                                     is not None)
  checks.kernel_validates = run_fused
  grad, layout = _check_inputs(rule, var, slots, grad, named, checks)
  scalars = _scalars(rule, hyperparameters, _inputs.compute_dtype(var.dtype),
                     checks)
  step_input = _step_input(rule, step, checks)
  _check_values(rule, scalars, step_input, checks)
  _inputs.check_initialized(named, checks)
  with tf.control_dependencies(checks.ops):
    if run_fused:
      return _op(rule.per_variable_op)(
          var=var.handle,
          grad=grad,
          use_locking=use_locking,
          **_per_variable_slot_handles(rule, slots),
          **_state_inputs(rule, [slots], layout, [key]),
          **scalars,
          **step_input,
          **flags,
      )
    with hold_twin_locks([v for _, v in named], use_locking):
      return _run_twin(
          rule,
          var,
          grad,
          slots,
          {
              **_twin_scalars(rule, scalars, step_input),
              **flags
          },
          key,
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
    rounding_keys=None,
    use_locking=True,
    fused=None,
):
  """One update of each of `variables`, grouped by (device, dtype).

  Each group (`multi_tensor_groups`) runs as one multi-tensor op where the
  fused op can run for it, else as the twin of each of its variables. Empty
  lists are a no-op (the shared arguments are still checked).

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
    rounding_keys: None (round to nearest), or one uint32 key per variable
      (`stochastic_rounding_key`): each bfloat16 variable is rounded
      stochastically with its key, the others to nearest.
    use_locking: hold the variables' locks during the update.
    fused: None (the multi-tensor op where it can run), True (raise
      `FusedOpUnavailableError` where it cannot, before anything runs) or
      False (the twins).

  Returns:
    The update op in graph mode, None eagerly.
  """
  fused = _inputs.check_fused(fused)
  use_locking = _inputs.check_bool("use_locking", use_locking)
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
          f"`{name}s` must hold one slot per variable. Received: {name}s=None")
  _check_lengths(
      n,
      {
          f"{name}s": values for name, values in slot_lists.items()
      } | {
          "grads": grads,
          "rounding_keys": rounding_keys
      },
  )
  flag_values = {
      name: _flags(values, n, name) for name, values in per_tensor_flags.items()
  }

  # Variable i's slots and flags, as one variable's update takes them.
  slots = [{
      name: None if values is None else values[i]
      for name, values in slot_lists.items()
  }
           for i in range(n)]
  flags = [{
      name: values[i] for name, values in flag_values.items()
  } for i in range(n)]
  named = [
      _named_variables(rule, variables[i], slots[i], index=i) for i in range(n)
  ]
  _check_variable_objects([pair for pairs in named for pair in pairs])
  checks = _inputs.Checks(variables)
  grads = [
      _inputs.as_dense_gradient(grads[i], variables[i], checks, f"grad[{i}]",
                                f"var[{i}]") for i in range(n)
  ]
  keys = _rounding_keys(rule, variables, rounding_keys, "rounding_keys")
  plan = _plan(variables, grads, fused,
               [_layout_hint(rule, variables[i], slots[i]) for i in range(n)],
               rounding_keys is not None)
  # One multi-tensor op validates its variables before writing any; several
  # ops, or twins, need the run-time checks done for all of them first.
  checks.kernel_validates = len(plan) == 1 and plan[0][1]
  grads, layouts = zip(*[
      _check_inputs(rule, variables[i], slots[i], grads[i], named[i], checks,
                    index=i) for i in range(n)
  ]) if n else ((), ())
  scalars = {}  # compute dtype -> the scalar inputs converted to it
  for dtype in [_inputs.compute_dtype(v.dtype) for v in variables] or [
      tf.float32  # no variable: the hyperparameters are still checked
  ]:
    if dtype not in scalars:
      scalars[dtype] = _scalars(rule, hyperparameters, dtype, checks)
  step_input = _step_input(rule, step, checks)
  for values in scalars.values():
    _check_values(rule, values, step_input, checks)
  _inputs.check_initialized([p for pairs in named for p in pairs], checks)

  def scalars_of(i):
    return scalars[_inputs.compute_dtype(variables[i].dtype)]

  twin_scalars = {}  # compute dtype -> the twin's scalars, made on first use

  def twin_scalars_of(i):
    dtype = _inputs.compute_dtype(variables[i].dtype)
    if dtype not in twin_scalars:
      twin_scalars[dtype] = _twin_scalars(rule, scalars[dtype], step_input)
    return twin_scalars[dtype]

  twin_variables = [
      v for indices, run_fused in plan
      if not run_fused for i in indices for _, v in named[i]
  ]
  if not plan:  # no variable
    return None if tf.executing_eagerly() else tf.group(*checks.ops)
  updates = []
  with tf.control_dependencies(checks.ops):
    with hold_twin_locks(twin_variables, use_locking):
      for indices, run_fused in plan:
        if not run_fused:
          updates.extend(
              _run_twin(
                  rule,
                  variables[i],
                  grads[i],
                  slots[i],
                  {
                      **twin_scalars_of(i),
                      **flags[i]
                  },
                  keys[i],
              ) for i in indices)
          continue
        slot_handles = {
            name: [
                _stored(slots[i][name]).handle
                for i in indices
                if slots[i][name] is not None
            ]  # an optional slot: none
            for name in rule.slot_names
        }
        updates.append(
            _op(rule.multi_tensor_op)(
                var=[variables[i].handle for i in indices],
                grad=[grads[i] for i in indices],
                use_locking=use_locking,
                **slot_handles,
                **_state_inputs(rule, [slots[i] for i in indices],
                                layouts[indices[0]],
                                [keys[i] for i in indices]),
                **scalars_of(indices[0]),
                **step_input,
                **{
                    name: [values[i] for i in indices]
                    for name, values in flag_values.items()
                },
            ))
  if tf.executing_eagerly():
    return None
  return tf.group(*[u for u in updates if u is not None])


# ----------------------------------------------------------------------------
# Inputs.
# ----------------------------------------------------------------------------
def _check_names(what, given, expected):
  """The algorithm module passes exactly the op's names (a wiring check)."""
  if set(given) != set(expected):
    raise TypeError(f"The {what} of this update are {tuple(expected)}. "
                    f"Received: {tuple(given)}")


def _scalars(rule, hyperparameters, dtype, checks):
  """{op input: scalar tensor of `dtype`}, each checked to be a real scalar."""
  _check_names("hyperparameters", hyperparameters, rule.scalar_names)
  return {
      name:
          _inputs.as_scalar(hyperparameters[name], dtype,
                            _ARGUMENT_NAMES.get(name, name), checks)
      for name in rule.scalar_names
  }


def _twin_scalars(rule, scalars, step_input):
  """The twin's scalar keyword arguments (see `UpdateRule.twin_scalars`)."""
  if rule.twin_scalars is None:
    return {**scalars, **step_input}
  return rule.twin_scalars(**scalars, **step_input)


def _step_input(rule, step, checks):
  """{"step": int64 scalar} for ops that take a step, else {}."""
  if rule.takes_step:
    return {"step": _inputs.as_step(step, checks)}
  if step is not None:
    raise TypeError(f"This update takes no `step`. Received: step={step!r}")
  return {}


def _check_values(rule, scalars, step_input, checks):
  """The kernels' value checks (step 4 of their order): `step` >= 1 and the
  rule's positive scalars > 0."""
  if "step" in step_input:
    _inputs.check_step_value(step_input["step"], checks)
  for name in rule.positive_scalars:
    _inputs.check_positive(_ARGUMENT_NAMES.get(name, name), scalars[name],
                           checks)


def _check_lengths(n, named_lists):
  for name, values in named_lists.items():
    if values is not None and len(values) != n:
      raise ValueError(
          f"`{name}` must hold one entry per variable ({n}). Received "
          f"{len(values)}.")


def _flags(values, n, name):
  if values is None:
    return [True] * n
  values = list(values)
  if len(values) != n:
    raise ValueError(
        f"`{name}` must hold one bool per variable ({n}). Received {len(values)}."
    )
  return [_inputs.check_bool(f"{name}[{i}]", x) for i, x in enumerate(values)]


def _as_list(value):
  """A slot argument as a list: None, one slot (a variable or a
  QuantizedState, itself a tuple) or a list of slots."""
  if value is None:
    return []
  if isinstance(value,
                (list, tuple)) and not isinstance(value, _state.QuantizedState):
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
        named.extend((f"{name}[{k}]", slot)
                     for k, slot in enumerate(_as_list(slots.get(name))))
      else:
        named.append((name, slots[name]))
  else:
    named = [(f"var[{index}]", var)]
    named.extend((f"{name}[{index}]", slots[name])
                 for name in rule.slot_names
                 if name not in rule.list_slots or slots.get(name) is not None)
  # A QuantizedState slot is two variables (its codes and its absmax).
  return _state.expand(named) if rule.state_layouts else named


def _check_variable_objects(named):
  """Each is a variable (a TypeError names the first that is not), and no
  variable appears twice."""
  for name, variable in named:
    _inputs.check_variable_object(variable, name)
  _inputs.check_distinct(named)


def _check_inputs(rule, var, slots, grad, named, checks, index=None):
  """Dtype and shape checks of one variable, its slots and gradient; returns
  the gradient and the slots' layout (`_state`)."""
  if rule.check_slots is not None:
    return rule.check_slots(var, slots, grad, checks), "same"
  suffix = "" if index is None else f"[{index}]"
  var_name, grad_name = named[0][0], f"grad{suffix}"
  if not rule.state_layouts:
    return _inputs.check_update_inputs(var, dict(named[1:]), grad, checks,
                                       var_name=var_name,
                                       grad_name=grad_name), "same"
  _inputs.check_gradient_dtype(var, grad, var_name, grad_name)
  named_slots = _named_slots(rule, slots, index)
  layout = _state.slot_layout(var, named_slots, var_name)
  for name, slot in named_slots:
    if isinstance(slot, _state.QuantizedState):
      _state.check_quantized(name, slot, var, checks, var_name)
    elif slot is not None:
      _inputs.check_same_shape(name, slot, var, checks, var_name)
  _inputs.check_same_shape(grad_name, grad, var, checks, var_name)
  return _inputs.pin_shape(grad, var, checks), layout


def _named_slots(rule, slots, index=None):
  """[(name, slot)] of one variable's slots as errors name them, an
  optional slot not in use left out."""
  suffix = "" if index is None else f"[{index}]"
  named = []
  for name in rule.slot_names:
    values = _as_list(
        slots.get(name)) if name in rule.list_slots else [slots[name]]
    for k, slot in enumerate(values):
      if slot is None:
        continue
      list_suffix = f"[{k}]" if index is None and name in rule.list_slots else ""
      named.append((f"{name}{suffix or list_suffix}", slot))
  return named


def _layout_hint(rule, var, slots):
  """The slots' layout where they agree on one, else "same": what
  dispatch needs before the checks (which raise for slots that disagree)."""
  if not rule.state_layouts:
    return "same"
  layouts = {
      _state.state_layout(var, slot) for _, slot in _named_slots(rule, slots)
  }
  return layouts.pop() if len(layouts) == 1 and None not in layouts else "same"


def _stored(slot):
  """The variable an op input takes for `slot`: a QuantizedState's codes."""
  return slot.codes if isinstance(slot, _state.QuantizedState) else slot


def _rounding_keys(rule, variables, keys, name):
  """Per variable: its uint32 rounding key where it is a bfloat16 variable
  with a key, else None."""
  if keys is None:
    return [None] * len(variables)
  if not rule.state_layouts:
    raise TypeError(f"This update takes no `{name}`. Received: {name}={keys!r}")
  keys = list(keys)
  result = []
  for i, (variable, key) in enumerate(zip(variables, keys, strict=True)):
    label = name if len(
        keys) == 1 and name == "rounding_key" else f"{name}[{i}]"
    if key is None:
      raise TypeError(f"`{label}` must be a uint32 key (see "
                      "`stochastic_rounding_key`). Received: None")
    key = _inputs.as_rounding_key(key, label)
    result.append(key if tf.as_dtype(variable.dtype).base_dtype ==
                  tf.bfloat16 else None)
  return result


def _state_inputs(rule, slot_dicts, layout, keys):
  """The ops' `state_dtype` attr, `absmax` list and `rounding_key` list for
  the variables whose slots are `slot_dicts`: for each slot input in op
  order, the absmax of each variable that has that slot (none unless
  `layout` is "int8"); the keys of those rounded stochastically."""
  if not rule.state_layouts:
    return {}
  absmax = []
  if layout == "int8":
    for name in rule.slot_names:
      for slots in slot_dicts:
        absmax.extend(slot.absmax.handle
                      for slot in _as_list(slots.get(name))
                      if slot is not None)
  return {
      "state_dtype": layout,
      "absmax": absmax,
      "rounding_key": [key for key in keys if key is not None]
  }


# ----------------------------------------------------------------------------
# Twins.
# ----------------------------------------------------------------------------
class _Staged:
  """A variable as a twin sees it: `read_value()` reads the variable,
  `assign(value)` only records `value` (`stored_value()` returns it);
  `_run_twin` writes every recorded value once the twin has computed them
  all. (`_state.StagedQuantized` is the same for an 8-bit slot.)

  So a twin that fails half-way (eagerly) writes nothing, and in a graph no
  write of the variable or its slots runs before all their reads."""

  def __init__(self, variable, rounding_key=None):
    self._variable = variable
    self._rounding_key = rounding_key
    self.value = None

  @property
  def dtype(self):
    return self._variable.dtype

  @property
  def shape(self):
    return self._variable.shape

  @property
  def device(self):
    return self._variable.device

  def read_value(self):
    return self._variable.read_value()

  def assign(self, value):
    """Records `value`, narrowed to the variable's dtype (stochastically for
    a bfloat16 variable with a rounding key)."""
    if self.value is not None:
      raise RuntimeError("A twin assigns each variable once.")
    if value.dtype != self.dtype:
      if self._rounding_key is not None:
        value = _quantization.bfloat16_round_stochastic(value,
                                                        self._rounding_key)
      else:
        value = tf.cast(value, self.dtype)
    self.value = value
    return value

  def stored_value(self):
    return self.value

  def pending(self):
    return [self.value]

  def write(self):
    return self._variable.assign(self.value)


def _stage(value, signed):
  if value is None:
    return None
  if isinstance(value, _state.QuantizedState):
    return _state.StagedQuantized(value, signed)
  if isinstance(value, (list, tuple)):
    return [_stage(v, signed) for v in value]
  return _Staged(value)


def _run_twin(rule, var, grad, slots, inputs, rounding_key=None):
  """`rule.twin` for one variable, its writes after all of its values."""
  staged_var = _Staged(var, rounding_key)
  staged_slots = {
      name: _stage(value, signed=name not in rule.non_negative_slots)
      for name, value in slots.items()
  }
  rule.twin(staged_var, grad, **staged_slots, **inputs)
  staged = [staged_var]
  for value in staged_slots.values():
    staged.extend(v for v in _as_list(value) if v is not None)
  staged = [s for s in staged if s.value is not None]
  with tf.control_dependencies([t for s in staged for t in s.pending()]):
    writes = [s.write() for s in staged]
  return tf.group(*writes)


class _TwinLocks:
  """One lock per variable, held by eager twins under `use_locking=True`.

  An eager twin is a sequence of ops (read, compute, assign); two threads
  updating one variable would interleave them and lose updates, while the
  fused op holds the variables' locks for the whole update. The twins of a
  call take the locks of all of its variables, in one global order (by
  `id`), so that calls sharing variables cannot deadlock.

  These locks serialise the package's own eager updates; they do not
  exclude a fused op or another writer (`assign`) running at the same time,
  and inside a graph (tf.function, TF1, XLA) no Python code runs when the
  update does, so none is taken there.
  """

  def __init__(self):
    self._guard = threading.Lock()
    self._locks = {}  # id(variable) -> threading.Lock

  def _lock(self, variable):
    key = id(variable)
    with self._guard:
      lock = self._locks.get(key)
      if lock is None:
        lock = self._locks[key] = threading.Lock()
        try:  # forgotten with the variable, before its id can be reused
          weakref.finalize(variable, self._forget, key)
        except TypeError:  # not weakly referenceable: kept
          pass
      return lock

  def _forget(self, key):
    with self._guard:
      self._locks.pop(key, None)

  @contextlib.contextmanager
  def hold(self, variables):
    """Holds the locks of `variables` (eagerly; a graph takes none)."""
    if not variables or not tf.executing_eagerly():
      yield
      return
    unique = sorted({id(v): v for v in variables}.items())
    locks = [self._lock(v) for _, v in unique]
    for lock in locks:
      lock.acquire()
    try:
      yield
    finally:
      for lock in reversed(locks):
        lock.release()


_TWIN_LOCKS = _TwinLocks()


def hold_twin_locks(variables, use_locking):
  """A context that, eagerly and with `use_locking`, holds the twin locks of
  `variables` (`_TwinLocks`)."""
  return _TWIN_LOCKS.hold(list(variables) if use_locking else [])


# ----------------------------------------------------------------------------
# Ops.
# ----------------------------------------------------------------------------
def _op(name):
  return getattr(_library.load_library(), name)


def _per_variable_slot_handles(rule, slots):
  return {
      name: ([_stored(slot).handle
              for slot in _as_list(slots.get(name))] if name in rule.list_slots
             else _stored(slots[name]).handle) for name in rule.slot_names
  }


def _plan(variables, grads, fused, layouts, stochastic_rounding):
  """[(indices, run fused)] in the order the groups run."""
  if fused is False:
    return [(tuple(range(len(variables))), False)] if variables else []
  groups = _grouping.multi_tensor_groups(variables, grads, layouts,
                                         stochastic_rounding)
  if fused:
    for group in groups:
      if group.reason is not None:
        raise _dispatch.unavailable_error(group.reason)
  return [(group.indices, group.reason is None) for group in groups]
