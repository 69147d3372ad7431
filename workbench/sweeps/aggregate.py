"""Aggregate per-probe effects: mean, per relation, and bootstrap 95% confidence intervals.

Input ``values [probe, alpha, layer, head]`` (or ``[probe, alpha, layer]``); every output drops the
probe axis. The bootstrap resamples probes with replacement (seeded), so intervals say how much a
head's mean effect depends on which probes were drawn.
"""

from __future__ import annotations

import torch


def mean(values: torch.Tensor) -> torch.Tensor:
    return values.mean(0)


def by_relation(values: torch.Tensor, relations: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    for rel in sorted(set(relations) - {""}):
        mask = torch.tensor([r == rel for r in relations])
        out[rel] = values[mask].mean(0)
    return out


def bootstrap_ci(values: torch.Tensor, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) percentile interval of the mean over probes, each shaped like ``values[0]``."""
    g = torch.Generator().manual_seed(seed)
    n = values.shape[0]
    means = torch.stack([values[torch.randint(0, n, (n,), generator=g)].mean(0) for _ in range(n_boot)])
    q = torch.tensor([(1 - level) / 2, 1 - (1 - level) / 2], dtype=means.dtype)
    low, high = torch.quantile(means.flatten(1), q, dim=0)
    return low.reshape(values.shape[1:]), high.reshape(values.shape[1:])
