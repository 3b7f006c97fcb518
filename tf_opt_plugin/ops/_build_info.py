"""What the op library binary was built against (rewritten by pip_pkg.sh)."""

# The TensorFlow minor version whose C++ ABI the shared library links against.
# In the source tree, the series it targets (tools/setup_env.sh installs it);
# pip_pkg.sh writes the version configure.py found into the wheel's copy, and
# setup.py derives the wheel's TensorFlow requirement from that.
TF_VERSION_BUILT_AGAINST = "2.21"
