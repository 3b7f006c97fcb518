"""Wheel metadata for tf_opt_plugin.

Not meant to be run from the source tree: pip_pkg.sh stages the Python package and the Bazel-built
_tf_opt_plugin_ops.so into a temporary directory, copies this file next to them and builds the
wheel there. The TensorFlow requirement is passed in by pip_pkg.sh (TF_OPT_PLUGIN_TF_REQUIREMENT,
computed by configure.py from the TensorFlow the library was built against), because the binary
only works with that minor version.
"""

import os

from setuptools import find_namespace_packages, setup
from setuptools.dist import Distribution

try:  # setuptools >= 70.1
    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:  # older setuptools + the `wheel` package
    from wheel.bdist_wheel import bdist_wheel as _bdist_wheel

__version__ = "0.1.0"

_REQ_ENV = "TF_OPT_PLUGIN_TF_REQUIREMENT"
TF_REQUIREMENT = os.environ.get(_REQ_ENV)
if not TF_REQUIREMENT:
    raise SystemExit("%s is not set: build the wheel with ./pip_pkg.sh DEST_DIR" % _REQ_ENV)


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
    packages=find_namespace_packages(include=["tf_opt_plugin", "tf_opt_plugin.*"]),
    package_data={"tf_opt_plugin.ops": ["*.so"]},
    include_package_data=True,
    python_requires=">=3.9",
    install_requires=[TF_REQUIREMENT],
    # The demo's and the benchmark report's pictures; everything else works without it.
    extras_require={"demo": ["matplotlib"]},
    entry_points={"console_scripts": [
        "tf-opt-plugin-demo = tf_opt_plugin.demo:console_main",
        "tf-opt-plugin-benchmark = tf_opt_plugin.benchmark.__main__:console_main",
    ]},
    distclass=BinaryDistribution,
    cmdclass={"bdist_wheel": bdist_wheel},
    zip_safe=False,
)
