#!/usr/bin/env bash
# Set up tinylora and run it on the bundled example (the 8x8 digits CNN). No arguments needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh runtime
. .venv/bin/activate
tinylora inspect
tinylora eval
