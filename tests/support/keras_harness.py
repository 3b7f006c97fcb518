"""Shared machinery for the Keras optimizer tests: running an optimizer on
fixed gradients, and a float64 numpy model of the whole Keras step
(clipping, decoupled weight decay, schedules) built on
tests/support/references.py.
"""

import functools

import keras
import numpy as np
import tensorflow as tf

import algorithms
import references as R  # noqa: F401  (the tests call H.R.lamb_step, ...)

# eager, tf.function (fused op), XLA (the twin), and the twin forced eagerly.
MODES = ("eager", "function", "xla", "twin")

SHAPES = {
    "dense/kernel": (6, 4),
    "dense/bias": (4,),
    "conv/kernel": (2, 3, 5),
    "norm/gamma": (5,)
}


def random_problem(steps, seed, shapes=SHAPES, scale=1.0):
  rng = np.random.default_rng(seed)
  w0 = {n: rng.normal(size=s) for n, s in shapes.items()}
  grads = [{
      n: scale * rng.normal(size=s) for n, s in shapes.items()
  } for _ in range(steps)]
  return w0, grads


def make_variables(w0, dtype="float32"):
  """keras.Variables whose `path` is the dict key (e.g. "dense/kernel")."""
  variables = []
  for path, value in w0.items():
    scope, name = path.split("/")
    with keras.name_scope(scope):
      variables.append(keras.Variable(value, dtype=dtype, name=name))
  assert [v.path for v in variables] == list(w0), [v.path for v in variables]
  return variables


def run_optimizer(optimizer, w0, grads, mode="eager", dtype="float32"):
  """Applies `grads` (a list of {path: array}) and returns {path: float64}."""
  variables = make_variables(w0, dtype)
  optimizer.build(variables)

  def step(gs):
    optimizer.apply_gradients(zip(gs, variables))

  if mode in ("function", "xla"):
    step = tf.function(step, jit_compile=(mode == "xla"))
  for g in grads:
    step([tf.constant(g[path], dtype=dtype) for path in w0])
  return {v.path: np.asarray(tf.cast(v.value, tf.float64)) for v in variables}


def fused_arg(mode):
  return False if mode == "twin" else None


# ----------------------------------------------------------------------------
# The float64 model of one Keras step.
# ----------------------------------------------------------------------------
class Algorithm:
  """One algorithm's reference step on a single variable, as a Keras step
  applies it.

  `kind` names an entry of the registry in algorithms.py, or one of its
  aliases ("adam": the AdamW entry); `hp` holds its hyperparameters,
  options and Keras-level arguments (LAMB's exclusion lists), each that it
  leaves out at the Keras classes' default (the entry's `keras_defaults`).
  """

  def __init__(self, kind, **hp):
    self.kind = kind
    self.spec = algorithms.get(kind)
    self.hp = dict(self.spec.keras_defaults, **hp)

  def init(self, w):
    return self.spec.zero_slots(np.shape(w), **self.spec.options_in(self.hp))

  def step(self, w, slots, g, t, lr, path, fused_decay):
    hp = self.spec.keras_hp(dict(self.hp, learning_rate=lr), path, fused_decay)
    return self.spec.reference_step(w, slots, g, step=t, **hp)


def clip(grads, clipnorm=None, global_clipnorm=None, clipvalue=None):
  """Keras's clipping of {path: gradient}, in float64."""
  if clipnorm:
    return {
        p: g * clipnorm / max(np.linalg.norm(g), clipnorm)
        for p, g in grads.items()
    }
  if global_clipnorm:
    norm = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
    return {
        p: g * global_clipnorm / max(norm, global_clipnorm)
        for p, g in grads.items()
    }
  if clipvalue:
    return {p: np.clip(g, -clipvalue, clipvalue) for p, g in grads.items()}
  return grads


def reference_run(algorithm, w0, grads, *, learning_rate, weight_decay=None,
                  exclude_from_weight_decay=(), **clipping):
  """The float64 trajectory of a Keras 3 optimizer; returns {path: array}.

  `learning_rate` and `weight_decay` may be callables of the 0-based step.
  Keras's decoupled decay `w -= lr * wd * w` runs before the algorithm's
  step (inside it, the same formula, where the registry entry says
  `keras_decays_in_step`).
  """
  decay_in_op = algorithm.spec.keras_decays_in_step

  def value(x, step):
    return x(step) if callable(x) else x

  w = {p: np.array(v, np.float64) for p, v in w0.items()}
  slots = {p: algorithm.init(v) for p, v in w.items()}
  for step, g in enumerate(grads):
    lr = value(learning_rate, step)
    g = clip({p: np.asarray(x, np.float64) for p, x in g.items()}, **clipping)
    for path in w:
      wd = value(weight_decay, step) if weight_decay is not None else 0.0
      if any(name in path for name in exclude_from_weight_decay):
        wd = 0.0
      if not decay_in_op:
        w[path] = w[path] - lr * wd * w[path]
      w[path], slots[path] = algorithm.step(
          w[path], slots[path], g[path], step + 1, lr, path,
          fused_decay=wd if decay_in_op else 0.0)
  return w


# The variables AdamW is told to spare from weight decay in the exclusion
# tests (Keras matches a name's substring).
EXCLUDED_FROM_DECAY = ("bias", "gamma")


def adamw_with_exclusions(cls):
  """`cls`(learning_rate=0.01, weight_decay=0.2) that excludes
  EXCLUDED_FROM_DECAY from its weight decay."""
  optimizer = cls(learning_rate=0.01, weight_decay=0.2)
  optimizer.exclude_from_weight_decay(var_names=list(EXCLUDED_FROM_DECAY))
  return optimizer


def adamw_with_exclusions_reference(w0, grads):
  """The float64 trajectory adamw_with_exclusions() follows."""
  return reference_run(Algorithm("adam"), w0, grads, learning_rate=0.01,
                       weight_decay=0.2,
                       exclude_from_weight_decay=EXCLUDED_FROM_DECAY)


def assert_weight_and_average(optimizer, variable, w, average, rtol, atol):
  """`variable` holds `w`, and `optimizer`'s exponential moving average of it
  (use_ema=True) holds `average`."""
  np.testing.assert_allclose(variable.numpy(), w, rtol=rtol, atol=atol)
  index = optimizer._get_variable_index(variable)  # pylint: disable=protected-access
  np.testing.assert_allclose(
      optimizer._model_variables_moving_average[index].numpy(),  # pylint: disable=protected-access
      average,
      rtol=rtol,
      atol=atol)


def slot_name_pairs(ours, theirs):
  """(our optimizer, Keras's) of each registry "slot_names" case
  (algorithms.keras_cases) that the Keras module `theirs` has (tf-keras has no
  Lamb), from the front end `ours`."""
  return [(make_optimizer(ours, case), make_optimizer(theirs, case))
          for case in algorithms.keras_cases("slot_names").values()
          if hasattr(theirs, case[0])]


def make_optimizer(front, case):
  """The optimizer of a registry case (class name, constructor arguments,
  ...: algorithms.keras_cases), its class taken from the front end `front`."""
  class_name, kwargs = case[:2]
  return getattr(front, class_name)(**kwargs)


def optimizer_factories(table, front):
  """{case id: () -> optimizer} of the registry's `table`
  (algorithms.keras_cases), the classes taken from the front end `front`."""
  return {
      case_id: functools.partial(make_optimizer, front, case)
      for case_id, case in algorithms.keras_cases(table).items()
  }


def assert_trajectory_close(actual, desired, rtol=2e-5, atol=2e-6):
  for path in desired:
    np.testing.assert_allclose(actual[path], desired[path], rtol=rtol,
                               atol=atol, err_msg=path)
