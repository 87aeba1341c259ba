#!/usr/bin/env bash
# Set up everything (Debian packages when root, a venv with the test extra), lint, and run the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k quant
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
bash scripts/lint.sh
# the optimised libraries' unmodified sources for the --backend tests (tests/test_verify_backends.py)
for pair in CMSIS_NN_DIR:CMSIS-NN ESP_NN_DIR:esp-nn; do
    var=${pair%%:*} dir=../shared/third_party/${pair#*:}
    if [ -z "${!var:-}" ] && [ -d "$dir" ]; then export "$var=$(cd "$dir" && pwd)"; fi
done
exec .venv/bin/python -m pytest "$@"
