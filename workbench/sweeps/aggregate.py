"""Aggregate per-probe effects: mean, probes used, per relation, and the bootstrap 95% interval — one implementation.

Input ``values [probe, …]`` — a sweep's ``[probe, alpha, layer, head]``, one α's ``[probe, layer, head]``, one site's
``[probe, alpha]``, ``[probe, site]`` — as a NumPy array (or a torch tensor: the result comes back as one); every
output drops the probe axis. NumPy only, and torch is never imported here, so the app (which must stay torch-free),
``workbench store show`` and the Python API compute the same numbers with the same seeded resamples.

**NaN means "this probe was not used".** A patching sweep stores NaN for a probe whose base and source logit
differences are too close to normalise (:data:`workbench.axis.PATCH`); every aggregate here skips NaN per site
(``nanmean``), and :func:`n_used` says over how many probes each mean is. A site NaN on every probe has mean NaN
and interval NaN (nothing measured it), never 0.

**The bootstrap** resamples probes with replacement (seeded): each resample is a vector of counts over probes, so
every site is resampled with the same draw in one ``[boot, probe] @ [probe, site]`` product; with NaN, the mean of
one resample is Σ counts·value / Σ counts over the probes not NaN at that site. The interval is the 2.5 / 97.5
percentile (linear interpolation) of the resampled means. :data:`N_BOOT` resamples unless asked otherwise.
"""

from __future__ import annotations

import warnings

import numpy as np

N_BOOT = 1000  # resamples of every interval the workbench reports (the app, `workbench store show`, the API)
SEED = 0


def _unwrap(values):
    """(the values as a float NumPy array, a function that turns a result back into the input's type)."""
    if type(values).__module__.startswith("torch"):  # a torch tensor: never import torch for anything else
        import torch

        dtype = values.dtype if values.dtype.is_floating_point else torch.float32
        return values.detach().cpu().double().numpy(), lambda a: torch.as_tensor(np.asarray(a)).to(dtype)
    return np.asarray(values, dtype=float), lambda a: a


def nan_mean(v: np.ndarray) -> np.ndarray:
    """Mean over axis 0 skipping NaN (NaN where every probe is NaN, without a warning)."""
    ok = ~np.isnan(v)
    n = ok.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, v, 0.0).sum(0) / np.maximum(n, 1), np.nan)


def mean(values):
    """``values [probe, …]`` → ``[…]``: the mean over the probes that are not NaN at each position."""
    v, back = _unwrap(values)
    return back(nan_mean(v))


def n_used(values) -> np.ndarray:
    """``values [probe, …]`` → ``[…]`` int: how many probes each mean is over (the ones not NaN)."""
    v, _ = _unwrap(values)
    return (~np.isnan(v)).sum(0)


def dropped(values) -> np.ndarray:
    """``values [probe, …]`` → ``[probe]`` bool: probes NaN at every α and site — what a patching sweep stores for a
    probe it dropped (base and source too close to normalise); a probe with a number anywhere was not dropped."""
    v, _ = _unwrap(values)
    return np.isnan(v).reshape(v.shape[0], -1).all(1)


def by_relation(values, relations: tuple[str, ...]) -> dict:
    """``{relation: mean [...]}`` over the probes of each non-empty relation (NaN skipped as in :func:`mean`)."""
    v, back = _unwrap(values)
    rel = np.asarray(relations)
    return {r: back(nan_mean(v[rel == r])) for r in sorted(set(relations) - {""})}


def resample_counts(n: int, n_boot: int = N_BOOT, seed: int = SEED) -> np.ndarray:
    """``[boot, probe]``: how often each of ``n`` probes is drawn in each resample (n draws with replacement each,
    from ``numpy.random.default_rng(seed).integers(0, n, n_boot * n)`` read row by row)."""
    draws = np.random.default_rng(seed).integers(0, n, n_boot * n)
    rows = np.repeat(np.arange(n_boot), n)
    return np.bincount(rows * n + draws, minlength=n_boot * n).reshape(n_boot, n).astype(float)


def bootstrap_ci(values, n_boot: int = N_BOOT, seed: int = SEED, level: float = 0.95):
    """(low, high) percentile interval of the mean over probes (axis 0), each shaped like ``values[0]``; NaN-aware
    (module docstring). Seeded: the same values give the same interval everywhere."""
    v, back = _unwrap(values)
    n = v.shape[0]
    flat = v.reshape(n, -1)
    if n == 0:
        nan = np.full(v.shape[1:], np.nan)
        return back(nan), back(nan)
    counts = resample_counts(n, n_boot, seed)
    ok = ~np.isnan(flat)
    q = [100 * (1 - level) / 2, 100 * (1 - (1 - level) / 2)]
    if ok.all():
        means = counts @ flat / n
        low, high = np.percentile(means, q, axis=0)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (counts @ np.where(ok, flat, 0.0)) / (counts @ ok.astype(float))
        bad = np.isnan(means).any(0)  # sites where some resample drew no probe that measured them
        low, high = np.empty((2, flat.shape[1]))
        low[~bad], high[~bad] = np.percentile(means[:, ~bad], q, axis=0)  # the common case: NumPy's fast path
        if bad.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a site NaN on every probe: its interval is NaN
                low[bad], high[bad] = np.nanpercentile(means[:, bad], q, axis=0)
    return back(low.reshape(v.shape[1:])), back(high.reshape(v.shape[1:]))


def top_sites(values, alphas, relations: tuple[str, ...], label, n: int = 10, n_boot: int = N_BOOT,
              seed: int = SEED) -> list[dict]:
    """The ``n`` sites of largest |mean| per α, as rows for a table (``workbench store show``, a sweep's summary):
    ``{"alpha", "site", "layer", "head", "mean", "low", "high", "n_used", "relations": {relation: mean}}``.

    ``values [probe, alpha, layer, head]`` in the store's probe order (:meth:`EffectStore.read_dense
    <workbench.store.effects.EffectStore.read_dense>`, the order the app reads), ``label(layer, head)`` names a site
    (:meth:`workbench.axis.SiteKind.label`). Intervals are :func:`bootstrap_ci`'s over all probes — per site the
    same numbers the app's explorer shows for "all tasks, all relations" (a site's interval depends only on its own
    column and the shared resample counts)."""
    v, _ = _unwrap(values)
    n_p, _, n_layers, width = v.shape
    rels = sorted(set(relations) - {""})
    rel = np.asarray(relations)
    rows = []
    for ai, alpha in enumerate(alphas):
        flat = v[:, ai].reshape(n_p, -1)  # [probe, site]
        means = nan_mean(flat)
        top = np.argsort(-np.where(np.isnan(means), -1.0, np.abs(means)), kind="stable")[:n]
        low, high = bootstrap_ci(flat[:, top], n_boot, seed)
        used = n_used(flat[:, top])
        per_rel = {r: nan_mean(flat[rel == r][:, top]) for r in rels}
        for i, s in enumerate(top):
            layer, head = divmod(int(s), width)
            rows.append({"alpha": float(alpha), "site": label(layer, head), "layer": layer, "head": head,
                         "mean": float(means[s]), "low": float(low[i]), "high": float(high[i]), "n_used": int(used[i]),
                         "relations": {r: float(per_rel[r][i]) for r in rels}})
    return rows
