"""Shared pytest configuration and helpers for the tf_opt_plugin tests."""

import importlib.util
import os
import sys

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_ROOT = os.path.dirname(_TESTS_DIR)
# The helpers (references, op_harness, keras_harness, ...) live in
# tests/support/ and are imported by bare name from every test folder. Only
# that folder goes on sys.path, not tests/ itself, whose keras/ folder would
# otherwise be a namespace-package candidate for `import keras`.
_SUPPORT_DIR = os.path.join(_TESTS_DIR, "support")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if _SUPPORT_DIR not in sys.path:
  sys.path.insert(0, _SUPPORT_DIR)

# Use the installed package when there is one (the wheel CI builds); fall back
# to the source tree only when nothing is installed.
if importlib.util.find_spec("tf_opt_plugin") is None:
  sys.path.insert(0, _REPO_ROOT)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _custom_ops_enabled(monkeypatch):
  """Every test starts with the custom ops enabled (tests opt out)."""
  monkeypatch.delenv("TF_OPT_PLUGIN_DISABLE_CUSTOM_OPS", raising=False)
