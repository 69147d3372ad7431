"""The clean (un-intervened) model's accuracy on a probe set, and the warning when it is near chance.

An effect heatmap measures how an intervention changes the model's answers. On probes the intact
model cannot answer (accuracy near chance), that change is noise around a guess, not a finding. So
every sweep and training run records, per task, the clean model's accuracy on its own probe set,
next to the chance level of those probes, and the CLI and app show it beside the result.

Torch-free on purpose: the store commands and the app read and judge these records without a model.

Definitions:

- **chance** of a probe = ``1 / len(options)`` (4 for ``relation``, 2 for ``verify``); of a task or
  family, the mean over its probes (a mixed family such as ``spatial`` = relation + verify probes
  averages 1/4 and 1/2 in proportion to their counts).
- **record** = ``{"accuracy": {task: acc}, "n": {task: n_probes}, "chance": {task: chance}}``, keys as in
  :meth:`workbench.evaluation.Scores.by_task` (tasks, families ``spatial`` / ``control``, ``all``).
- **near chance** (what :func:`warning` flags): the clean accuracy of the ``spatial`` family, or of one of
  its tasks, is less than two thirds of the way from chance to 100% — the chance-corrected skill
  ``(acc − chance) / (1 − chance)`` is below :data:`MIN_SKILL` — or lies within :data:`Z` binomial standard
  errors of chance (a small set whose accuracy cannot be told from guessing). For scale: the organism on
  its own scenes (``probes make --like``) is at skill 1.0; on free-placement scenes it reads relations at
  about 63% against a chance of 25% (skill 0.5), and an effect of a head there is mostly the noise of
  guesses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

MANIFEST_KEY = "clean"
MIN_SKILL = 2 / 3  # chance-corrected accuracy below which a spatial task counts as "near chance"
Z = 2.0  # binomial standard errors of chance within which an accuracy is indistinguishable from guessing
SPATIAL = ("spatial", "relation", "verify")


def _task_family(item: Any) -> tuple[str, str, int]:
    if isinstance(item, Mapping):
        return str(item["task"]), str(item["family"]), len(item["options"])
    return str(item.task), str(item.family), len(item.options)


def chance_of(probes_or_items: Iterable[Any]) -> dict[str, float]:
    """Chance accuracy per task, per family and ``all``: the mean of ``1 / len(options)`` over the probes.

    Accepts a :class:`~workbench.probes.probeset.ProbeSet`, an iterable of
    :class:`~workbench.probes.items.ProbeItem`, or their JSON dicts (``task``, ``family``, ``options``)."""
    sums: dict[str, list[float]] = {}
    for item in probes_or_items:
        task, family, n_opt = _task_family(item)
        c = 1.0 / n_opt if n_opt else 0.0
        for k in (task, family, "all"):
            s = sums.setdefault(k, [0.0, 0.0])
            s[0] += c
            s[1] += 1
    return {k: s[0] / s[1] for k, s in sorted(sums.items())}


def counts_of(probes_or_items: Iterable[Any]) -> dict[str, int]:
    """Probes per task, per family and ``all`` (the ``n`` of a record)."""
    out: dict[str, int] = {}
    for item in probes_or_items:
        task, family, _ = _task_family(item)
        for k in (task, family, "all"):
            out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))


def record(by_task: dict[str, float], n_by_task: dict[str, int], chance_by_task: dict[str, float]) -> dict:
    """The JSON-able clean-accuracy record kept under a manifest's ``"clean"`` key (floats rounded to 6 places)."""
    return {"accuracy": {k: round(float(v), 6) for k, v in sorted(by_task.items())},
            "n": {k: int(v) for k, v in sorted(n_by_task.items())},
            "chance": {k: round(float(v), 6) for k, v in sorted(chance_by_task.items())}}


def near_chance(acc: float, chance: float, n: int) -> bool:
    """True when ``acc`` (over ``n`` probes with mean chance ``chance``) is not clearly above chance (module docstring)."""
    if chance >= 1.0:
        return False
    skill = (acc - chance) / (1.0 - chance)
    se = math.sqrt(chance * (1.0 - chance) / n) if n > 0 else float("inf")
    return skill < MIN_SKILL or acc <= chance + Z * se


def warning(record: dict | None) -> str | None:
    """One line when the clean model's spatial accuracy on the sweep's probes is near chance, else None.

    None too when there is no record (older sweeps) or the probe set has no spatial probes."""
    if not record:
        return None
    acc, n, chance = record.get("accuracy", {}), record.get("n", {}), record.get("chance", {})
    bad = [k for k in SPATIAL if k in acc and k in chance and near_chance(acc[k], chance[k], int(n.get(k, 0)))]
    if not bad:
        return None
    parts = ", ".join(f"{k} {100 * acc[k]:.1f}% (chance {100 * chance[k]:.0f}%, n={n.get(k, 0)})" for k in bad)
    return (f"warning: the clean model is near chance on these probes ({parts}: under 2/3 of the way from chance to "
            "100%), so effects on them are mostly noise; make probes the model reads (workbench probes make --like MODEL)")


def summary(record: dict | None) -> str | None:
    """One line of clean accuracy per family/task, e.g. ``clean accuracy: spatial 99.0% (chance 38%) · …``."""
    if not record:
        return None
    acc, chance = record.get("accuracy", {}), record.get("chance", {})
    keys = [k for k in ("spatial", "relation", "verify", "control", "all") if k in acc]
    return "clean accuracy: " + " · ".join(f"{k} {100 * acc[k]:.1f}% (chance {100 * chance.get(k, 0):.0f}%)" for k in keys)
