"""Retrain the organism and compare runs: does the same seed give the same accuracies?

The organism's acceptance asks that retraining with the same seed reproduce the held-out accuracies
within 2 points. On a GPU, bitwise equality is not promised (cuBLAS reductions, bf16 autocast), so
two runs of one recipe are compared on the fixed 500-probe evaluation set, task by task.

    # one run (a GPU takes ~10 min; a CPU days): writes DIR/NAME (a model folder) and DIR/NAME.log
    python analyses/organism_retrain.py train --out DIR --name a --seed 0
    # the table: one column per run, the largest gap between runs, and the pass/fail per task
    python analyses/organism_retrain.py table DIR/a DIR/b

Runs of one recipe can train side by side on one GPU (each takes a few GB).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def train_one(args: argparse.Namespace) -> None:
    from workbench.organism.train import OrganismConfig, train

    cfg = OrganismConfig(seed=args.seed, **{k: v for k, v in (("batch", args.batch), ("lr", args.lr), ("steps", args.steps),
                                                               ("n_train", args.n_train)) if v is not None})
    out = Path(args.out) / args.name
    with open(Path(args.out) / f"{args.name}.log", "a", buffering=1) as log:
        summary = train(cfg, out, device=args.device, log=lambda m: print(m, file=log),
                        checkpoint=Path(args.out) / f"{args.name}.ckpt")
        print(json.dumps(summary["eval"]), file=log)


def table(folders: list[str]) -> int:
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
    configs = {json.dumps(r["config"], sort_keys=True) for r in runs.values()}
    print(f"same config: {len(configs) == 1}; largest gap {worst:.1f} points; "
          f"{'within' if worst <= 2.0 else 'NOT within'} 2 points")
    return 0 if worst <= 2.0 and len(configs) == 1 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--name", required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    for flag, kind in (("--batch", int), ("--lr", float), ("--steps", int), ("--n-train", int)):
        t.add_argument(flag, type=kind, default=None)
    c = sub.add_parser("table")
    c.add_argument("folders", nargs="+")
    args = ap.parse_args()
    if args.cmd == "train":
        train_one(args)
        return 0
    return table(args.folders)


if __name__ == "__main__":
    sys.exit(main())
