"""Float64 numpy reference implementations of SGD, AdamW, LAMB, Adafactor and
Lion.

Written from the published algorithms (see docs/semantics.md, each update
as math), never from the code
under test:

* SGD with momentum: the Keras form (`keras.optimizers.SGD` docstring),
  b <- mu*b - lr*g; w <- w + b (Nesterov: w <- w + mu*b - lr*g).
* AdamW: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", with
  the Keras "epsilon hat" form of Adam (Kingma & Ba, formula just before
  section 2.1) and AMSGrad (Reddi et al., 2018).
* LAMB: You et al., "Large Batch Optimization for Deep Learning: Training BERT
  in 76 minutes" (as in TF Model Garden / TF Addons).
* Adafactor: Shazeer & Stern, "Adafactor: Adaptive Learning Rates with
  Sublinear Memory Cost" (as in Keras 3, with `relative_step` honoured).
* Lion: Chen et al., "Symbolic Discovery of Optimization Algorithms" (2023),
  Algorithm 2 (decoupled weight decay inside the step, as the paper writes it).

Every function takes and returns plain numpy arrays; the inputs are converted
to float64 and never modified in place.  `step` is the 1-based count of the
update being applied.  tests/ops/test_references.py checks these functions
against golden values published by Keras, TF Addons and TF Model Garden.
"""

import numpy as np

__all__ = [
    "sgd_step",
    "adamw_step",
    "lamb_step",
    "adafactor_step",
    "adafactor_zero_accumulators",
    "adafactor_accumulator_shapes",
    "lion_step",
    "rms",
]


def _f64(x):
  return np.array(x, dtype=np.float64, copy=True)


def rms(x):
  """Root mean square over all elements."""
  x = np.asarray(x, dtype=np.float64)
  return np.sqrt(np.mean(np.square(x)))


# ---------------------------------------------------------------------------
# SGD with Keras momentum
# ---------------------------------------------------------------------------
def sgd_step(w, b, g, *, learning_rate, momentum, nesterov=False):
  """One SGD update.  Returns (w, b); b is None without momentum."""
  w, g = _f64(w), _f64(g)
  lr, mu = float(learning_rate), float(momentum)
  if b is None:
    return w - lr * g, None
  b = mu * _f64(b) - lr * g
  w = w + (mu * b - lr * g if nesterov else b)
  return w, b


# ---------------------------------------------------------------------------
# AdamW (Keras semantics; weight_decay=0 is Keras Adam)
# ---------------------------------------------------------------------------
def adamw_step(w, m, v, g, *, learning_rate, beta_1, beta_2, epsilon,
               weight_decay, step, vhat=None):
  """One AdamW update.  Returns (w, m, v, vhat); vhat is None unless given."""
  w, m, v, g = _f64(w), _f64(m), _f64(v), _f64(g)
  lr, b1, b2 = float(learning_rate), float(beta_1), float(beta_2)
  eps, wd, t = float(epsilon), float(weight_decay), float(step)
  with np.errstate(all="ignore"):
    # Decoupled weight decay first, on the weight before the Adam step.
    w = w - lr * wd * w
    m = m + (g - m) * (1.0 - b1)
    v = v + (g * g - v) * (1.0 - b2)
    denom_v = v
    if vhat is not None:
      vhat = np.maximum(_f64(vhat), v)
      denom_v = vhat
    lr_t = lr * np.sqrt(1.0 - b2**t) / (1.0 - b1**t)
    w = w - lr_t * m / (np.sqrt(denom_v) + eps)
  return w, m, v, vhat


# ---------------------------------------------------------------------------
# LAMB (paper / TF Model Garden / TF Addons)
# ---------------------------------------------------------------------------
def lamb_step(w, m, v, g, *, learning_rate, beta_1, beta_2, epsilon,
              weight_decay_rate, step, use_layer_adaptation=True):
  """One LAMB update.  Returns (w, m, v)."""
  w, m, v, g = _f64(w), _f64(m), _f64(v), _f64(g)
  lr, b1, b2 = float(learning_rate), float(beta_1), float(beta_2)
  eps, wd, t = float(epsilon), float(weight_decay_rate), float(step)
  with np.errstate(all="ignore"):
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * g * g
    m_hat = m / (1.0 - b1**t)
    v_hat = v / (1.0 - b2**t)
    u = m_hat / (np.sqrt(v_hat) + eps) + wd * w
    ratio = 1.0
    if use_layer_adaptation:
      w_norm = np.sqrt(np.sum(np.square(w)))  # norm of w before update
      u_norm = np.sqrt(np.sum(np.square(u)))
      if w_norm > 0 and u_norm > 0:  # NaN compares False -> ratio 1
        ratio = w_norm / u_norm
    w = w - lr * ratio * u
  return w, m, v


# ---------------------------------------------------------------------------
# Adafactor (paper / Keras 3 with relative_step honoured)
# ---------------------------------------------------------------------------
def adafactor_accumulator_shapes(shape):
  shape = tuple(shape)
  if len(shape) >= 2:
    return (shape[:-1], shape[:-2] + shape[-1:])
  return (shape,)


def adafactor_zero_accumulators(shape):
  return tuple(
      np.zeros(s, np.float64) for s in adafactor_accumulator_shapes(shape))


def adafactor_step(w, accumulators, g, *, learning_rate, beta_2_decay,
                   epsilon_1, epsilon_2, clip_threshold, step,
                   relative_step=True):
  """One Adafactor update.  Returns (w, accumulators_tuple).

    accumulators is (row, col) for rank >= 2 variables and (v,) otherwise.
    A zero-size variable is returned unchanged (with unchanged accumulators).
    """
  w, g = _f64(w), _f64(g)
  accumulators = tuple(_f64(a) for a in accumulators)
  if w.size == 0:
    return w, accumulators
  lr, t = float(learning_rate), float(step)
  eps1, eps2 = float(epsilon_1), float(epsilon_2)
  d = float(clip_threshold)
  with np.errstate(all="ignore"):
    rho = min(lr, 1.0 / np.sqrt(t)) if relative_step else lr
    alpha = max(eps2, rms(w)) * rho  # w before the update
    beta2t = 1.0 - t**float(beta_2_decay)
    big_g = g * g + eps1
    if w.ndim >= 2:
      r, c = accumulators
      r = beta2t * r + (1.0 - beta2t) * np.mean(big_g, axis=-1)
      c = beta2t * c + (1.0 - beta2t) * np.mean(big_g, axis=-2)
      row_factor = r / np.mean(r, axis=-1, keepdims=True)
      vhat = row_factor[..., :, None] * c[..., None, :]
      new_acc = (r, c)
    else:
      (vv,) = accumulators
      vv = beta2t * vv + (1.0 - beta2t) * big_g
      vhat = vv
      new_acc = (vv,)
    u = g / np.sqrt(vhat)
    # np.maximum propagates NaN (like tf.maximum).
    u = u / np.maximum(1.0, rms(u) / d)
    w = w - alpha * u
  return w, new_acc


# ---------------------------------------------------------------------------
# Lion (Chen et al., 2023, Algorithm 2)
# ---------------------------------------------------------------------------
def lion_step(w, m, g, *, learning_rate, beta_1, beta_2, weight_decay):
  """One Lion update.  Returns (w, m).

    The paper's Algorithm 2: c = beta_1 m + (1 - beta_1) g, then
    w <- w - lr (sign(c) + weight_decay w) and m <- beta_2 m + (1 - beta_2) g.
    There is no step count.  np.sign(0) = 0 and np.sign(NaN) = NaN.
    """
  w, m, g = _f64(w), _f64(m), _f64(g)
  lr, b1, b2 = float(learning_rate), float(beta_1), float(beta_2)
  wd = float(weight_decay)
  with np.errstate(all="ignore"):
    c = b1 * m + (1.0 - b1) * g
    w = w - lr * (np.sign(c) + wd * w)
    m = b2 * m + (1.0 - b2) * g
  return w, m
