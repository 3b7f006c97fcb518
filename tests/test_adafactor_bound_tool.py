"""tools/adafactor_bound (docs/benchmarks.md, "Why Adafactor misses the floor") still works.

The patch must keep applying to and compiling with the kernel it instruments, so the bound can be
re-measured after the kernel changes: run.sh builds the patched library from the committed tree
and runs the alternation on the tiny shape set. Without the patch, alternate.py runs the real
kernel in all three rows. The times printed at this size mean nothing; the tests check that every
row is measured and that bad arguments are refused.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "adafactor_bound")
ROW = re.compile(r"^(real|pass1|both)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", re.M)


def _is_git_checkout():
  return shutil.which("git") is not None and subprocess.run(
      ["git", "-C", ROOT, "rev-parse", "--verify", "HEAD"], capture_output=True).returncode == 0


def _assert_three_rows(output):
  rows = {m.group(1): [float(x) for x in m.groups()[1:]] for m in ROW.finditer(output)}
  assert sorted(rows) == ["both", "pass1", "real"], output
  for name, (median, minimum, ratio) in rows.items():
    assert 0 < minimum <= median and ratio > 0, (name, output)


def _alternate(*args, env=None):
  return subprocess.run([sys.executable, os.path.join(TOOL, "alternate.py"), *args],
                        capture_output=True, text=True, timeout=600, env=env)


def test_alternate_times_every_variant():
  result = _alternate("--shapes", "tiny", "--steps", "2", "--floor-mib", "16")
  assert result.returncode == 0, result.stderr
  assert "Adafactor step over tiny (11 variables)" in result.stdout
  _assert_three_rows(result.stdout)


def test_alternate_refuses_zero_steps():
  result = _alternate("--steps", "0")
  assert result.returncode == 2
  assert "`--steps` must be at least 1. Received: --steps=0" in result.stderr


@pytest.mark.skipif(shutil.which("bazel") is None, reason="no bazel on PATH")
@pytest.mark.skipif(not _is_git_checkout(), reason="run.sh builds the committed tree (git)")
def test_patched_library_builds_and_runs():
  env = dict(os.environ, PYTHON=sys.executable)
  result = subprocess.run(
      ["bash", os.path.join(TOOL, "run.sh"), "--shapes", "tiny", "--steps", "2",
       "--floor-mib", "16"], capture_output=True, text=True, timeout=1200, env=env)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  _assert_three_rows(result.stdout)
