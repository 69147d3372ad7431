"""Attention-edge interventions on real models: identity at factor 1, a knock-out recomputed by hand, restoration,
the KV cache, and an edge sweep whose cell is recomputed directly.

The hand computation (:func:`hand_edited_logits`) shares nothing with ``workbench.interventions.attention``: it
recomputes one head's attention of the last token from the layer's own ``q_proj``/``k_proj``/``v_proj`` and rotary
embeddings, with the image keys masked by −inf (or their logits divided by T), and writes that head's output into
the ``o_proj`` input with a plain pre-hook.
"""

import types

import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from tests.tiny import IMAGE_TOKEN, tiny_inputs, tiny_model
from workbench import metrics
from workbench.errors import WorkbenchError
from workbench.interventions.attention import EdgeScale, ImageTemperature, _EdgeConfig, edges_hooked, image_key_mask
from workbench.interventions.torch_hooks import TorchHooksBackend, hooked
from workbench.models.load import load_vlm, wrap_vlm
from workbench.models.prompts import build_batch
from workbench.organism import DEFAULT_MODEL
from workbench.sweeps.engine import Chunk, SweepSpec, run_chunk

HAS_ORGANISM = (DEFAULT_MODEL / "config.json").is_file()


@pytest.fixture(scope="module")
def organism():
    if not HAS_ORGANISM:
        pytest.skip("the organism is not built in assets/")
    return load_vlm(DEFAULT_MODEL, attn_implementation="eager")


@pytest.fixture(scope="module")
def organism_probes():
    from workbench.organism.probesets import eval_probes

    probes = eval_probes(0)
    first = {it.id for it in probes.items if it.family == "spatial"}
    first = set(sorted(first)[:6])
    return probes.filter(lambda it: it.id in first)


def _batch(vlm, probes, n=6):
    return build_batch(vlm, probes, probes.items[:n])


def hand_edited_logits(model, site, inputs, layer, head, temperature=None, token=IMAGE_TOKEN):
    """Logits at the last position with head ``(layer, head)``'s last-token attention recomputed by hand: image keys
    masked (knock-out), or their logits divided by ``temperature``."""
    attn = model.get_submodule(site.attn_out_path(layer).rsplit(".", 1)[0])
    img = inputs["input_ids"] == token
    got = {}

    def grab(module, args, kwargs):
        got.update(hidden=kwargs["hidden_states"], pe=kwargs["position_embeddings"], mask=kwargs["attention_mask"])

    def replace(module, args):
        hs, d = got["hidden"], site.head_dim
        b, s, _ = hs.shape
        q = attn.q_proj(hs).view(b, s, -1, d).transpose(1, 2)
        k = attn.k_proj(hs).view(b, s, -1, d).transpose(1, 2)
        v = attn.v_proj(hs).view(b, s, -1, d).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *got["pe"])
        kv = head // (site.n_heads // site.n_kv_heads)
        scores = (q[:, head, -1:] @ k[:, kv].transpose(1, 2))[:, 0] * attn.scaling  # [b, s]
        if temperature is None:
            scores = scores.masked_fill(img, float("-inf"))
        else:
            scores = torch.where(img, scores / temperature, scores)
        scores = scores + got["mask"][:, 0, -1]
        z = torch.softmax(scores, dim=-1)[:, None] @ v[:, kv]  # [b, 1, d]
        x = args[0].clone()
        x[:, -1, head * d:(head + 1) * d] = z[:, 0]
        return (x, *args[1:])

    handles = [attn.register_forward_pre_hook(grab, with_kwargs=True),
               site.attn_out(model, layer).register_forward_pre_hook(replace)]
    try:
        with torch.no_grad():
            return model(**inputs).logits[:, -1]
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "qwen2_5_vl"])
def test_factor_one_is_the_identity_exactly(family):
    vlm = wrap_vlm(tiny_model(family))
    inputs = tiny_inputs(family, pad_left=2)
    be = TorchHooksBackend(vlm)
    with torch.no_grad():
        clean = be.last_logits(inputs)
        ones = torch.ones(vlm.site.shape)
        assert torch.equal(be.last_logits(inputs, [EdgeScale(ones)]), clean)
        assert torch.equal(be.last_logits(inputs, [ImageTemperature(ones, positions="all")]), clean)
        # the computed path at factor 1 (a factor that needs a gradient is never skipped): equal within fp32
        path = be.last_logits(inputs, [ImageTemperature(ones.clone().requires_grad_(), positions="all"),
                                       EdgeScale(ones.clone().requires_grad_())])
        assert torch.allclose(path, clean, atol=1e-5, rtol=1e-5)
        assert not torch.equal(be.last_logits(inputs, [EdgeScale.at(vlm.site, [(1, 2)], 0.0)]), clean)


def test_organism_factor_one_is_the_identity(organism, organism_probes):
    batch = _batch(organism, organism_probes)
    be = TorchHooksBackend(organism)
    with torch.no_grad():
        clean = be.last_logits(batch.inputs)
        assert torch.equal(be.last_logits(batch.inputs, [EdgeScale(torch.ones(organism.site.shape))]), clean)
        assert torch.equal(be.last_logits(batch.inputs, [ImageTemperature.uniform(organism.site, 1.0)]), clean)
        assert not torch.allclose(be.last_logits(batch.inputs, [ImageTemperature.uniform(organism.site, 0.5)]), clean)


@pytest.mark.parametrize("layer, head", [(0, 1), (1, 3)])
def test_knock_out_equals_the_attention_recomputed_by_hand(layer, head):
    vlm = wrap_vlm(tiny_model("llava"))
    inputs = tiny_inputs("llava", pad_left=2)
    want = hand_edited_logits(vlm.model, vlm.site, inputs, layer, head)
    got = TorchHooksBackend(vlm).last_logits(inputs, [EdgeScale.at(vlm.site, [(layer, head)], 0.0)])
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    explicit = TorchHooksBackend(vlm).last_logits(inputs, [EdgeScale.at(vlm.site, [(layer, head)], 0.0,
                                                                       image_key_mask(vlm, inputs))])
    assert torch.equal(explicit, got)


@pytest.mark.parametrize("temperature", [0.5, 3.0])
def test_temperature_equals_the_attention_recomputed_by_hand(temperature):
    vlm = wrap_vlm(tiny_model("llava"))
    inputs = tiny_inputs("llava", pad_left=1)
    want = hand_edited_logits(vlm.model, vlm.site, inputs, 1, 2, temperature)
    got = TorchHooksBackend(vlm).last_logits(inputs, [ImageTemperature.at(vlm.site, [(1, 2)], temperature)])
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)


def test_organism_knock_out_equals_the_hand_computation(organism, organism_probes):
    batch = _batch(organism, organism_probes)
    want = hand_edited_logits(organism.model, organism.site, batch.inputs, 3, 4, token=organism.model.config.image_token_id)
    got = TorchHooksBackend(organism).last_logits(batch.inputs, [EdgeScale.at(organism.site, [(3, 4)], 0.0)])
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got, TorchHooksBackend(organism).last_logits(batch.inputs), atol=1e-4)


def test_the_model_is_restored_on_exit_and_on_error():
    vlm = wrap_vlm(tiny_model("qwen2_vl"))
    inputs = tiny_inputs("qwen2_vl")
    configs = [vlm.model.get_submodule(vlm.site.attn_out_path(layer).rsplit(".", 1)[0]).config for layer in range(2)]
    with torch.no_grad():
        clean = vlm.model(**inputs).logits
        with edges_hooked(vlm.model, vlm.site, [EdgeScale.at(vlm.site, [(0, 0), (1, 1)], 0.0)]):
            edited = vlm.model(**inputs).logits
        assert not torch.equal(edited, clean)
        assert torch.equal(vlm.model(**inputs).logits, clean)
        with pytest.raises(RuntimeError, match="boom"):
            with hooked(vlm.model, vlm.site, [ImageTemperature.uniform(vlm.site, 2.0)]):
                vlm.model(**inputs)
                raise RuntimeError("boom")
        assert torch.equal(vlm.model(**inputs).logits, clean)
    for layer in range(2):
        module = vlm.model.get_submodule(vlm.site.attn_out_path(layer).rsplit(".", 1)[0])
        assert module.config is configs[layer] and not isinstance(module.config, _EdgeConfig)
    assert not vlm.model._forward_pre_hooks


def test_a_second_block_on_the_same_layers_is_refused_and_the_first_survives():
    vlm = wrap_vlm(tiny_model("llava"))
    iv = EdgeScale.at(vlm.site, [(0, 0)], 0.0)
    with edges_hooked(vlm.model, vlm.site, [iv]):
        with pytest.raises(WorkbenchError, match="already carries edge edits"):
            with edges_hooked(vlm.model, vlm.site, [ImageTemperature.at(vlm.site, [(0, 1)], 2.0)]):
                pass
        assert isinstance(vlm.model.get_submodule(vlm.site.attn_out_path(0).rsplit(".", 1)[0]).config, _EdgeConfig)
    assert not isinstance(vlm.model.get_submodule(vlm.site.attn_out_path(0).rsplit(".", 1)[0]).config, _EdgeConfig)


def test_generate_extends_the_image_mask_over_the_cache():
    """Each decoding step's last token is edited (as for head scaling), the image mask carried over the KV cache."""
    vlm = wrap_vlm(tiny_model("llava"))
    inputs = tiny_inputs("llava", batch=1)
    iv = EdgeScale.at(vlm.site, [(0, 1), (1, 0)], 0.0)
    with torch.no_grad(), hooked(vlm.model, vlm.site, [iv]):
        out = vlm.model.generate(**inputs, max_new_tokens=2, do_sample=False, output_logits=True, return_dict_in_generate=True,
                                 pad_token_id=0)
    be = TorchHooksBackend(vlm)
    assert torch.allclose(out.logits[0], be.last_logits(inputs, [iv]), atol=1e-5)
    # step 2's cache holds the prompt's last token as edited in step 1: without a cache that is per-token factors,
    # α at the last two positions (the prompt's last token and the generated one) and 1 before them
    ids = out.sequences[:, :-1]
    per_token = torch.ones(1, ids.shape[1], *vlm.site.shape)
    per_token[:, -2:] = iv.alpha
    longer = {**inputs, "input_ids": ids, "attention_mask": torch.ones_like(ids), "use_cache": False}
    step2 = be.last_logits(longer, [EdgeScale(per_token, positions="all")])
    assert torch.allclose(out.logits[1], step2, atol=1e-5)
    assert not torch.allclose(out.logits[1], be.last_logits(longer), atol=1e-4)


def test_image_keys_refusals_are_one_line():
    vlm = wrap_vlm(tiny_model("llava"))
    inputs = tiny_inputs("llava")
    assert image_key_mask(vlm, inputs).sum(1).tolist() == [16, 16]
    no_token = types.SimpleNamespace(model=types.SimpleNamespace(config=types.SimpleNamespace()))
    with pytest.raises(WorkbenchError, match="names no image token"):
        image_key_mask(no_token, inputs)
    text_only = {**inputs, "input_ids": torch.where(inputs["input_ids"] == IMAGE_TOKEN, 5, inputs["input_ids"])}
    with pytest.raises(WorkbenchError, match=r"rows \[0, 1\] hold no image tokens"):
        image_key_mask(vlm, text_only)
    with pytest.raises(WorkbenchError, match="cross-attention"):
        EdgeScale.at(wrap_vlm(tiny_model("mllama")).site, [(1, 0)], 0.0).check(wrap_vlm(tiny_model("mllama")).site)


def test_confidence_driven_temperature_follows_the_adaptvis_rule():
    vlm = wrap_vlm(tiny_model("llava"))
    inputs = tiny_inputs("llava", batch=3, seed=4)
    with torch.no_grad():
        clean = vlm.model(**inputs).logits[:, -1]
    conf = torch.softmax(clean.float(), -1).max(-1).values
    threshold = float(conf.median())
    iv = ImageTemperature.confidence_driven(vlm, inputs, smooth=2.0, sharpen=0.5, threshold=threshold)
    assert iv.mode == "confidence" and torch.allclose(iv.confidence, conf)
    want = torch.where(conf < threshold, 2.0, 0.5)
    assert torch.equal(iv.temperature, want[:, None, None].expand(3, *vlm.site.shape))
    be = TorchHooksBackend(vlm)
    got = be.last_logits(inputs, [iv])
    for row in range(3):  # each row run on its own at its own uniform temperature
        alone = {k: v[row:row + 1] for k, v in inputs.items()}
        one = be.last_logits(alone, [ImageTemperature.uniform(vlm.site, float(want[row]))])
        assert torch.allclose(got[row], one[0], atol=1e-5)
    with pytest.raises(WorkbenchError, match="threshold"):
        ImageTemperature.confidence_driven(vlm, inputs, threshold=1.5)


def test_edge_sweep_cells_equal_the_intervention_run_directly(organism, organism_probes):
    keep = {it.id for it in organism_probes.items[:4]}
    small = organism_probes.filter(lambda it: it.id in keep)
    be = TorchHooksBackend(organism)
    batch = build_batch(organism, small, small.items)
    base = metrics.logit_diff(be.last_logits(batch.inputs), batch.option_ids, batch.answer)
    knock = run_chunk(organism, small, SweepSpec(alphas=(0.0,), target="edges"), Chunk(3, 4, 0, len(small)), engine="naive")
    assert knock.shape == (len(small), 1, 1, 8)
    keys = image_key_mask(organism, batch.inputs)
    for head in (1, 4):
        lg = be.last_logits(batch.inputs, [EdgeScale.at(organism.site, [(3, head)], 0.0, keys)])
        assert torch.allclose(knock[:, 0, 0, head], metrics.logit_diff(lg, batch.option_ids, batch.answer) - base, atol=1e-4)
    temp = run_chunk(organism, small, SweepSpec(alphas=(0.5, 2.0), target="edges", intervention="temperature"),
                     Chunk(0, 1, 0, len(small)))
    lg = be.last_logits(batch.inputs, [ImageTemperature.at(organism.site, [(0, 6)], 2.0, keys)])
    assert torch.allclose(temp[:, 1, 0, 6], metrics.logit_diff(lg, batch.option_ids, batch.answer) - base, atol=1e-4)
    assert knock.abs().max() > 1e-4 and temp.abs().max() > 1e-4


def test_edge_attribution_is_the_gradient_at_factor_one(llava_vlm, probes32):
    """Attribution differentiates the edge edit at α = 1 (the computed path, never skipped): a central difference agrees."""
    from workbench.sweeps.attribution import attribution

    small = probes32.filter(lambda it: int(it.id) < 4)
    est = attribution(llava_vlm, small, SweepSpec(alphas=(0.0,), target="edges", metric="logit_diff"))
    assert est.shape == (4, 1, 2, 4)
    be = TorchHooksBackend(llava_vlm)
    batch = build_batch(llava_vlm, small, small.items)
    eps = 1e-2

    def ld(alpha):
        lg = be.last_logits(batch.inputs, [EdgeScale.at(llava_vlm.site, [(1, 2)], alpha)])
        return metrics.logit_diff(lg.double(), batch.option_ids, batch.answer)

    slope = (ld(1 + eps) - ld(1 - eps)) / (2 * eps)
    assert torch.allclose(est[:, 0, 1, 2].double(), -slope, atol=2e-3, rtol=2e-2)
    assert slope.abs().max() > 1e-4
