"""Lazy loading of the custom-op shared library.

The library is loaded on first use, not at import, so `import tf_opt_plugin`
never fails: when the binary is missing or was built for another TensorFlow,
every optimizer still runs on its pure-TF twin and `dispatch_reason()` says
"not_loaded".
"""

import os
import threading

import tensorflow as tf

from tf_opt_plugin.ops import _build_info

LIBRARY_FILENAME = "_tf_opt_plugin_ops.so"
# Points at another build of the library (e.g. a development build).
LIBRARY_PATH_ENV = "TF_OPT_PLUGIN_LIBRARY"

_lock = threading.Lock()
_module = None
_error = None


class LibraryLoadError(ImportError):
  """The custom-op library could not be loaded; the message says how to fix it.

  It names the file, the TensorFlow version the binary needs, and the
  rebuild command. The optimizers never raise it: they fall back to the
  pure-TF twins (`dispatch_reason()` returns "not_loaded").

  >>> try:
  ...   _ = load_library()
  ...   print("fused ops available")
  ... except LibraryLoadError as error:
  ...   print("pure-TF twins only:", str(error).splitlines()[0])
  fused ops available
  """


def library_path():
  """The file the library is loaded from.

  The `_tf_opt_plugin_ops.so` next to this module, unless the environment
  variable `TF_OPT_PLUGIN_LIBRARY` names another build.

  >>> library_path().endswith(".so")
  True
  """
  override = os.environ.get(LIBRARY_PATH_ENV)
  if override:
    return override
  return os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      LIBRARY_FILENAME)


def _describe_failure(path, cause):
  running = ".".join(tf.__version__.split(".")[:2])
  built = _build_info.TF_VERSION_BUILT_AGAINST
  lines = [f"Could not load the tf_opt_plugin op library from {path}: {cause}"]
  if not os.path.exists(path):
    lines.append("The file does not exist: this install has no compiled ops.")
  if running != built:
    lines.append(
        f"It was built against TensorFlow {built}.x, but this process runs "
        f"TensorFlow {tf.__version__}: install tensorflow=={built}.* or "
        "rebuild the library.")
  lines.append(
      "To rebuild from source: `python3 configure.py && bazel build "
      "//:tf_opt_plugin/ops/_tf_opt_plugin_ops.so && ./pip_pkg.sh dist && "
      "pip install dist/*.whl` (see README.md). Until then the optimizers run "
      "their pure-TensorFlow twins.")
  return "\n".join(lines)


def load_library():
  """Loads (once) and returns the op module; raises LibraryLoadError.

  The module holds the raw op wrappers (the `tf_opt_plugin.ops` functions
  are the API; these take resource handles).

  >>> sorted(name for name in dir(load_library())
  ...        if name.startswith("resource") and "fallback" not in name)
  ... # doctest: +NORMALIZE_WHITESPACE
  ['resource_apply_adafactor', 'resource_apply_adam_w', 'resource_apply_lamb',
   'resource_apply_lion', 'resource_multi_tensor_apply_adam_w',
   'resource_multi_tensor_apply_lamb', 'resource_multi_tensor_apply_lion']
  """
  global _module, _error
  with _lock:
    if _module is None and _error is None:
      path = library_path()
      try:
        _module = tf.load_op_library(path)
      except (tf.errors.NotFoundError, OSError) as e:
        _error = LibraryLoadError(_describe_failure(path, e))
    if _error is not None:
      raise _error
    return _module


def has_gpu_kernels():
  """True when the loaded library registered GPU kernels (built with nvcc)."""
  if not is_loaded():
    return False
  try:
    from tensorflow.python.framework import kernels  # pylint: disable=g-import-not-at-top
    registered = kernels.get_registered_kernels_for_op("ResourceApplyAdamW")
  except (ImportError, AttributeError, tf.errors.OpError):
    return False
  return any(k.device_type == "GPU" for k in registered.kernel)


def is_loaded():
  """True when the op library loads; never raises."""
  try:
    load_library()
    return True
  except LibraryLoadError:
    return False
