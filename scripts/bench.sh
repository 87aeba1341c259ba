#!/usr/bin/env bash
# Print every benchmark's figures (learning quality and speed; more as they land).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
. .venv/bin/activate
python benchmarks/learning.py "$@"
python benchmarks/memory.py
python benchmarks/model_memory.py
python benchmarks/oracles.py
python benchmarks/gradients.py
python benchmarks/cost.py
python benchmarks/merge.py
python benchmarks/fleet.py
python benchmarks/fleet_devices.py
python benchmarks/zoo_train.py
python benchmarks/models.py
python benchmarks/kernels.py
