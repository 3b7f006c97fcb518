#!/usr/bin/env bash
# Compiles tools/gpu_check/gpu_check.cu (the op library's CUDA kernels, no TensorFlow) with nvcc
# and runs it. Needs nvcc (CUDA >= 12.1) and, except for --self-test, an NVIDIA GPU.
#
#   tools/gpu_check.sh                 check + time every kernel and dtype, BERT-base multi-tensor
#   tools/gpu_check.sh --self-test     host-only checks (no GPU): what CI runs
#   tools/gpu_check.sh --help          the driver's options (--elements, --seed, --repeats, ...)
#
# Environment: NVCC (default: nvcc on PATH, then /usr/local/cuda/bin/nvcc), GPU_CHECK_ARCH (e.g.
# sm_90; default: the visible GPU's, from nvidia-smi), GPU_CHECK_BUILD_DIR (default:
# ${TMPDIR:-/tmp}/tf_opt_plugin_gpu_check; the binary is rebuilt when a source or flag changes).
# Exit status: the driver's (0 pass, 1 mismatch, 2 no GPU / CUDA error, 3 usage), or 4 when it
# cannot be built.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "[gpu_check.sh] $*" >&2; }

NVCC=${NVCC:-$(command -v nvcc || true)}
[[ -n "$NVCC" ]] || NVCC=/usr/local/cuda/bin/nvcc
if [[ ! -x "$NVCC" ]]; then
  log "error: nvcc not found (set NVCC=/path/to/nvcc)"
  exit 4
fi

self_test=0
for arg in "$@"; do
  [[ "$arg" == "--self-test" ]] && self_test=1
done

# Target architecture: the GPU's own, so the timed code is SASS for it.
if [[ -n "${GPU_CHECK_ARCH:-}" ]]; then
  ARCH_FLAGS="-arch=${GPU_CHECK_ARCH}"
elif [[ $self_test -eq 1 ]]; then
  ARCH_FLAGS="-gencode arch=compute_80,code=sm_80"  # device code compiled, never run
elif cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1) &&
    [[ "$cc" =~ ^[0-9]+\.[0-9]+$ ]]; then
  ARCH_FLAGS="-arch=sm_${cc/./}"
else
  log "nvidia-smi gave no compute capability; compiling for sm_80, sm_90 (+PTX)"
  ARCH_FLAGS="-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=[sm_90,compute_90]"
fi

FLAGS="-std=c++17 -O3 --expt-relaxed-constexpr -lineinfo $ARCH_FLAGS -I$ROOT -Xcompiler -fopenmp -lgomp"
SOURCES=("$ROOT/tools/gpu_check/gpu_check.cu" "$ROOT"/cc/kernels/gpu/*.cu.h "$ROOT"/cc/kernels/math/*.h
         "$ROOT"/cc/kernels/adamw_op.h "$ROOT"/cc/kernels/lamb_op.h "$ROOT"/cc/kernels/adafactor_op.h)
BUILD=${GPU_CHECK_BUILD_DIR:-${TMPDIR:-/tmp}/tf_opt_plugin_gpu_check}
mkdir -p "$BUILD"
key=$( { "$NVCC" --version; echo "$FLAGS"; cat "${SOURCES[@]}"; } | sha256sum | cut -c1-16)
BIN="$BUILD/gpu_check_$key"
if [[ ! -x "$BIN" ]]; then
  log "compiling with $("$NVCC" --version | tail -n1) ($ARCH_FLAGS)"
  start=$SECONDS
  # shellcheck disable=SC2086
  if ! "$NVCC" $FLAGS "$ROOT/tools/gpu_check/gpu_check.cu" -o "$BIN.tmp"; then
    log "error: compilation failed"
    exit 4
  fi
  mv "$BIN.tmp" "$BIN"
  log "compiled in $((SECONDS - start)) s: $BIN"
fi
exec "$BIN" "$@"
