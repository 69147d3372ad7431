"""Metrics on hand-computed logits."""

import math

import pytest
import torch

from workbench import metrics
from workbench.errors import WorkbenchError

LOGITS = torch.tensor([[0.0, 2.0, 1.0, 5.0, -1.0],
                       [3.0, 0.0, 0.5, 0.0, 4.0]])
OPTIONS = torch.tensor([[1, 2, 4], [0, 4, -1]])  # row 1 has two options
ANSWER = torch.tensor([1, 0])  # row 0: token 2 (logit 1.0); row 1: token 0 (logit 3.0)


def test_logit_diff():
    assert metrics.logit_diff(LOGITS, OPTIONS, ANSWER).tolist() == [1.0 - 2.0, 3.0 - 4.0]


def test_accuracy_ignores_tokens_that_are_not_options():
    # token 3 has the highest logit in row 0 but is no option
    assert metrics.accuracy(LOGITS, OPTIONS, ANSWER).tolist() == [0.0, 0.0]
    assert metrics.accuracy(LOGITS, OPTIONS, torch.tensor([0, 1])).tolist() == [1.0, 1.0]


def test_p_correct_renormalises_over_options():
    p = metrics.p_correct(LOGITS, OPTIONS, ANSWER)
    z0 = math.exp(2) + math.exp(1) + math.exp(-1)
    assert p[0].item() == pytest.approx(math.exp(1) / z0, rel=1e-6)
    assert p[1].item() == pytest.approx(math.exp(3) / (math.exp(3) + math.exp(4)), rel=1e-6)


def test_kl():
    assert metrics.kl(LOGITS, LOGITS).abs().max().item() < 1e-6
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    # KL(p=[.5,.5] || q=[.75,.25]) = .5 ln(.5/.75) + .5 ln(.5/.25)
    assert metrics.kl(b, a).item() == pytest.approx(0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(2.0), rel=1e-6)


def test_compute_by_name():
    assert torch.equal(metrics.compute("logit_diff", LOGITS, OPTIONS, ANSWER), metrics.logit_diff(LOGITS, OPTIONS, ANSWER))
    with pytest.raises(WorkbenchError, match="unknown metric 'acc'"):
        metrics.compute("acc", LOGITS, OPTIONS, ANSWER)
