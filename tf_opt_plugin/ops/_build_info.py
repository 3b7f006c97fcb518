"""What the op library binary was built against (rewritten by pip_pkg.sh)."""

# The TensorFlow minor version whose C++ ABI the shared library links against.
TF_VERSION_BUILT_AGAINST = "2.21"
