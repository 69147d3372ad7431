"""What a sweep is asked to compute (:class:`SweepSpec`), and the rules its fields obey.

Kept apart from the engine so that what only validates a request — the job forms of the app's
server, which never imports the model loader — can build a spec, and so refuse exactly what the
CLI and the Python API refuse, without pulling in model code.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from workbench import axis, names
from workbench.errors import WorkbenchError

TARGETS = axis.TARGETS


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
    """What to sweep. Part of the store key, so every field that changes a number is here.

    ``target`` is the site kind (:data:`workbench.axis.KINDS`), ``intervention`` the family
    (:data:`workbench.axis.FAMILIES`); ``alphas`` default to the family's (scale: ``(0.0,)``,
    ablation; patch: ``(1.0,)``, the one value a patching sweep has). ``direction`` (patching only)
    is ``noising`` or ``denoising``; ``min_gap`` (patching only) is the smallest |source − base|
    logit difference a probe needs to be normalised (smaller: dropped, stored as NaN and counted).
    A scale spec's JSON is what it was before families existed, so stored sweeps keep their keys."""

    alphas: tuple[float, ...] | None = None
    positions: str = "last"
    metric: str = "logit_diff"
    target: str = "heads"
    intervention: str = "scale"
    direction: str = ""
    min_gap: float = 0.0

    def __post_init__(self) -> None:
        fam = axis.family(self.intervention)
        axis.kind(self.target)
        axis.check_combination(self.intervention, self.target, self.direction)
        if self.alphas is None:
            object.__setattr__(self, "alphas", fam.default_alphas)
        object.__setattr__(self, "alphas", tuple(self.alphas))
        check_alphas(self.alphas)
        if not fam.has_alpha and tuple(float(a) for a in self.alphas) != fam.default_alphas:
            raise WorkbenchError(f"the {fam.name} intervention has no α (got {', '.join(f'{a:g}' for a in self.alphas)})",
                                 "drop --alpha for a patching sweep")
        if fam.positive_alpha and any(float(a) <= 0 for a in self.alphas):
            bad = next(float(a) for a in self.alphas if float(a) <= 0)
            raise WorkbenchError(f"a {fam.alpha_name} must be > 0, got {bad:g}", "pass positive values, e.g. --alpha 0.5,2")
        if self.positions not in axis.POSITIONS:
            raise WorkbenchError(f"unknown positions {self.positions!r}", "use last or all")
        if self.metric not in names.METRICS:
            raise WorkbenchError(f"unknown metric {self.metric!r}", f"choose from: {', '.join(names.METRICS)}")
        if fam.needs_pairs and self.metric != "logit_diff":
            raise WorkbenchError(f"patching normalises the answer-vs-foil logit difference, not {self.metric!r}",
                                 "use --metric logit_diff with --intervention patch")
        if not fam.needs_pairs and self.min_gap:
            raise WorkbenchError("min_gap applies to patching only", "drop it, or use --intervention patch")
        if not (isinstance(self.min_gap, (int, float)) and self.min_gap >= 0 and self.min_gap == self.min_gap):
            raise WorkbenchError(f"min_gap must be a number ≥ 0, got {self.min_gap!r}", "pass e.g. --min-gap 0.5")

    @property
    def kind(self) -> axis.SiteKind:
        return axis.KINDS[self.target]

    @property
    def family(self) -> axis.Family:
        return axis.FAMILIES[self.intervention]

    def to_json(self) -> dict:
        d = {"alphas": list(self.alphas), "positions": self.positions, "metric": self.metric, "target": self.target,
             "metric_version": names.METRIC_VERSION}
        if self.intervention != "scale":  # a scale spec keeps the JSON (and so the store key) it had before families
            d.update(intervention=self.intervention, direction=self.direction, min_gap=float(self.min_gap))
        return d

    @classmethod
    def from_json(cls, d: dict) -> SweepSpec:
        """The spec a manifest's ``spec`` records (``metric_version`` is the store's business, not the spec's)."""
        return cls(alphas=tuple(d["alphas"]), positions=d["positions"], metric=d["metric"], target=d["target"],
                   intervention=d.get("intervention", "scale"), direction=d.get("direction", ""),
                   min_gap=float(d.get("min_gap", 0.0)))
