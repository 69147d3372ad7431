"""Retrain the organism and compare runs: does the same seed give the same accuracies?

The organism's acceptance asks that retraining with the same seed reproduce the held-out accuracies
within 2 points. On a GPU, bitwise equality is not promised (cuBLAS reductions, bf16 autocast), so
two runs of one recipe are compared on the fixed 500-probe evaluation set, task by task.

    # one run (a GPU takes ~10 min; a CPU days): writes DIR/NAME (a model folder) and DIR/NAME.log
    python analyses/organism_retrain.py train --out DIR --name a --seed 0
    # a large pool of training items rendered once by all CPUs, shared (memory-mapped) by the runs
    python analyses/organism_retrain.py pool --dir /dev/shm/pool --n-train 2000000
    python analyses/organism_retrain.py train --out DIR --name a --data pool --pool /dev/shm/pool --n-train 2000000
    # the table: one column per run, the largest gap between runs, and the pass/fail per task
    python analyses/organism_retrain.py table DIR/a DIR/b
    # a run's curve per task, as markdown: from its training.json, or from its checkpoint while it trains
    python analyses/organism_retrain.py curve DIR/a.ckpt
    # a checkpoint as an organism folder, to start a later stage from it (train … --init DIR/a_stage)
    python analyses/organism_retrain.py export DIR/a.ckpt DIR/a_stage

Runs of one recipe can train side by side on one GPU (each takes a few GB).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OPTIONS = (("--batch", int), ("--lr", float), ("--steps", int), ("--n-train", int), ("--data", str), ("--warmup", int),
           ("--eval-every", int), ("--layers", int), ("--patch", int), ("--grid", int), ("--object-size", int), ("--canvas", int),
           ("--zero-projector", lambda v: bool(int(v))), ("--patch-loss", float), ("--init", str), ("--patch-reach", int),
           ("--where-loss", float), ("--where-layer", int),
           ("--label-smoothing", float), ("--confidence", float))


def config(args: argparse.Namespace):
    from workbench.organism.train import OrganismConfig

    names = (flag[2:].replace("-", "_") for flag, _ in OPTIONS)
    return OrganismConfig(seed=args.seed, **{k: getattr(args, k) for k in names if getattr(args, k) is not None})


def train_one(args: argparse.Namespace) -> None:
    from workbench.organism.train import train

    out = Path(args.out) / args.name
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(args.out) / f"{args.name}.log", "a", buffering=1) as log:
        summary = train(config(args), out, device=args.device, log=lambda m: print(m, file=log),
                        checkpoint=Path(args.out) / f"{args.name}.ckpt", pool_dir=Path(args.pool) if args.pool else None)
        print(json.dumps(summary["eval"]), file=log)


def build_pool(args: argparse.Namespace) -> None:
    import tempfile
    import time

    from workbench.organism.data import pool_key, render_pool, save_pool
    from workbench.organism.train import build

    cfg = config(args)
    t = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        _, _, processor = build(cfg, Path(tmp) / "m")
        data = render_pool(processor, cfg.seed, cfg.n_train, cfg.scene, workers=args.workers)
    save_pool(data, Path(args.dir), pool_key(cfg.seed, cfg.n_train, cfg.scene))
    print(f"pool of {cfg.n_train:,} items in {args.dir}: {time.time() - t:.0f}s")


def table(folders: list[str]) -> int:
    from workbench.organism.card import recipe

    runs = {Path(f).name: json.loads((Path(f) / "training.json").read_text()) for f in folders}
    tasks = list(next(iter(runs.values()))["eval"])
    names = list(runs)
    print(f"{'task':10s} " + " ".join(f"{n:>9s}" for n in names) + f" {'max gap':>9s}")
    worst = 0.0
    for t in tasks:
        vals = [100 * runs[n]["eval"][t] for n in names]
        gap = max(vals) - min(vals)
        worst = max(worst, gap)
        print(f"{t:10s} " + " ".join(f"{v:9.1f}" for v in vals) + f" {gap:9.1f}")
    # the same recipe: every stage's every setting but the folder it started from (the earlier stage's own result)
    configs = {json.dumps(recipe(r), sort_keys=True) for r in runs.values()}
    print(f"same config: {len(configs) == 1}; largest gap {worst:.1f} points; "
          f"{'within' if worst <= 2.0 else 'NOT within'} 2 points")
    return 0 if worst <= 2.0 and len(configs) == 1 else 1


CURVE_TASKS = ("spatial", "control", "relation", "verify", "color", "shape", "count", "exists")


def curve(path: str) -> int:
    """Print a run's held-out curve per task (a training.json, a model folder holding one, or a checkpoint)."""
    from workbench.organism.card import curve_table
    from workbench.organism.train import load_checkpoint

    p = Path(path)
    if p.is_dir():
        p = p / "training.json"
    run = json.loads(p.read_text()) if p.suffix == ".json" else load_checkpoint(p)
    print(curve_table(run["curve"], CURVE_TASKS, rows=None, seconds=False))
    return 0


def export(ckpt: str, folder: str) -> int:
    """Write a checkpoint's model as an organism folder (weights, tokenizer, processor, training.json with its
    config and curve so far): the starting point of a later stage (``train --init FOLDER``)."""
    from workbench.organism.train import from_checkpoint, load_checkpoint

    state = load_checkpoint(Path(ckpt))
    out = Path(folder)
    from_checkpoint(state, out)
    (out / "training.json").write_text(json.dumps({"config": state["config"], "step": state["step"], "curve": state["curve"],
                                                     **({"threads": state["threads"]} if state.get("threads") else {})},
                                                    indent=1) + "\n")
    print(f"{ckpt} (step {state['step']}) written to {out}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--name", required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--pool", default=None, help="folder of a pool built by `pool` (data=pool)")
    p = sub.add_parser("pool")
    p.add_argument("--dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    for parser in (t, p):
        for flag, kind in OPTIONS:
            parser.add_argument(flag, type=kind, default=None)
    c = sub.add_parser("table")
    c.add_argument("folders", nargs="+")
    k = sub.add_parser("curve")
    k.add_argument("run", help="a training.json, a model folder, or a checkpoint (.ckpt)")
    x = sub.add_parser("export")
    x.add_argument("ckpt", help="a training checkpoint (.ckpt)")
    x.add_argument("folder", help="the organism folder to write")
    args = ap.parse_args()
    if args.cmd == "export":
        return export(args.ckpt, args.folder)
    if args.cmd == "train":
        train_one(args)
        return 0
    if args.cmd == "pool":
        build_pool(args)
        return 0
    if args.cmd == "curve":
        return curve(args.run)
    return table(args.folders)


if __name__ == "__main__":
    from workbench.errors import WorkbenchError

    try:
        sys.exit(main())
    except WorkbenchError as e:  # a bad checkpoint or pool: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
