"""Linear probes per head: how well does one head's last-token output predict the relation?

As in Inference-Time Intervention (Li et al., 2023): for every head, fit a logistic regression on
its output at the last token, ``z[probe, layer, head, :]`` (``head_dim`` features), to predict
the spatial relation of the probe, and score the head by cross-validated accuracy. Heads whose
output linearly encodes left/right/above/below score high. Chance is 1 / (number of relations).

Folds are stratified and seeded; features are standardised inside each fold.
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.errors import WorkbenchError
from workbench.interventions.nnsight_backend import NNsightBackend
from workbench.models.load import VLM
from workbench.models.prompts import build_batch
from workbench.probes.probeset import ProbeSet


def head_activations(vlm: VLM, probes: ProbeSet, batch_size: int = 32) -> torch.Tensor:
    """Last-token head outputs ``[probe, layer, head, head_dim]``."""
    be = NNsightBackend(vlm)
    out = [be.head_outputs(build_batch(vlm, probes, probes.items[s:s + batch_size]).inputs).float().cpu()
           for s in range(0, len(probes), batch_size)]
    return torch.cat(out)


def probe_scores(acts: torch.Tensor, labels: list[str], folds: int = 5, seed: int = 0) -> torch.Tensor:
    """Cross-validated accuracy of a per-head logistic regression: ``[layer, head]``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2 or counts.min() < folds:
        raise WorkbenchError(f"linear probes need at least 2 relations with {folds} probes each, "
                             f"got {dict(zip(classes, counts))}",
                             "use more spatial probes")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    n_layers, n_heads = acts.shape[1:3]
    scores = torch.zeros(n_layers, n_heads)
    for layer in range(n_layers):
        for head in range(n_heads):
            x = acts[:, layer, head].numpy()
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
            scores[layer, head] = float(cross_val_score(clf, x, y, cv=cv).mean())
    return scores


def linear_probe_scores(vlm: VLM, probes: ProbeSet, folds: int = 5, seed: int = 0) -> torch.Tensor:
    """Per-head relation-decoding accuracy on the spatial probes of ``probes``: ``[layer, head]``."""
    spatial = probes.filter(lambda it: it.family == "spatial" and bool(it.relation))
    if len(spatial) == 0:
        raise WorkbenchError(f"probe set {probes.name!r} has no spatial probes with a relation", "use a generated probe set")
    return probe_scores(head_activations(vlm, spatial), [it.relation for it in spatial], folds, seed)
