"""Does the Train page's default run repair the planted deficit? The training job, as the page submits it.

Runs :func:`workbench.jobs.tasks.train_task` with :func:`workbench.jobs.params.train_params`' defaults (the
organism study's ScAle all-positions setting, :data:`workbench.jobs.params.STUDY_TRAIN`) on the planted-deficit
organism, then scores the intact organism on the same test probes. Gap = intact − deficit spatial accuracy on the
test probes; recovered = (after − before) / gap. Control accuracy before / after is the cost.

    nice -n 10 python analyses/train_defaults.py            # writes analyses/results/train_defaults.md
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from workbench.evaluation import score
from workbench.jobs.params import STUDY_TRAIN, train_params
from workbench.jobs.tasks import default_test_probes, train_task
from workbench.models.load import load_vlm
from workbench.organism import DEFAULT_MODEL, DEFICIT_MODEL

OUT = Path(__file__).parent / "results" / "train_defaults.md"


class Report:
    def progress(self, done: int, total: int, message: str = "") -> None:
        print(f"{done}/{total} {message}", file=sys.stderr, flush=True)

    def point(self, point: dict) -> None:
        if point.get("kind") == "epoch":
            print(point, file=sys.stderr, flush=True)

    def should_stop(self) -> bool:
        return False


def main() -> int:
    t0 = time.time()
    with tempfile.TemporaryDirectory() as store:
        result = train_task(train_params(store, str(DEFICIT_MODEL), "default-check"), Report())
    seconds = time.time() - t0
    intact = score(load_vlm(str(DEFAULT_MODEL)), default_test_probes(), backend="torch").by_task()
    b, a = result["before"], result["after"]
    gap = intact["spatial"] - b["spatial"]
    recovered = (a["spatial"] - b["spatial"]) / gap
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    lines = ["# The Train page's default run on the planted-deficit organism", "",
             "Command: `nice -n 10 .venv/bin/python analyses/train_defaults.py` (the training job with the form's defaults: "
             + ", ".join(f"{k} {v}" for k, v in STUDY_TRAIN.items()) + "; CPU).", "",
             f"Test probes: {result['test_probes']} ({result['n_test']} probes, spatial and control tasks).", "",
             "| model | spatial | control |", "| --- | ---: | ---: |",
             f"| intact organism | {pct(intact['spatial'])} | {pct(intact['control'])} |",
             f"| deficit, before | {pct(b['spatial'])} | {pct(b['control'])} |",
             f"| deficit + default vector, after | {pct(a['spatial'])} | {pct(a['control'])} |", "",
             f"Gap (intact − deficit, spatial): {100 * gap:.1f} points; "
             f"recovered (after − before) / gap: **{100 * recovered:.1f}%** "
             f"(target ≥ 95%). Control after − intact: {100 * (a['control'] - intact['control']):+.1f} points. "
             f"Best epoch {result['best_epoch']}; wall time {seconds:.0f} s (training and scoring, 2 shared CPU cores).", ""]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
