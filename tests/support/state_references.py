"""Float64 references of the updates with reduced-precision optimizer state.

Built only from the algorithms' float64 steps (references.py, through the
registry's `reference_step`) and the float64 models of the state formats
(quantization_reference.py), never from the code under test. The layouts
(docs/quantization.md, issue 16):

  "same"      the slot has the variable's dtype (float16 / bfloat16 / float32);
  "float32"   float32 slots;
  "bfloat16"  bfloat16 slots, stored round-to-nearest-even;
  "int8"      block-wise 8-bit codes and a float32 absmax per block of 256
              (the signed dynamic map for first moments, the unsigned one for
              the slots the registry lists in `unsigned_slots`).

A stored slot is a float64 array of the stored values (exact: float16 and
bfloat16 values are float32 values) or, for "int8", a tuple (codes uint8
shaped like the variable, absmax float32 of ceil(size / 256)).

One step with a layout, for the variable w and gradient g of `var_dtype`:

  s      = load(stored state)               dequantized / widened, float32
  w', s' = reference_step(w, s, g)          float64
  stored = store(float32(s'))               round to the layout
  w      = var_dtype(float32(w'))           the kernels compute in float32

so the variable's update uses the new moments before storage rounding (AdamW
and Lion update w and the state in one pass). LAMB's trust ratio
||w|| / ||u|| also uses them, but its step w - lr * ratio * u recomputes u
from the moments as stored, as the fused kernel's second pass reads them
back:

  w = w - lr * ratio * (m_hat(stored m) / (sqrt(v_hat(stored v)) + eps)
                        + weight_decay_rate * w)
"""

import numpy as np

import quantization_reference as Q

__all__ = [
    "LAYOUTS",
    "VAR_DTYPES",
    "round_to",
    "is_signed",
    "load",
    "store",
    "zero_state",
    "state_step",
]

LAYOUTS = ("same", "float32", "bfloat16", "int8")
VAR_DTYPES = ("float16", "bfloat16", "float32")


def round_to(x, dtype_name):
  """float64 values of float64 `x` rounded once to float32 and then to
  `dtype_name` (round to nearest even each time), as a kernel computing in
  float32 stores them."""
  x32 = np.asarray(x, np.float64).astype(np.float32)
  if dtype_name == "float32":
    return x32.astype(np.float64)
  if dtype_name == "float16":
    return x32.astype(np.float16).astype(np.float64)
  if dtype_name == "bfloat16":
    bits = Q.bfloat16_round_nearest_even(x32)
    return Q.bfloat16_bits_to_float32(bits).reshape(x32.shape).astype(
        np.float64)
  raise ValueError(f"`dtype_name` must be one of {VAR_DTYPES}. "
                   f"Received: dtype_name={dtype_name!r}")


def is_signed(algorithm, slot_name):
  """Whether `slot_name` of `algorithm` uses the signed dynamic map in int8
  state (first moments); the registry's `unsigned_slots` (second moments,
  never negative) use the unsigned one."""
  return slot_name not in algorithm.unsigned_slots


def _storage_dtype(layout, var_dtype):
  if layout not in LAYOUTS:
    raise ValueError(f"`layout` must be one of {LAYOUTS}. "
                     f"Received: layout={layout!r}")
  return var_dtype if layout == "same" else layout


def load(stored, layout, signed, shape):
  """float64 values of a stored slot: what the kernel computes with."""
  if layout == "int8":
    codes, absmax = stored
    return Q.dequantize_blockwise(codes, absmax,
                                  signed).reshape(shape).astype(np.float64)
  return np.asarray(stored, np.float64).reshape(shape)


def store(x, layout, var_dtype, signed):
  """The stored form of the new float64 slot value `x`: rounded to float32
  first (the kernels compute in float32), then to the layout."""
  dtype = _storage_dtype(layout, var_dtype)
  if dtype == "int8":
    x32 = np.asarray(x, np.float64).astype(np.float32)
    codes, absmax = Q.quantize_blockwise(x32, signed)
    return codes.reshape(x32.shape), absmax
  return round_to(x, dtype)


def zero_state(algorithm, shape, layout, var_dtype, **options):
  """The stored slots before the first step: zero values, or zero codes and
  zero absmax (which dequantize to zero with either map)."""
  out = []
  for name, slot_shape in algorithm.slots(tuple(shape), **options):
    if layout == "int8":
      size = int(np.prod(slot_shape))
      blocks = -(-size // Q.BLOCK_SIZE)
      out.append((np.zeros(slot_shape, np.uint8), np.zeros(blocks, np.float32)))
    else:
      out.append(np.zeros(slot_shape, np.float64))
  return tuple(out)


def _lamb_weight(algorithm, w, loaded_old, stored_moments, g, *, step,
                 use_layer_adaptation=True, **hp):
  """LAMB's variable update with stored moments (see the module docstring),
  composed of reference steps only.

  The trust ratio is ||w - w_adapted|| / ||w - w_plain||: the step with
  layout adaptation over the one without (lr * ratio * u over lr * u), both
  from the unrounded moments. The step itself is the reference step from
  moments that a zero gradient carries onto the stored ones
  (beta * (stored / beta) = stored), with learning rate lr * ratio and no
  adaptation: w - lr * ratio * u(stored moments).
  """
  beta_1, beta_2 = float(hp["beta_1"]), float(hp["beta_2"])
  if beta_1 == 0 or beta_2 == 0:
    raise ValueError("the LAMB state reference needs nonzero betas. Received: "
                     f"beta_1={beta_1}, beta_2={beta_2}")
  ratio = 1.0
  if use_layer_adaptation:
    adapted, _ = algorithm.reference_step(w, loaded_old, g, step=step,
                                          use_layer_adaptation=True, **hp)
    plain, _ = algorithm.reference_step(w, loaded_old, g, step=step,
                                        use_layer_adaptation=False, **hp)
    num = np.sqrt(np.sum(np.square(w - adapted)))
    den = np.sqrt(np.sum(np.square(w - plain)))
    if den > 0 and np.isfinite(num) and np.isfinite(den):
      ratio = num / den
  m_s, v_s = stored_moments
  carried = (m_s / beta_1, v_s / beta_2)
  hp_step = dict(hp, learning_rate=float(hp["learning_rate"]) * ratio)
  w_new, _ = algorithm.reference_step(w, carried, np.zeros_like(w), step=step,
                                      use_layer_adaptation=False, **hp_step)
  return w_new


def state_step(algorithm, w, stored, g, *, step, layout, var_dtype,
               read_back=None, **kwargs):
  """One update with state `layout`: returns (w, stored slots).

  Args:
    algorithm: the registry entry (algorithms.py) of AdamW, LAMB or Lion.
    w, g: float64 values of the variable and the gradient (of `var_dtype`).
    stored: the stored slots in the op's order (see the module docstring).
    step: the 1-based count of this update.
    layout: one of LAYOUTS, for every slot.
    var_dtype: "float16", "bfloat16" or "float32".
    read_back: LAMB only: the stored slots its second pass reads, if not the
      reference's own (a test passes the implementation's, so that a code
      one step away at a bucket boundary does not move the variable's
      comparison).
    **kwargs: the algorithm's options and hyperparameters (as the op sees
      them: float32 values).

  Returns:
    (w rounded to var_dtype as float64, tuple of the new stored slots).
  """
  w = np.asarray(w, np.float64)
  g = np.asarray(g, np.float64)
  options = algorithm.options_in(kwargs)
  names = [name for name, _ in algorithm.slots(w.shape, **options)]
  signed = [is_signed(algorithm, name) for name in names]
  loaded = tuple(
      load(s, layout, sign, w.shape) for s, sign in zip(stored, signed))
  w_new, slots_new = algorithm.reference_step(w, loaded, g, step=step, **kwargs)
  stored_new = tuple(
      store(s, layout, var_dtype, sign) for s, sign in zip(slots_new, signed))
  if algorithm.name == "lamb":
    stored_moments = tuple(
        load(s, layout, sign, w.shape) for s, sign in zip(
            stored_new if read_back is None else read_back, signed))
    w_new = _lamb_weight(algorithm, w, loaded, stored_moments, g, step=step,
                         **kwargs)
  return round_to(w_new, var_dtype), stored_new
