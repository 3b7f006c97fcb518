"""What every front end's base class gives the algorithm definitions.

The algorithms (`sgd.py`, `adam.py`, `adamw.py`, `lamb.py`, `adafactor.py`,
`lion.py` in this package) are written once, as mixins that only speak
this protocol. Each front end (Keras 3 in `keras3/`, tf-keras in `tf_keras/`,
DTensor meshes in `tf_opt_plugin.dtensor`) derives its base class from
`AlgorithmHost` and implements the primitives marked "front end", so
`class Adam(AdamAlgorithm, FrontEndOptimizer)` is a complete optimizer.

A front-end class names its default `name` where it is defined:
`class Adam(AdamAlgorithm, Optimizer, default_name="adam")`.
"""

import numbers
import re

import tensorflow as tf

from tf_opt_plugin.optimizers import _hyperparameters


class AlgorithmHost:
  """Helpers shared by the front ends, and the primitives they provide."""

  _default_name = None
  # Set by optimizers whose fused op applies the front end's decoupled weight
  # decay itself (Adam, AdamW, Lion), saving a pass over the variable.
  _fuses_weight_decay = False

  def __init_subclass__(cls, default_name=None, **kwargs):
    super().__init_subclass__(**kwargs)
    if default_name is not None:
      cls._default_name = default_name

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
  def resolve_name(self, name):
    return name if name is not None else self._default_name

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
    if callable(hyperparameter) and not isinstance(
        hyperparameter, (tf.Variable, tf.Tensor)):
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
    """The tf.Variable of `variable`'s entry in the slot list `slots`."""
    return self.as_tf_variable(slots[self.variable_index(variable)])

  def excluded(self, patterns, variable):
    """Whether a regex of `patterns` is found in `variable`'s path."""
    return _hyperparameters.matches_any(patterns, self.variable_path(variable))

  def applies_weight_decay(self, variable):
    """Whether the front end's `weight_decay` is set and not excluded for
    `variable`."""
    return (self.weight_decay is not None
            and self._use_weight_decay(self.model_variable(variable)))

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
    for gradient, variable in zip(gradients, variables):
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
