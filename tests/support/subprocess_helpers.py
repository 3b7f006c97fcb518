"""Running the distributed test scripts as fresh Python processes.

Logical CPU devices and MultiWorkerMirroredStrategy must be configured before
TensorFlow initialises, and the pytest process has initialised it already, so
the tests under tests/distributed/ (and test_keras_multi_tensor.py,
test_tf_keras_optimizers.py under tests/keras/) run their scenarios in
subprocesses that print one `RESULT_JSON {...}` line. The worker scripts live
here, next to this file, so `script(name)` finds them.
"""

import importlib.util
import json
import os
import sys

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
RESULT_PREFIX = "RESULT_JSON "


def script(name):
  """Absolute path of a script next to this file."""
  return os.path.join(TESTS_DIR, name)


def command(name, *args):
  return [sys.executable, script(name)] + [str(a) for a in args]


def environment(**extra):
  """os.environ plus a PYTHONPATH under which the child imports the same
  tf_opt_plugin as this process (the source tree or the installed wheel)."""
  env = dict(os.environ)
  paths = [TESTS_DIR]
  spec = importlib.util.find_spec("tf_opt_plugin")
  if spec is not None and spec.origin:
    package_parent = os.path.dirname(os.path.dirname(spec.origin))
    if os.path.basename(package_parent) not in ("site-packages",
                                                "dist-packages"):
      paths.insert(0, package_parent)
  if env.get("PYTHONPATH"):
    paths.append(env["PYTHONPATH"])
  env["PYTHONPATH"] = os.pathsep.join(paths)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env.update(extra)
  return env


def parse_result(stdout):
  """The JSON of the `RESULT_JSON` line, or None."""
  for line in reversed(stdout.splitlines()):
    if line.startswith(RESULT_PREFIX):
      return json.loads(line[len(RESULT_PREFIX):])
  return None


def tail(text, size=3000):
  return text[-size:] if text else ""
