"""Adafactor: the fused `ResourceApplyAdafactor` op and its pure-TF twin.

Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory
Cost" (2018), Algorithms 4 and 5, as Keras implements it, except that
`relative_step=False` really gives a constant step:

    beta_2_t = 1 - t^beta_2_decay,   G = g^2 + epsilon_1
    rank >= 2:  r <- beta_2_t r + (1 - beta_2_t) mean(G, axis=-1)
                c <- beta_2_t c + (1 - beta_2_t) mean(G, axis=-2)
                u  = g / sqrt(r_i c_j / mean(r))
    rank < 2:   v <- beta_2_t v + (1 - beta_2_t) G;   u = g / sqrt(v)
    u   <- u / max(1, RMS(u) / clip_threshold)
    rho  = min(lr, 1 / sqrt(t)) if relative_step else lr
    w   <- w - max(epsilon_2, RMS(w)) * rho * u

`accumulators` is (row, column) for a variable of rank >= 2, shaped
`var.shape[:-1]` and `var.shape[:-2] + var.shape[-1:]`, and (v,) shaped like
the variable otherwise.
"""

import tensorflow as tf

from tf_opt_plugin.ops import _inputs
from tf_opt_plugin.ops import _update

# The op's scalar hyperparameter inputs, in op order (`learning_rate` feeds
# "lr"); the op also takes `step`.
SCALAR_NAMES = ("lr", "beta_2_decay", "epsilon_1", "epsilon_2",
                "clip_threshold")


def accumulator_shapes(var_shape):
  """The accumulator shapes a variable of `var_shape` needs, in op order.

  >>> accumulator_shapes([3, 4, 5])
  [TensorShape([3, 4]), TensorShape([3, 5])]
  >>> accumulator_shapes([7])
  [TensorShape([7])]
  """
  shape = tf.TensorShape(var_shape)
  if shape.rank < 2:
    return [shape]
  return [shape[:-1], shape[:-2].concatenate(shape[-1:])]


def resource_apply_adafactor(var, accumulators, grad, *, learning_rate,
                             beta_2_decay, epsilon_1, epsilon_2, clip_threshold,
                             step, relative_step=True, use_locking=True,
                             fused=None):
  """Applies one Adafactor step to `var` and its `accumulators` in place.

  Args:
    var: the `tf.Variable` to update (float16, bfloat16, float32, float64).
    accumulators: (row, column) variables for rank >= 2, (v,) otherwise,
      zero-initialised, shaped as `accumulator_shapes(var.shape)`.
    grad: the gradient, a tensor shaped like `var` or `tf.IndexedSlices`.
    learning_rate, beta_2_decay, epsilon_1, epsilon_2, clip_threshold:
      scalars (Python numbers, tensors or variables).
    step: the 1-based count of this update.
    relative_step: True scales the step by min(lr, 1/sqrt(step)), False uses
      `learning_rate` as it is.
    use_locking: as for `resource_apply_adamw`.
    fused: None, True or False, as for `resource_apply_adamw`.

  Returns:
    The update op in graph mode, None eagerly.

  >>> w = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
  >>> acc = [tf.Variable(tf.zeros(s)) for s in accumulator_shapes(w.shape)]
  >>> _ = resource_apply_adafactor(w, acc, tf.ones([2, 2]),
  ...     learning_rate=0.01, beta_2_decay=-0.8, epsilon_1=1e-30,
  ...     epsilon_2=1e-3, clip_threshold=1.0, step=1)
  >>> [round(float(x), 4) for x in w.numpy().ravel()]  # 0.01 * RMS(w) each
  [0.9726, 1.9726, 2.9726, 3.9726]
  """
  return _update.apply_update(
      _RULE, var, {"accumulators": list(accumulators)}, grad,
      hyperparameters=_RULE.scalars(learning_rate, beta_2_decay, epsilon_1,
                                    epsilon_2, clip_threshold), step=step,
      flags=dict(relative_step=relative_step), use_locking=use_locking,
      fused=fused)


def _check_accumulators(var, slots, grad, checks):
  """The accumulators are as many, and shaped, as `accumulator_shapes`, with
  the kernel's messages; returns the gradient."""
  accumulators = slots["accumulators"]
  grad = _inputs.check_update_inputs(var, {}, grad, checks)
  expected = accumulator_shapes(var.shape)
  var_shape = _inputs.shape_text(var.shape)
  if len(accumulators) != len(expected):
    kind = (" variables (row, column) for a variable of rank >= 2"
            if len(expected) == 2 else
            " variable (shaped like `var`) for a variable of rank < 2")
    raise tf.errors.InvalidArgumentError(
        None, None,
        f"`accumulators` must hold {len(expected)}{kind}. Received: "
        f"{len(accumulators)} accumulators for var.shape={var_shape}")
  roles = (["shaped like `var`"] if len(expected) == 1 else
           ["row: var.shape[:-1]", "column: var.shape[:-2] + var.shape[-1:]"])
  for i, (accumulator, shape,
          role) in enumerate(zip(accumulators, expected, roles)):
    _inputs.check_variable(accumulator, f"accumulators[{i}]", grad.dtype)
    if not accumulator.shape.is_compatible_with(shape):
      raise tf.errors.InvalidArgumentError(
          None, None,
          f"`accumulators[{i}]` must have shape {_inputs.shape_text(shape)} "
          f"({role}). Received: var.shape={var_shape}, accumulators[{i}].shape="
          f"{_inputs.shape_text(accumulator.shape)}")
  if (checks.kernel_validates or not checks.active or
      all(a.shape.is_fully_defined() and var.shape.is_fully_defined()
          for a in accumulators)):
    return grad
  # A shape known only at run time (a variable of unknown shape).
  var_runtime = _inputs.runtime_shape(var)
  expected_shapes = ([var_runtime] if len(expected) == 1 else [
      var_runtime[:-1],
      tf.concat([var_runtime[:-2], var_runtime[-1:]], 0)
  ])
  for i, (accumulator, shape,
          role) in enumerate(zip(accumulators, expected_shapes, roles)):
    shapes = {}

    def condition(accumulator=accumulator, shape=shape, shapes=shapes):
      shapes["actual"] = _inputs.runtime_shape(accumulator)
      shapes["expected"] = shape
      return _inputs.same_shape(shapes["actual"], shapes["expected"])

    def message(i=i, role=role, shapes=shapes):
      return [
          f"`accumulators[{i}]` must have shape ",
          _inputs.Shape(shapes["expected"]),
          f" ({role}). Received: var.shape=",
          _inputs.Shape(var_runtime),
          f", accumulators[{i}].shape=",
          _inputs.Shape(shapes["actual"]),
      ]

    checks.require(condition, message)
  return grad


def _rms(x):
  return tf.sqrt(tf.reduce_mean(tf.square(x)))


def _adafactor_twin_scalars(*, lr, beta_2_decay, epsilon_1, epsilon_2,
                            clip_threshold, step):
  """The twin's scalars, derived once per call for all of its variables."""
  t = tf.cast(step, lr.dtype)
  beta_2_t = 1 - tf.pow(t, beta_2_decay)
  return dict(lr=lr, epsilon_1=epsilon_1, epsilon_2=epsilon_2,
              clip_threshold=clip_threshold, beta_2_t=beta_2_t,
              one_minus_beta_2_t=1 - beta_2_t,
              relative_rho=tf.minimum(lr, 1 / tf.sqrt(t)),
              one=tf.constant(1, lr.dtype))


def _adafactor_twin(var, grad, *, accumulators, lr, epsilon_1, epsilon_2,
                    clip_threshold, beta_2_t, one_minus_beta_2_t, relative_rho,
                    one, relative_step=True):
  """The same step in plain TF ops (XLA-compilable, DTensor-friendly)."""
  if var.shape.num_elements() == 0:
    return tf.no_op()
  compute = lr.dtype
  g = tf.cast(grad, compute)
  w = tf.cast(var.read_value(), compute)
  square = g * g + epsilon_1

  def accumulate(accumulator, mean_square):
    old = tf.cast(accumulator.read_value(), compute)
    return beta_2_t * old + one_minus_beta_2_t * mean_square

  def inverse_root(accumulator):
    # The exact recurrence never goes below epsilon_1; a float16 one can.
    return tf.math.rsqrt(tf.maximum(accumulator, epsilon_1))

  if var.shape.rank >= 2:
    row = accumulate(accumulators[0], tf.reduce_mean(square, axis=-1))
    col = accumulate(accumulators[1], tf.reduce_mean(square, axis=-2))
    mean_row = tf.maximum(tf.reduce_mean(row, axis=-1, keepdims=True),
                          epsilon_1)
    # Applied as separate factors: r_i * c_j / mean(r) underflows to 0 in
    # float32 for an all-zero gradient row and column (Keras 3 defect 9).
    row_scale = tf.sqrt(mean_row) * inverse_root(row)
    u = (g * row_scale[..., :, tf.newaxis]) * inverse_root(col)[...,
                                                                tf.newaxis, :]
    new_accumulators = (row, col)
  else:
    v = accumulate(accumulators[0], square)
    u = g * inverse_root(v)
    new_accumulators = (v,)

  u = u / tf.maximum(one, _rms(u) / clip_threshold)
  rho = relative_rho if relative_step else lr
  alpha = tf.maximum(epsilon_2, _rms(w)) * rho
  updates = [
      a.assign(tf.cast(value, a.dtype))
      for a, value in zip(accumulators, new_accumulators)
  ]
  updates.append(var.assign(tf.cast(w - alpha * u, var.dtype)))
  return tf.group(*updates)


_RULE = _update.UpdateRule(
    per_variable_op="resource_apply_adafactor", multi_tensor_op=None,
    slot_names=("accumulators",), list_slots=("accumulators",),
    scalar_names=SCALAR_NAMES, takes_step=True, twin=_adafactor_twin,
    twin_scalars=_adafactor_twin_scalars, check_slots=_check_accumulators,
    positive_scalars=("clip_threshold",))
