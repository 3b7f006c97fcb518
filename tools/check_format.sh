#!/usr/bin/env bash
# Checks (or, with --fix, applies) the formatting of every tracked Python, C++ and CUDA file:
# yapf (.style.yapf: Google style, 2-space indentation, 80 columns) and clang-format
# (.clang-format: Google style). The tools come from the venv tools/setup_env.sh makes, pinned there.
#   tools/check_format.sh          exit 1 and list the files that differ
#   tools/check_format.sh --fix    rewrite them
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${TF_OPT_PLUGIN_VENV:-.venv}
[[ "$VENV" = /* ]] || VENV="$ROOT/$VENV"

mapfile -t python_files < <(git ls-files --cached --others --exclude-standard '*.py')
mapfile -t cxx_files < <(git ls-files --cached --others --exclude-standard '*.cc' '*.h' '*.cu' | grep -v '^third_party/')

if [[ "${1:-}" == "--fix" ]]; then
  "$VENV/bin/yapf" -i -p "${python_files[@]}"
  "$VENV/bin/clang-format" -i "${cxx_files[@]}"
  exit 0
fi

status=0
if ! "$VENV/bin/yapf" --diff -p "${python_files[@]}" >/dev/null; then
  "$VENV/bin/yapf" --diff -p "${python_files[@]}" | sed -n 's/^--- \(.*\)\t*(original)$/\1/p' >&2 || true
  echo "[check_format] Python files above are not formatted: run tools/check_format.sh --fix" >&2
  status=1
fi
if ! "$VENV/bin/clang-format" --dry-run -Werror "${cxx_files[@]}" 2>/dev/null; then
  "$VENV/bin/clang-format" --dry-run "${cxx_files[@]}" 2>&1 | grep -o '^[^:]*' | sort -u >&2 || true
  echo "[check_format] C++ files above are not formatted: run tools/check_format.sh --fix" >&2
  status=1
fi
[[ $status -eq 0 ]] && echo "[check_format] ${#python_files[@]} Python and ${#cxx_files[@]} C++ files formatted"
exit $status
