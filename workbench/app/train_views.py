"""What the Train and Compare pages show, as plain functions: no Dash, no model, no torch.

- :func:`pct` / :func:`eval_cells`: a vector's accuracy before and after on its test probes, spatial and
  control, as table cells; a value nobody measured reads "not measured" (never a blank, never 0);
- :func:`planted_count` / :func:`model_label`: how many heads a planted-deficit folder damaged, read from its
  ``planted.json`` (the ground truth the deficit was made with), for the model dropdowns;
- :func:`alpha_choices`: the α values a Compare of several sweeps can be drawn at, and the one shown first;
- :func:`shared_range` / :func:`symmetric_range`: one colour range for several ``[layer, head]`` panels (one colour
  means one value on every panel) and the difference map's own range, symmetric about 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from workbench.app.data import default_alpha
from workbench.organism import planted_record

NOT_MEASURED = "not measured"
FAMILIES = ("spatial", "control")


def pct(x) -> str:
    """0.544 → "54.4%"; ``None`` (or anything not a number) → "not measured"."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x):
        return NOT_MEASURED
    return f"{100 * x:.1f}%"


def eval_cells(before: dict | None, after: dict | None) -> dict[str, str]:
    """``{"spatial before": …, "spatial after": …, "control before": …, "control after": …}`` from a vector's
    ``metrics["eval"]["before"/"after"]`` (fractions of test probes answered correctly per family)."""
    before, after = before or {}, after or {}
    out = {}
    for family in FAMILIES:
        out[f"{family} before"] = pct(before.get(family))
        out[f"{family} after"] = pct(after.get(family))
    return out


def result_line(name: str, before: dict | None, after: dict | None, n: int | None = None, probes: str = "") -> str:
    """One sentence for a finished training job: "saved fix: spatial 54.4% → 100.0%, control 99.6% → 100.0% on …"."""
    cells = eval_cells(before, after)
    parts = [f"{f} {cells[f + ' before']} → {cells[f + ' after']}" for f in FAMILIES]
    where = f" on {n} test probes" if n else " on the test probes"
    return f"saved {name}: " + ", ".join(parts) + where + (f" ({probes})" if probes else "")


def planted_count(folder: str | Path) -> int | None:
    """Number of heads a planted-deficit folder damaged (``planted.json``'s ``heads``); None when it has none."""
    record = planted_record(folder)
    return None if record is None else len(record["heads"])


def model_label(name: str, folder: str | Path) -> str:
    """``"organism-deficit (4 damaged heads)"`` where the folder records a planted deficit, else the name."""
    n = planted_count(folder)
    return name if n is None else f"{name} ({n} damaged head{'s' if n != 1 else ''})"


def alpha_choices(alpha_lists: Iterable[Sequence[float]]) -> tuple[list[float], float | None]:
    """(every α of the given sweeps, sorted, each once; the one to show first): α = 0 (ablation) where a sweep has
    it, else the first α ≠ 1 (α = 1 is the unchanged model, effect exactly 0), else the first."""
    values = sorted({float(a) for alphas in alpha_lists for a in alphas})
    if not values:
        return [], None
    return values, default_alpha(values)


def shared_range(panels: Sequence[np.ndarray], center: float) -> tuple[float, float]:
    """``(center − s, center + s)`` with ``s`` the largest ``|value − center|`` over every panel: the one colour range
    of panels drawn side by side (no panel is scaled to its own maximum). ``s = 1e-9`` when all equal ``center``."""
    span = max((float(np.nanmax(np.abs(np.asarray(p, dtype=float) - center))) for p in panels if np.size(p)), default=0.0)
    span = span if np.isfinite(span) and span > 0 else 1e-9
    return center - span, center + span


def symmetric_range(values: np.ndarray) -> tuple[float, float]:
    """``(−s, s)``, ``s = max |values|``: the difference map's own scale, 0 (no difference) in the middle."""
    return shared_range([values], 0.0)
