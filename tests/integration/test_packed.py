"""The packed last-token fast path equals the naive path (one forward per variant), 1e-5 relative in fp32.

Beyond the stock tiny batches (:func:`tests.tiny.tiny_inputs`), the families whose packing needs more
than the 1D mask are held to it on left-padded batches whose rows differ where it matters, over
several chunks, with head and MLP variants: M-RoPE (each row's image at a different offset, so the
rope deltas differ) and Gemma 3's sliding window (a window of 8 on a 23-token prompt, so it binds).
Each also has a control showing the test can fail: the same run without the family's ingredient
(1D positions, no window) is far off. Mllama (cross-attention layers, layer 1 in the tiny config) is
covered by the every-family test: its heads at layer 1 are cross-attention heads, and the chunks
would shrink its cached image keys if the cache were cropped layer-blind.
"""

import dataclasses
import functools

import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText

from tests.tiny import CONFIGS, FAMILIES, IMAGE_TOKEN, tiny_inputs, tiny_model
from workbench.errors import WorkbenchError
from workbench.models.load import wrap_vlm
from workbench.models.prompts import build_batch
from workbench.models.sites import SITES
from workbench.sweeps import packed as packed_mod
from workbench.sweeps.packed import naive_variant_logits, packed_variant_logits

PACKABLE = [f for f in FAMILIES if any(f in r.model_types and r.packable for r in SITES)]
NOT_PACKABLE = [f for f in FAMILIES if f not in PACKABLE]
MROPE = [f for f in FAMILIES if any(f in r.model_types and r.positions == "mrope" for r in SITES)]


def one_head_variants(site, alpha=0.0):
    layers, heads = site.shape
    a = torch.ones(layers * heads, layers, heads)
    for v in range(layers * heads):
        a[v, v // heads, v % heads] = alpha
    return a


def head_and_mlp_variants(site):
    """16 variants ``[V, layer, head]`` and ``[V, layer]``: each head at 0 then at 2, every third also halving layer 1's MLP."""
    heads = torch.cat([one_head_variants(site, 0.0), one_head_variants(site, 2.0)])
    mlps = torch.ones(len(heads), site.n_layers)
    mlps[::3, 1] = 0.5
    return heads, mlps


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def left_padded(n_img, pre=(2, 5), post=(6, 10), seed=1):
    """Rows ``text(pre) · image(n_img) · text(post)`` of different lengths, left-padded: ``ids, mask [batch, seq]``."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.cat([torch.randint(3, 200, (a,), generator=g), torch.full((n_img,), IMAGE_TOKEN),
                       torch.randint(3, 200, (z,), generator=g)])
            for a, z in zip(pre, post)]
    t = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), t, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, t - len(r):], mask[i, t - len(r):] = r, 1
    assert not mask.all()
    return ids, mask, g


def mrope_inputs():
    """Qwen-VL layout (16 image tokens from an 8×8 patch grid merged 2×2) on a left-padded batch."""
    ids, mask, g = left_padded(16)
    b = len(ids)
    return dict(input_ids=ids, attention_mask=mask, pixel_values=torch.randn(b * 64, 3 * 2 * 4 * 4, generator=g),
                image_grid_thw=torch.tensor([[1, 8, 8]] * b), mm_token_type_ids=(ids == IMAGE_TOKEN).long())


@functools.lru_cache(maxsize=None)
def gemma3_windowed(window=8):
    """Gemma 3 with one sliding-window layer (window 8) then one full-attention layer."""
    torch.manual_seed(0)
    text = {**CONFIGS["gemma3"]["text_config"], "sliding_window": window, "layer_types": ["sliding_attention", "full_attention"]}
    config = AutoConfig.for_model("gemma3", **{**CONFIGS["gemma3"], "text_config": text})
    return wrap_vlm(AutoModelForImageTextToText.from_config(config, attn_implementation="eager").eval())


def gemma3_inputs():
    """4 image tokens (``token_type_ids`` 1 there: Gemma 3 attends within an image both ways), 23 tokens > the window."""
    ids, mask, g = left_padded(4, pre=(2, 5), post=(10, 14))
    return dict(input_ids=ids, attention_mask=mask, pixel_values=torch.randn(len(ids), 3, 32, 32, generator=g),
                token_type_ids=(ids == IMAGE_TOKEN).long())


def mllama_two_images_inputs():
    """Mllama, two one-tile images per row at different places; as MllamaProcessor sets ``cross_attention_mask
    [batch, seq, images, tiles]``, the text from an image token on attends to that image only, so the last token sees
    image 2 and not image 1 (the copies must carry that row)."""
    g = torch.Generator().manual_seed(3)
    b, t = 2, 14
    ids = torch.randint(3, 200, (b, t), generator=g)
    mask = torch.ones_like(ids)
    ids[0, :3], mask[0, :3] = 0, 0
    cross = torch.zeros(b, t, 2, 1, dtype=torch.long)
    for row, (first, second) in enumerate([(4, 9), (2, 7)]):
        ids[row, first], ids[row, second] = IMAGE_TOKEN, IMAGE_TOKEN
        cross[row, first:second, 0], cross[row, second:, 1] = 1, 1
    return dict(input_ids=ids, attention_mask=mask, pixel_values=torch.randn(b, 2, 1, 3, 32, 32, generator=g),
                aspect_ratio_ids=torch.ones(b, 2, dtype=torch.long), aspect_ratio_mask=torch.ones(b, 2, 1, dtype=torch.long),
                cross_attention_mask=cross)


def with_row(vlm, **changes):
    return dataclasses.replace(vlm, site=dataclasses.replace(vlm.site, row=dataclasses.replace(vlm.site.row, **changes)))


@pytest.mark.parametrize("family", PACKABLE)
def test_packed_equals_naive_on_every_packable_family(family):
    """Left-padded (row 0 by 3 tokens), heads and MLPs, 16 variants in chunks of 5, 5, 5, 1: the cache is cropped between."""
    vlm = wrap_vlm(tiny_model(family))
    inputs = tiny_inputs(family, pad_left=3)
    assert not inputs["attention_mask"].all()
    heads, mlps = head_and_mlp_variants(vlm.site)
    packed = packed_variant_logits(vlm, inputs, heads, mlps, chunk=5)
    naive = naive_variant_logits(vlm, inputs, heads, mlps)
    assert rel_err(packed, naive) <= 1e-5
    clean = vlm.model(**inputs).logits[:, -1]
    assert (naive - clean[:, None]).abs().amax(dim=(0, 2)).min() > 1e-4, "every variant changes something"


def test_packed_equals_naive_on_a_left_padded_batch_with_mlp_variants(llava_vlm, probes32):
    batch = build_batch(llava_vlm, probes32, list(probes32.items[:5]))
    assert not batch.inputs["attention_mask"].all()
    heads, mlps = head_and_mlp_variants(llava_vlm.site)
    packed = packed_variant_logits(llava_vlm, batch.inputs, heads, mlps, chunk=7)
    naive = naive_variant_logits(llava_vlm, batch.inputs, heads, mlps)
    assert packed.shape == naive.shape == (5, 16, llava_vlm.model.config.text_config.vocab_size)
    assert rel_err(packed, naive) <= 1e-5


@pytest.mark.parametrize("family", MROPE)
def test_mrope_families_get_the_full_prompts_3d_position_ids(family):
    """Qwen-VL: every packed copy gets the last token's ``[3]`` M-RoPE ids from ``get_rope_index`` over the full prompt."""
    vlm = wrap_vlm(tiny_model(family))
    inputs = mrope_inputs()
    ids3, deltas = vlm.model.model.get_rope_index(**inputs)
    assert deltas.flatten().tolist()[0] != 0 and len(set(deltas.flatten().tolist())) == 1  # after the image, ids ≠ token index
    heads, mlps = head_and_mlp_variants(vlm.site)
    packed = packed_variant_logits(vlm, inputs, heads, mlps, chunk=5)  # 16 variants: chunks of 5, 5, 5, 1
    naive = naive_variant_logits(vlm, inputs, heads, mlps)
    assert packed.shape == naive.shape == (2, 16, 256)
    assert rel_err(packed, naive) <= 1e-5
    assert rel_err(packed_variant_logits(with_row(vlm, positions="1d"), inputs, heads, mlps, chunk=5), naive) > 1e-3


def test_an_mrope_family_packs_a_text_only_batch_and_refuses_images_without_token_types():
    vlm = wrap_vlm(tiny_model("qwen2_5_vl"))
    inputs = mrope_inputs()
    text_only = {"input_ids": torch.where(inputs["input_ids"] == IMAGE_TOKEN, 7, inputs["input_ids"]),
                 "attention_mask": inputs["attention_mask"]}
    heads = one_head_variants(vlm.site)
    assert rel_err(packed_variant_logits(vlm, text_only, heads, chunk=3), naive_variant_logits(vlm, text_only, heads)) <= 1e-5
    with pytest.raises(WorkbenchError, match="no mm_token_type_ids"):
        packed_variant_logits(vlm, {k: v for k, v in inputs.items() if k != "mm_token_type_ids"}, heads)


def test_gemma3_packed_copies_honour_a_binding_sliding_window(monkeypatch):
    vlm = gemma3_windowed()
    inputs = gemma3_inputs()
    assert inputs["input_ids"].shape[1] > 2 * vlm.model.config.text_config.sliding_window
    heads, mlps = head_and_mlp_variants(vlm.site)
    packed = packed_variant_logits(vlm, inputs, heads, mlps, chunk=5)
    naive = naive_variant_logits(vlm, inputs, heads, mlps)
    assert rel_err(packed, naive) <= 1e-5
    monkeypatch.setattr(packed_mod, "sliding_window", lambda vlm: None)  # the control: copies see the whole prefix
    assert rel_err(packed_variant_logits(vlm, inputs, heads, mlps, chunk=5), naive) > 1e-3


def test_mllama_copies_carry_the_last_tokens_cross_attention_mask(monkeypatch):
    """Cross-attention layers: each copy gets the last token's ``cross_attention_mask`` row (here: image 2 only)."""
    vlm = wrap_vlm(tiny_model("mllama"))
    inputs = mllama_two_images_inputs()
    heads, mlps = head_and_mlp_variants(vlm.site)
    packed = packed_variant_logits(vlm, inputs, heads, mlps, chunk=5)
    naive = naive_variant_logits(vlm, inputs, heads, mlps)
    assert rel_err(packed, naive) <= 1e-5
    monkeypatch.setattr(packed_mod, "COPIES_CARRY", ())  # the control: copies cross-attend to both images
    assert rel_err(packed_variant_logits(vlm, inputs, heads, mlps, chunk=5), naive) > 1e-3


@pytest.mark.parametrize("family", NOT_PACKABLE)
def test_families_the_packed_mask_cannot_express_are_refused(family):
    vlm = wrap_vlm(tiny_model(family))
    with pytest.raises(WorkbenchError, match="use the naive path") as err:
        packed_variant_logits(vlm, tiny_inputs(family), one_head_variants(vlm.site))
    assert f"not exact for {vlm.site.row.family}: " in str(err.value)


def test_paligemma_refusal_names_its_bidirectional_prefix():
    vlm = wrap_vlm(tiny_model("paligemma"))
    with pytest.raises(WorkbenchError, match="last token included, is one bidirectional prefix block"):
        packed_variant_logits(vlm, tiny_inputs("paligemma"), one_head_variants(vlm.site))
