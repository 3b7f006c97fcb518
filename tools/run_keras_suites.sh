#!/usr/bin/env bash
# Runs Keras 3's own optimizer test files against tf_opt_plugin's Keras 3
# classes (docs/semantics.md, "Keras's own optimizer tests").
#
# The test files are copied at run time from the Keras installed in the
# Python that runs them (nothing is downloaded, and their code never enters
# this repository) into a scratch directory, where two mechanical edits swap
# Keras's classes for ours:
#
#   from keras.src.optimizers.adam import Adam
#     -> from tf_opt_plugin.optimizers.keras3 import Adam
#   (the same for sgd, adamw, lamb, lion, adafactor, loss_scale_optimizer)
#   from keras.src import optimizers
#     -> from tf_opt_plugin_suite_shim import optimizers
#
# where the shim is `keras.src.optimizers` with SGD, Adam, AdamW, Lamb, Lion,
# Adafactor and LossScaleOptimizer replaced by ours (everything else, e.g.
# `optimizers.get`, `optimizers.Adagrad` or the schedules, stays Keras's).
#
# Usage: tools/run_keras_suites.sh [--python PY] [--dir DIR] [pytest args...]
#   --python PY  the Python whose Keras and tf_opt_plugin are tested
#                (default: $PYTHON, else .venv/bin/python, else python3)
#   --dir DIR    the scratch directory (default: a new temporary one); it
#                is emptied first
#   pytest args  passed on, e.g. -k "not sparse" or -rf
# Set TF_OPT_PLUGIN_LIBRARY / PYTHONPATH as for the tests to test the source
# tree instead of the installed wheel.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then
    python="$repo/.venv/bin/python"
  else
    python=python3
  fi
fi
dir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --python) python="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    *) break ;;
  esac
done
if [[ -z "$dir" ]]; then
  dir="$(mktemp -d)"
else
  rm -rf "$dir"
  mkdir -p "$dir"
fi

FILES=(adam_test.py adamw_test.py sgd_test.py lamb_test.py lion_test.py
       adafactor_test.py optimizer_test.py optimizer_sparse_test.py
       loss_scale_optimizer_test.py)

keras_optimizers="$("$python" -c \
  'import os, keras.src.optimizers as m; print(os.path.dirname(m.__file__))')"
for f in "${FILES[@]}"; do
  if [[ ! -f "$keras_optimizers/$f" ]]; then
    echo "run_keras_suites.sh: $keras_optimizers/$f not found" >&2
    exit 1
  fi
  sed -e 's/^from keras\.src\.optimizers\.\(sgd\|adam\|adamw\|lamb\|lion\|adafactor\|loss_scale_optimizer\) import /from tf_opt_plugin.optimizers.keras3 import /' \
      -e 's/^from keras\.src import optimizers$/from tf_opt_plugin_suite_shim import optimizers/' \
      "$keras_optimizers/$f" > "$dir/$f"
done

cat > "$dir/tf_opt_plugin_suite_shim.py" <<'EOF'
"""`keras.src.optimizers` with tf_opt_plugin's classes in place of Keras's."""
import types

from keras.src import optimizers as _keras_optimizers

from tf_opt_plugin.optimizers import keras3 as _ours

optimizers = types.ModuleType("optimizers")
optimizers.__dict__.update(vars(_keras_optimizers))
for _name in ("SGD", "Adam", "AdamW", "Lamb", "Lion", "Adafactor",
              "LossScaleOptimizer"):
  setattr(optimizers, _name, getattr(_ours, _name))
EOF

# Keras's own pytest markers (its conftest.py is not installed).
cat > "$dir/pytest.ini" <<'EOF'
[pytest]
markers =
    requires_trainable_backend: needs a backend that can train
EOF

echo "run_keras_suites.sh: Keras's tests from $keras_optimizers, run in $dir" >&2
cd "$dir"
KERAS_BACKEND=tensorflow PYTHONPATH="$dir${PYTHONPATH:+:$PYTHONPATH}" \
  "$python" -m pytest -p no:cacheprovider -c "$dir/pytest.ini" \
  --rootdir="$dir" "${FILES[@]}" "$@"
