"""Rankings and specificity on hand-computed maps."""

import pytest
import torch

from workbench.discovery.rankings import rank_of, ranks, specificity, task_drops, top_k, top_k_overlap
from workbench.errors import WorkbenchError


def test_task_drops_are_minus_the_mean_per_task():
    values = torch.tensor([[[-1.0, 0.0]], [[-3.0, 2.0]], [[0.5, -0.5]]])  # [probe 3, layer 1, head 2]
    drops = task_drops(values, ["relation", "relation", "color"])
    assert list(drops) == ["relation", "color"]
    assert torch.equal(drops["relation"], torch.tensor([[2.0, -1.0]]))
    assert torch.equal(drops["color"], torch.tensor([[-0.5, 0.5]]))
    with pytest.raises(WorkbenchError, match="task labels"):
        task_drops(values, ["relation"])


def test_specificity_subtracts_the_worst_control_drop_and_never_rewards_a_control_gain():
    spatial = torch.tensor([[0.5, 0.4, 0.1]])
    control = torch.tensor([[[0.0, 0.3, -0.2]], [[0.1, 0.0, -0.4]]])  # two control tasks
    # head 0: worst control 0.1 → 0.4; head 1: worst 0.3 → 0.1; head 2: both improve → clamp to 0 → 0.1
    assert torch.allclose(specificity(spatial, control), torch.tensor([[0.4, 0.1, 0.1]]))
    assert torch.allclose(specificity(spatial, [control[0], control[1]]), torch.tensor([[0.4, 0.1, 0.1]]))
    assert torch.allclose(specificity(spatial, control[0]), torch.tensor([[0.5, 0.1, 0.1]]))
    with pytest.raises(WorkbenchError, match="do not fit"):
        specificity(spatial, torch.zeros(2, 1, 4))


def test_ranks_top_k_and_overlap():
    s = torch.tensor([[0.1, 0.9], [float("nan"), 0.5]])
    assert torch.equal(ranks(s), torch.tensor([[3, 1], [4, 2]]))
    assert top_k(s, 2) == [(0, 1), (1, 1)]
    assert rank_of(s, [(1, 0), (0, 0)]) == {(1, 0): 4, (0, 0): 3}
    t = torch.tensor([[0.9, 0.8], [0.0, 0.1]])
    assert top_k_overlap(s, t, 2) == 0.5 and top_k_overlap(s, s, 3) == 1.0
    assert top_k(torch.tensor([[1.0, 1.0, 0.0]]), 1) == [(0, 0)]  # a tie: the lower flat index first
    with pytest.raises(WorkbenchError, match="out of range"):
        top_k(s, 5)
