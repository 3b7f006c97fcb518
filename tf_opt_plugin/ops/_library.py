"""Lazy loading of the custom-op shared library.

The library is loaded on first use, not at import, so `import tf_opt_plugin`
never fails: when the binary is missing, damaged, foreign or built for
another TensorFlow, every optimizer still runs on its pure-TF twin and
`dispatch_reason()` says "not_loaded".

What is checked, so that a bad file is refused rather than crash the process
(a truncated library maps pages past its end: SIGBUS at the first step):

  * before loading the packaged library, its size and SHA-256 against those
    pip_pkg.sh recorded in `_build_info.py` when it built the wheel;
  * before loading a library named by TF_OPT_PLUGIN_LIBRARY (a development
    build, no checksum) or an unrecorded one, that it is a complete ELF file
    (`elf_problem`): the ELF header, every program header's segment and the
    section header table lie within the file;
  * after loading, that it defines every op wrapper the package calls
    (`REQUIRED_OPS`): another TensorFlow library, or a copy of this one
    loaded under another path earlier in the process, defines none.
"""

import hashlib
import os
import struct
import threading

import tensorflow as tf

from tf_opt_plugin import _version
from tf_opt_plugin.ops import _build_info

LIBRARY_FILENAME = "_tf_opt_plugin_ops.so"
# Points at another build of the library (e.g. a development build).
LIBRARY_PATH_ENV = "TF_OPT_PLUGIN_LIBRARY"

# The raw op wrappers the package calls (the `UpdateRule`s of adamw.py,
# lamb.py, adafactor.py and lion.py name them); a library lacking any is not
# ours (tests/ops/test_library_integrity.py checks the two agree).
REQUIRED_OPS = (
    "resource_apply_adam_w",
    "resource_multi_tensor_apply_adam_w",
    "resource_apply_lamb",
    "resource_multi_tensor_apply_lamb",
    "resource_apply_adafactor",
    "resource_apply_lion",
    "resource_multi_tensor_apply_lion",
)

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
  return _packaged_path()


def _packaged_path():
  return os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      LIBRARY_FILENAME)


@tf.autograph.experimental.do_not_convert
def elf_problem(path):
  """None when `path` is a complete ELF file, else what is wrong.

  Complete: the ELF header, the program header table and every segment it
  maps (p_offset + p_filesz), the section header table and every section
  with contents in the file (sh_offset + sh_size) lie within the file's
  size. A file cut short fails it; a complete file with damaged contents
  does not (the packaged library's checksum catches that).
  """
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      header = f.read(64)
      if len(header) < 16 or header[:4] != b"\x7fELF":
        return f"it is not an ELF file ({size} bytes)"
      if header[4] not in (1, 2) or header[5] not in (1, 2):
        return f"its ELF header is damaged ({size} bytes)"
      wide = header[4] == 2  # ELFCLASS64
      order = "<" if header[5] == 1 else ">"  # ELFDATA2LSB
      if len(header) < (64 if wide else 52):
        return f"it ends inside its ELF header ({size} bytes)"
      if wide:
        phoff, shoff = struct.unpack_from(order + "QQ", header, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(
            order + "HHHH", header, 54)
      else:
        phoff, shoff = struct.unpack_from(order + "II", header, 28)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(
            order + "HHHH", header, 42)
      tables = [
          ("program header table", phoff, phentsize * phnum),
          ("section header table", shoff, shentsize * shnum),
      ]
      for what, offset, length in tables:
        if length and offset + length > size:
          return (
              f"its {what} ends at byte {offset + length}, but the file has "
              f"{size} bytes")
      for i in range(phnum):
        f.seek(phoff + i * phentsize)
        entry = f.read(phentsize)
        if wide:
          offset, filesz = struct.unpack_from(order + "Q16xQ", entry, 8)
        else:
          offset, filesz = struct.unpack_from(order + "I8xI", entry, 4)
        if offset + filesz > size:
          return (
              f"its segment {i} ends at byte {offset + filesz}, but the file "
              f"has {size} bytes")
      for i in range(shnum):
        f.seek(shoff + i * shentsize)
        entry = f.read(shentsize)
        if wide:
          kind, offset, length = struct.unpack_from(order + "4xI16xQQ", entry)
        else:
          kind, offset, length = struct.unpack_from(order + "4xI8xII", entry)
        if kind != 8 and offset + length > size:  # 8: SHT_NOBITS (.bss)
          return (
              f"its section {i} ends at byte {offset + length}, but the file "
              f"has {size} bytes")
  except (OSError, struct.error) as e:
    return f"it cannot be read as an ELF file: {e}"
  return None


@tf.autograph.experimental.do_not_convert
def _check_file(path):
  """Raises LibraryLoadError when `path` must not be loaded (see the module
  docstring): a file that would crash the process."""
  if not os.path.exists(path):
    return  # tf.load_op_library's error says so
  recorded = getattr(_build_info, "LIBRARY_SHA256", None)
  if recorded and os.path.abspath(path) == _packaged_path():
    expected_size = getattr(_build_info, "LIBRARY_SIZE", None)
    size = os.path.getsize(path)
    if expected_size is not None and size != expected_size:
      cause = f"it has {size} bytes, the package recorded {expected_size}"
    else:
      digest = hashlib.sha256()
      with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
          digest.update(chunk)
      if digest.hexdigest() == recorded:
        return
      cause = (
          f"its SHA-256 is {digest.hexdigest()}, the package recorded {recorded}"
      )
    raise LibraryLoadError(
        f"The tf_opt_plugin op library {path} is damaged: {cause} (an "
        "interrupted install or a full disk?). Reinstall the package: `pip "
        "install --force-reinstall --no-deps "
        f"tf_opt_plugin=={_version.__version__}` (or the wheel it came from). "
        "Until then the optimizers run their pure-TensorFlow twins.")
  problem = elf_problem(path)
  if problem is not None:
    raise LibraryLoadError(
        _describe_failure(
            path,
            f"the file is not a complete ELF shared library: {problem} (an "
            "interrupted copy or build, or a full disk?)",
        ))


@tf.autograph.experimental.do_not_convert
def _check_ops(path, module):
  """Raises LibraryLoadError when the loaded `module` lacks an op wrapper
  the package calls."""
  missing = [name for name in REQUIRED_OPS if not hasattr(module, name)]
  if not missing:
    return
  if len(missing) == len(REQUIRED_OPS):
    cause = (
        "it registers none of tf_opt_plugin's ops (another library, or a copy "
        "of this one that the process loaded from another path before)")
  else:
    cause = "it lacks ops of this version of tf_opt_plugin (an older build?)"
  raise LibraryLoadError(
      _describe_failure(path, f"{cause}. Missing: {', '.join(missing)}"))


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
  are the API; these take resource handles). The file is checked before it
  is loaded and the module after (see the module docstring).

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
        _check_file(path)
        module = tf.load_op_library(path)
        _check_ops(path, module)
        _module = module
      except LibraryLoadError as e:
        _error = e
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
