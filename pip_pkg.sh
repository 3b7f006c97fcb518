#!/usr/bin/env bash
# Builds the tf_opt_plugin wheel into DEST_DIR.
#
#   python3 configure.py --python PATH
#   bazel build //:tf_opt_plugin/ops/_tf_opt_plugin_ops.so
#   ./pip_pkg.sh DEST_DIR
#
# Stages tf_opt_plugin/**/*.py and the Bazel-built _tf_opt_plugin_ops.so into a temporary
# directory and builds a py3-none-<platform> wheel there, pinned to the TensorFlow minor version
# the library was compiled against (//:tf_build_info, from the TF configure.py found): it is
# written into the staged tf_opt_plugin/ops/_build_info.py, from which setup.py derives the
# requirement, together with the library's size and SHA-256, which the package checks before it
# loads the library.
# It (re)runs `bazel build` for the .so and the pin first, a no-op when the build is up to date,
# so the two always come from the same configuration. The wheel is built with the Python
# configure.py was given (override: $PYTHON), which needs setuptools and wheel.
set -euo pipefail

usage() { echo "usage: $0 DEST_DIR" >&2; exit 2; }
die() { echo "pip_pkg.sh: error: $*" >&2; exit 1; }

[[ $# -eq 1 ]] || usage
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
DEST=$(cd "$1" && pwd)

CONFIG="$ROOT/.configure.json"
[[ -f "$CONFIG" ]] || die "$CONFIG missing: run python3 configure.py first"
PYTHON=${PYTHON:-$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["python"])' "$CONFIG")}

SO_TARGET="//:tf_opt_plugin/ops/_tf_opt_plugin_ops.so"
(cd "$ROOT" && bazel build "$SO_TARGET" //:tf_build_info) || die "bazel build failed"
BAZEL_BIN=$(cd "$ROOT" && bazel info bazel-bin 2>/dev/null)
SO="$BAZEL_BIN/tf_opt_plugin/ops/_tf_opt_plugin_ops.so"
[[ -f "$SO" ]] || die "$SO missing"
TF_VERSION=$(cat "$BAZEL_BIN/tf_version.txt")
TF_MINOR=$(echo "$TF_VERSION" | cut -d. -f1-2)
[[ "$TF_MINOR" =~ ^[0-9]+\.[0-9]+$ ]] || die "bad TF build info: '$TF_VERSION'"

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/tf_opt_plugin_pip.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

cp "$ROOT/setup.py" "$STAGE/"
(cd "$ROOT" && find tf_opt_plugin -name '*.py' -not -path '*/__pycache__/*' -print0) |
  while IFS= read -r -d '' f; do
    mkdir -p "$STAGE/$(dirname "$f")"
    cp "$ROOT/$f" "$STAGE/$f"
  done
[[ -f "$STAGE/tf_opt_plugin/__init__.py" ]] || die "tf_opt_plugin/__init__.py missing"

# Record the TF minor version the binary links against (the source tree's value is the series it
# targets); setup.py reads the wheel's TensorFlow requirement from here.
BUILD_INFO="$STAGE/tf_opt_plugin/ops/_build_info.py"
grep -q '^TF_VERSION_BUILT_AGAINST = ' "$BUILD_INFO" || die "$BUILD_INFO has no TF_VERSION_BUILT_AGAINST"
sed -i "s/^TF_VERSION_BUILT_AGAINST = .*/TF_VERSION_BUILT_AGAINST = \"$TF_MINOR\"/" "$BUILD_INFO"
mkdir -p "$STAGE/tf_opt_plugin/ops"
cp -L "$SO" "$STAGE/tf_opt_plugin/ops/"
STAGED_SO="$STAGE/tf_opt_plugin/ops/_tf_opt_plugin_ops.so"
chmod 0755 "$STAGED_SO"

# Record the size and SHA-256 of the library the wheel ships: tf_opt_plugin/ops/_library.py refuses
# to load an installed copy that differs (an interrupted install, a full disk), which could crash the
# process (SIGBUS), and falls back to the pure-TF twins; setup.py checks the record before building.
for name in LIBRARY_SIZE LIBRARY_SHA256; do
  grep -q "^$name = " "$BUILD_INFO" || die "$BUILD_INFO has no $name"
done
SO_SIZE=$(stat -c %s "$STAGED_SO")
SO_SHA256=$(sha256sum "$STAGED_SO" | cut -d' ' -f1)
sed -i -e "s/^LIBRARY_SIZE = .*/LIBRARY_SIZE = $SO_SIZE/" \
  -e "s/^LIBRARY_SHA256 = .*/LIBRARY_SHA256 = \"$SO_SHA256\"/" "$BUILD_INFO"

# Exactly one wheel of this package in DEST_DIR, so `pip install DEST_DIR/*.whl` is unambiguous.
rm -f "$DEST"/tf_opt_plugin-*.whl

echo "pip_pkg.sh: building wheel (TensorFlow $TF_MINOR) with $PYTHON"
(cd "$STAGE" && PIP_DISABLE_PIP_VERSION_CHECK=1 \
  "$PYTHON" -m pip wheel --no-deps --no-build-isolation --no-index -q -w "$DEST" .)

WHEEL=$(ls "$DEST"/tf_opt_plugin-*.whl)
echo "pip_pkg.sh: wrote $WHEEL"
