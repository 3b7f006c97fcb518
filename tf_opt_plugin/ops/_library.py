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
    (`required_ops()`): another TensorFlow library, or a copy of this one
    loaded under another path earlier in the process, defines none.
"""

import collections
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


def required_ops():
  """The raw op wrappers the package calls; a library lacking any is not ours.

  Those that the algorithms' `UpdateRule`s name (`tf_opt_plugin.ops.
  UPDATE_RULES`): each per-variable op and each multi-tensor op.
  """
  # The algorithm modules import this one: read their rules when asked.
  from tf_opt_plugin import ops  # pylint: disable=g-import-not-at-top
  return tuple(name for rule in ops.UPDATE_RULES
               for name in (rule.per_variable_op, rule.multi_tensor_op)
               if name is not None)


def __getattr__(name):
  # `REQUIRED_OPS`: `required_ops()`, by the name it has always had.
  if name == "REQUIRED_OPS":
    return required_ops()
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


# Where an ELF file of each class (EI_CLASS: 1, 32-bit; 2, 64-bit) keeps what
# `elf_problem` reads, as `struct` formats and byte offsets: the header's size,
# the offsets of its program and section header tables, their entry sizes and
# counts, and in an entry the extent of a segment (p_offset, p_filesz) and of
# a section (sh_type, sh_offset, sh_size).
_ElfLayout = collections.namedtuple("_ElfLayout", [
    "header_size", "table_offsets", "table_offsets_at", "table_sizes_at",
    "segment", "segment_at", "section"
])
_ELF_LAYOUTS = {
    1: _ElfLayout(52, "II", 28, 42, "I8xI", 4, "4xI8xII"),
    2: _ElfLayout(64, "QQ", 32, 54, "Q16xQ", 8, "4xI16xQQ"),
}
_SHT_NOBITS = 8  # a section with no contents in the file (.bss)


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
      if header[4] not in _ELF_LAYOUTS or header[5] not in (1, 2):
        return f"its ELF header is damaged ({size} bytes)"
      layout = _ELF_LAYOUTS[header[4]]
      order = "<" if header[5] == 1 else ">"  # ELFDATA2LSB
      if len(header) < layout.header_size:
        return f"it ends inside its ELF header ({size} bytes)"
      phoff, shoff = struct.unpack_from(order + layout.table_offsets, header,
                                        layout.table_offsets_at)
      phentsize, phnum, shentsize, shnum = struct.unpack_from(
          order + "HHHH", header, layout.table_sizes_at)

      def past_the_end(what, end):
        return f"its {what} ends at byte {end}, but the file has {size} bytes"

      def entries(offset, entry_size, count, fmt, at=0):
        for i in range(count):
          f.seek(offset + i * entry_size)
          yield i, struct.unpack_from(order + fmt, f.read(entry_size), at)

      tables = [
          ("program header table", phoff, phentsize * phnum),
          ("section header table", shoff, shentsize * shnum),
      ]
      for what, offset, length in tables:
        if length and offset + length > size:
          return past_the_end(what, offset + length)
      for i, (offset, length) in entries(phoff, phentsize, phnum,
                                         layout.segment, layout.segment_at):
        if offset + length > size:
          return past_the_end(f"segment {i}", offset + length)
      for i, (kind, offset, length) in entries(shoff, shentsize, shnum,
                                               layout.section):
        if kind != _SHT_NOBITS and offset + length > size:
          return past_the_end(f"section {i}", offset + length)
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
  required = required_ops()
  missing = [name for name in required if not hasattr(module, name)]
  if not missing:
    return
  if len(missing) == len(required):
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
