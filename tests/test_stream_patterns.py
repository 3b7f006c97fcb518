"""tools/stream_patterns.cc (docs/benchmarks.md's read / write bandwidth table) builds and runs.

A small size, so it only checks that the tool compiles with the system compiler, measures every
pattern and rejects a bad size; the bandwidths it prints at this size are cache rates, not memory's.
"""

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "tools", "stream_patterns.cc")
CXX = shutil.which(os.environ.get("CXX", "g++"))

pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++) on PATH")

PATTERNS = ("sum of a^2 (1 read-only stream)", "sum of a^2 + b^2 (2 read-only streams)",
            "same, prefetching 2 KiB ahead", "b += a (the floor's np.add)",
            "b -= 1e-9 * a (Adafactor pass 2)", "b = a (copy)")


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("stream_patterns") / "stream_patterns")
  subprocess.run([CXX, "-O2", "-fopenmp", "-Wall", SOURCE, "-o", path],
                 check=True, timeout=300)
  return path


def test_measures_every_pattern(binary):
  out = subprocess.run([binary, "--elements", str(4 * 16384)], capture_output=True, text=True,
                       check=True, timeout=120).stdout
  assert "65536 float32 elements per array" in out
  for name in PATTERNS:
    line = next(l for l in out.splitlines() if l.startswith(name))
    ms, counted, read = (float(x) for x in re.findall(r"[\d.]+", line[len(name):]))
    assert ms >= 0 and counted > 0 and read > 0, line
    assert read <= counted, line


def test_rejects_a_size_that_is_not_a_multiple_of_the_block(binary):
  result = subprocess.run([binary, "--elements", "100"], capture_output=True, text=True,
                          timeout=60)
  assert result.returncode == 2
  assert "--elements must be a positive multiple of 16384. Received: 100" in result.stderr
