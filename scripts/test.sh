#!/usr/bin/env bash
# Set up everything (Debian packages when root, a venv with the test extra), lint, and run the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k quant
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
bash scripts/lint.sh
exec .venv/bin/python -m pytest "$@"
