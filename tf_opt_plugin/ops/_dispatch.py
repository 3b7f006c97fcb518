"""Chooses, per variable and at trace time, the fused op or the pure-TF twin."""

import tensorflow as tf

from tf_opt_plugin.ops import _env_flags
from tf_opt_plugin.ops import _library

DISABLE_ENV = "TF_OPT_PLUGIN_DISABLE_CUSTOM_OPS"
# Opt-in for the GPU kernels: a library built with nvcc registers them, but
# until they have been run on a GPU (README, "GPU status"; docs/gpu.md) GPU
# variables use the pure-TF twin unless this is set to 1.
GPU_KERNELS_ENV = "TF_OPT_PLUGIN_GPU_KERNELS"
SUPPORTED_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
# Devices whose kernels are always used; GPU joins them per gpu_kernels_enabled().
SUPPORTED_DEVICE_TYPES = ("CPU",)


def gpu_kernels_enabled():
  """True when GPU variables run the custom ops: the library registered GPU
  kernels and TF_OPT_PLUGIN_GPU_KERNELS=1 opts in to them."""
  # The flag is parsed first so that a bad value raises on any machine.
  return (_env_flags.read_flag(GPU_KERNELS_ENV, False) and
          _library.has_gpu_kernels())


def supported_device_types():
  """The device types whose variables the custom ops update, now."""
  return SUPPORTED_DEVICE_TYPES + (("GPU",) if gpu_kernels_enabled() else ())


_REASON_TEXT = {
    "disabled": f"the environment variable {DISABLE_ENV}=1 disables custom ops",
    "not_loaded": "the op library could not be loaded",
    "xla": "the update is traced inside an XLA-compiled function "
           "(jit_compile=True), where custom ops cannot run",
    "dtensor": "the variable is a DTensor, and custom ops have no DTensor "
               "layout propagation",
    "device": "the variable lives on a device without a kernel in use "
              "(CPU always; GPU when the library was built with CUDA and "
              f"{GPU_KERNELS_ENV}=1 opts in, see docs/gpu.md)",
    "dtype": "the variable's dtype has no kernel (kernels exist for "
             "float16, bfloat16, float32 and float64)",
    "state_layout": "the slots are stored in another layout than the "
                    "variable's dtype (state_dtype), or the bfloat16 "
                    "variable is rounded stochastically, which only the CPU "
                    "kernels do so far",
}


class FusedOpUnavailableError(RuntimeError):
  """`fused=True` was asked for where the custom op cannot run.

  `reason` is the `dispatch_reason()` that ruled the op out.

  >>> from tf_opt_plugin import ops
  >>> w, m, v = (tf.Variable([1.0]) for _ in range(3))
  >>> @tf.function(jit_compile=True, autograph=False)
  ... def step():
  ...   ops.resource_apply_adamw(
  ...       w, m, v, tf.constant([0.1]), learning_rate=0.1, beta_1=0.9,
  ...       beta_2=0.999, epsilon=1e-7, weight_decay=0.0, step=1, fused=True)
  >>> try:
  ...   step()
  ... except FusedOpUnavailableError as error:
  ...   print(error.reason)
  xla
  """

  def __init__(self, reason, detail=""):
    self.reason = reason
    message = (f"The fused op cannot run here: {_REASON_TEXT[reason]} "
               f"(dispatch_reason={reason!r}). Pass fused=None to fall back "
               "to the pure-TensorFlow update, which computes the same values.")
    if detail:
      message += "\n" + detail
    super().__init__(message)


def in_xla_context():
  """Whether ops built now run inside an XLA-compiled function."""
  try:
    from tensorflow.python.framework import ops  # pylint: disable=g-import-not-at-top
    from tensorflow.python.ops import control_flow_util  # pylint: disable=g-import-not-at-top
  except ImportError:  # private API moved: assume no XLA rather than fail
    return False
  if tf.executing_eagerly():
    return False
  return control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph())


def is_dtensor(value):
  """Whether `value` (a variable or tensor) is a DTensor, as far as can be told."""
  try:
    from tensorflow.experimental import dtensor  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  if isinstance(value, dtensor.DVariable):
    return True
  if not tf.executing_eagerly():
    # Inside a tf.function only DVariables can be recognised; a DTensor
    # *tensor* reaching here still fails loudly in the op, never silently.
    return False
  try:
    return dtensor.is_dtensor(getattr(value, "handle", value))
  except (ValueError, TypeError, RuntimeError):
    return False


def _device_type(variable):
  device = getattr(variable, "device", "") or ""
  spec = tf.DeviceSpec.from_string(device)
  if spec.device_type:
    return spec.device_type.upper()
  # Unplaced (graph building without a device scope): TF places a CPU kernel
  # on the CPU unless a GPU is visible.
  return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"


def dispatch_reason(variable, gradient=None, state_layout="same",
                    stochastic_rounding=False):
  """Why the custom op will not run for `variable`, or None when it will.

  Decided at trace time, per variable. Reasons, checked in this order:
  "disabled" (env TF_OPT_PLUGIN_DISABLE_CUSTOM_OPS=1), "not_loaded" (the
  library failed to load), "xla" (inside an XLA-compiled function),
  "dtensor" (a DTensor variable), "device" (a device without a kernel in
  use: GPU kernels need a CUDA build and TF_OPT_PLUGIN_GPU_KERNELS=1),
  "dtype" (a dtype without a kernel) and "state_layout" (slots stored in
  another layout than the variable's dtype, see `_state`, or a bfloat16
  variable rounded stochastically, on a GPU, whose kernels do neither so
  far).

  >>> v = tf.Variable([1.0, 2.0])
  >>> dispatch_reason(v) in (None, "not_loaded")
  True
  """
  if _env_flags.read_flag(DISABLE_ENV, False):
    return "disabled"
  if not _library.is_loaded():
    return "not_loaded"
  if in_xla_context():
    return "xla"
  if is_dtensor(variable) or (gradient is not None and is_dtensor(gradient)):
    return "dtensor"
  if _device_type(variable) not in supported_device_types():
    return "device"
  dtype = tf.as_dtype(variable.dtype).base_dtype
  if dtype not in SUPPORTED_DTYPES:
    return "dtype"
  if ((state_layout != "same" or stochastic_rounding) and
      _device_type(variable) != "CPU"):
    return "state_layout"
  return None


def use_fused_op(fused, variable, gradient, state_layout="same",
                 stochastic_rounding=False):
  """Resolves the `fused` argument of the resource_apply_* functions."""
  if fused is False:
    return False
  reason = dispatch_reason(variable, gradient, state_layout,
                           stochastic_rounding)
  if reason is None:
    return True
  if fused:
    raise unavailable_error(reason)
  return False


def unavailable_error(reason):
  """The FusedOpUnavailableError for `reason`; "not_loaded" carries the
  library's load error (which file, which TensorFlow, how to rebuild)."""
  detail = ""
  if reason == "not_loaded":
    try:
      _library.load_library()
    except _library.LibraryLoadError as e:
      detail = str(e)
  return FusedOpUnavailableError(reason, detail)
