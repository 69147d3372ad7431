"""What a sweep is asked to compute (:class:`SweepSpec`), and the rules its fields obey.

Kept apart from the engine so that what only validates a request — the job forms of the app's
server, which never imports the model loader — can build a spec, and so refuse exactly what the
CLI and the Python API refuse, without pulling in model code.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

from workbench import metrics
from workbench.errors import WorkbenchError

TARGETS = ("heads", "mlp")


def check_alphas(alphas) -> None:
    """Refuse α lists a sweep cannot store: empty, non-numeric, NaN or infinite (every effect would be NaN,
    or a traceback mid-sweep), or repeated (two cells of one [alpha] axis with one label: the heatmap's
    pivot turns them into NaN). Every way in — the CLI, the job forms, the Python API — builds a
    :class:`SweepSpec`, so this is the one place the rule lives, and it runs before anything is written."""
    if not alphas:
        raise WorkbenchError("no alpha values given", "pass e.g. --alpha 0,0.5,2")
    seen: list[float] = []
    for a in alphas:
        if not isinstance(a, numbers.Real) or isinstance(a, bool):
            raise WorkbenchError(f"α {a!r} is not a number", "pass numbers, e.g. --alpha 0,0.5,2")
        value = float(a)
        if not math.isfinite(value):
            raise WorkbenchError(f"α {value:g} is not a finite number", "pass finite factors, e.g. --alpha 0,0.5,2")
        if value in seen:  # 0 == -0.0: one factor
            raise WorkbenchError(f"α {seen[seen.index(value)]:g} is given twice", "list each factor once, e.g. --alpha 0,0.5,2")
        seen.append(value)


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep. Part of the store key, so every field that changes a number is here."""

    alphas: tuple[float, ...] = (0.0,)
    positions: str = "last"
    metric: str = "logit_diff"
    target: str = "heads"

    def __post_init__(self) -> None:
        check_alphas(self.alphas)
        if self.positions not in ("last", "all"):
            raise WorkbenchError(f"unknown positions {self.positions!r}", "use last or all")
        if self.metric not in metrics.METRICS:
            raise WorkbenchError(f"unknown metric {self.metric!r}", f"choose from: {', '.join(metrics.METRICS)}")
        if self.target not in TARGETS:
            raise WorkbenchError(f"unknown target {self.target!r}", f"choose from: {', '.join(TARGETS)}")

    def to_json(self) -> dict:
        return {**asdict(self), "alphas": list(self.alphas), "metric_version": metrics.METRIC_VERSION}
