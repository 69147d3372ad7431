"""Head rankings from sweep values, and how two rankings compare.

Every discovery method ends in a score map ``[layer, head]`` (higher = more likely a head that carries the
relation); this module holds the pieces that turn sweeps into such maps and that compare them:

- :func:`task_drops`: a scaling sweep's per-probe values ``[probe, layer, head]`` (metric under the intervention
  − clean metric) → the mean *drop* per task, ``{task: [layer, head]}`` (positive = the intervention hurts);
- :func:`specificity`: how much a head's intervention hurts the spatial tasks *beyond* what it does to the
  control tasks. The score is

      specificity[l, h] = spatial_drop[l, h] − max(0, max_t control_drop[t, l, h])

  the spatial drop minus the worst control task's drop (a head whose intervention *improves* every control task
  earns nothing for it). This mirrors the criterion the planted deficit was chosen by
  (:func:`workbench.lab.deficit.plant`): spatial accuracy drop, with the worst control-task drop
  (``deficit.control_drop``: the largest ``base − intervened`` over color, shape, count and exists) held within a
  budget. The planting used the budget as a hard constraint and grew its set greedily *in combination*; a
  per-head score can only subtract it, and cannot see heads that matter only together;
- :func:`ranks`, :func:`top_k_overlap`, :func:`rank_of`: the comparison of two maps (Spearman is
  :func:`workbench.sweeps.attribution.spearman`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from workbench.errors import WorkbenchError


def task_drops(values: torch.Tensor, tasks: Sequence[str]) -> dict[str, torch.Tensor]:
    """``values [probe, layer, head]`` (one α of a scaling sweep) → ``{task: −mean over the task's probes}`` ``[layer,
    head]``, tasks in first-seen order. NaN values (none in a scaling sweep) are left out of the mean."""
    if values.shape[0] != len(tasks):
        raise WorkbenchError(f"{values.shape[0]} rows of values for {len(tasks)} task labels", "pass one task per probe")
    out = {}
    for task in dict.fromkeys(tasks):
        rows = torch.tensor([t == task for t in tasks])
        out[task] = -values[rows].nanmean(0)
    return out


def specificity(spatial_drop: torch.Tensor, control_drops: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """``spatial_drop [layer, head]`` and the control tasks' drops ``[task, layer, head]`` (or a list of ``[layer,
    head]``) → ``spatial_drop − max(0, worst control drop)`` ``[layer, head]``. See the module docstring."""
    control = control_drops if isinstance(control_drops, torch.Tensor) else torch.stack(list(control_drops))
    if control.dim() == spatial_drop.dim():
        control = control[None]
    if control.shape[0] == 0 or tuple(control.shape[1:]) != tuple(spatial_drop.shape):
        raise WorkbenchError(f"control drops {list(control.shape)} do not fit spatial drops {list(spatial_drop.shape)}",
                             "pass one [layer, head] map per control task, from sweeps of the same model")
    return spatial_drop - control.amax(0).clamp(min=0)


def ranks(scores: torch.Tensor) -> torch.Tensor:
    """1-based rank of every head, highest score first (ties: the lower flat index first; NaN ranks last), shaped
    like ``scores``."""
    flat = torch.nan_to_num(scores.flatten().float(), nan=-float("inf"))
    order = torch.argsort(-flat, stable=True)
    r = torch.empty_like(order)
    r[order] = torch.arange(1, len(flat) + 1)
    return r.reshape(scores.shape)


def top_k(scores: torch.Tensor, k: int) -> list[tuple[int, int]]:
    """The ``k`` best heads of a ``[layer, head]`` map, best first (the order of :func:`ranks`)."""
    if not 1 <= k <= scores.numel():
        raise WorkbenchError(f"k = {k} is out of range for {scores.numel()} heads", f"pick 1 ≤ k ≤ {scores.numel()}")
    r = ranks(scores)
    n_heads = scores.shape[-1]
    return [(int(i) // n_heads, int(i) % n_heads) for i in torch.argsort(r.flatten())[:k]]


def top_k_overlap(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    """Share of ``a``'s top ``k`` heads that are also among ``b``'s top ``k`` (1: the same set, in any order)."""
    return len(set(top_k(a, k)) & set(top_k(b, k))) / k


def rank_of(scores: torch.Tensor, heads: Sequence[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """The 1-based rank (:func:`ranks`) of each of ``heads`` in ``scores``."""
    r = ranks(scores)
    return {(int(layer), int(head)): int(r[int(layer), int(head)]) for layer, head in heads}
