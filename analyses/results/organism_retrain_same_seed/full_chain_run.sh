#!/bin/bash
# Same-seed retraining of the shipped organism's three stages (the model card's Retrain commands, on CPU),
# resumable across sessions: every stage checkpoints every 250 steps under $RETRAIN_DIR (default /work/retrain) and a rerun of
# this script continues where the last one stopped (resumed runs give the same weights, by test).
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repository root
W=.venv/bin/workbench
R=${RETRAIN_DIR:-/work/retrain}   # where the stages and checkpoints go
POOL=${POOL:-/tmp/org/pool}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}   # the thread count these runs recorded (CPU float sums depend on it)
[ -f $POOL/meta.pt ] || .venv/bin/python analyses/organism_retrain.py pool --dir $POOL --n-train 500000 --data pool --patch 16 --grid 16 --object-size 14
[ -f $R/stage1/model.safetensors ] || {
  $W organism train --out $R/stage1.tmp --seed 0 --checkpoint $R/stage1.ckpt --stop-after 5250 --pool $POOL --device cpu
  .venv/bin/python analyses/organism_retrain.py export $R/stage1.ckpt $R/stage1; }
[ -f $R/stage2/model.safetensors ] || \
  $W organism train --out $R/stage2 --seed 0 --init $R/stage1 --steps 2500 --warmup 100 --where-loss 1.0 --checkpoint $R/stage2.ckpt --pool $POOL --device cpu
[ -f $R/stage3/model.safetensors ] || \
  $W organism train --out $R/stage3 --seed 0 --init $R/stage2 --steps 1000 --lr 0.0003 --warmup 50 --where-loss 1.0 --label-smoothing 0.3 --confidence 0.999 --checkpoint $R/stage3.ckpt --pool $POOL --device cpu
.venv/bin/python analyses/organism_retrain.py table assets/models/organism $R/stage3
[ -f $R/stage3-deficit/planted.json ] || $W organism plant --intact $R/stage3 --out $R/stage3-deficit
