"""The shipped organism's probe sets: the scene geometry it was trained on, and the fixed held-out evaluation set.

Every score of the organism (its model card, the tests, the app's default probes, the study) is taken on
:func:`eval_probes`: the test split of a seeded generation, so every scene contains a held-out color–shape
pair that training never shows. :func:`probe_config` draws any other probes the way the organism sees its
scenes (64 px canvas, 14 px objects centered in the cells of a 16 px grid: one object per vision patch).

Torch-free. The training recipe (:class:`workbench.lab.config.OrganismConfig`) takes its scene defaults
from :data:`SCENE` and passes its own geometry as ``cfg`` when it evaluates a differently drawn organism.
"""

from __future__ import annotations

from typing import Protocol

from workbench.probes.generate import ProbeConfig, generate
from workbench.probes.probeset import ProbeSet

SCENE = {"canvas": 64, "object_size": 14, "grid": 16}  # ProbeConfig fields: px canvas, px objects, px grid cells (0: free)
EVAL_SOURCE = 625  # items generated for the evaluation set; its test split (test_fraction 0.8) keeps 500 of them
FRESH_OFFSET = 10_000  # fresh_probes(seed) draws from stream FRESH_OFFSET + seed, which the evaluation set never uses


class HasScene(Protocol):
    """Anything that names a scene geometry, e.g. a training config (``OrganismConfig.scene``)."""

    @property
    def scene(self) -> dict: ...


def probe_config(n: int, seed: int, test_fraction: float = 0.0, cfg: HasScene | None = None, **fields) -> ProbeConfig:
    """``n`` probes of stream ``seed`` drawn as the organism sees its scenes (``cfg``'s geometry where given, else
    the shipped :data:`SCENE`); ``fields``: any other ProbeConfig field (e.g. ``tasks``)."""
    return ProbeConfig(n=n, seed=seed, test_fraction=test_fraction, **(SCENE if cfg is None else cfg.scene), **fields)


def eval_probes(seed: int = 0, cfg: HasScene | None = None) -> ProbeSet:
    """The fixed 500-item held-out evaluation set: the test split of a seeded generation, whose scenes
    all contain a held-out color–shape pair (so none can appear in training). Scenes are drawn as
    ``cfg`` draws them (default: the shipped organism's :data:`SCENE`)."""
    return generate(probe_config(EVAL_SOURCE, seed, test_fraction=0.8, cfg=cfg)).split("test")


def fresh_probes(seed: int = 0, cfg: HasScene | None = None, n: int = 500) -> ProbeSet:
    """500 in-distribution probes: new scenes (another seed's stream) made only of training pairs.
    The gap between this set and :func:`eval_probes` is the cost of unseen color–shape pairs."""
    return generate(probe_config(n, FRESH_OFFSET + seed, cfg=cfg))
