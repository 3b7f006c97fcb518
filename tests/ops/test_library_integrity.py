"""A damaged or foreign op library never crashes the process: it is refused
before `tf.load_op_library` (size and SHA-256 recorded by pip_pkg.sh, or, for
a TF_OPT_PLUGIN_LIBRARY override, a complete ELF file) or after it (every op
wrapper the package needs), `dispatch_reason()` says "not_loaded" and the
optimizers run on their pure-TF twins.

Every scenario runs in a fresh Python (a SIGBUS there fails the test instead
of killing pytest), on a copy of the library this process would load.
"""

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

import algorithms as A
import subprocess_helpers
import tf_opt_plugin
from tf_opt_plugin.ops import _build_info
from tf_opt_plugin.ops import _library

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]

# Loads the library and runs a few twins; prints one RESULT_JSON line.
_CHILD = r"""
import json
import numpy as np
import tensorflow as tf
from tf_opt_plugin import ops

result = {"reason": ops.dispatch_reason(tf.Variable([1.0]))}
try:
  ops.load_library()
  result["error"] = None
except ops.LibraryLoadError as e:
  result["error"] = str(e)
w = tf.Variable([1.0, 2.0])
m, v = tf.Variable([0.0, 0.0]), tf.Variable([0.0, 0.0])
ops.resource_apply_adamw(
  w, m, v, tf.constant([0.1, 0.1]), learning_rate=0.1, beta_1=0.9,
  beta_2=0.999, epsilon=1e-7, weight_decay=0.0, step=1)
result["adamw"] = [float(x) for x in w.numpy()]
ws = [tf.Variable([3.0, 4.0]), tf.Variable([1.0], dtype=tf.float64)]
ms = [tf.Variable(tf.zeros_like(x)) for x in ws]
vs = [tf.Variable(tf.zeros_like(x)) for x in ws]
ops.multi_tensor_apply_lamb(
  ws, ms, vs, [tf.constant([1.0, 1.0]), tf.constant([1.0], tf.float64)],
  learning_rate=0.1, beta_1=0.9, beta_2=0.999, epsilon=0.0,
  weight_decay_rate=0.0, step=1)
result["lamb"] = [float(x) for x in ws[0].numpy()]
@tf.function
def step(x):
  ops.resource_apply_adamw(
    w, m, v, x, learning_rate=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
    weight_decay=0.0, step=2)
step(tf.constant([0.1, 0.1]))
print("RESULT_JSON " + json.dumps(result))
"""


def _run_child(env_changes, pythonpath=None):
  env = subprocess_helpers.environment()
  env.pop(_library.LIBRARY_PATH_ENV, None)
  env.update(env_changes)
  if pythonpath is not None:
    env["PYTHONPATH"] = os.pathsep.join([pythonpath, env["PYTHONPATH"]])
  proc = subprocess.run(
      [sys.executable, "-c", _CHILD],
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )
  assert proc.returncode == 0, (
      f"the child process died (exit status {proc.returncode}, a negative "
      f"value is the signal):\n{subprocess_helpers.tail(proc.stderr)}")
  result = subprocess_helpers.parse_result(proc.stdout)
  assert result is not None, subprocess_helpers.tail(proc.stdout + proc.stderr)
  return result


def _library_bytes():
  path = _library.library_path()
  if not os.path.isfile(path):
    pytest.skip(f"no op library at {path}")
  with open(path, "rb") as f:
    return f.read()


def _assert_twins_only(result):
  assert result["reason"] == "not_loaded", result
  assert result["error"], result
  # AdamW's first step moves each weight by about lr; LAMB's by lr * ratio.
  assert result["adamw"] == pytest.approx([0.9, 1.9], abs=1e-4), result
  assert result["lamb"] == pytest.approx([2.6464, 3.6464], abs=1e-4), result


def _package_copy(tmp_path, library, sha256=None, size=None):
  """A copy of the tf_opt_plugin package holding `library`, its
  _build_info.py recording `sha256` and `size` as pip_pkg.sh does."""
  root = tmp_path / "site"
  package = root / "tf_opt_plugin"
  shutil.copytree(
      os.path.dirname(tf_opt_plugin.__file__),
      package,
      ignore=shutil.ignore_patterns("__pycache__", "*.so"),
  )
  (package / "ops" / _library.LIBRARY_FILENAME).write_bytes(library)
  build_info = package / "ops" / "_build_info.py"
  text = build_info.read_text()
  for name, value in (("LIBRARY_SHA256", sha256), ("LIBRARY_SIZE", size)):
    text, count = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", text,
                          flags=re.M)
    assert count == 1, f"_build_info.py has no {name}"
  build_info.write_text(text)
  return str(root)


# ---------------------------------------------------------------------------
# B4. Damaged files.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0.5, -16], ids=["half", "16-bytes-short"])
def test_truncated_override_falls_back_to_the_twins(tmp_path, keep):
  data = _library_bytes()
  size = int(len(data) * keep) if keep > 0 else len(data) + keep
  damaged = tmp_path / "truncated.so"
  damaged.write_bytes(data[:size])
  result = _run_child({_library.LIBRARY_PATH_ENV: str(damaged)})
  _assert_twins_only(result)
  assert "not a complete ELF" in result["error"], result["error"]
  assert str(damaged) in result["error"], result["error"]


def test_an_empty_or_non_elf_override_falls_back_to_the_twins(tmp_path):
  for name, data in (("empty.so", b""), ("text.so", b"not a library\n" * 99)):
    path = tmp_path / name
    path.write_bytes(data)
    _assert_twins_only(_run_child({_library.LIBRARY_PATH_ENV: str(path)}))


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_packaged_library_that_fails_its_checksum(tmp_path, damage):
  data = _library_bytes()
  sha256 = hashlib.sha256(data).hexdigest()
  if damage == "truncated":
    bad = data[:len(data) // 2]
  else:  # one byte flipped in the middle of the code: a complete ELF file
    middle = len(data) // 2
    bad = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
  site = _package_copy(tmp_path, bad, sha256=sha256, size=len(data))
  result = _run_child({}, pythonpath=site)
  _assert_twins_only(result)
  assert "damaged" in result["error"], result["error"]
  assert "pip install --force-reinstall" in result["error"], result["error"]


def test_packaged_library_that_matches_its_checksum_loads(tmp_path):
  data = _library_bytes()
  site = _package_copy(tmp_path, data, sha256=hashlib.sha256(data).hexdigest(),
                       size=len(data))
  result = _run_child({}, pythonpath=site)
  assert result["error"] is None, result["error"]
  assert result["reason"] is None, result


def test_installed_wheel_records_its_library():
  # The wheel pip_pkg.sh builds records the size and SHA-256 of the library
  # it ships (CI runs the tests against that wheel).
  spec = importlib.util.find_spec("tf_opt_plugin")
  package = os.path.dirname(spec.origin)
  if os.path.basename(os.path.dirname(package)) not in (
      "site-packages",
      "dist-packages",
  ):
    pytest.skip("tf_opt_plugin is imported from the source tree, not a wheel")
  path = os.path.join(package, "ops", _library.LIBRARY_FILENAME)
  with open(path, "rb") as f:
    data = f.read()
  assert _build_info.LIBRARY_SIZE == len(data)
  assert _build_info.LIBRARY_SHA256 == hashlib.sha256(data).hexdigest()


def test_source_tree_build_info_records_no_library():
  # pip_pkg.sh writes the values into the staged copy only.
  source = os.path.join(
      os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
      "tf_opt_plugin",
      "ops",
      "_build_info.py",
  )
  with open(source) as f:
    text = f.read()
  assert re.search(r"^LIBRARY_SHA256 = None$", text, re.M), text
  assert re.search(r"^LIBRARY_SIZE = None$", text, re.M), text


# ---------------------------------------------------------------------------
# B5. Libraries without our ops.
# ---------------------------------------------------------------------------
def _foreign_libraries():
  tf_dir = os.path.dirname(tf.__file__)
  candidates = [
      # A TensorFlow custom-op library registering other ops.
      os.path.join(
          tf_dir,
          "lite/experimental/microfrontend/python/ops/_audio_microfrontend_op.so",
      ),
      # A library this process has loaded already, registering none.
      os.path.join(tf_dir, "libtensorflow_framework.so.2"),
  ]
  return [c for c in candidates if os.path.isfile(c)]


@pytest.mark.parametrize("which", ["custom-op", "framework"])
def test_foreign_library_falls_back_to_the_twins(which):
  libraries = {
      ("custom-op" if "microfrontend" in p else "framework"): p
      for p in _foreign_libraries()
  }
  if which not in libraries:
    pytest.skip(f"no {which} library in this TensorFlow")
  result = _run_child({_library.LIBRARY_PATH_ENV: libraries[which]})
  _assert_twins_only(result)
  assert "resource_apply_adam_w" in result["error"], result["error"]
  assert "registers none" in result["error"] or "lacks" in result["error"]


def test_required_ops_are_those_the_package_calls():
  from tf_opt_plugin.ops import UPDATE_RULES  # pylint: disable=g-import-not-at-top

  used = set()
  for rule in UPDATE_RULES:
    used.add(rule.per_variable_op)
    if rule.multi_tensor_op:
      used.add(rule.multi_tensor_op)
  assert used == set(_library.REQUIRED_OPS)
  # REQUIRED_OPS is derived from UPDATE_RULES: the tests' registry checks
  # that every fused op it knows is among them, and nothing else.
  assert used == {
      A.raw_op_name(op_type)
      for a in A.with_fused_op()
      for op_type in (a.op_type, a.multi_tensor_op_type)
      if op_type
  }
  module = _library.load_library()
  assert all(callable(getattr(module, name)) for name in used)


def test_elf_check_accepts_the_library_and_names_what_is_missing(tmp_path):
  data = _library_bytes()
  good = tmp_path / "good.so"
  good.write_bytes(data)
  assert _library.elf_problem(str(good)) is None
  short = tmp_path / "short.so"
  short.write_bytes(data[:-1])
  problem = _library.elf_problem(str(short))
  assert problem and str(len(data) - 1) in problem, problem
