"""Activation patching with image counterfactuals: which sites carry the relation, per relation, with intervals.

For every probe and its counterfactual partner (:mod:`workbench.causal.pairs`) and every site (a head's
slice of the ``o_proj`` input, or a layer's MLP output), the site's output in the *base* run is replaced
by the same site's output in the *source* run, and the answer-vs-foil logit difference LD is read at the
last position. The normalized effect

    (LD_patched − LD_base) / (LD_source − LD_base)

is 0 when the site alone moves nothing and 1 when it moves the base run all the way to the source.
``noising`` (base = clean, source = counterfactual) asks which sites are *sufficient to break* the answer;
``denoising`` (base = counterfactual, source = clean) which are *sufficient to restore* it. Patching at the
last token needs nothing of the two prompts but a last token; ``positions="all"`` patches position i
into position i and is refused for pairs that do not align token by token.

A probe whose |LD_source − LD_base| is below ``min_gap`` (and always below 1e-6) has no denominator: it is
dropped, stored as NaN, and counted (``SweepResult.dropped``, :attr:`RelationEffects.n_dropped`).

:func:`patching_sweep` runs it as a sweep (the store caches it under a key holding the whole spec, direction
and ``min_gap`` included; the engine caches each probe batch's source outputs once and, at the last token,
packs one variant per site after a single base prefix pass). :func:`relation_effects` aggregates a result per
relation: the mean over the probes not dropped and its seeded bootstrap interval
(:mod:`workbench.sweeps.aggregate`, NaN-aware).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import numpy as np
import torch

from workbench.models.load import VLM
from workbench.probes.probeset import ProbeSet
from workbench.store.effects import EffectStore
from workbench.sweeps import aggregate
from workbench.sweeps.aggregate import dropped as dropped_probes
from workbench.sweeps.run import SweepResult, sweep
from workbench.sweeps.spec import SweepSpec


def patching_spec(direction: str, positions: str = "last", target: str = "heads", min_gap: float = 0.0) -> SweepSpec:
    """The :class:`SweepSpec` of a patching sweep (its checks: direction, positions, target)."""
    return SweepSpec(positions=positions, target=target, intervention="patch", direction=direction, min_gap=min_gap)


def patching_sweep(vlm: VLM, probes: ProbeSet, direction: str, positions: str = "last", target: str = "heads",
                   store: EffectStore | None = None, min_gap: float = 0.0, engine: str = "auto", **sweep_kwargs) -> SweepResult:
    """Normalized patching effects of every site, ``values [probe, 1, layer, head]`` (``[probe, 1, layer]`` for MLPs).

    A thin convenience over :func:`workbench.sweeps.run.sweep` with :func:`patching_spec`; ``store=None`` computes in
    a temporary store that is removed afterwards (nothing cached). ``sweep_kwargs`` go to :func:`sweep`
    (``layers_per_chunk``, ``probes_per_chunk``, ``batch_size``, ``executor``, …). Refused before anything is
    written: probes without a counterfactual, an unknown direction, unaligned pairs with ``positions="all"``."""
    spec = patching_spec(direction, positions, target, min_gap)
    sweep_kwargs.setdefault("log", lambda message: None)
    if store is not None:
        return sweep(vlm, probes, spec, store, engine=engine, **sweep_kwargs)
    with tempfile.TemporaryDirectory(prefix="workbench-patch-") as folder:
        return sweep(vlm, probes, spec, EffectStore(folder), engine=engine, **sweep_kwargs)


@dataclass(frozen=True, eq=False)
class RelationEffects:
    """One relation's patching effects: ``mean``, ``low``, ``high`` are ``[layer, head]`` (``[layer]`` for MLPs) — the
    mean normalized effect over the probes used and its bootstrap interval; ``n_used`` probes entered it and
    ``n_dropped`` were dropped (too close to normalise)."""

    relation: str
    mean: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    n_used: int
    n_dropped: int


def _effects(relation: str, values: torch.Tensor, n_boot: int, seed: int, level: float) -> RelationEffects:
    dropped = dropped_probes(values)
    low, high = aggregate.bootstrap_ci(values, n_boot=n_boot, seed=seed, level=level)
    return RelationEffects(relation=relation, mean=aggregate.mean(values), low=low, high=high,
                           n_used=int((~dropped).sum()), n_dropped=int(dropped.sum()))


def relation_effects(result: SweepResult, n_boot: int = aggregate.N_BOOT, seed: int = aggregate.SEED,
                     level: float = 0.95) -> dict[str, RelationEffects]:
    """``{relation: RelationEffects}`` of a patching sweep's result, one entry per relation its probes hold (probes
    without a relation are left out), dropped probes excluded from the means and intervals and counted."""
    values = result.values[:, 0]  # the single α (fully patched): [probe, layer, (head)]
    relations = np.asarray(result.relations)
    return {r: _effects(r, values[torch.from_numpy(relations == r)], n_boot, seed, level)
            for r in sorted(set(result.relations) - {""})}


def overall_effects(result: SweepResult, n_boot: int = aggregate.N_BOOT, seed: int = aggregate.SEED,
                    level: float = 0.95) -> RelationEffects:
    """:class:`RelationEffects` over every probe of the result (``relation=""``)."""
    return _effects("", result.values[:, 0], n_boot, seed, level)
