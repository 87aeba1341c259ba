#!/usr/bin/env bash
# Static checks, run by scripts/test.sh before pytest: ruff (rules in pyproject.toml), the line
# budget (scripts/budget.py) and, when present, the C lint (scripts/lint_c.sh).
#   RUFF=/path/to/ruff PYTHON=/path/to/python scripts/lint.sh   to use other tools than .venv's
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${RUFF:-}" ]; then
  if [ -x .venv/bin/ruff ]; then RUFF=.venv/bin/ruff; else RUFF=ruff; fi
fi
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! command -v "$RUFF" >/dev/null 2>&1; then
  echo "lint: ruff not found; run scripts/setup.sh test (installs the test extra) or set RUFF=" >&2
  exit 2
fi
"$RUFF" check .
"$PYTHON" scripts/budget.py
if [ -f scripts/lint_c.sh ]; then
  bash scripts/lint_c.sh
fi
echo "lint: clean"
