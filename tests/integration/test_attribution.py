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


def test_head_activations_are_the_o_proj_inputs_of_a_plain_forward(llava_vlm, eight):
    """The linear probes' features through nnsight equal the last-token head outputs that plain torch hooks record."""
    from workbench.discovery.linear_probes import head_activations
    from workbench.interventions.torch_hooks import record_sites
    from workbench.models.prompts import build_batch

    acts = head_activations(llava_vlm, eight, batch_size=3)  # three batches: the concatenation is in probe order
    oracle = record_sites(llava_vlm, build_batch(llava_vlm, eight, eight.items).inputs, heads=True, mlp=False).heads
    assert acts.shape == (8, 2, 4, 16)
    torch.testing.assert_close(acts, oracle.float(), rtol=1e-4, atol=1e-5)


def test_linear_probes_find_a_head_planted_with_each_probes_relation(llava_vlm, monkeypatch):
    """End to end from a probe set: the spatial probes are picked, each row keeps its own probe's relation, and the one
    head whose features encode it (planted: L1H2, one feature per relation) scores ~1 while the others sit near chance."""
    from tests.conftest import cached_probes
    from workbench.discovery import linear_probes

    ps = cached_probes(n=80, seed=4, canvas=32, object_size=7)
    spatial = [it for it in ps.items if it.family == "spatial" and it.relation]
    relations = sorted({it.relation for it in spatial})
    g = torch.Generator().manual_seed(0)

    def planted(vlm, probes, batch_size=32):
        assert [it.id for it in probes.items] == [it.id for it in spatial]  # only the spatial probes, in order
        acts = torch.randn(len(probes), 2, 4, 16, generator=g)
        for i, it in enumerate(probes.items):
            acts[i, 1, 2, relations.index(it.relation)] += 4.0
        return acts

    monkeypatch.setattr(linear_probes, "head_activations", planted)
    scores = linear_probes.linear_probe_scores(llava_vlm, ps, folds=3, seed=0)
    assert scores.shape == (2, 4) and scores[1, 2] > 0.95
    others = torch.cat([scores.flatten()[:6], scores.flatten()[7:]])
    assert others.max() < 0.5 + 1 / len(relations)  # chance is 1 / len(relations)
