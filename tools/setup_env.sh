#!/usr/bin/env bash
# Idempotent set-up of a build + test environment on a Debian machine (root for apt-get):
#   bazel (Debian bazel-bootstrap) if missing, a venv at ${TF_OPT_PLUGIN_VENV:-.venv} with
#   the TensorFlow series of tf_opt_plugin/ops/_build_info.py, then configure.py, bazel build,
#   pip_pkg.sh dist/ and installation of the wheel into the venv. Steps whose result is already
#   there are skipped.
# Environment: TF_OPT_PLUGIN_VENV (venv dir, relative to the repo root or absolute),
#   TF_OPT_PLUGIN_PYTHON (interpreter that creates the venv, default python3),
#   TF_OPT_PLUGIN_CUDA (auto|on|off, default auto), TF_OPT_PLUGIN_OFFLINE (auto|on|off).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { echo "[setup_env] $*" >&2; }
die() { echo "[setup_env] error: $*" >&2; exit 1; }

# The TensorFlow series this source tree targets: one constant, in the package.
TF_SERIES=$(sed -n 's/^TF_VERSION_BUILT_AGAINST = "\([0-9]*\.[0-9]*\)"$/\1/p' tf_opt_plugin/ops/_build_info.py)
[[ -n "$TF_SERIES" ]] || die "no TF_VERSION_BUILT_AGAINST in tf_opt_plugin/ops/_build_info.py"
VENV=${TF_OPT_PLUGIN_VENV:-.venv}
[[ "$VENV" = /* ]] || VENV="$ROOT/$VENV"
BASE_PYTHON=${TF_OPT_PLUGIN_PYTHON:-python3}

apt_install() {
  [[ $(id -u) -eq 0 ]] || die "need root to apt-get install $* (or install it yourself)"
  export DEBIAN_FRONTEND=noninteractive
  if [[ -z "${_APT_UPDATED:-}" ]]; then
    apt-get update -qq
    _APT_UPDATED=1
  fi
  apt-get install -y -qq "$@" >/dev/null
}

# --- system tools ------------------------------------------------------------------------------
if ! command -v bazel >/dev/null 2>&1; then
  log "installing bazel-bootstrap (apt)"
  apt_install bazel-bootstrap
fi
if ! command -v g++ >/dev/null 2>&1; then
  log "installing g++ (apt)"
  apt_install g++
fi

# --- Python venv -------------------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating venv $VENV"
  if ! "$BASE_PYTHON" -m venv "$VENV"; then
    rm -rf "$VENV"
    log "python3 -m venv failed; installing python3-venv (apt)"
    apt_install python3-venv
    "$BASE_PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# The formatters tools/check_format.sh runs, pinned so CI and every developer format alike.
YAPF_VERSION="0.43.0"
CLANG_FORMAT_VERSION="23.1.5"

# Skip pip (TensorFlow takes minutes) when every requirement is already installed.
if ! "$PY" - "$TF_SERIES" "$YAPF_VERSION" "$CLANG_FORMAT_VERSION" <<'PYEOF'
import sys
from importlib import metadata
series, yapf, clang_format = sys.argv[1:4]
want = {"tensorflow": series, "tf-keras": series, "pytest": None, "numpy": None,
        "scikit-learn": None, "matplotlib": None, "setuptools": None, "wheel": None,
        "yapf": yapf, "clang-format": clang_format}
missing = []
for name, prefix in want.items():
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        missing.append(name)
        continue
    if prefix and not (version == prefix or version.startswith(prefix + ".")):
        missing.append("%s (have %s)" % (name, version))
if missing:
    print("[setup_env] missing in venv: " + ", ".join(missing), file=sys.stderr)
    sys.exit(1)
PYEOF
then
  log "pip install into $VENV (TensorFlow $TF_SERIES.*)"
  "$PY" -m pip install -q "tensorflow==$TF_SERIES.*" "tf-keras==$TF_SERIES.*" \
    pytest numpy scikit-learn matplotlib setuptools wheel \
    "yapf==$YAPF_VERSION" "clang-format==$CLANG_FORMAT_VERSION"
fi

# --- configure, build, package, install --------------------------------------------------------
log "configure.py"
python3 configure.py --python "$PY" --cuda "${TF_OPT_PLUGIN_CUDA:-auto}" \
  --offline "${TF_OPT_PLUGIN_OFFLINE:-auto}"

log "bazel build"
start=$SECONDS
bazel build //:tf_opt_plugin/ops/_tf_opt_plugin_ops.so
log "bazel build took $((SECONDS - start)) s"

./pip_pkg.sh dist/
WHEEL=$(ls dist/tf_opt_plugin-*.whl)
log "installing $WHEEL into $VENV"
"$PY" -m pip install -q --force-reinstall --no-deps "$WHEEL"
log "done: $PY has tf_opt_plugin $("$PY" -c 'from importlib import metadata; print(metadata.version("tf_opt_plugin"))')"
