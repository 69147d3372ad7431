"""Tiny random configs of real VLM architectures, and model inputs for each (no processor needed).

Each family: 2 decoder layers × 4 query heads (2 KV heads: grouped-query attention), head_dim 16,
a one-layer vision tower, and a builder that makes a batch with real image tokens and pixel values
in that family's own layout. fp32, eager attention, seeded: the same call gives the same weights.

Mllama (Llama 3.2 Vision) has no image tokens in the text stream to speak of: one ``<|image|>`` token
marks where the image is, and its layer 1 is a *cross-attention* layer (``cross_attention_layers=[1]``)
whose queries come from the text and whose keys/values come from the vision tower's output, gated by
``tanh(cross_attn_attn_gate)``. transformers initialises those gates to 0 (a fresh cross layer is a
no-op); here they are set to 1 so that the cross-attention heads do something and can be tested.
"""

from __future__ import annotations

import functools

import torch
from transformers import AutoConfig, AutoModelForImageTextToText

IMAGE_TOKEN = 250
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, vocab_size=256, max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=0)
CLIP = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            image_size=32, patch_size=8, projection_dim=32)
SIGLIP = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
              image_size=32, patch_size=8)
MROPE = {"rope_type": "default", "type": "mrope", "mrope_section": [2, 3, 3]}
# Qwen3-VL interleaves the three M-RoPE axes over the head_dim/2 = 8 frequencies: sections [t, h, w] = [4, 2, 2]
MROPE3 = {"rope_type": "default", "mrope_section": [4, 2, 2], "mrope_interleaved": True, "rope_theta": 10000.0}
QWEN_IDS = dict(image_token_id=IMAGE_TOKEN, video_token_id=251, vision_start_token_id=252)

CONFIGS = {
    "llava": dict(text_config=dict(model_type="llama", **TEXT), vision_config=CLIP, image_token_id=IMAGE_TOKEN),
    "llava_next": dict(text_config=dict(model_type="llama", **TEXT), vision_config=CLIP, image_token_id=IMAGE_TOKEN,
                       image_grid_pinpoints=[[32, 32]]),
    "qwen2_vl": dict(text_config=dict(**TEXT, rope_scaling=MROPE),
                     vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, patch_size=4, spatial_merge_size=2,
                                        temporal_patch_size=2, in_chans=3),
                     image_token_id=IMAGE_TOKEN, video_token_id=251, vision_start_token_id=252),
    "qwen2_5_vl": dict(text_config=dict(**TEXT, rope_scaling=MROPE),
                       vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, out_hidden_size=64, num_heads=2,
                                          patch_size=4, spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
                                          fullatt_block_indexes=[0], window_size=16),
                       image_token_id=IMAGE_TOKEN, video_token_id=251, vision_start_token_id=252),
    "idefics3": dict(text_config=dict(model_type="llama", **TEXT), vision_config=dict(hidden_size=32, intermediate_size=64,
                     num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8), scale_factor=2,
                     image_token_id=IMAGE_TOKEN),
    # SmolVLM / SmolVLM2: Idefics3's layout (a SigLIP-style tower, pixel shuffle by 2) under its own config and model classes
    "smolvlm": dict(text_config=dict(model_type="llama", **TEXT), vision_config=dict(hidden_size=32, intermediate_size=64,
                    num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8), scale_factor=2,
                    image_token_id=IMAGE_TOKEN),
    "paligemma": dict(text_config=dict(model_type="gemma", **TEXT), vision_config={**SIGLIP, "projection_dim": 64},
                      image_token_id=IMAGE_TOKEN, projection_dim=64),
    "gemma3": dict(text_config=dict(model_type="gemma3_text", **TEXT, sliding_window=16), vision_config=SIGLIP,
                   mm_tokens_per_image=4, image_token_id=IMAGE_TOKEN, boi_token_id=251, eoi_token_id=252),
    "qwen3_vl": dict(text_config=dict(**TEXT, rope_parameters=MROPE3),
                     vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, out_hidden_size=64, num_heads=2,
                                        patch_size=4, spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
                                        num_position_embeddings=64, deepstack_visual_indexes=[0]),
                     **QWEN_IDS, vision_end_token_id=253),
    "llava_onevision": dict(text_config=dict(model_type="qwen2", **TEXT), vision_config=SIGLIP, image_token_id=IMAGE_TOKEN,
                            image_grid_pinpoints=[[32, 32]], vision_aspect_ratio="anyres_max_1", vision_feature_layer=-1),
    "internvl": dict(text_config=dict(model_type="qwen2", **TEXT),
                     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                        image_size=[32, 32], patch_size=[8, 8]),
                     image_token_id=IMAGE_TOKEN, downsample_ratio=0.5, vision_feature_layer=-1),
    # Mllama's text config has no head_dim (it is hidden // heads = 16); layer 1 cross-attends to the image
    "mllama": dict(text_config={**{k: v for k, v in TEXT.items() if k != "head_dim"}, "cross_attention_layers": [1]},
                   vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_global_layers=1,
                                      attention_heads=2, image_size=32, patch_size=8, max_num_tiles=1, vision_output_dim=64,
                                      intermediate_layers_indices=[0], supported_aspect_ratios=[[1, 1]]),
                   image_token_index=IMAGE_TOKEN),
}
FAMILIES = tuple(CONFIGS)


@functools.lru_cache(maxsize=None)
def tiny_model(family: str, seed: int = 0):
    torch.manual_seed(seed)
    config = AutoConfig.for_model(family, **CONFIGS[family])
    model = AutoModelForImageTextToText.from_config(config, attn_implementation="eager").eval()
    if family == "mllama":  # open the tanh gates of the cross-attention layers (initialised to 0, i.e. closed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                    p.fill_(1.0)
    return model


def tiny_inputs(family: str, batch: int = 2, text_len: int = 6, seed: int = 1, pad_left: int = 0) -> dict[str, torch.Tensor]:
    """A batch with each family's image layout: ``[2 text, image tokens, text_len text]`` per row.

    ``pad_left`` shortens row 0's trailing text by that many tokens and pads it on the left instead
    (``0 < pad_left < text_len``), so the batch is left-padded with every row's image intact.
    """
    g = torch.Generator().manual_seed(seed)
    model = tiny_model(family)
    extra: dict[str, torch.Tensor] = {}
    if family in ("llava", "paligemma"):
        pixel_values, n_img = torch.randn(batch, 3, 32, 32, generator=g), 16
    elif family == "gemma3":
        pixel_values, n_img = torch.randn(batch, 3, 32, 32, generator=g), 4
    elif family in ("idefics3", "smolvlm"):  # [batch, images, 3, H, W]: 4×4 patches, pixel-shuffled by 2 → 4 tokens
        pixel_values, n_img = torch.randn(batch, 1, 3, 32, 32, generator=g), 4
    elif family in ("llava_next", "llava_onevision"):  # anyres: the base image and one 32×32 crop
        pixel_values = torch.randn(batch, 2, 3, 32, 32, generator=g)
        extra["image_sizes"] = torch.tensor([[32, 32]] * batch)
        with torch.no_grad():
            n_img = model.model.get_image_features(pixel_values=pixel_values,
                                                   image_sizes=extra["image_sizes"]).pooler_output[0].shape[0]
    elif family == "internvl":  # 4×4 patches of 8 px, pixel-shuffled by 0.5 → 4 tokens per image
        pixel_values, n_img = torch.randn(batch, 3, 32, 32, generator=g), 4
    elif family == "mllama":  # one image of one tile per row, [batch, images, tiles, 3, H, W]; one <|image|> token in the text
        pixel_values, n_img = torch.randn(batch, 1, 1, 3, 32, 32, generator=g), 1
        extra["aspect_ratio_ids"] = torch.ones(batch, 1, dtype=torch.long)
        extra["aspect_ratio_mask"] = torch.ones(batch, 1, 1, dtype=torch.long)
    else:  # qwen2_vl, qwen2_5_vl, qwen3_vl: 8×8 patches of 4 px, merged 2×2 → 16 tokens per image
        pixel_values, n_img = torch.randn(batch * 64, 3 * 2 * 4 * 4, generator=g), 16
        extra["image_grid_thw"] = torch.tensor([[1, 8, 8]] * batch)
    ids = torch.cat([torch.randint(3, 200, (batch, 2), generator=g), torch.full((batch, n_img), IMAGE_TOKEN),
                     torch.randint(3, 200, (batch, text_len), generator=g)], dim=1)
    mask = torch.ones_like(ids)
    if pad_left:
        assert 0 < pad_left < text_len, "pad_left must leave row 0 at least one trailing text token"
        ids[0] = torch.cat([torch.zeros(pad_left, dtype=ids.dtype), ids[0, :-pad_left]])
        mask[0, :pad_left] = 0
    if family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        extra["mm_token_type_ids"] = (ids == IMAGE_TOKEN).long()
    if family == "mllama":  # text tokens from the <|image|> token on attend to the image's tile (as MllamaProcessor sets it)
        # [batch, seq, images, tiles]
        extra["cross_attention_mask"] = ((ids == IMAGE_TOKEN).cumsum(1) > 0).long()[:, :, None, None]
    return dict(input_ids=ids, attention_mask=mask, pixel_values=pixel_values, **extra)
