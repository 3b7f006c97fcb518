"""The version of tf_opt_plugin: the one place it is written (setup.py reads it)."""

__version__ = "0.1.0"
