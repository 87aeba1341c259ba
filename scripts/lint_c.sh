#!/usr/bin/env bash
# Check the C style of firmware/ with clang-format (the style: .clang-format at the top).
#   scripts/lint_c.sh          list the files clang-format would change, exit 1 if any
#   scripts/lint_c.sh --fix    format them in place
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-format >/dev/null; then
  echo "lint_c: clang-format not found: run scripts/setup.sh test as root (Debian package clang-format)" >&2
  exit 2
fi
mapfile -t files < <(find firmware -name '*.c' -o -name '*.h' | sort)
if [ "${1:-}" = --fix ]; then
  clang-format --style=file -i "${files[@]}"
  exit 0
fi
bad=0
for f in "${files[@]}"; do
  if ! clang-format --style=file "$f" | cmp -s "$f" -; then
    echo "lint_c: $f is not clang-formatted (scripts/lint_c.sh --fix formats it)" >&2
    bad=1
  fi
done
exit $bad
