#!/usr/bin/env bash
# Sets up the environment (tools/setup_env.sh), checks the formatting (tools/check_format.sh: a
# tree that is not formatted fails the run, after the tests), then runs pytest on tests/ against the INSTALLED
# wheel: pytest runs from a scratch directory with --import-mode=importlib, so the source tree's
# tf_opt_plugin/ (which has no .so) is never imported. Extra arguments go to pytest.
# Exits non-zero on failures and when no tests were collected (pytest exit code 5).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
format_status=0
TF_OPT_PLUGIN_VENV="${TF_OPT_PLUGIN_VENV:-.venv}" bash "$ROOT/tools/check_format.sh" || format_status=$?

VENV=${TF_OPT_PLUGIN_VENV:-.venv}
[[ "$VENV" = /* ]] || VENV="$ROOT/$VENV"
PY="$VENV/bin/python"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tf_opt_plugin_tests.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# Prove the import resolves to site-packages, not the checkout (find_spec does not execute it).
"$PY" - "$ROOT" <<'PYEOF'
import importlib.util, os, sys
spec = importlib.util.find_spec("tf_opt_plugin")
if spec is None:
    sys.exit("[run_tests] error: tf_opt_plugin is not installed in the venv")
origin = os.path.realpath(spec.origin)
print("[run_tests] tf_opt_plugin from", origin, file=sys.stderr)
if origin.startswith(os.path.realpath(sys.argv[1]) + "/tf_opt_plugin/"):
    sys.exit("[run_tests] error: tf_opt_plugin resolves to the source tree")
PYEOF

# importlib mode inserts nothing into sys.path; tests/support/ is put on it so test modules in
# every folder of tests/ can import helpers such as tests/support/references.py as
# `import references` (tests/conftest.py does the same; tests/support/ holds no package named
# tf_opt_plugin, so the installed wheel is still what `import tf_opt_plugin` finds).
export PYTHONPATH="$ROOT/tests/support${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
# Arguments naming files or directories of the checkout (tests/ops/test_x.py::name) are made
# absolute; without any, all of tests/ is collected.
args=()
have_path=0
for arg in "$@"; do
  if [[ "$arg" != -* && "$arg" != /* && -e "$ROOT/${arg%%::*}" ]]; then
    args+=("$ROOT/$arg")
    have_path=1
  else
    args+=("$arg")
    [[ "$arg" == /* && -e "${arg%%::*}" ]] && have_path=1
  fi
done
[[ $have_path -eq 1 ]] || args+=("$ROOT/tests")

set +e
"$PY" -m pytest --import-mode=importlib -p no:cacheprovider --rootdir="$ROOT" "${args[@]}"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "[run_tests] error: pytest collected no tests" >&2
  exit 1
fi
if [[ $rc -eq 0 && $format_status -ne 0 ]]; then
  echo "[run_tests] error: the tests passed but the tree is not formatted (tools/check_format.sh)" >&2
  exit 1
fi
exit $rc
