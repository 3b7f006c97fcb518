#!/usr/bin/env bash
# How close the fused Adafactor op comes to bare loops inside TensorFlow: builds the op library
# from the committed tree with bare_loops.patch applied (in a scratch directory, CPU only), then
# runs alternate.py with it. The build takes about a minute on the 2-core development machine.
#
#   bash tools/adafactor_bound/run.sh [alternate.py arguments]
#
# PYTHON (default .venv/bin/python, the environment tools/setup_env.sh makes) must have
# TensorFlow; bazel must be on PATH.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
[[ -x "$PY" ]] || { echo "run.sh: no Python at $PY; set PYTHON" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/adafactor_bound.XXXXXX")
OUTPUT_BASE="$WORK/.bazel"
cleanup() {
  bazel --output_base="$OUTPUT_BASE" shutdown >/dev/null 2>&1 || true
  chmod -R u+w "$WORK" 2>/dev/null || true  # Bazel leaves read-only directories
  rm -rf "$WORK" || true
}
trap cleanup EXIT

git -C "$ROOT" archive HEAD | tar -x -C "$WORK/"
cd "$WORK"
# Applied as a plain patch (git does not look for a repository above the scratch directory).
GIT_CEILING_DIRECTORIES=$(dirname "$WORK") git apply "$ROOT/tools/adafactor_bound/bare_loops.patch"
python3 configure.py --python "$PY" --cuda off >/dev/null
bazel --output_base="$OUTPUT_BASE" build //:tf_opt_plugin/ops/_tf_opt_plugin_ops.so

cd "$ROOT"
TF_OPT_PLUGIN_LIBRARY="$WORK/bazel-bin/tf_opt_plugin/ops/_tf_opt_plugin_ops.so" \
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
  "$PY" "$ROOT/tools/adafactor_bound/alternate.py" "$@"
