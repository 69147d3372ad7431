#!/usr/bin/env bash
# The GPU session's runs (the `device` machine: one H100, torch 2.11, no nnsight): what was run, in order.
#   bash analyses/gpu/session.sh setup     # install the carried wheels (.whl: nnsight, transformers 5.23 and deps)
#   bash analyses/gpu/session.sh bench     # analyses/bench_sweep.py with the 7B-shaped GPU rows (LLaVA-1.5, Qwen2.5-VL; --gpu auto)
#   bash analyses/gpu/session.sh launch    # render the 2M-item pool, start the organism runs in the background
#   bash analyses/gpu/session.sh status    # training logs so far
#   bash analyses/gpu/session.sh collect   # tar each finished run into $OUT
# Runs: a and b are one recipe with one seed (the reproduction pair), c and d a second recipe (lr 3e-3).
# On 2026-11-24 c and d were stopped at step 500 (four runs share the GPU at ~4 steps/s each, two at ~8):
#   pkill -f "[-]-name [c] "; pkill -f "[-]-name [d] "
# Results: analyses/results/organism_retrain_pool.md, analyses/results/bench_sweep_gpu.txt.
# Wheels carried in .whl (cp312, manylinux; `pip download --no-deps --only-binary=:all: --python-version 3.12 ...`):
#   nnsight==0.8.1 transformers==5.23.0 pydantic==2.13.4 pydantic-core==2.46.4 greenlet==3.5.6 zstandard==0.25.0
#   websocket-client==1.9.2 typing-inspection==0.4.5 annotated-types==0.8.0
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1
RUNS=${RUNS:-runs/retrain}
POOL=${POOL:-/dev/shm/pool}
N_TRAIN=${N_TRAIN:-2000000}
STEPS=${STEPS:-8000}
case "$1" in
  setup)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    python3 -c "import torch, transformers, nnsight; print(torch.__version__, transformers.__version__, nnsight.__version__, torch.cuda.get_device_name())"
    nproc; free -g | head -2; df -h /dev/shm | tail -1 ;;
  bench)
    python3 analyses/bench_sweep.py 2>&1 | grep -v "Loading weights" | tee "${OUT:-/tmp}/bench_sweep.txt" ;;
  launch)
    mkdir -p "$RUNS"
    python3 analyses/organism_retrain.py pool --dir "$POOL" --n-train "$N_TRAIN" --data pool 2>&1 | grep -v "Writing model" || exit 1
    common="--out $RUNS --data pool --pool $POOL --n-train $N_TRAIN --steps $STEPS --batch 1024 --warmup 300 --seed 0"
    for r in "a 2e-3" "b 2e-3" "c 3e-3" "d 3e-3"; do
      set -- $r
      setsid nohup python3 analyses/organism_retrain.py train --name "$1" --lr "$2" $common >"$RUNS/$1.out" 2>&1 < /dev/null &
    done
    sleep "${WATCH:-60}"; tail -n 3 "$RUNS"/*.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv ;;
  status)
    tail -n 2 "$RUNS"/*.log; grep -il "error\|traceback" "$RUNS"/*.out && tail -n 5 "$RUNS"/*.out ;;
  collect)
    for d in "$RUNS"/*/; do n=$(basename "$d"); [ -f "$d/training.json" ] && tar -czf "$OUT/$n.tgz" -C "$RUNS" "$n" "$n.log"; done
    tar -czf "$OUT/logs.tgz" "$RUNS"/*.log "$RUNS"/*.out; ls -la "$OUT" ;;
esac
