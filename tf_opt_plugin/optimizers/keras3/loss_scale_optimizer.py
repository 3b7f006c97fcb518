"""Dynamic loss scaling whose skip decision is the same on every replica."""

import keras
import tensorflow as tf

from tf_opt_plugin.optimizers import _hyperparameters
from tf_opt_plugin.optimizers.keras3 import _base


@keras.saving.register_keras_serializable(package="tf_opt_plugin")
class LossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
  """`keras.optimizers.LossScaleOptimizer` for the tf_opt_plugin optimizers.

  The loss is multiplied by a dynamic scale; gradients are divided by it.
  A step whose gradients are not all finite is skipped and halves the scale;
  `dynamic_growth_steps` finite steps in a row double it.

  Keras 3 checks finiteness on each replica's local gradients, so one
  replica's overflow can skip the step on that replica only and the replicas
  drift apart (defect 2 in docs/keras_defects.md). With a tf_opt_plugin inner
  optimizer the check runs on the gradients summed over all replicas, inside
  the inner optimizer's own pipeline, so every replica skips or applies
  together. Any other Keras optimizer is wrapped exactly as Keras's
  `LossScaleOptimizer` wraps it (Keras's code runs), so configs written by
  Keras's class load through this one. Being a subclass of Keras's class,
  `model.compile()` does not wrap it a second time under a `mixed_float16`
  policy.

  As in Keras, gradients of variables marked `overwrite_with_gradient`
  (float8 layers' scales and amax histories) are not divided by the scale,
  and a skipped step overwrites nothing.

  Args:
    inner_optimizer: a `keras.optimizers.Optimizer`: a tf_opt_plugin
      optimizer, or any Keras optimizer (then with Keras's own behaviour).
    initial_scale: the initial loss scale, > 0.
    dynamic_growth_steps: finite steps before the scale doubles, >= 1.
    name: the optimizer's name.

  A step with an infinite gradient is skipped and halves the scale; the next
  step's gradients (of the scaled loss) are divided by the scale:

  >>> from tf_opt_plugin.optimizers import keras3
  >>> opt = keras3.LossScaleOptimizer(keras3.SGD(learning_rate=0.1),
  ...                                 initial_scale=4.0)
  >>> w = keras.Variable([1.0, 2.0])
  >>> opt.apply([tf.constant([0.4, float("inf")])], [w])
  >>> w.numpy().tolist(), float(opt.dynamic_scale.numpy()), int(opt.iterations)
  ([1.0, 2.0], 2.0, 0)
  >>> opt.apply([tf.constant([0.4, 0.8])], [w])  # w -= 0.1 * g / 2
  >>> [round(x, 4) for x in w.numpy().tolist()], int(opt.iterations)
  ([0.98, 1.96], 1)
  """

  def __init__(self, inner_optimizer, initial_scale=2.0**15,
               dynamic_growth_steps=2000, name=None, **kwargs):
    if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
      raise TypeError(
          "`inner_optimizer` must be a Keras optimizer (a tf_opt_plugin "
          "optimizer for the distribution-correct pipeline). Received: "
          f"inner_optimizer={inner_optimizer!r}")
    _hyperparameters.check_positive("initial_scale", initial_scale)
    if (isinstance(dynamic_growth_steps, bool) or
        not isinstance(dynamic_growth_steps, int) or dynamic_growth_steps < 1):
      raise ValueError(
          "`dynamic_growth_steps` must be an integer >= 1. "
          f"Received: dynamic_growth_steps={dynamic_growth_steps!r}")
    super().__init__(inner_optimizer, initial_scale=initial_scale,
                     dynamic_growth_steps=dynamic_growth_steps, name=name,
                     **kwargs)

  @property
  def _ours(self):
    """Whether the inner optimizer runs tf_opt_plugin's pipeline."""
    return isinstance(self.inner_optimizer, _base.Optimizer)

  def build(self, var_list):
    if var_list is None:
      # Keras's class fails here with "'NoneType' object is not iterable".
      raise ValueError(
          "When passing `grads` without `trainable_variables`, the "
          "optimizer must already be built. Call "
          "`optimizer.build(trainable_variables)` first.")
    # Keras's two variables. Ours are updated in replica context from a
    # decision every replica shares, hence aggregated from the first replica;
    # under Keras's pipeline they are Keras's own.
    aggregation = "only_first_replica" if self._ours else "none"
    self.step_counter = self.add_variable(shape=(), dtype="int",
                                          initializer="zeros",
                                          aggregation=aggregation,
                                          name="step_counter")
    self.dynamic_scale = self.add_variable(
        shape=(), dtype="float32",
        initializer=keras.initializers.Constant(self.initial_scale),
        aggregation=aggregation, name="dynamic_scale")
    self.inner_optimizer.build(var_list)
    keras.optimizers.Optimizer.build(self, var_list)

  def apply(self, grads, trainable_variables=None):
    if not self.built and trainable_variables is None:
      self.build(None)  # raises the error Keras's base class raises
    if not self._ours:
      super().apply(grads, trainable_variables)  # Keras's own pipeline
      return
    if not self.built:
      with keras.name_scope(self.name, caller=self):
        self.build(trainable_variables)
      self.built = True
    # The inner pipeline divides by the scale after setting the gradients of
    # `overwrite_with_gradient` variables aside: those are never scaled.
    finite = self.inner_optimizer.apply_with_gate(
        grads, trainable_variables, gate_fn=_all_finite,
        loss_scale=self.dynamic_scale.value)
    if finite is None:  # no gradients at all
      return
    self._update_scale(finite)

  def _update_scale(self, finite):
    grow = tf.logical_and(
        finite, tf.equal(self.step_counter.value,
                         self.dynamic_growth_steps - 1))
    factor = tf.where(grow, 2.0, tf.where(finite, 1.0, 0.5))
    self.dynamic_scale.assign(self.dynamic_scale.value * factor)
    self.step_counter.assign(
        tf.where(tf.logical_and(finite, tf.logical_not(grow)),
                 self.step_counter.value + 1,
                 tf.zeros_like(self.step_counter.value)))


def _all_finite(grads):
  return tf.reduce_all([
      tf.reduce_all(
          tf.math.is_finite(g.values if isinstance(g, tf.IndexedSlices) else g))
      for g in grads
  ])
