"""The refusals of a patching request that need no model and no torch: the CLI, the app's job forms and the
engine (:mod:`workbench.causal.pairs`) ask these, so a probe set without partners is refused in one wording
everywhere, before any model or store work."""

from __future__ import annotations

from collections.abc import Sequence

from workbench.axis import DIRECTIONS
from workbench.errors import WorkbenchError


def check_pairs(probes, items: Sequence | None = None) -> None:
    """Refuse probes without a counterfactual partner, naming the first one and how many there are
    (``probes`` a :class:`~workbench.probes.probeset.ProbeSet`; ``items`` default to all of its items)."""
    items = list(probes.items if items is None else items)
    if not items:
        raise WorkbenchError(f"probe set {probes.name!r} has no probes to pair", "check the probe set folder and --split")
    lacking = [it for it in items if not it.has_counterfactual]
    if lacking:
        raise WorkbenchError(f"{len(lacking)} of {len(items)} probes of {probes.name!r} have no counterfactual "
                             f"(first: {lacking[0].id!r}, task {lacking[0].task!r}), so they cannot be patched",
                             "use spatial probes of a generated probe set (workbench probes make, --tasks relation,verify)")


def check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise WorkbenchError(f"unknown direction {direction!r}", f"use {' or '.join(DIRECTIONS)}")
