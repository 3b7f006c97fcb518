#!/usr/bin/env bash
# Sets up the environment (tools/setup_env.sh), then runs the training demo with the venv's Python
# (the installed wheel's `python -m tf_opt_plugin.demo`) from the repo root:
#   tools/run_main.sh [demo arguments...]     (--help lists them; output in ./tf_opt_plugin_demo)
# The op / fit() benchmarks: `python -m tf_opt_plugin.benchmark` (see docs/benchmarks.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"

VENV=${TF_OPT_PLUGIN_VENV:-.venv}
[[ "$VENV" = /* ]] || VENV="$ROOT/$VENV"
cd "$ROOT"
exec "$VENV/bin/python" -m tf_opt_plugin.demo "$@"
