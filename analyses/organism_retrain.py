"""Retrain the organism and compare runs: does the same seed give the same accuracies?

The organism's acceptance asks that retraining with the same seed reproduce the held-out accuracies
within 2 points. On a GPU, bitwise equality is not promised (cuBLAS reductions, bf16 autocast), so
two runs of one recipe are compared on the fixed 500-probe evaluation set, task by task.

    # one run (a GPU takes ~10 min; a CPU days): writes DIR/NAME (a model folder) and DIR/NAME.log
    python analyses/organism_retrain.py train --out DIR --name a --seed 0
    # a large pool of training items rendered once by all CPUs, shared (memory-mapped) by the runs
    # (`workbench lab pool` does the same for the shipped scene geometry)
    python analyses/organism_retrain.py pool --dir /dev/shm/pool --n-train 2000000
    python analyses/organism_retrain.py train --out DIR --name a --data pool --pool /dev/shm/pool --n-train 2000000
    # the table: one column per run, the largest gap between runs, and the pass/fail per task
    python analyses/organism_retrain.py table DIR/a DIR/b
    # a run's curve per task, as markdown: from its training.json, or from its checkpoint while it trains
    python analyses/organism_retrain.py curve DIR/a.ckpt
    # a checkpoint as an organism folder, to start a later stage from it (train … --init DIR/a_stage)
    python analyses/organism_retrain.py export DIR/a.ckpt DIR/a_stage     # = workbench lab export

Runs of one recipe can train side by side on one GPU (each takes a few GB). ``train`` and ``pool`` take
every ``OrganismConfig`` field as an option (``--n-train``, ``--where-layer``, ``--zero-projector 1``, …);
the work itself is the lab's (:mod:`workbench.lab`), this script only parses, logs and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def options() -> dict[str, object]:
    """``--flag`` → argparse type for every OrganismConfig field but ``seed`` (its own option): read from the config
    itself, so a field added there is an option here. A bool is given as 0 or 1."""
    from workbench.lab.config import field_types

    return {f"--{name.replace('_', '-')}": (lambda v: bool(int(v))) if kind is bool else kind
            for name, kind in field_types().items() if name != "seed"}


def config(args: argparse.Namespace):
    from workbench.lab.config import OrganismConfig, field_types

    names = [k for k in field_types() if k != "seed"]
    return OrganismConfig(seed=args.seed, **{k: getattr(args, k) for k in names if getattr(args, k) is not None})


def train_one(args: argparse.Namespace) -> None:
    from workbench.lab.train import train

    out = Path(args.out) / args.name
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(args.out) / f"{args.name}.log", "a", buffering=1) as log:
        summary = train(config(args), out, device=args.device, log=lambda m: print(m, file=log),
                        checkpoint=Path(args.out) / f"{args.name}.ckpt", pool_dir=Path(args.pool) if args.pool else None)
        print(json.dumps(summary["eval"]), file=log)


def build_pool(args: argparse.Namespace) -> None:
    import time

    from workbench.lab.train import build_pool

    cfg = config(args)
    t = time.time()
    build_pool(cfg, Path(args.dir), workers=args.workers)
    print(f"pool of {cfg.n_train:,} items in {args.dir}: {time.time() - t:.0f}s")


def table(folders: list[str]) -> int:
    from workbench.lab.card import recipe

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
    from workbench.lab.card import curve_table
    from workbench.lab.checkpoint import load_checkpoint

    p = Path(path)
    if p.is_dir():
        p = p / "training.json"
    run = json.loads(p.read_text()) if p.suffix == ".json" else load_checkpoint(p)
    print(curve_table(run["curve"], CURVE_TASKS, rows=None, seconds=False))
    return 0


def export(ckpt: str, folder: str) -> int:
    """Write a checkpoint's model as an organism folder (weights, tokenizer, processor, training.json with its
    config and curve so far): the starting point of a later stage (``train --init FOLDER``)."""
    from workbench.lab.stages import export as export_checkpoint

    state = export_checkpoint(Path(ckpt), Path(folder))
    print(f"{ckpt} (step {state['step']}) written to {folder}")
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
        for flag, kind in options().items():
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
