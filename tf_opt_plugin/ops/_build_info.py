"""What the op library binary was built against (rewritten by pip_pkg.sh)."""

# The TensorFlow minor version whose C++ ABI the shared library links against.
# In the source tree, the series it targets (tools/setup_env.sh installs it);
# pip_pkg.sh writes the version configure.py found into the wheel's copy, and
# setup.py derives the wheel's TensorFlow requirement from that.
TF_VERSION_BUILT_AGAINST = "2.21"

# The size in bytes and the SHA-256 (hex) of the _tf_opt_plugin_ops.so the
# wheel ships, which _library.py checks before loading it (a file damaged by
# an interrupted install or a full disk could crash the process). None in the
# source tree; pip_pkg.sh writes them into the wheel's copy.
LIBRARY_SIZE = None
LIBRARY_SHA256 = None
