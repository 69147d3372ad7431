"""Per-head linear probes on planted activations: the head that encodes the label must win."""

import pytest
import torch

from workbench.discovery.linear_probes import probe_scores
from workbench.errors import WorkbenchError


def test_the_head_that_encodes_the_relation_scores_highest():
    g = torch.Generator().manual_seed(0)
    labels = ["left", "right", "above", "below"] * 25
    acts = torch.randn(100, 2, 3, 4, generator=g)  # [probe, layer, head, head_dim]
    code = {"left": 0, "right": 1, "above": 2, "below": 3}
    for i, lab in enumerate(labels):
        acts[i, 1, 2, code[lab]] += 4.0  # L1H2 carries the relation
    scores = probe_scores(acts, labels, folds=5, seed=0)
    assert scores.shape == (2, 3)
    assert scores[1, 2] > 0.95
    others = scores.flatten()[:5]  # every head but L1H2
    assert others.max() < 0.5  # chance is 0.25
    assert torch.equal(scores, probe_scores(acts, labels, folds=5, seed=0))  # seeded


def test_too_few_probes_are_refused():
    with pytest.raises(WorkbenchError, match="at least 2 relations"):
        probe_scores(torch.randn(4, 1, 1, 2), ["left", "left", "right", "right"], folds=5)
