"""Bad arguments raise ValueError / TypeError naming the argument and the
value received; `fused=True` where the op cannot run says why."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_opt_plugin as top
from tf_opt_plugin.ops import FusedOpUnavailableError


@pytest.mark.parametrize("make,error,message", [
    (lambda: top.Adam(beta_1=1.5), ValueError,
     "`beta_1` must be in [0, 1). Received: beta_1=1.5"),
    (lambda: top.AdamW(beta_2=-0.1), ValueError,
     "`beta_2` must be in [0, 1). Received: beta_2=-0.1"),
    (lambda: top.Lamb(beta_1=1.0), ValueError, "Received: beta_1=1.0"),
    (lambda: top.Adam(epsilon=-1e-7), ValueError,
     "`epsilon` must be >= 0. Received: epsilon=-1e-07"),
    (lambda: top.Lamb(epsilon=float("nan")), ValueError,
     "`epsilon` must be >= 0"),
    (lambda: top.SGD(momentum=-0.5), ValueError,
     "`momentum` must be a float between [0, 1]. Received: momentum=-0.5"),
    (lambda: top.SGD(momentum="0.9"), TypeError,
     "`momentum` must be a number. Received: momentum='0.9'"),
    (lambda: top.Adafactor(clip_threshold=0.0), ValueError,
     "`clip_threshold` must be > 0. Received: clip_threshold=0.0"),
    (lambda: top.Adafactor(beta_2_decay=0.8), ValueError,
     "`beta_2_decay` must be <= 0. Received: beta_2_decay=0.8"),
    (lambda: top.Adafactor(epsilon_1=-1.0), ValueError,
     "`epsilon_1` must be >= 0"),
    (lambda: top.Adafactor(relative_step="yes"), TypeError,
     "`relative_step` must be True or False"),
    (lambda: top.Adam(clipnorm=1.0, clipvalue=1.0), ValueError,
     "Only one of `clipnorm`, `clipvalue` and `global_clipnorm`"),
    (lambda: top.Lamb(clipnorm=-1.0), ValueError,
     "`clipnorm` must be > 0. Received: clipnorm=-1.0"),
    (lambda: top.Adam(learning_rte=0.1), ValueError, "learning_rte"),
    (lambda: top.Adam(learning_rate=-0.1), ValueError,
     "`learning_rate` must be >= 0. Received: learning_rate=-0.1"),
    (lambda: top.Adam(learning_rate="fast"), TypeError,
     "`learning_rate` must be a number. Received: learning_rate='fast'"),
    (lambda: top.AdamW(weight_decay=None), ValueError,
     "Received: weight_decay=None"),
    (lambda: top.SGD(weight_decay=-0.1), ValueError,
     "`weight_decay` must be >= 0. Received: weight_decay=-0.1"),
    (lambda: top.Adam(fused="yes"), TypeError,
     "`fused` must be None, True or False. Received: fused='yes'"),
    (lambda: top.Lamb(exclude_from_weight_decay="bias"), TypeError,
     "`exclude_from_weight_decay` must be a list of regular expressions"),
    (lambda: top.Lamb(exclude_from_layer_adaptation=["(unclosed"]), ValueError,
     "`exclude_from_layer_adaptation` holds an invalid regular"),
    (lambda: top.Adam(gradient_accumulation_steps=1), ValueError,
     "`gradient_accumulation_steps` must be an integer >= 2"),
    (lambda: top.Adam(gradient_accumulation_steps=2.5), TypeError,
     "Received: gradient_accumulation_steps=2.5"),
    (lambda: top.Adam(use_ema=True, ema_momentum=1.5), ValueError,
     "`ema_momentum` must be in the range [0, 1]"),
    (lambda: top.LossScaleOptimizer("adam"), TypeError,
     "`inner_optimizer` must be a Keras optimizer"),
    (lambda: top.LossScaleOptimizer(top.Adam(), initial_scale=0), ValueError,
     "`initial_scale` must be > 0"),
    (lambda: top.LossScaleOptimizer(top.Adam(), dynamic_growth_steps=0),
     ValueError, "`dynamic_growth_steps` must be an integer >= 1"),
])
def test_bad_arguments(make, error, message):
  with pytest.raises(error) as info:
    make()
  assert message in str(info.value)


def test_fused_true_where_the_op_cannot_run_says_why(monkeypatch):
  variable = keras.Variable(np.ones((3, 2), np.float32))
  grad = tf.ones((3, 2))
  monkeypatch.setenv("TF_OPT_PLUGIN_DISABLE_CUSTOM_OPS", "1")
  with pytest.raises(FusedOpUnavailableError,
                     match="dispatch_reason='disabled'"):
    top.Lamb(fused=True).apply_gradients([(grad, variable)])
  np.testing.assert_array_equal(variable.numpy(), 1.0)
  monkeypatch.delenv("TF_OPT_PLUGIN_DISABLE_CUSTOM_OPS")

  optimizer = top.AdamW(fused=True)

  @tf.function(jit_compile=True)
  def xla_step():
    optimizer.apply_gradients([(grad, variable)])

  optimizer.build([variable])
  # Raised while tracing; tf.function re-raises it wrapped in a StagingError.
  with pytest.raises(Exception, match="dispatch_reason='xla'") as info:
    xla_step()
  assert "FusedOpUnavailableError" in str(info.value)


def test_default_fused_falls_back_where_the_op_cannot_run(monkeypatch):
  monkeypatch.setenv("TF_OPT_PLUGIN_DISABLE_CUSTOM_OPS", "1")
  variable = keras.Variable(np.ones((3, 2), np.float32))
  top.Adafactor(0.1).apply_gradients([(tf.ones((3, 2)), variable)])
  assert np.all(variable.numpy() < 1.0)


def test_gradient_shape_mismatch_is_a_typed_error():
  variable = keras.Variable(np.ones((3, 2), np.float32))
  with pytest.raises((tf.errors.InvalidArgumentError, ValueError)) as info:
    top.Lamb().apply_gradients([(tf.ones((2, 3)), variable)])
  # Both shapes, named: `var.shape=[3,2], grad.shape=[2,3]` from the kernel,
  # `var[0].shape=(3, 2), grad[0].shape=(2, 3)` from the whole-call check
  # that now runs first (the Keras step updates a device's variables as one
  # multi-tensor call).
  assert re.search(
      r"var(\[0\])?\.shape=[\[(]3, ?2[\])], "
      r"grad(\[0\])?\.shape=[\[(]2, ?3[\])]", str(info.value)), str(info.value)
  np.testing.assert_array_equal(variable.numpy(), 1.0)


def test_apply_in_cross_replica_context_is_a_clear_error():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    variable = keras.Variable(np.ones((2,), np.float32))
    optimizer = top.Adam()
    optimizer.build([variable])
  with strategy.scope():
    with pytest.raises(ValueError, match="replica context"):
      optimizer.apply_gradients([(tf.ones((2,)), variable)])
