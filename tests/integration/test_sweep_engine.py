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


@pytest.mark.parametrize("metric", ["logit_diff", "p_correct", "kl"])
def test_packed_engine_equals_naive_engine(llava_vlm, small, metric):
    spec = SweepSpec(alphas=(0.0, 0.5), metric=metric)
    chunk = Chunk(0, 2, 0, len(small))
    packed = run_chunk(llava_vlm, small, spec, chunk, engine="packed", batch_size=4)
    naive = run_chunk(llava_vlm, small, spec, chunk, engine="naive", batch_size=4)
    assert torch.allclose(packed, naive, atol=1e-5, rtol=1e-4)
    assert packed.abs().max() > 1e-3


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
