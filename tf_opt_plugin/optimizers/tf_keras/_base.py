"""The base of the tf-keras optimizers, DTensor meshes included.

tf-keras's own `apply_gradients()` already does what Keras 3 gets wrong
under `tf.distribute`: gradients are summed over replicas before they are
clipped, and repeated sparse indices are summed before the update. So this
base keeps tf-keras's pipeline (aggregate -> clip -> deduplicate -> per
variable update -> EMA) and supplies the `AlgorithmHost` primitives, with
four changes:

  * the decoupled `weight_decay` runs per variable, just before its update,
    and inside the fused op for Adam, AdamW and Lion (tf-keras decays every
    variable in a separate pass first);
  * `learning_rate`, `weight_decay` and Lamb's `weight_decay_rate` may be
    floats, schedules or callables (evaluated every step);
  * with `mesh=`, slots are DVariables laid out like their variable (a
    factored accumulator drops the reduced dimension's sharding), and
    `build()` rejects variables that do not live on that mesh;
  * the update calls the algorithm's `update_steps` once per device (Adam,
    AdamW, Lamb, Lion: one multi-tensor op per dtype), except with
    `jit_compile`, on a mesh, or with TF_OPT_PLUGIN_MULTI_TENSOR=0
    (`_by_device.py`).
"""

import os

import numpy as np
import tensorflow as tf
import tf_keras

from tf_opt_plugin.ops import _dispatch
from tf_opt_plugin.optimizers import _by_device
from tf_opt_plugin.optimizers import _host

_LearningRateSchedule = tf_keras.optimizers.schedules.LearningRateSchedule

# tf-keras's slot names for the Keras 3 names the algorithms use.
_SLOT_NAMES = {"momentum": "m", "velocity": "v", "velocity_hat": "vhat"}


def _slot_name(name):
  """tf-keras's name of a slot or of its absmax ("momentum_absmax":
  "m_absmax")."""
  base, absmax, _ = name.partition("_absmax")
  return _SLOT_NAMES.get(base, base) + absmax


class Optimizer(_host.AlgorithmHost, tf_keras.optimizers.Optimizer):
  """tf-keras optimizer whose update runs a tf_opt_plugin algorithm.

  Args:
    learning_rate: a float, a `LearningRateSchedule` or a callable.
    fused: None runs the fused op where it can run and the pure-TF twin
      elsewhere (XLA, DTensor, devices without a kernel); True raises
      `FusedOpUnavailableError` where the op cannot run; False forces the
      twin.
    weight_decay: tf-keras's decoupled decay `w -= lr * weight_decay * w`
      (a float, a schedule or a callable), or None.
    clipnorm, clipvalue, global_clipnorm: tf-keras's gradient clipping,
      applied to the gradients summed over replicas.
    **kwargs: the other tf-keras base arguments (`use_ema`, `ema_momentum`,
      `ema_overwrite_frequency`, `jit_compile`, `name`, `mesh`).

  A subclass supplies `update_step` (and `build` for slots); clipping,
  decay, EMA, distribution and DTensor meshes come from here:

  >>> class SignSGD(Optimizer):  # w <- w - lr * sign(g)
  ...   def update_step(self, gradient, variable, learning_rate=None):
  ...     lr = self.learning_rate_for_step(learning_rate)
  ...     variable.assign_sub(tf.cast(lr, variable.dtype) * tf.sign(gradient))
  >>> w = tf.Variable([1.0, -2.0])
  >>> opt = SignSGD(learning_rate=0.5, clipvalue=1.0)
  >>> _ = opt.apply_gradients([(tf.constant([3.0, -0.1]), w)])
  >>> w.numpy().tolist(), opt.name, int(opt.iterations)
  ([0.5, -1.5], 'SignSGD', 1)
  """

  schedule_type = _LearningRateSchedule

  def __init__(self, learning_rate, *, fused=None, weight_decay=None,
               clipnorm=None, clipvalue=None, global_clipnorm=None, **kwargs):
    learning_rate, weight_decay = self.check_base_arguments(
        fused=fused, learning_rate=learning_rate, weight_decay=weight_decay,
        clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm)
    mesh = kwargs.get("mesh")
    if mesh is not None and not isinstance(mesh, _dtensor().Mesh):
      raise TypeError("`mesh` must be a `tf.experimental.dtensor.Mesh`. "
                      f"Received: mesh={mesh!r}")
    if mesh is not None:
      guard_stale_slots()
    # tf-keras requires a name; a user's subclass gets its class name, as
    # tf-keras's own optimizers do ("Adam", "SGD").
    kwargs["name"] = kwargs.get("name") or type(self).__name__
    super().__init__(weight_decay=weight_decay, clipnorm=clipnorm,
                     clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                     **kwargs)
    if callable(learning_rate) and not isinstance(learning_rate,
                                                  _LearningRateSchedule):
      self._learning_rate = learning_rate  # evaluated every step
    else:
      self._learning_rate = self._build_learning_rate(learning_rate)
    self.fused = fused

  @property
  def built(self):
    return getattr(self, "_built", False)

  @built.setter
  def built(self, value):
    self._built = value

  @property
  def mesh(self):
    """The DTensor mesh the optimizer state lives on, or None."""
    return self._mesh

  def build(self, var_list):
    """Creates the slots of `var_list` (on `mesh`, laid out like them)."""
    if self.built:
      return
    var_list = list(var_list)
    self._check_mesh(var_list)
    super().build(var_list)
    self._model_variables = list(var_list)
    self._built = True

  # ----------------------------------------------------------------------
  # The AlgorithmHost primitives.
  # ----------------------------------------------------------------------
  def current_learning_rate(self):
    if isinstance(self._learning_rate, _LearningRateSchedule):
      # tf-keras evaluates the schedule once per apply_gradients().
      return self._current_learning_rate
    return self.current_value(self._learning_rate)

  def variable_index(self, variable):
    return self._index_dict[self._var_key(variable)]

  def model_variable(self, variable):
    return self._model_variables[self.variable_index(variable)]

  def variable_path(self, variable):
    return _host.name_without_output_suffix(self.model_variable(variable).name)

  def add_slots(self, var_list, names):
    slots = [[] for _ in names]
    for variable in var_list:
      for slot_list, name in zip(slots, names):
        slot_list.append(
            self.add_variable_from_reference(variable,
                                             _SLOT_NAMES.get(name, name)))
    return slots

  def add_slot(self, variable, name, reduced_axis=None):
    if reduced_axis is None:
      return self.add_variable_from_reference(variable, name)
    shape = tf.TensorShape(_host.without_axis(variable.shape, reduced_axis))
    if self._mesh is None:
      return self.add_variable_from_reference(variable, name, shape=shape)
    # tf-keras's mesh path ignores `shape`: lay the slot out explicitly, with
    # the variable's sharding minus that of the reduced axis.
    dtensor = _dtensor()
    layout = dtensor.Layout(
        _host.without_axis(variable.layout.sharding_specs, reduced_axis),
        self._mesh)
    dtype = getattr(variable, "true_dtype", variable.dtype)
    initial_value = dtensor.call_with_layout(tf.zeros, layout,
                                             shape=shape.as_list(), dtype=dtype)
    slot = dtensor.DVariable(
        initial_value,
        name=f"{name}/{variable._shared_name}",  # pylint: disable=protected-access
        dtype=dtype,
        trainable=False)
    self._variables.append(slot)
    return slot

  def add_state_variable(self, variable, name, dtype, shape=None):
    name = _slot_name(name)
    dtype = tf.as_dtype(dtype)
    if shape is None and dtype == _host.variable_dtype(variable):
      # tf-keras's own slot (ShardedVariable shards included).
      return self.add_variable_from_reference(variable, name)
    shape = list(variable.shape if shape is None else shape)
    if self._mesh is not None:
      dtensor = _dtensor()
      layout = (variable.layout if len(shape) == variable.shape.rank and
                shape == variable.shape.as_list() else
                dtensor.Layout.replicated(self._mesh, len(shape)))
      slot = dtensor.DVariable(
          dtensor.call_with_layout(tf.zeros, layout, shape=shape, dtype=dtype),
          name=f"{name}/{variable._shared_name}",  # pylint: disable=protected-access
          dtype=dtype,
          trainable=False)
    else:
      with tf.distribute.get_strategy().extended.colocate_vars_with(variable):
        slot = tf.Variable(
            tf.zeros(shape, dtype),
            name=f"{name}/{variable._shared_name}",  # pylint: disable=protected-access
            dtype=dtype,
            trainable=False)
    self._variables.append(slot)
    return slot

  def sharded_layout(self, variable):
    if self._mesh is None or not _dispatch.is_dtensor(variable):
      return None
    layout = variable.layout
    if all(spec == _dtensor().UNSHARDED for spec in layout.sharding_specs):
      return None
    return layout

  def serialize_hyperparameter(self, value):
    """Config form of a float, a variable, a schedule or a callable.

    A variable's (or a callable's) value is the shortest float that rounds
    to it in its dtype: `Adam(1e-4)` stores 1e-4 in a float32 variable and
    its config says 1e-4, as tf-keras's (a NumPy float32) compares, not
    9.999999747378752e-05.
    """
    if isinstance(value, _LearningRateSchedule):
      return tf_keras.optimizers.schedules.serialize(value)
    if isinstance(value, tf.Variable):
      return _shortest_float(value.numpy())
    if callable(value):  # tf-keras stores a callable's current value
      return _shortest_float(value())
    return value

  @classmethod
  def deserialize_hyperparameter(cls, value, custom_objects=None):
    if isinstance(value, dict):
      return tf_keras.optimizers.schedules.deserialize(
          value, custom_objects=custom_objects)
    return value

  # ----------------------------------------------------------------------
  # tf-keras's pipeline, with the decay moved next to the update.
  # ----------------------------------------------------------------------
  def apply_gradients(self, grads_and_vars, *args, **kwargs):
    """tf-keras's `apply_gradients`, the whole call checked first.

    Every (gradient, variable) pair is validated before anything is written
    (`_host.checked_gradients`): a gradient of another dtype raises
    InvalidArgumentError, as in tf-keras, which does not cast; a misshapen
    one ValueError. tf-keras would have decayed and updated the variables
    before it, leaving `iterations` behind.
    """
    grads_and_vars = list(grads_and_vars)
    if not grads_and_vars:
      return super().apply_gradients(grads_and_vars, *args, **kwargs)
    grads, variables = zip(*grads_and_vars)
    grads, assertions = _host.checked_gradients(grads, variables, cast=False)
    with tf.control_dependencies(assertions):
      return super().apply_gradients(list(zip(grads, variables)), *args,
                                     **kwargs)

  def _apply_weight_decay(self, variables):
    del variables  # applied per variable in _update_step

  def _update_step(self, gradient, variable):
    if self._knows(variable):
      self.decay_separately(variable, self.current_learning_rate())
    return super()._update_step(gradient, variable)

  def _knows(self, variable):
    # tf-keras skips variables without an id (traced by `model.save()`) and
    # raises for unknown ones: both stay on its per-variable path.
    return (getattr(variable, "_unique_id", None) is not None and
            self._var_key(variable) in self._index_dict)

  def _distributed_apply_gradients_fn(self, distribution, grads_and_vars,
                                      **kwargs):
    """tf-keras's update, with one `update_steps` call per device."""
    grads_and_vars = list(grads_and_vars)
    variables = [v for _, v in grads_and_vars]
    # jit_compile wraps each variable's step in its own XLA function.
    if (self.jit_compile or not all(self._knows(v) for v in variables) or
        not _by_device.can_update_by_device(distribution, variables)):
      return super()._distributed_apply_gradients_fn(distribution,
                                                     grads_and_vars, **kwargs)
    _by_device.update_by_device(distribution, variables,
                                [g for g, _ in grads_and_vars],
                                self._update_device)
    # The rest of tf-keras's `_distributed_apply_gradients_fn`.
    if self.use_ema:
      self._update_model_variables_moving_average(variables)
      if self.ema_overwrite_frequency:
        overwrite = (self.iterations + 1) % self.ema_overwrite_frequency == 0
        tf.cond(
            tf.cast(overwrite, tf.bool),
            lambda: self._overwrite_model_variables_with_average_value(
                variables), lambda: None)
    return self.iterations.assign_add(1)

  def _update_device(self, local_variables, grads):
    """One device's step of all variables (`local_variables` its copies)."""
    learning_rate = self.current_learning_rate()
    for variable in local_variables:
      self.decay_separately(variable, learning_rate)
    self.update_steps(grads, local_variables)

  def get_config(self):
    config = super().get_config()
    config.update(
        learning_rate=self.serialize_hyperparameter(self._learning_rate),
        weight_decay=self.serialize_hyperparameter(self.weight_decay),
        fused=self.fused)
    config.update(self.hyperparameter_config())
    return config

  # ----------------------------------------------------------------------
  # DTensor.
  # ----------------------------------------------------------------------
  def _check_mesh(self, var_list):
    """Every variable is a DVariable on `mesh` when, and only when, set."""
    dtensor = _dtensor() if self._mesh is not None else None
    for variable in var_list:
      on_mesh = _dispatch.is_dtensor(variable)
      if self._mesh is None:
        if on_mesh:
          raise ValueError(
              "`mesh` must be given for DTensor variables: construct the "
              "optimizer with `mesh=` the variables' mesh. Received: "
              f"mesh=None for variable {variable.name} with layout "
              f"{variable.layout}")
        continue
      if not isinstance(variable, dtensor.DVariable):
        raise ValueError(
            "With `mesh`, every variable must be a DTensor DVariable on that "
            "mesh (build the model under a `LayoutMap` of the mesh). "
            f"Received: variable {variable.name} is a "
            f"{type(variable).__name__}")
      if variable.layout.mesh != self._mesh:
        raise ValueError(
            "`mesh` must be the mesh of the variables. Received: "
            f"mesh={_describe_mesh(self._mesh)}, but variable "
            f"{variable.name} lives on {_describe_mesh(variable.layout.mesh)}")


COMBINE_ALL_REDUCES_ENV = "DTENSOR_ENABLE_COMBINE_ALL_REDUCES_OPTIMIZATION"


def guard_stale_slots():
  """Turns DTensor's all-reduce combining off, unless the user has set it.

  With it on, TF 2.21 lets a slot update read a stale slot when several
  gradients need a batch all-reduce: updates lag a step (docs/keras_defects.md;
  tests/test_dtensor.py shows it on tf-keras's own DTensor SGD). DTensor
  reads the variable when it compiles a function, so setting it before the
  first training step is enough.
  """
  os.environ.setdefault(COMBINE_ALL_REDUCES_ENV, "0")


def _shortest_float(value):
  """`value` as the shortest Python float that rounds back to it in its own
  floating dtype (1e-4 for float32's 9.999999747378752e-05)."""
  value = np.asarray(value)
  if value.dtype.kind != "f":
    return float(value)
  return float(np.format_float_scientific(value[()], unique=True))


def _dtensor():
  from tensorflow.experimental import dtensor  # pylint: disable=g-import-not-at-top
  return dtensor


def _describe_mesh(mesh):
  dims = ", ".join(
      f"{name}={size}" for name, size in zip(mesh.dim_names, mesh.shape()))
  return f"Mesh({dims}; {mesh.num_local_devices()} local devices)"
