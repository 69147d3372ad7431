"""Run a model (optionally intervened) over a probe set and score it per task and per family.

The workhorse behind "how accurate is this model", "what does ablating these heads cost" and,
later, ScAle's held-out evaluation: prompts are built in batches with
:func:`~workbench.models.prompts.build_batch`, run through a backend at the last position, and
scored over each probe's options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from workbench import metrics
from workbench.interventions.backends import DEFAULT_BACKEND, make_backend
from workbench.interventions.core import Intervention
from workbench.models.load import VLM
from workbench.models.prompts import build_batch
from workbench.probes.probeset import ProbeSet


@dataclass(frozen=True)
class Scores:
    """Per-probe scores ``[n_probes]`` and the probes' task / family labels, in probe-set order."""

    accuracy: torch.Tensor
    logit_diff: torch.Tensor
    tasks: tuple[str, ...]
    families: tuple[str, ...]
    relations: tuple[str, ...]  # true relation for spatial probes, "" otherwise

    def by_task(self) -> dict[str, float]:
        """Accuracy per task, plus ``spatial`` and ``control`` (per family) and ``all``."""
        out = {}
        for labels in (self.tasks, self.families):
            for name in sorted(set(labels)):
                mask = torch.tensor([lab == name for lab in labels])
                out[name] = float(self.accuracy[mask].mean())
        out["all"] = float(self.accuracy.mean())
        return out

    def by_relation(self) -> dict[str, float]:
        """Accuracy of spatial probes per relation (of subject to reference)."""
        out = {}
        for rel in sorted(set(self.relations) - {""}):
            mask = torch.tensor([r == rel for r in self.relations])
            out[rel] = float(self.accuracy[mask].mean())
        return out


def score(vlm: VLM, probes: ProbeSet, interventions: Sequence[Intervention] = (), backend: str = DEFAULT_BACKEND,
          batch_size: int = 64) -> Scores:
    """Accuracy and logit difference of every probe in ``probes`` under ``interventions``.

    ``backend``: which implementation applies the interventions (:data:`~workbench.interventions.backends.BACKENDS`;
    the default, torch hooks, is the fastest and needs no nnsight trace). All give the same scores (oracle tests)."""
    be = make_backend(vlm, backend)
    acc, ld = [], []
    items = probes.items
    for s in range(0, len(items), batch_size):
        batch = build_batch(vlm, probes, items[s:s + batch_size])
        logits = be.last_logits(batch.inputs, interventions).float()
        acc.append(metrics.accuracy(logits, batch.option_ids, batch.answer).cpu())
        ld.append(metrics.logit_diff(logits, batch.option_ids, batch.answer).cpu())
    return Scores(torch.cat(acc), torch.cat(ld), tuple(it.task for it in items), tuple(it.family for it in items),
                  tuple(it.relation if it.family == "spatial" else "" for it in items))
