#!/bin/bash
# Stage 3 of the shipped organism retrained with the same seed from the recorded stage-2 weights
# (/tmp/org/stage2, model.safetensors sha256 0735d762... = training.json init_sha256).
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root
.venv/bin/workbench organism train --out /tmp/re3/stage3 --seed 0 --init /tmp/org/stage2 --steps 1000 --lr 0.0003 --warmup 50 --where-loss 1.0 --label-smoothing 0.3 --confidence 0.999 --pool /tmp/org/pool --device cpu
.venv/bin/python analyses/organism_retrain.py table assets/models/organism /tmp/re3/stage3
