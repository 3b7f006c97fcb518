"""What every front end's base class gives the algorithm definitions.

The algorithms (`sgd.py`, `adam.py`, `adamw.py`, `lamb.py`, `adafactor.py`,
`lion.py` in this package) are written once, as mixins that only speak
this protocol. Each front end (Keras 3 in `keras3/`, tf-keras in `tf_keras/`,
DTensor meshes in `tf_opt_plugin.dtensor`) derives its base class from
`AlgorithmHost` and implements the primitives marked "front end", so
`class Adam(AdamAlgorithm, FrontEndOptimizer)` is a complete optimizer.

No class names itself: with `name=None` each front end's Keras derives the
default name from the class, as it does for its own optimizers (Keras 3:
"adam", "adam_1", "adam_w", "sgd"; tf-keras: "Adam", "AdamW", "SGD"), so slot
paths are those of Keras's own classes.

`checked_gradients` is the one validation of an `apply()`'s gradients that
every front end runs before anything is written.
"""

import numbers
import re

import tensorflow as tf

from tf_opt_plugin import ops
from tf_opt_plugin.ops import _dispatch
from tf_opt_plugin.optimizers import _hyperparameters

# Variables with fewer elements keep float32 state under `state_dtype="int8"`
# (bitsandbytes' `min_8bit_size`).
INT8_MIN_ELEMENTS = 4096


class AlgorithmHost:
  """Helpers shared by the front ends, and the primitives they provide."""

  # Set by optimizers whose fused op applies the front end's decoupled weight
  # decay itself (Adam, AdamW, Lion), saving a pass over the variable.
  _fuses_weight_decay = False

  # The algorithm's own constructor arguments, in signature order: {name:
  # check}, a `_hyperparameters` check (`check(name, value)` returns the
  # value or raises naming it). `set_hyperparameters` checks and stores them,
  # the front end's `get_config` returns them (`hyperparameter_config`).
  HYPERPARAMETER_CHECKS = {}

  # ----------------------------------------------------------------------
  # Front end: primitives each base class implements.
  # ----------------------------------------------------------------------
  schedule_type = None  # the front end's LearningRateSchedule class

  def variable_index(self, variable):
    """Position of `variable` (model or per-device copy) in the var list."""
    raise NotImplementedError

  def model_variable(self, variable):
    """The model variable being trained, given it or its per-device copy."""
    raise NotImplementedError

  def variable_path(self, variable):
    """The name that exclusion regexes are searched in."""
    raise NotImplementedError

  def add_slots(self, var_list, names):
    """One slot per variable and name, shaped like the variable.

    `names` are the Keras 3 names ("momentum", "velocity", ...); a front end
    may map them to its own. Returns one list per name.
    """
    raise NotImplementedError

  def add_slot(self, variable, name, reduced_axis=None):
    """One zero-initialised slot of `variable`, named `name`.

    Shaped like the variable, or, with `reduced_axis`, like the variable
    without that axis (on a mesh, with the variable's sharding of the other
    axes).
    """
    raise NotImplementedError

  def add_state_variable(self, variable, name, dtype, shape=None):
    """One zero-initialised optimizer variable of `dtype` for `variable`.

    Named after `name` as the front end names the slot `name` (Keras 3:
    `<path>_<name>`; tf-keras: `<name>/<variable>`), shaped like the
    variable (and, on a mesh, laid out like it) or, with `shape`, of that
    shape (on a mesh, replicated), on the variable's device.
    """
    raise NotImplementedError

  def sharded_layout(self, variable):
    """The DTensor layout of `variable` if it shards an axis, else None."""
    del variable
    return None

  def current_learning_rate(self):
    """The learning rate of the step being applied (a tensor or float)."""
    raise NotImplementedError

  def as_tf_variable(self, slot):
    """The `tf.Variable` an op can update, given a slot."""
    return slot

  def skips_variable(self, variable):
    """Whether `variable` is overwritten by its gradient, never optimized."""
    del variable
    return False

  def serialize_hyperparameter(self, value):
    raise NotImplementedError

  @classmethod
  def deserialize_hyperparameter(cls, value, custom_objects=None):
    raise NotImplementedError

  # ----------------------------------------------------------------------
  # Shared helpers.
  # ----------------------------------------------------------------------
  def set_hyperparameters(self, **values):
    """Checks the algorithm's constructor arguments and stores each one.

    `value` of `name` is checked by `HYPERPARAMETER_CHECKS[name](name,
    value)`, through `check_hyperparameter` where it may be a schedule
    (`schedulable_hyperparameters`), and stored as the attribute `name`.
    """
    schedulable = self.schedulable_hyperparameters()
    for name, value in values.items():
      check = self.HYPERPARAMETER_CHECKS[name]
      if name in schedulable:
        value = self.check_hyperparameter(name, value, check)
      else:
        value = check(name, value)
      setattr(self, name, value)

  def hyperparameter_config(self):
    """The config entries of the algorithm's `HYPERPARAMETER_CHECKS`."""
    return {
        name: self.serialize_hyperparameter(getattr(self, name))
        for name in self.HYPERPARAMETER_CHECKS
    }

  def check_hyperparameter(self, name, value, check):
    """Validates a float hyperparameter; schedules and callables pass as is."""
    if isinstance(value, self.schedule_type) or callable(value):
      return value
    if not isinstance(value, (numbers.Real, str)) and hasattr(
        value, "__float__"):  # eager tensors, variables, numpy scalars
      try:
        value = float(value)
      except (TypeError, ValueError):
        raise TypeError(
            f"`{name}` must be a float, an eager scalar tensor, a "
            f"LearningRateSchedule or a callable. Received: {name}={value!r}"
        ) from None
    return check(name, value)

  def check_base_arguments(self, *, fused, learning_rate, weight_decay,
                           clipnorm, clipvalue, global_clipnorm):
    """Checks the arguments every front end's base takes.

    Returns `learning_rate` and `weight_decay` (eager tensors as floats).
    """
    _hyperparameters.check_fused(fused)
    learning_rate = self.check_hyperparameter(
        "learning_rate", learning_rate, _hyperparameters.check_non_negative)
    if weight_decay is not None:
      weight_decay = self.check_hyperparameter(
          "weight_decay", weight_decay, _hyperparameters.check_non_negative)
    for name, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                        ("global_clipnorm", global_clipnorm)):
      if value is not None:
        _hyperparameters.check_positive(name, value)
    return learning_rate, weight_decay

  def current_value(self, hyperparameter):
    """A float, a schedule (at the real step count) or a callable's value."""
    if isinstance(hyperparameter, self.schedule_type):
      return hyperparameter(self.iterations)
    if callable(hyperparameter) and not isinstance(hyperparameter,
                                                   (tf.Variable, tf.Tensor)):
      return hyperparameter()
    return hyperparameter

  def learning_rate_for_step(self, learning_rate):
    """`learning_rate` as passed to `update_step`; None: the current one."""
    if learning_rate is None:
      return self.current_learning_rate()
    return learning_rate

  def step_count(self):
    """The 1-based number of the update being applied."""
    return self.iterations + 1

  def slot(self, slots, variable):
    """What the ops take for `variable`'s entry in the slot list `slots`.

    A tf.Variable, or for 8-bit state an `ops.QuantizedState` of the codes'
    and the absmax's tf.Variables.
    """
    slot = slots[self.variable_index(variable)]
    if is_quantized(slot):
      # Not `type(slot)`: tf-keras's attribute tracking wraps the tuple.
      return ops.QuantizedState(*(self.as_tf_variable(s) for s in slot))
    return self.as_tf_variable(slot)

  def state_format(self, variable):
    """The dtype of `variable`'s state slots under `state_dtype`, or "int8".

    The rule of `state_dtype` (None: the variable's dtype; "float32",
    "bfloat16": that dtype; "int8": `ops.QuantizedState` from
    `INT8_MIN_ELEMENTS` elements on, float32 below, as bitsandbytes keeps
    small tensors in 32 bits, where the 8-bit codes save little and the
    absmax overhead grows).

    Raises:
      ValueError: a float64 variable with a reduced `state_dtype` (the ops
        keep float64 state only), or 8-bit state for a variable a DTensor
        layout shards (blocks of 256 elements of the global tensor would be
        cut by the shards).
    """
    dtype = variable_dtype(variable)
    state_dtype = getattr(self, "state_dtype", None)
    if state_dtype is None:
      return dtype
    if dtype == tf.float64:
      raise ValueError(
          "`state_dtype` must be None for float64 variables (their state is "
          f"float64). Received: state_dtype={state_dtype!r} for the "
          f"variable {_describe(variable)} of dtype float64")
    if state_dtype != "int8":
      return tf.as_dtype(state_dtype)
    size = tf.TensorShape(variable.shape).num_elements()
    if size is None or size < INT8_MIN_ELEMENTS:
      return tf.float32
    layout = self.sharded_layout(variable)
    if layout is not None:
      raise ValueError(
          "`state_dtype` must be None, 'float32' or 'bfloat16' for a variable "
          "whose DTensor layout shards an axis (its 8-bit blocks would differ "
          "from the single-device ones). Received: state_dtype='int8' for the "
          f"variable {_describe(variable)} with layout {layout}")
    return "int8"

  def rounding_keys(self, variables):
    """The keys of this step's stochastic rounding of `variables`
    (`stochastic_rounding`), or None (round to nearest).

    Key of variable i: `ops.stochastic_rounding_key(seed, step, i)`, with the
    global seed (`tf.random.set_seed` / `keras.utils.set_random_seed`; 0
    when unset) read when the optimizer is built, the 1-based step and the
    variable's index in the optimizer's variable list: the same bits on
    every run with the same seed, and after a checkpoint restore.
    """
    if not getattr(self, "stochastic_rounding", False):
      return None
    if getattr(self, "_rounding_seed", None) is None:
      self._rounding_seed = tf.compat.v1.random.get_seed(None)[0] or 0
    return [
        ops.stochastic_rounding_key(self._rounding_seed, self.step_count(),
                                    self.variable_index(v)) for v in variables
    ]

  def add_state_slots(self, var_list, names):
    """`add_slots` in the layout `state_dtype` chooses per variable.

    Returns one list per name (Keras 3 names: "momentum", "velocity",
    "velocity_hat"), each entry a slot variable of the dtype
    `state_format` gives, an `ops.QuantizedState` of a `uint8` codes
    variable named as the slot and a float32 absmax variable named
    `<slot>_absmax` of `ops.absmax_shape(variable.shape)`, or None for a
    variable the front end never optimizes (`skips_variable`). Per
    variable, its slots in the order of `names`, each absmax right after
    its codes: the order `add_slots` creates them in, so
    `optimizer.variables` (and the checkpoints that list them by position)
    keep today's order with `state_dtype=None`.
    """
    var_list = list(var_list)
    # The seed of stochastic rounding, fixed when the state is made.
    self._rounding_seed = tf.compat.v1.random.get_seed(None)[0] or 0
    if getattr(self, "state_dtype", None) is None:
      return self.add_slots(var_list, names)
    # Every variable's layout is checked before any slot is made.
    formats = [
        None if self.skips_variable(v) else self.state_format(v)
        for v in var_list
    ]
    slots = [[] for _ in names]
    for variable, state_format in zip(var_list, formats):
      for slot_list, name in zip(slots, names):
        if state_format is None:
          slot_list.append(None)
        elif state_format == "int8":
          codes = self.add_state_variable(variable, name, tf.uint8)
          absmax = self.add_state_variable(
              variable, f"{name}_absmax", tf.float32,
              shape=ops.absmax_shape(tf.TensorShape(variable.shape)))
          slot_list.append(ops.QuantizedState(codes, absmax))
        else:
          slot_list.append(self.add_state_variable(variable, name,
                                                   state_format))
    return slots

  def excluded(self, patterns, variable):
    """Whether a regex of `patterns` is found in `variable`'s path."""
    return _hyperparameters.matches_any(patterns, self.variable_path(variable))

  def applies_weight_decay(self, variable):
    """Whether the front end's `weight_decay` is set and not excluded for
    `variable`."""
    return (self.weight_decay is not None and
            self._use_weight_decay(self.model_variable(variable)))

  def current_weight_decay(self):
    """The front end's `weight_decay` for this step (0 when unset)."""
    if self.weight_decay is None:
      return 0.0
    return self.current_value(self.weight_decay)

  def decoupled_weight_decay(self, variable):
    """The front end's `weight_decay` for `variable` (0 where excluded)."""
    if not self.applies_weight_decay(variable):
      return 0.0
    return self.current_weight_decay()

  def decay_separately(self, variable, learning_rate):
    """`w -= lr * weight_decay * w` before the step, unless the op fuses it."""
    if self._fuses_weight_decay:
      return
    decay = self.decoupled_weight_decay(variable)
    if isinstance(decay, float) and decay == 0.0:
      return
    dtype = variable.dtype
    factor = tf.cast(learning_rate, dtype) * tf.cast(decay, dtype)
    variable.assign_sub(variable.read_value() * factor)

  def update_steps(self, gradients, variables, learning_rate=None):
    """One step of each of `variables`, all on one device.

    The front ends call this once per device with that device's variables
    (or `update_step` per variable where batching does not apply). This
    default calls `update_step` per variable; Adam, AdamW, Lamb and Lion
    batch the variables into multi-tensor ops.
    """
    # tf-keras's `update_step` takes no learning rate.
    extra = () if learning_rate is None else (learning_rate,)
    for gradient, variable in zip(gradients, variables, strict=True):
      self.update_step(gradient, variable, *extra)

  @classmethod
  def schedulable_hyperparameters(cls):
    """Constructor arguments that may be schedules (serialized as dicts)."""
    return ("learning_rate", "weight_decay")

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    for key in cls.schedulable_hyperparameters():
      if key in config:
        config[key] = cls.deserialize_hyperparameter(config[key],
                                                     custom_objects)
    return cls(**config)


def checked_gradients(grads, variables, *, cast):
  """`grads` for `variables`, checked whole before anything is written.

  Every front end's `apply()` calls this first, so a rejected call changes
  nothing: no variable, slot or `iterations` moves, and a retry applies one
  step, not two. Per (gradient, variable) pair, None gradients aside:

    * there are as many gradients as variables (ValueError naming both
      lengths);
    * the variable is floating-point (TypeError: no update of an integer
      variable exists, and clipping would fail first, naming no input);
    * no variable is listed twice (ValueError naming both positions: the
      multi-tensor ops refuse it, so every optimizer does);
    * with `cast` (Keras 3, which casts each gradient to its variable's
      dtype), the gradient's dtype is real: floating-point, integer or bool
      (TypeError otherwise); without (tf-keras, which does not cast), it is
      the variable's (InvalidArgumentError, the error tf-keras raises);
    * a dense gradient has the variable's shape, or one that broadcasts to
      it (then it is broadcast: Keras's elementwise math does the same); a
      `tf.IndexedSlices` has rows shaped like the variable's and indices in
      [0, rows). Shapes known while tracing raise ValueError; what only the
      values tell (an unknown shape, the indices) is an assertion,
      InvalidArgumentError when run, returned for the caller to make every
      write of the call depend on.

  Args:
    grads: gradients (tensors, NumPy arrays, `tf.IndexedSlices` or None).
    variables: their variables, in the same order.
    cast: whether the front end casts gradients to the variable's dtype.

  Returns:
    `(grads, assertions)`: the gradients as tensors in their own dtype (None
    stays None, sparse stays sparse; `cast_gradient` casts them where the
    update needs it), and the assertion ops (none eagerly, where they have
    already run): run the whole update under
    `tf.control_dependencies(assertions)`.
  """
  grads, variables = list(grads), list(variables)
  if len(grads) != len(variables):
    raise ValueError("`grads` must hold one gradient per variable. Received: "
                     f"{len(grads)} gradients and {len(variables)} variables")
  checked, assertions, positions = [], [], {}
  for i, (grad, variable) in enumerate(zip(grads, variables)):
    if grad is None:
      checked.append(None)
      continue
    name = f"`grads[{i}]`"
    var_name = _describe(variable)
    var_dtype = variable_dtype(variable)
    if not var_dtype.is_floating:
      raise TypeError(
          f"`var[{i}]` ({var_name}) must be a floating-point variable. "
          f"Received: var.dtype={var_dtype.name}")
    first = positions.setdefault(id(_stored_variable(variable)), i)
    if first != i:
      raise ValueError(
          f"`var[{first}]` and `var[{i}]` must be distinct variables. "
          f"Received: the variable {var_name} twice")
    if not isinstance(grad, tf.IndexedSlices):
      # A NumPy array keeps its dtype (as in Keras's ops); a Python list or
      # number takes the variable's, as it would as an op's operand.
      grad = tf.convert_to_tensor(
          grad, dtype_hint=None if hasattr(grad, "dtype") else var_dtype)
    grad_dtype = tf.as_dtype(grad.dtype).base_dtype
    if cast:
      if not (grad_dtype.is_floating or grad_dtype.is_integer or
              grad_dtype == tf.bool):
        raise TypeError(
            f"{name} must have a real dtype (floating-point, integer or "
            f"bool), cast to the {var_dtype.name} of its variable "
            f"{var_name}. Received: grad.dtype={grad_dtype.name}")
    elif grad_dtype != var_dtype:
      raise tf.errors.InvalidArgumentError(
          None, None,
          f"{name} must have the dtype of its variable {var_name} (tf-keras "
          f"optimizers do not cast gradients). Received: "
          f"var.dtype={var_dtype.name}, grad.dtype={grad_dtype.name}")
    var_shape = tf.TensorShape(variable.shape)
    if isinstance(grad, tf.IndexedSlices):
      make_assertions = _check_sparse_shape(name, var_name, grad, var_shape)
    else:
      grad, make_assertions = _check_dense_shape(name, var_name, grad,
                                                 var_shape)
    # XLA drops assertions, and DTensor has no layouts for them; there the
    # ops' own checks remain.
    if make_assertions is not None and not (_dispatch.is_dtensor(variable) or
                                            _dispatch.in_xla_context()):
      assertions += make_assertions()
    checked.append(grad)
  if tf.executing_eagerly():
    assertions = []  # they have run
  return checked, assertions


def cast_gradient(gradient, variable):
  """`gradient` (dense or `tf.IndexedSlices`) in `variable`'s dtype."""
  dtype = variable_dtype(variable)
  if gradient is None or tf.as_dtype(gradient.dtype).base_dtype == dtype:
    return gradient
  if isinstance(gradient, tf.IndexedSlices):
    return tf.IndexedSlices(tf.cast(gradient.values, dtype), gradient.indices,
                            gradient.dense_shape)
  return tf.cast(gradient, dtype)


def is_quantized(slot):
  """Whether a slot entry is an `ops.QuantizedState` (a NamedTuple)."""
  return isinstance(slot, tuple) and hasattr(slot, "_fields")


def _stored_variable(variable):
  """A keras.Variable's tf.Variable; any other variable itself."""
  stored = getattr(variable, "_value", None)
  return stored if isinstance(stored, tf.Variable) else variable


def variable_dtype(variable):
  """The dtype a variable stores, also while an autocast scope is active."""
  variable = _stored_variable(variable)
  return tf.as_dtype(getattr(variable, "true_dtype", None) or
                     variable.dtype).base_dtype


def _describe(variable):
  name = getattr(variable, "path", None) or getattr(variable, "name", None)
  return f"`{name}`" if name is not None else "(unnamed)"


def _shape_text(shape):
  shape = tf.TensorShape(shape)
  if shape.rank is None:
    return "<unknown>"
  return "[" + ",".join(
      "?" if d is None else str(d) for d in shape.as_list()) + "]"


def _check_dense_shape(name, var_name, grad, var_shape):
  """Checks a dense gradient's shape against its variable's.

  Returns `(grad, make_assertions)`: the gradient, broadcast to the
  variable's shape where its static shape broadcasts to it (Keras's Adam,
  AdamW, Lamb, Lion and tf-keras's optimizers broadcast such a gradient in
  their elementwise math; broadcasting first is the same update), and None
  or a function making the assertion of a shape only known at run time.
  Raises ValueError for any other static mismatch.
  """
  message = (f"{name} must have the shape of its variable {var_name}. "
             f"Received: var.shape={_shape_text(var_shape)}, "
             f"grad.shape={_shape_text(grad.shape)}")
  if not grad.shape.is_compatible_with(var_shape):
    if not _broadcasts_to(grad.shape, var_shape):
      raise ValueError(message)
    return tf.broadcast_to(grad, var_shape), None
  if grad.shape.is_fully_defined() or not var_shape.is_fully_defined():
    return grad, None
  return grad, lambda: [
      tf.debugging.assert_equal(
          tf.shape(grad, out_type=tf.int64),
          tf.constant(var_shape.as_list(), tf.int64), message=message +
          " (the shape it has when run is printed below)")
  ]


def _broadcasts_to(shape, target):
  """Whether the static `shape` broadcasts to the fully known `target`."""
  if shape.rank is None or not target.is_fully_defined():
    return False
  if shape.rank > target.rank:
    return False
  return all(
      d in (1, t)
      for d, t in zip(reversed(shape.as_list()), reversed(target.as_list())))


def _check_sparse_shape(name, var_name, grad, var_shape):
  """Raises ValueError for rows statically shaped unlike the variable's;
  returns None, or a function making the run-time assertions (row shape
  where unknown, indices in range)."""
  values_shape = tf.TensorShape(grad.values.shape)
  message = (f"{name} (a tf.IndexedSlices) must have rows shaped like those "
             f"of its variable {var_name}. Received: "
             f"var.shape={_shape_text(var_shape)}, "
             f"grad.values.shape={_shape_text(values_shape)}")
  if var_shape.rank is None:
    return None
  if var_shape.rank == 0 or not values_shape.is_compatible_with(
      tf.TensorShape([None]).concatenate(var_shape[1:])):
    raise ValueError(message)
  rows = var_shape[0]

  def assertions():
    result = []
    if (not values_shape[1:].is_fully_defined() and
        var_shape[1:].is_fully_defined()):
      result.append(
          tf.debugging.assert_equal(
              tf.shape(grad.values, out_type=tf.int64)[1:],
              tf.constant(var_shape[1:].as_list(), tf.int64), message=message))
    if rows is not None:
      # Out of range, TF's scatter kernels raise on CPU and drop the row on
      # GPU; either way, after other variables were written.
      indices = tf.cast(grad.indices, tf.int64)
      result.append(
          tf.debugging.
          Assert(tf.reduce_all(tf.logical_and(indices >= 0, indices < rows)), [
              f"{name} (a tf.IndexedSlices) must have indices in [0, {rows}), "
              f"the rows of its variable {var_name}. Received: indices=",
              indices
          ], summarize=10))
    return result

  return assertions


def without_axis(items, axis):
  """`items` (dims or sharding specs) minus the entry at `axis`.

  The shape (or layout) of an accumulator that reduces `axis` of its
  variable.
  """
  items = list(items)
  del items[axis]
  return items


def name_without_output_suffix(name):
  """A variable name without its ":0", as TF Model Garden's LAMB matches."""
  return re.sub(r":\d+$", "", name)
