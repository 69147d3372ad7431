"""Sweep engine: effects against hand-computed interventions, packed = naive, chunks assemble to the whole."""

import pytest
import torch

from workbench import metrics
from workbench.errors import WorkbenchError
from workbench.interventions.backends import make_backend
from workbench.interventions.core import HeadScale, MlpScale
from workbench.models.prompts import build_batch
from workbench.sweeps.engine import Chunk, SweepSpec, assemble, plan_chunks, run_chunk
from workbench.sweeps.executors import LocalExecutor


@pytest.fixture(scope="module")
def small(probes32):
    return probes32.filter(lambda it: int(it.id) < 6)


def test_effects_equal_the_intervention_by_hand(llava_vlm, small):
    spec = SweepSpec(alphas=(0.0, 2.0), metric="logit_diff")
    eff = run_chunk(llava_vlm, small, spec, Chunk(0, 2, 0, len(small)))
    assert eff.shape == (len(small), 2, 2, 4)
    be = make_backend(llava_vlm, "nnsight")
    batch = build_batch(llava_vlm, small, small.items)
    base = metrics.logit_diff(be.last_logits(batch.inputs), batch.option_ids, batch.answer)
    for ai, alpha in enumerate(spec.alphas):
        for layer, head in [(0, 3), (1, 1)]:
            lg = be.last_logits(batch.inputs, [HeadScale.at(llava_vlm.site, {(layer, head): alpha})])
            want = metrics.logit_diff(lg, batch.option_ids, batch.answer) - base
            assert torch.allclose(eff[:, ai, layer, head], want, atol=1e-5, rtol=1e-5)


PACKED_ALPHAS = (0.0, 0.5)


@pytest.fixture(scope="module")
def one_forward_per_variant(llava_vlm, small):
    """The naive reference, computed once for every metric: the batch, its clean last-position logits and
    ``{(alpha, layer, head): logits}`` of one plain torch-hooks forward per scaled head (2 α × 2 layers × 4 heads)."""
    be = make_backend(llava_vlm, "torch")
    batch = build_batch(llava_vlm, small, small.items)
    with torch.no_grad():
        clean = be.last_logits(batch.inputs).float()
        variants = {(a, layer, head): be.last_logits(batch.inputs, [HeadScale.at(llava_vlm.site, {(layer, head): a})]).float()
                    for a in PACKED_ALPHAS for layer in range(2) for head in range(4)}
    return batch, clean, variants


def _effects_by_hand(reference, metric: str) -> torch.Tensor:
    """``[probe, alpha, layer, head]``: metric(variant) − metric(clean); KL(clean ‖ variant) for ``kl``."""
    batch, clean, variants = reference
    out = torch.zeros(clean.shape[0], len(PACKED_ALPHAS), 2, 4)
    for (a, layer, head), lg in variants.items():
        if metric == "kl":
            value = metrics.kl(lg, clean)
        else:
            value = metrics.compute(metric, lg, batch.option_ids, batch.answer) - metrics.compute(
                metric, clean, batch.option_ids, batch.answer)
        out[:, PACKED_ALPHAS.index(a), layer, head] = value
    return out


@pytest.mark.parametrize("metric", ["logit_diff", "p_correct", "kl"])
def test_packed_engine_equals_one_forward_per_variant(llava_vlm, small, one_forward_per_variant, metric):
    want = _effects_by_hand(one_forward_per_variant, metric)
    packed = run_chunk(llava_vlm, small, SweepSpec(alphas=PACKED_ALPHAS, metric=metric), Chunk(0, 2, 0, len(small)),
                       engine="packed", batch_size=4)
    torch.testing.assert_close(packed, want, atol=1e-5, rtol=1e-4)
    assert want.abs().max() > 1e-3  # the heads do move the metric: equal zeros would prove nothing


def test_naive_engine_equals_one_forward_per_variant(llava_vlm, small, one_forward_per_variant):
    naive = run_chunk(llava_vlm, small, SweepSpec(alphas=PACKED_ALPHAS, metric="p_correct"), Chunk(0, 2, 0, len(small)),
                      engine="naive", batch_size=4)
    torch.testing.assert_close(naive, _effects_by_hand(one_forward_per_variant, "p_correct"), atol=1e-5, rtol=1e-4)


def test_chunks_assemble_to_the_single_chunk_result(llava_vlm, small):
    spec = SweepSpec(alphas=(0.0,))
    whole = run_chunk(llava_vlm, small, spec, Chunk(0, 2, 0, len(small)))
    chunks = plan_chunks(2, len(small), layers_per_chunk=1, probes_per_chunk=4)
    assert len(chunks) == 4 and {c.name for c in chunks} == {c.name for c in set(chunks)}
    pieced = assemble(llava_vlm, spec, len(small), list(LocalExecutor().map(llava_vlm, small, spec, chunks)))
    assert torch.allclose(pieced, whole, atol=1e-6)
    with pytest.raises(WorkbenchError, match="missing chunks"):
        assemble(llava_vlm, spec, len(small), list(LocalExecutor().map(llava_vlm, small, spec, chunks[:3])))


def test_mlp_target_and_all_positions(llava_vlm, small):
    spec = SweepSpec(alphas=(0.0,), target="mlp", positions="all")
    eff = run_chunk(llava_vlm, small, spec, Chunk(0, 2, 0, len(small)))
    assert eff.shape == (len(small), 1, 2)
    be = make_backend(llava_vlm, "torch")
    batch = build_batch(llava_vlm, small, small.items)
    base = metrics.logit_diff(be.last_logits(batch.inputs), batch.option_ids, batch.answer)
    lg = be.last_logits(batch.inputs, [MlpScale.at(llava_vlm.site, {1: 0.0}, positions="all")])
    assert torch.allclose(eff[:, 0, 1], metrics.logit_diff(lg, batch.option_ids, batch.answer) - base, atol=1e-5)
    with pytest.raises(WorkbenchError, match="last-token interventions only"):
        run_chunk(llava_vlm, small, spec, Chunk(0, 2, 0, 2), engine="packed")


@pytest.mark.parametrize("kw,msg", [({"alphas": ()}, "no alpha"), ({"metric": "acc"}, "unknown metric"),
                                    ({"positions": "first"}, "unknown positions"), ({"target": "experts"}, "unknown target")])
def test_bad_specs(kw, msg):
    with pytest.raises(WorkbenchError, match=msg):
        SweepSpec(**kw)
