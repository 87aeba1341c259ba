#!/usr/bin/env bash
# Set up tinylora and run its main job on the bundled example: inspect the bundled digits CNN,
# then train LoRA adapters on it with the integer-only reference trainer (the 'sensor'
# adaptation task) and write the adapter to out/adapter.tla. No arguments needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh runtime
. .venv/bin/activate
tinylora inspect
tinylora train --out out/adapter.tla
