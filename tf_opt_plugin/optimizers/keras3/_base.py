"""The base of the Keras 3 optimizers: Keras's `apply()`, distribution-correct.

Keras 3.15 clips, decays and checks for finite gradients per replica, before
the all-reduce, and puts a `merge_call` inside a `cond` for gradient
accumulation and EMA overwrite (defects 1-3 in docs/keras_defects.md). Here one
`apply()` runs:

  replica context   check every (gradient, variable) pair: lengths, dtypes,
                      shapes (`_host.checked_gradients`); a rejected call
                      writes nothing
                    set aside the gradients of `overwrite_with_gradient`
                      variables; unscale the others (loss scale)
                    sum the gradients over replicas
                    sum repeated indices of sparse gradients
                    gate = all summed gradients finite   (LossScaleOptimizer)
                    overwrite the `overwrite_with_gradient` variables (gated)
                    average with the accumulators        (accumulation)
                    clip, cast to the variable's dtype (as Keras's update
                      steps do), evaluate the learning rate
  one merge_call    per variable, on its own device:
                      a real step:  decay, update_step, accumulator
                                    reset, constraint, EMA, EMA overwrite
                      otherwise:    accumulate (or skip)
                    or, without accumulation and unless
                    TF_OPT_PLUGIN_MULTI_TENSOR=0, per device (`_by_device.py`):
                      decay, update_steps (one multi-tensor op per dtype
                      for Adam, AdamW, Lamb, Lion), constraints, EMA; under the
                      gate in one cond
  replica context   iterations += 1 (not for a step the gate skipped)

Every replica sees the same summed gradients, so every replica takes the same
decisions, and the only `cond` lives inside per-device update functions.
Under accumulation the optimizer's step count, the schedules, weight decay,
clipping and EMA advance once per real step.
"""

import functools

import keras
import numpy as np
import tensorflow as tf

from tf_opt_plugin.ops import _inputs
from tf_opt_plugin.optimizers import _by_device
from tf_opt_plugin.optimizers import _host

_LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule


def tf_variable(variable):
  """The `tf.Variable` behind a `keras.Variable` (never an autocast view)."""
  if isinstance(variable, keras.Variable):
    return variable._value  # pylint: disable=protected-access
  return variable


def _all_true(*conditions):
  conditions = [c for c in conditions if c is not None]
  if not conditions:
    return None
  return functools.reduce(tf.logical_and, conditions)


class Optimizer(_host.AlgorithmHost, keras.optimizers.Optimizer):
  """Keras 3 optimizer whose update runs a tf_opt_plugin algorithm.

  The algorithm mixins of `tf_opt_plugin.optimizers` implement `build()`
  (slots with Keras's names and order) and `update_step(gradient, variable,
  learning_rate)`, which calls one `tf_opt_plugin.ops.resource_apply_*`
  function; this class is the Keras 3 side of `_host.AlgorithmHost`.

  Args:
    fused: None runs the fused op where it can run and the pure-TF twin
      elsewhere (XLA, DTensor, devices without a kernel); True raises
      `FusedOpUnavailableError` where the op cannot run; False forces the
      twin.
    **kwargs: the Keras 3 base arguments, with their Keras meaning.

  A subclass supplies `update_step` (and `build` for slots); clipping,
  decay, accumulation, EMA, loss scaling and distribution come from here:

  >>> class SignSGD(Optimizer):  # w <- w - lr * sign(g)
  ...   def update_step(self, gradient, variable, learning_rate=None):
  ...     lr = self.learning_rate_for_step(learning_rate)
  ...     variable.assign_sub(tf.cast(lr, variable.dtype) * tf.sign(gradient))
  >>> w = keras.Variable([1.0, -2.0])
  >>> opt = SignSGD(learning_rate=0.5, clipvalue=1.0)
  >>> opt.apply([tf.constant([3.0, -0.1])], [w])
  >>> w.numpy().tolist(), opt.name, int(opt.iterations)
  ([0.5, -1.5], 'sign_sgd', 1)
  """

  schedule_type = _LearningRateSchedule

  def __init__(self, learning_rate, *, fused=None, weight_decay=None,
               clipnorm=None, clipvalue=None, global_clipnorm=None,
               gradient_accumulation_steps=None, **kwargs):
    learning_rate, weight_decay = self.check_base_arguments(
        fused=fused, learning_rate=learning_rate, weight_decay=weight_decay,
        clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm)
    if gradient_accumulation_steps is not None and (
        isinstance(gradient_accumulation_steps, bool) or
        not isinstance(gradient_accumulation_steps, (int, np.integer))):
      raise TypeError(
          "`gradient_accumulation_steps` must be an integer >= 2. Received: "
          f"gradient_accumulation_steps={gradient_accumulation_steps!r}")
    super().__init__(learning_rate=learning_rate, weight_decay=weight_decay,
                     clipnorm=clipnorm, clipvalue=clipvalue,
                     global_clipnorm=global_clipnorm,
                     gradient_accumulation_steps=gradient_accumulation_steps,
                     **kwargs)
    self.fused = fused

  # ----------------------------------------------------------------------
  # The AlgorithmHost primitives.
  # ----------------------------------------------------------------------
  def current_learning_rate(self):
    return self._get_current_learning_rate()

  def _get_current_learning_rate(self):
    # Keras evaluates schedules at the micro-step count, which under gradient
    # accumulation runs `gradient_accumulation_steps` times too fast.
    if isinstance(self._learning_rate, keras.Variable):
      return self._learning_rate
    return self.current_value(self._learning_rate)

  def variable_index(self, variable):
    return self._get_variable_index(variable)

  def model_variable(self, variable):
    return self._trainable_variables[self._get_variable_index(variable)]

  def variable_path(self, variable):
    return _path(self.model_variable(variable))

  def add_slots(self, var_list, names):
    return self.add_optimizer_variables(var_list, list(names))

  def add_slot(self, variable, name, reduced_axis=None):
    if reduced_axis is None:
      return self.add_variable_from_reference(variable, name)
    # Keras's naming for reference slots, for a slot of another shape; on
    # the variable's device, as Keras puts a reference slot (a fused op
    # needs its variable and slots on one device).
    with self._distribution_strategy.extended.colocate_vars_with(
        tf_variable(variable)):
      return self.add_variable(
          tuple(_host.without_axis(variable.shape,
                                   reduced_axis)), dtype=variable.dtype,
          name=f"{_path(variable).replace('/', '_')}_{name}")

  def add_state_variable(self, variable, name, dtype, shape=None):
    # Keras's naming and placement of a reference slot, in another dtype
    # (and, for an 8-bit block's absmax, another shape).
    with self._distribution_strategy.extended.colocate_vars_with(
        tf_variable(variable)):
      return self.add_variable(
          tuple(variable.shape if shape is None else shape),
          dtype=tf.as_dtype(dtype).name, layout=(getattr(
              variable, "_layout", None) if shape is None else None),
          name=f"{_path(variable).replace('/', '_')}_{name}")

  def as_tf_variable(self, slot):
    return tf_variable(slot)

  def skips_variable(self, variable):
    return self._overwrite_variable_with_gradient(variable)

  def serialize_hyperparameter(self, value):
    """Config form of a float, a LearningRateSchedule or a callable."""
    if isinstance(value, _LearningRateSchedule):
      return keras.optimizers.schedules.serialize(value)
    if callable(value):
      return keras.saving.serialize_keras_object(value)
    return value

  @classmethod
  def deserialize_hyperparameter(cls, value, custom_objects=None):
    if isinstance(value, dict):
      return keras.saving.deserialize_keras_object(
          value, custom_objects=custom_objects)
    return value

  # ----------------------------------------------------------------------
  # The apply pipeline (see the module docstring).
  # ----------------------------------------------------------------------
  def apply(self, grads, trainable_variables=None):
    self.apply_with_gate(grads, trainable_variables)

  def apply_with_gate(self, grads, trainable_variables=None, gate_fn=None,
                      loss_scale=None):
    """`apply()`, with what `LossScaleOptimizer` needs.

    Args:
      grads: the gradients, one per variable (None for none).
      trainable_variables: the variables; None: those of `build()`.
      gate_fn: None, or a function of the gradients summed over replicas
        (those that overwrite their variables included) returning a bool
        tensor; False skips the whole step: nothing is written and
        `iterations` does not move.
      loss_scale: None, or a scalar that divides every gradient except those
        of variables marked `overwrite_with_gradient` (float8 scales and
        amax histories: values to store, not derivatives of the scaled
        loss), which Keras leaves unscaled.

    Returns:
      The gate tensor (None without `gate_fn`).

    Raises:
      ValueError, TypeError, InvalidArgumentError: for gradients that do not
        fit their variables (`_host.checked_gradients`), before anything is
        written or built.
    """
    grads = list(grads)
    if not grads:
      return None
    if trainable_variables is None:
      if not self.built:
        raise ValueError(
            "When passing `grads` without `trainable_variables`, the "
            "optimizer must already be built. Call "
            "`optimizer.build(trainable_variables)` first.")
      trainable_variables = self._trainable_variables
      known = True
    else:
      trainable_variables = list(trainable_variables)
      known = False
    # Everything that can reject the call runs before anything is written;
    # what only a run can tell is an assertion every write depends on.
    grads, assertions = _host.checked_gradients(grads, trainable_variables,
                                                cast=True)
    if not known:
      if not self.built:
        with keras.name_scope(self.name, caller=self):
          self.build(trainable_variables)
        self.built = True
      self._check_variables_are_known(trainable_variables)
    with tf.control_dependencies(assertions):
      return self._apply_checked(grads, trainable_variables, gate_fn,
                                 loss_scale)

  def _apply_checked(self, grads, trainable_variables, gate_fn, loss_scale):
    gate = None
    with keras.name_scope(self.name, caller=self):
      grads, trainable_variables = self._filter_empty_gradients(
          grads, trainable_variables)
      overwrite = [
          self._overwrite_variable_with_gradient(v) for v in trainable_variables
      ]
      overwritten = ([g for g, o in zip(grads, overwrite) if o],
                     [v for v, o in zip(trainable_variables, overwrite) if o])
      grads = [g for g, o in zip(grads, overwrite) if not o]
      trainable_variables = [
          v for v, o in zip(trainable_variables, overwrite) if not o
      ]
      # Only the gradients that are derivatives of the (scaled) loss.
      if self.loss_scale_factor is not None:
        inverse = 1.0 / self.loss_scale_factor
        grads = [
            map_values(g, lambda x: x * tf.cast(inverse, x.dtype))
            for g in grads
        ]
      if loss_scale is not None:
        grads = [
            map_values(g, lambda x: x / tf.cast(loss_scale, x.dtype))
            for g in grads
        ]
      gate = self._backend_apply_gradients(grads, trainable_variables, gate_fn,
                                           overwritten)
    self._iterations.assign_add(1 if gate is
                                None else tf.cast(gate, self._iterations.dtype))
    return gate

  def _backend_apply_gradients(self, grads, trainable_variables, gate_fn=None,
                               overwritten=((), ())):
    overwrite_grads, overwrite_variables = (list(x) for x in overwritten)
    # The gate sees every gradient, summed over replicas like the others so
    # that every replica decides alike; the overwrite itself uses the local
    # gradient, as Keras's does.
    checked = grads + (overwrite_grads if gate_fn is not None else [])
    checked = _sum_over_replicas(checked)
    grads = [
        _inputs.sum_duplicate_indices(g)
        if isinstance(g, tf.IndexedSlices) else g for g in checked[:len(grads)]
    ]
    gate = (gate_fn(grads +
                    checked[len(grads):]) if gate_fn is not None else None)
    if overwrite_variables:
      self._overwrite_with_gradients(overwrite_grads, overwrite_variables, gate)
    if not grads:
      return gate

    is_update_step = None
    if self.gradient_accumulation_steps:
      steps = self.gradient_accumulation_steps
      is_update_step = tf.equal((self._iterations + 1) % steps, 0)
      grads = [tf.convert_to_tensor(g) for g in grads]
      accumulators = [
          tf_variable(self._accumulated_gradients[self._get_variable_index(v)])
          for v in trainable_variables
      ]

      def averaged_and_clipped():
        return self._clip_gradients([
            (g + tf.cast(a.read_value(), g.dtype)) / steps
            for g, a in zip(grads, accumulators)
        ])

      update_grads = tf.cond(is_update_step, averaged_and_clipped,
                             lambda: list(grads))
    else:
      update_grads = self._clip_gradients(grads)
    # Keras's update steps cast the (clipped) gradient to the variable's
    # dtype first; so do we, once, for every algorithm.
    update_grads = [
        _host.cast_gradient(g, tf_variable(v))
        for g, v in zip(update_grads, trainable_variables)
    ]

    learning_rate = self.learning_rate
    tf.__internal__.distribute.interim.maybe_merge_call(
        functools.partial(self._distributed_update,
                          variables=trainable_variables),
        self._distribution_strategy, grads, update_grads, learning_rate,
        is_update_step, gate)
    return gate

  def _overwrite_with_gradients(self, grads, variables, gate):
    """Keras's overwrite of `overwrite_with_gradient` variables, gated."""
    grads = [
        _host.cast_gradient(g, tf_variable(v))
        for g, v in zip(grads, variables)
    ]

    def overwrite():
      self._overwrite_variables_directly_with_gradients(grads, variables)

    if gate is None:
      overwrite()
    else:  # a skipped step overwrites nothing either
      tf.cond(gate, overwrite, lambda: None)

  def _distributed_update(self, distribution, grads, update_grads,
                          learning_rate, is_update_step, gate, *, variables):
    tf_variables = [tf_variable(v) for v in variables]
    # Accumulation decides per variable whether to add or to step; only
    # whole steps are batched, one `update_steps` call per device.
    if is_update_step is None and _by_device.can_update_by_device(
        distribution, tf_variables):
      _by_device.update_by_device(
          distribution, tf_variables, update_grads,
          functools.partial(self._update_device, model_variables=variables),
          learning_rate, gate)
      return
    for grad, update_grad, variable in zip(grads, update_grads, variables):
      distribution.extended.update(
          tf_variable(variable),
          functools.partial(self._update_variable, model_variable=variable),
          args=(grad, update_grad, learning_rate, is_update_step, gate),
          group=False)

  def _update_device(self, local_variables, grads, learning_rate, gate, *,
                     model_variables):
    """One device's step of all variables (`local_variables` its copies)."""

    def real_step():
      for variable in local_variables:
        self.decay_separately(variable, learning_rate)
      self.update_steps(grads, local_variables, learning_rate)
      for variable, model_variable in zip(local_variables, model_variables):
        self._after_update(variable, model_variable)

    if gate is None:
      real_step()
    else:  # one cond for the device: a skipped step touches nothing
      tf.cond(gate, real_step, lambda: None)

  def _after_update(self, variable, model_variable):
    """The constraint, then the EMA, of one updated variable."""
    if model_variable.constraint is not None:
      variable.assign(model_variable.constraint(variable.read_value()))
    if self.use_ema:
      self._update_average(variable, self._get_variable_index(model_variable))

  def _update_variable(self, variable, grad, update_grad, learning_rate,
                       is_update_step, gate, *, model_variable):
    """One variable's step on its device (`variable` is the local copy)."""
    index = self._get_variable_index(model_variable)
    accumulator = (tf_variable(self._accumulated_gradients[index])
                   if self.gradient_accumulation_steps else None)

    def real_step():
      self.decay_separately(variable, learning_rate)
      self.update_step(update_grad, variable, learning_rate)
      if accumulator is not None:
        accumulator.assign(tf.zeros_like(accumulator))
      self._after_update(variable, model_variable)

    real = _all_true(is_update_step, gate)
    if real is None:
      real_step()
      return

    def accumulate_or_skip():
      if accumulator is not None:
        increment = tf.cast(grad, accumulator.dtype)
        if gate is not None:  # never add a non-finite gradient
          increment = tf.where(gate, increment, tf.zeros_like(increment))
        accumulator.assign_add(increment)

    tf.cond(real, real_step, accumulate_or_skip)

  def _update_average(self, variable, index):
    """Keras's EMA of the weights, then the periodic overwrite."""
    average = tf_variable(self._model_variables_moving_average[index])
    if average is None:
      return
    momentum = tf.where(tf.equal(self.iterations, 0), 0.0, self.ema_momentum)
    momentum = tf.cast(momentum, average.dtype)
    value = tf.cast(variable.read_value(), average.dtype)
    average.assign(momentum * average.read_value() + (1 - momentum) * value)
    if self.ema_overwrite_frequency:
      overwrite = tf.equal((self.iterations + 1) % self.ema_overwrite_frequency,
                           0)
      variable.assign(
          tf.where(overwrite, tf.cast(average.read_value(), variable.dtype),
                   variable.read_value()))

  def _clip_gradients(self, grads):
    """Keras's clipping, on summed gradients; sparse gradients stay sparse."""
    if self.clipnorm:
      return [tf.clip_by_norm(g, self.clipnorm) for g in grads]
    if self.global_clipnorm:
      return _clip_by_global_norm(grads, self.global_clipnorm)
    if self.clipvalue:
      return [
          map_values(
              g,
              lambda x: tf.clip_by_value(  # pylint: disable=g-long-lambda
                  x, -self.clipvalue, self.clipvalue)) for g in grads
      ]
    return grads

  # ----------------------------------------------------------------------
  # Serialization.
  # ----------------------------------------------------------------------
  def get_config(self):
    config = super().get_config()
    config["weight_decay"] = self.serialize_hyperparameter(self.weight_decay)
    config["fused"] = self.fused
    config.update(self.hyperparameter_config())
    return config


def _path(variable):
  """A keras.Variable's path; a tf.Variable's name without its ":0"."""
  path = getattr(variable, "path", None)
  if path is not None:
    return path
  return _host.name_without_output_suffix(variable.name)


def _sum_over_replicas(grads):
  context = tf.distribute.get_replica_context()
  if context is None:
    raise ValueError(
        "`apply()` / `apply_gradients()` must be called in a replica "
        "context: inside `strategy.run(...)` (as `fit()` does), not directly "
        "under `strategy.scope()`.")
  if context.num_replicas_in_sync == 1 or not grads:
    return grads
  return context.all_reduce(tf.distribute.ReduceOp.SUM, grads)


def _clip_by_global_norm(grads, clip_norm):
  """`tf.clip_by_global_norm`, also for gradients of several dtypes.

  Each gradient g becomes g * clip_norm / max(global_norm, clip_norm). TF's
  stacks the gradients' norms, which needs one dtype: with several (a
  float64 and a float32 variable, where Keras's clipping fails) the
  gradients are clipped in float64 if one is float64, else float32, and
  cast back.
  """
  dtypes = {tf.as_dtype(g.dtype).base_dtype for g in grads}
  if len(dtypes) <= 1:
    return tf.clip_by_global_norm(grads, clip_norm)[0]
  wide = tf.float64 if tf.float64 in dtypes else tf.float32
  clipped, _ = tf.clip_by_global_norm(
      [map_values(g, lambda x: tf.cast(x, wide)) for g in grads], clip_norm)
  return [
      map_values(c, functools.partial(tf.cast, dtype=g.dtype))
      for c, g in zip(clipped, grads)
  ]


def map_values(grad, fn):
  """`fn` applied to a dense gradient, or to the values of IndexedSlices."""
  if isinstance(grad, tf.IndexedSlices):
    return tf.IndexedSlices(fn(grad.values), grad.indices, grad.dense_shape)
  return fn(grad)
