#!/usr/bin/env bash
# Sets up the environment (tools/setup_env.sh), then runs the op benchmarks with the venv's Python
# from the repo root: tools/run_main.sh [bench_ops.py arguments...]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"

VENV=${TF_OPT_PLUGIN_VENV:-.venv}
[[ "$VENV" = /* ]] || VENV="$ROOT/$VENV"
cd "$ROOT"
exec "$VENV/bin/python" benchmarks/bench_ops.py "$@"
