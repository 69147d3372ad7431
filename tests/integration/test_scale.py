"""ScAle on a tiny random LLaVA: the tanh bound, identity at u = 0, training, hooks on and off,
file round-trips (safetensors and the reference code's .npy), refusal of a vector for another model,
and the baselines in the same harness."""

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.interventions.torch_hooks import TorchHooksBackend
from workbench.models.prompts import build_batch
from workbench.scale.apply import apply_scales
from workbench.scale.baselines import random_heads, train_ia3, train_lora
from workbench.scale.train import ScaleParams, TrainConfig, answer_tokens, scale_forward, train_scales
from workbench.scale.vector import ScaleVector
from workbench.sweeps.attribution import spearman  # noqa: F401  (import check: scale must not cycle with sweeps)


def _vector(vlm, attn=None, mlp=None, positions="last"):
    n_layers, n_heads = vlm.site.shape
    g = torch.Generator().manual_seed(5)
    attn = attn if attn is not None else 1 + 0.8 * torch.randn(n_layers, n_heads, generator=g)
    mlp = mlp if mlp is not None else 1 + 0.5 * torch.randn(n_layers, generator=g)
    return ScaleVector(attn=attn, mlp=mlp, model=vlm.name, model_fingerprint=vlm.fingerprint, positions=positions)


def test_tanh_bound_and_identity_at_zero():
    p = ScaleParams((3, 4), "both", s_max=10.0)
    assert torch.equal(p.eff_attn(), torch.ones(3, 4)) and torch.equal(p.eff_mlp(), torch.ones(3))
    with torch.no_grad():
        p.u_attn[0, 0] = math.atanh(0.05)  # 1 + 10·0.05
        p.u_attn[1, 2] = 1e6  # saturates at 1 + s_max
        p.u_attn[2, 3] = -1e6  # and at 1 − s_max
    eff = p.eff_attn()
    assert eff[0, 0].item() == pytest.approx(1.5, abs=1e-6)
    assert eff[1, 2].item() == pytest.approx(11.0) and eff[2, 3].item() == pytest.approx(-9.0)
    assert p.n_trainable() == 3 * 4 + 3


def test_modes_and_head_sets_mask_what_trains():
    assert ScaleParams((3, 4), "attn").n_trainable() == 12
    assert ScaleParams((3, 4), "mlp").n_trainable() == 3
    p = ScaleParams((3, 4), "attn", heads=[(0, 1), (2, 3)])
    assert p.n_trainable() == 2
    with torch.no_grad():
        p.u_attn.fill_(0.3)
    eff = p.eff_attn()
    assert (eff != 1).nonzero().tolist() == [[0, 1], [2, 3]]
    with pytest.raises(WorkbenchError, match="outside"):
        ScaleParams((3, 4), "attn", heads=[(3, 0)])


def test_untrained_scales_reproduce_the_model(llava_vlm, probes32):
    batch = build_batch(llava_vlm, probes32, probes32.items[:6])
    plain = TorchHooksBackend(llava_vlm).last_logits(batch.inputs)
    scaled = scale_forward(llava_vlm, ScaleParams(llava_vlm.site.shape), "last")(batch.inputs)
    assert torch.equal(plain, scaled)


def _ce(vlm, probes, vector=None):
    be = TorchHooksBackend(vlm)
    b = build_batch(vlm, probes, probes.items)
    logits = be.last_logits(b.inputs, vector.interventions() if vector else []).float()
    return float(torch.nn.functional.cross_entropy(logits, answer_tokens(b)))


@pytest.fixture(scope="module")
def trained(llava_vlm, probes32):
    cfg = TrainConfig(mode="both", epochs=3, batch=8, lr=0.05, val_fraction=0.0, seed=0)
    return train_scales(llava_vlm, probes32, cfg), cfg


def test_training_lowers_the_loss_and_is_seeded(llava_vlm, probes32, trained):
    vec, cfg = trained
    assert _ce(llava_vlm, probes32, vec) < _ce(llava_vlm, probes32) - 1e-3
    assert vec.metrics["n_params"] == llava_vlm.site.n_layers * llava_vlm.site.n_heads + llava_vlm.site.n_layers
    assert len(vec.metrics["history"]) == 3 and vec.probes_hash == probes32.hash
    again = train_scales(llava_vlm, probes32, cfg)
    assert torch.equal(vec.attn, again.attn) and torch.equal(vec.mlp, again.mlp)


def test_cosine_schedule_is_seeded_lowers_the_loss_and_changes_the_path(llava_vlm, probes32, trained):
    vec, cfg = trained
    cos_cfg = TrainConfig(**{**asdict(cfg), "schedule": "cosine"})
    a, b = train_scales(llava_vlm, probes32, cos_cfg), train_scales(llava_vlm, probes32, cos_cfg)
    assert torch.equal(a.attn, b.attn) and not torch.equal(a.attn, vec.attn)  # later steps are shorter than the constant run's
    assert _ce(llava_vlm, probes32, a) < _ce(llava_vlm, probes32) - 1e-3
    with pytest.raises(WorkbenchError, match="unknown schedule"):
        TrainConfig(schedule="linear")


def test_head_set_training_leaves_other_heads_at_one(llava_vlm, probes32):
    heads = [(0, 1), (1, 3)]
    vec = train_scales(llava_vlm, probes32, TrainConfig(mode="attn", epochs=1, batch=8, lr=0.05, val_fraction=0.0), heads=heads)
    moved = {tuple(x) for x in (vec.attn != 1).nonzero().tolist()}
    assert moved == set(heads) and torch.equal(vec.mlp, torch.ones(llava_vlm.site.n_layers))


def test_early_stopping_keeps_the_best_epoch(llava_vlm, probes32):
    vec = train_scales(llava_vlm, probes32, TrainConfig(epochs=4, batch=8, lr=3.0, val_fraction=0.25, patience=1))
    hist = vec.metrics["history"]
    best = min(range(len(hist)), key=lambda i: hist[i]["val_loss"])
    assert vec.metrics["best_epoch"] == best + 1


@pytest.mark.parametrize("positions", ["last", "all"])
def test_apply_scales_equals_the_nnsight_forward_and_removes_cleanly(llava_vlm, probes32, positions):
    from workbench.interventions.nnsight_backend import NNsightBackend

    vec = _vector(llava_vlm, positions=positions)
    batch = build_batch(llava_vlm, probes32, probes32.items[:5])
    model = llava_vlm.model
    plain = model(**batch.inputs).logits[:, -1]
    reference = NNsightBackend(llava_vlm).last_logits(batch.inputs, vec.interventions())
    before = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())
    handle = apply_scales(model, vec)
    after = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())
    assert after - before == 2 * llava_vlm.site.n_layers  # one o_proj pre-hook and one mlp hook per layer
    hooked = model(**batch.inputs).logits[:, -1]
    assert not torch.allclose(hooked, plain, atol=1e-4)
    assert torch.allclose(hooked, reference, atol=1e-5, rtol=0)
    handle.remove()
    assert sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules()) == before
    assert torch.equal(model(**batch.inputs).logits[:, -1], plain)


def test_generate_runs_scaled(llava_vlm, probes32):
    vec = _vector(llava_vlm)
    batch = build_batch(llava_vlm, probes32, probes32.items[:2])
    with apply_scales(llava_vlm.model, vec):
        first = llava_vlm.model(**batch.inputs).logits[:, -1].argmax(-1)
        out = llava_vlm.model.generate(**batch.inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == batch.inputs["input_ids"].shape[1] + 3
    assert torch.equal(out[:, batch.inputs["input_ids"].shape[1]], first)


def test_safetensors_and_npy_round_trips(llava_vlm, tmp_path):
    vec = _vector(llava_vlm)
    path = vec.save(tmp_path / "v")
    assert path.name == "v.safetensors" and (tmp_path / "v.json").is_file()
    back = ScaleVector.load(tmp_path / "v")
    assert torch.equal(back.attn, vec.attn) and torch.equal(back.mlp, vec.mlp)
    assert (back.model_fingerprint, back.positions, back.s_max) == (vec.model_fingerprint, vec.positions, vec.s_max)
    a, m = vec.to_npy(tmp_path / "npy", "_seed0")
    assert a.name == "eff_attn_seed0.npy" and np.load(a).shape == tuple(llava_vlm.site.shape)
    imp = ScaleVector.from_npy(a, m, model=vlm_name(llava_vlm), model_fingerprint=llava_vlm.fingerprint,
                               shape=llava_vlm.site.shape)
    assert torch.equal(imp.attn, vec.attn) and torch.equal(imp.mlp, vec.mlp) and imp.mode == "both"
    only = ScaleVector.from_npy(a, None, model="m", model_fingerprint="f", shape=llava_vlm.site.shape)
    assert torch.equal(only.mlp, torch.ones(llava_vlm.site.n_layers)) and only.mode == "attn"


def vlm_name(vlm):
    return vlm.name


def test_bad_files_are_refused(llava_vlm, tmp_path):
    vec = _vector(llava_vlm)
    vec.save(tmp_path / "v")
    (tmp_path / "v.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WorkbenchError, match="not a readable scale vector"):
        ScaleVector.load(tmp_path / "v")
    np.save(tmp_path / "wrong.npy", np.ones((7, 7), dtype=np.float32))
    with pytest.raises(WorkbenchError, match="shape"):
        ScaleVector.from_npy(tmp_path / "wrong.npy", None, model="m", model_fingerprint="f", shape=llava_vlm.site.shape)
    with pytest.raises(WorkbenchError, match="missing"):
        ScaleVector.load(tmp_path / "absent")


def test_a_vector_for_another_model_is_refused(llava_vlm, tmp_path):
    other = ScaleVector(attn=torch.ones(llava_vlm.site.shape), mlp=torch.ones(llava_vlm.site.n_layers), model="other",
                        model_fingerprint="0" * 64)
    before = sum(len(m._forward_pre_hooks) for m in llava_vlm.model.modules())
    with pytest.raises(WorkbenchError, match="trained on 'other'"):
        apply_scales(llava_vlm.model, other)
    wrong_shape = ScaleVector(attn=torch.ones(5, 5), mlp=torch.ones(5), model="x", model_fingerprint=llava_vlm.fingerprint)
    with pytest.raises(WorkbenchError, match="5 layers × 5 heads"):
        apply_scales(llava_vlm.model, wrong_shape)
    assert sum(len(m._forward_pre_hooks) for m in llava_vlm.model.modules()) == before  # nothing left behind


def test_random_heads_are_seeded_and_distinct():
    a, b = random_heads((4, 8), 6, seed=1), random_heads((4, 8), 6, seed=1)
    assert a == b and len(set(a)) == 6 and random_heads((4, 8), 6, seed=2) != a
    with pytest.raises(WorkbenchError):
        random_heads((4, 8), 33, seed=0)


@pytest.mark.slow
def test_lora_and_ia3_train_on_a_copy_with_the_expected_parameter_counts(llava_vlm, probes32):
    batch = build_batch(llava_vlm, probes32, probes32.items[:4])
    before = llava_vlm.model(**batch.inputs).logits[:, -1].clone()
    cfg = TrainConfig(epochs=1, batch=8, lr=1e-2, val_fraction=0.0)
    lora = train_lora(llava_vlm, probes32, cfg, rank=1)
    tc = llava_vlm.model.config.text_config
    hidden, inter, kv = tc.hidden_size, tc.intermediate_size, tc.num_key_value_heads * tc.head_dim
    q = tc.num_attention_heads * tc.head_dim
    per_layer = (hidden + q) + (hidden + kv) * 2 + (q + hidden) + (hidden + inter) * 2 + (inter + hidden)  # r·(in + out) each
    assert lora.n_params == tc.num_hidden_layers * per_layer
    ia3 = train_ia3(llava_vlm, probes32, cfg)
    assert ia3.n_params == tc.num_hidden_layers * (kv + kv + inter)  # k, v outputs and down_proj's input
    assert torch.equal(llava_vlm.model(**batch.inputs).logits[:, -1], before)  # the original model is untouched
    assert lora.history["history"][0]["train_loss"] > 0


def test_the_app_and_cli_paper_split_is_the_reference_per_task_split(small_probes):
    """The one paper split (workbench.scale.split): each task's floor(20%) to train, the rest to test, seeded."""
    import math
    from collections import Counter

    from workbench.scale.split import reference_split

    train, test = reference_split(small_probes, 0)
    sizes = Counter(it.task for it in small_probes)
    assert len(train) == sum(math.floor(0.2 * n) for n in sizes.values()) and len(train) + len(test) == len(small_probes)
    ids_a, ids_b = {it.id for it in train}, {it.id for it in test}
    assert not ids_a & ids_b and len(ids_a | ids_b) == len(small_probes)
    assert {it.id for it in reference_split(small_probes, 0)[0]} == ids_a
    assert {it.id for it in reference_split(small_probes, 1)[0]} != ids_a
