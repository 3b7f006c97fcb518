"""Wheel metadata for tf_opt_plugin.

Not meant to be run from the source tree: pip_pkg.sh stages the Python package and the Bazel-built
_tf_opt_plugin_ops.so into a temporary directory, copies this file next to them and builds the
wheel there. The version comes from tf_opt_plugin/_version.py. The TensorFlow requirement is the
minor version the binary was built against, which pip_pkg.sh writes into the staged
tf_opt_plugin/ops/_build_info.py (from the TensorFlow configure.py found): the binary only works
with that minor version. pip_pkg.sh also records the library's size and SHA-256 there, which the
package checks before loading it; the build fails when they do not match the staged library.
Neither file is imported (that would import TensorFlow).
"""

import ast
import hashlib
import os

from setuptools import find_namespace_packages, setup
from setuptools.dist import Distribution

try:  # setuptools >= 70.1
  from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:  # older setuptools + the `wheel` package
  from wheel.bdist_wheel import bdist_wheel as _bdist_wheel

_HERE = os.path.dirname(os.path.abspath(__file__))

# The Keras versions the Keras 3 front end was tested with: it reaches private Keras members
# (the optimizer's apply pipeline, the loss-scale and EMA internals), which may change in any
# minor release.
KERAS_REQUIREMENT = "keras>=3.15.1,<3.16"


def _constant(relative_path, name):
  """The string assigned to `name` at the top level of a Python file, read without importing it."""
  with open(os.path.join(_HERE, relative_path)) as f:
    tree = ast.parse(f.read())
  for node in tree.body:
    if (isinstance(node, ast.Assign) and len(node.targets) == 1 and
        getattr(node.targets[0], "id", None) == name and
        isinstance(node.value, ast.Constant) and
        isinstance(node.value.value, str)):
      return node.value.value
  raise SystemExit("%s assigns no string to %s" % (relative_path, name))


def _tf_requirement(minor_version):
  """`tensorflow>=X.Y,<X.Y+1` for "X.Y"."""
  try:
    major, minor = (int(x) for x in minor_version.split("."))
  except ValueError:
    raise SystemExit(
        "`TF_VERSION_BUILT_AGAINST` must be a version X.Y. Received: "
        "TF_VERSION_BUILT_AGAINST=%r" % minor_version) from None
  return "tensorflow>=%d.%d,<%d.%d" % (major, minor, major, minor + 1)


def _check_library_record():
  """The staged library is the one pip_pkg.sh recorded in _build_info.py (size and SHA-256), which
    the package checks before loading it: a wheel whose record is stale would never load its ops."""
  so_path = os.path.join(_HERE, "tf_opt_plugin", "ops", "_tf_opt_plugin_ops.so")
  if not os.path.exists(so_path):
    return  # no library: the package runs its pure-TF twins
  expected = _constant("tf_opt_plugin/ops/_build_info.py", "LIBRARY_SHA256")
  with open(so_path, "rb") as f:
    actual = hashlib.sha256(f.read()).hexdigest()
  if actual != expected:
    raise SystemExit(
        "tf_opt_plugin/ops/_build_info.py records LIBRARY_SHA256=%r, but the "
        "staged library's is %r: build the wheel with pip_pkg.sh" %
        (expected, actual))


__version__ = _constant("tf_opt_plugin/_version.py", "__version__")
TF_REQUIREMENT = _tf_requirement(
    _constant("tf_opt_plugin/ops/_build_info.py", "TF_VERSION_BUILT_AGAINST"))
_check_library_record()


class BinaryDistribution(Distribution):
  """The package ships a compiled shared library."""

  def has_ext_modules(self):
    return True


class bdist_wheel(_bdist_wheel):
  """Platform wheel that works with any Python 3: the .so does not link libpython."""

  def finalize_options(self):
    super().finalize_options()
    self.root_is_pure = False

  def get_tag(self):
    _, _, plat = super().get_tag()
    return "py3", "none", plat


setup(
    name="tf_opt_plugin",
    version=__version__,
    description="Fused AdamW, LAMB and Adafactor optimizer ops for TensorFlow",
    packages=find_namespace_packages(
        include=["tf_opt_plugin", "tf_opt_plugin.*"]),
    package_data={"tf_opt_plugin.ops": ["*.so"]},
    include_package_data=True,
    python_requires=">=3.9",
    install_requires=[TF_REQUIREMENT, KERAS_REQUIREMENT],
    # The demo's and the benchmark report's pictures; everything else works without it.
    extras_require={"demo": ["matplotlib"]},
    entry_points={
        "console_scripts": [
            "tf-opt-plugin-demo = tf_opt_plugin.demo:console_main",
            "tf-opt-plugin-benchmark = tf_opt_plugin.benchmark.__main__:console_main",
        ]
    },
    distclass=BinaryDistribution,
    cmdclass={"bdist_wheel": bdist_wheel},
    zip_safe=False,
)
