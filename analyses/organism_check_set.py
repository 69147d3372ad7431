"""A second held-out set, for choosing a recipe without fitting it to the evaluation set.

Training runs log their accuracy on the fixed 500-probe evaluation set (``eval_probes``), so a recipe
picked by looking at those curves (a learning rate, a label-smoothing strength) is tuned on that set,
and its score there is optimistic. This script scores models on a *check set* nobody looked at while
choosing: the test split of a larger generation with the same seed — so the same held-out color–shape
pairs, which every scene contains — minus every scene of the evaluation set (by ``scene_id``).

    python analyses/organism_check_set.py assets/models/organism /tmp/run_a /tmp/run_b

Prints one row per model: accuracy per task (in %) and the number of items of each task. About a minute
per model on the CPU.
"""

from __future__ import annotations

import argparse
import sys

from workbench.evaluation import score
from workbench.lab.config import OrganismConfig
from workbench.models.load import load_vlm
from workbench.organism.probesets import eval_probes
from workbench.probes.generate import generate
from workbench.probes.probeset import ProbeSet

TASKS = ("relation", "verify", "color", "shape", "count", "exists", "spatial", "control")


def check_set(n: int = 2000, seed: int = 0) -> ProbeSet:
    """``n`` test-split probes of seed ``seed``'s held-out pairs whose scenes are not in ``eval_probes(seed)``."""
    ev = eval_probes(seed)
    taken = {it.scene_id for it in ev.items}
    test = generate(OrganismConfig().probe_config(2 * n, seed, test_fraction=0.8)).split("test")
    assert test.info["heldout_pairs"] == ev.info["heldout_pairs"]
    keep = {it.id for it in [it for it in test.items if it.scene_id not in taken][:n]}
    if len(keep) < n:
        raise SystemExit(f"only {len(keep)} check-set probes remain after removing the evaluation set's scenes")
    return test.filter(lambda it: it.id in keep, name=f"check-set-{seed}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    probes = check_set(args.n)
    counts = {t: sum(it.task == t or it.family == t for it in probes.items) for t in TASKS}
    print(f"check set: {len(probes)} probes (seed-0 held-out pairs, no scene of the evaluation set)")
    print("| model | " + " | ".join(f"{t} ({counts[t]})" for t in TASKS) + " |")
    print("| --- |" + " ---: |" * len(TASKS))
    for path in args.models:
        acc = score(load_vlm(path), probes, backend="torch").by_task()
        print(f"| {path} | " + " | ".join(f"{100 * acc[t]:.1f}" for t in TASKS) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
