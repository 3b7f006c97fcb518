#!/usr/bin/env bash
# Sets up the environment (tools/setup_env.sh), then runs the training demo of the installed wheel
# (its console script tf-opt-plugin-demo, i.e. `python -m tf_opt_plugin.demo`) from the repo root:
#   tools/run_main.sh [demo arguments...]     (--help lists them; output in ./tf_opt_plugin_demo)
# The console script, not `python -m`, so that the source tree's tf_opt_plugin/ (which has no .so) in
# the current directory is never imported instead of the wheel.
# The op / fit() benchmarks: tf-opt-plugin-benchmark (`python -m tf_opt_plugin.benchmark`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"

VENV=${TF_OPT_PLUGIN_VENV:-.venv}
[[ "$VENV" = /* ]] || VENV="$ROOT/$VENV"
cd "$ROOT"
exec "$VENV/bin/tf-opt-plugin-demo" "$@"
