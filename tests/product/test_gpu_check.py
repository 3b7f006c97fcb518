"""tools/gpu_check.sh: the standalone CUDA check compiles and its host self-test passes.

The check compiles the op library's device code (cc/kernels/gpu/*.cu.h) with nvcc alone, without
TensorFlow. Here (CI: nvcc, no GPU) only its host-side self-test runs: the float64 references
against Keras's golden values and a second formulation, the comparison, the chunk map. On a GPU
machine `bash tools/gpu_check.sh` runs the full check (docs/gpu.md).
"""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "gpu_check.sh")


def _nvcc():
  for candidate in (os.environ.get("NVCC"), shutil.which("nvcc"),
                    "/usr/local/cuda/bin/nvcc"):
    if candidate and os.path.isfile(candidate) and os.access(
        candidate, os.X_OK):
      return candidate
  return None


NVCC = _nvcc()
# Every test runs tools/gpu_check.sh; the first compiles the check with nvcc
# (20-30 s on 2 cores), the others reuse the binary it caches.
pytestmark = [
    pytest.mark.skipif(
        NVCC is None,
        reason="nvcc not found (set NVCC=/path/to/nvcc): the standalone GPU "
        "check cannot be compiled here"), pytest.mark.needs_nvcc,
    pytest.mark.subprocess, pytest.mark.slow
]


def _run(*args, arch="sm_80"):
  env = dict(os.environ, NVCC=NVCC, GPU_CHECK_ARCH=arch)
  return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True,
                        timeout=1200, env=env, check=False)


def test_self_test_compiles_and_passes():
  result = _run("--self-test")
  output = result.stdout + result.stderr
  assert result.returncode == 0, output
  assert "all host checks passed" in result.stdout, output
  assert "FAIL" not in result.stdout, output


def test_bad_argument_is_a_usage_error():
  result = _run("--no-such-option")
  assert result.returncode == 3, result.stdout + result.stderr


def test_without_a_gpu_it_says_so_and_fails():
  if shutil.which("nvidia-smi") and subprocess.run(
      ["nvidia-smi", "-L"], capture_output=True, check=False).returncode == 0:
    pytest.skip("a GPU is visible: tools/gpu_check.sh runs the real check")
  result = _run("--no-bert", "--elements", "1000", "--repeats", "1")
  assert result.returncode == 2, result.stdout + result.stderr
  assert "no usable CUDA GPU" in result.stdout, result.stdout
