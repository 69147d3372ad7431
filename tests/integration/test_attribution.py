"""Attribution against exact sweeps: exact to first order near α = 1, a ranking estimate for ablation."""

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.sweeps.attribution import attribution, spearman
from workbench.sweeps.engine import Chunk, SweepSpec, run_chunk


@pytest.fixture(scope="module")
def eight(probes32):
    return probes32.filter(lambda it: int(it.id) < 8)


def test_first_order_estimate_matches_small_perturbations(llava_vlm, eight):
    spec = SweepSpec(alphas=(0.99, 1.01))
    exact = run_chunk(llava_vlm, eight, spec, Chunk(0, 2, 0, len(eight)))
    est = attribution(llava_vlm, eight, spec)
    assert est.shape == exact.shape == (8, 2, 2, 4)
    assert (est - exact).abs().max() <= 0.02 * exact.abs().max()  # second-order terms only
    assert spearman(est, exact) > 0.99


def test_ablation_ranking_is_reported(llava_vlm, eight):
    spec = SweepSpec(alphas=(0.0,))
    exact = run_chunk(llava_vlm, eight, spec, Chunk(0, 2, 0, len(eight))).mean(0)
    est = attribution(llava_vlm, eight, spec).mean(0)
    assert spearman(est, exact) > 0.5, "even for ablation the estimate should order these heads well"


def test_spearman_by_hand():
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 30.0])) == pytest.approx(1.0)
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(0.8660254, rel=1e-6)


@pytest.mark.parametrize("metric", ["kl", "accuracy"])
def test_metrics_without_a_gradient_are_refused(llava_vlm, eight, metric):
    with pytest.raises(WorkbenchError, match="differentiable metric"):
        attribution(llava_vlm, eight, SweepSpec(metric=metric))


def test_linear_probe_scores_on_a_real_forward(llava_vlm):
    from tests.conftest import cached_probes
    from workbench.discovery.probes import head_activations, linear_probe_scores

    ps = cached_probes(n=80, seed=4, canvas=32, object_size=7)
    spatial = ps.filter(lambda it: it.family == "spatial")
    acts = head_activations(llava_vlm, spatial)
    assert acts.shape == (len(spatial), 2, 4, 16)
    scores = linear_probe_scores(llava_vlm, ps)
    assert scores.shape == (2, 4) and ((scores >= 0) & (scores <= 1)).all()
    assert torch.equal(scores, linear_probe_scores(llava_vlm, ps))
