"""Tiny random configs of real VLM architectures, and model inputs for each (no processor needed).

Each family: 2 decoder layers × 4 query heads (2 KV heads: grouped-query attention), head_dim 16,
a one-layer vision tower, and a builder that makes a batch with real image tokens and pixel values
in that family's own layout. fp32, eager attention, seeded: the same call gives the same weights.
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

CONFIGS = {
    "llava": dict(text_config=dict(model_type="llama", **TEXT), vision_config=CLIP, image_token_id=IMAGE_TOKEN),
    "llava_next": dict(text_config=dict(model_type="llama", **TEXT), vision_config=CLIP, image_token_id=IMAGE_TOKEN,
                       image_grid_pinpoints=[[32, 32]]),
    "qwen2_vl": dict(text_config=dict(**TEXT, rope_scaling=MROPE),
                     vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, patch_size=4, spatial_merge_size=2,
                                        temporal_patch_size=2, in_chans=3),
                     image_token_id=IMAGE_TOKEN, video_token_id=251, vision_start_token_id=252),
    "qwen2_5_vl": dict(text_config=dict(**TEXT, rope_scaling=MROPE),
                       vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, out_hidden_size=64, num_heads=2, patch_size=4,
                                          spatial_merge_size=2, temporal_patch_size=2, in_channels=3, fullatt_block_indexes=[0],
                                          window_size=16),
                       image_token_id=IMAGE_TOKEN, video_token_id=251, vision_start_token_id=252),
    "idefics3": dict(text_config=dict(model_type="llama", **TEXT), vision_config=dict(hidden_size=32, intermediate_size=64,
                     num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8), scale_factor=2, image_token_id=IMAGE_TOKEN),
    "paligemma": dict(text_config=dict(model_type="gemma", **TEXT), vision_config={**SIGLIP, "projection_dim": 64},
                      image_token_id=IMAGE_TOKEN, projection_dim=64),
    "gemma3": dict(text_config=dict(model_type="gemma3_text", **TEXT, sliding_window=16), vision_config=SIGLIP,
                   mm_tokens_per_image=4, image_token_id=IMAGE_TOKEN, boi_token_id=251, eoi_token_id=252),
}
FAMILIES = tuple(CONFIGS)


@functools.lru_cache(maxsize=None)
def tiny_model(family: str, seed: int = 0):
    torch.manual_seed(seed)
    config = AutoConfig.for_model(family, **CONFIGS[family])
    return AutoModelForImageTextToText.from_config(config, attn_implementation="eager").eval()


def tiny_inputs(family: str, batch: int = 2, text_len: int = 6, seed: int = 1, pad_left: int = 0) -> dict[str, torch.Tensor]:
    """A batch with each family's image layout; ``pad_left`` pads row 0 on the left by that many tokens."""
    g = torch.Generator().manual_seed(seed)
    model = tiny_model(family)
    extra: dict[str, torch.Tensor] = {}
    if family in ("llava", "paligemma"):
        pixel_values, n_img = torch.randn(batch, 3, 32, 32, generator=g), 16
    elif family == "gemma3":
        pixel_values, n_img = torch.randn(batch, 3, 32, 32, generator=g), 4
    elif family == "idefics3":
        pixel_values, n_img = torch.randn(batch, 1, 3, 32, 32, generator=g), 4
    elif family == "llava_next":
        pixel_values = torch.randn(batch, 2, 3, 32, 32, generator=g)
        extra["image_sizes"] = torch.tensor([[32, 32]] * batch)
        with torch.no_grad():
            n_img = model.model.get_image_features(pixel_values=pixel_values, image_sizes=extra["image_sizes"]).pooler_output[0].shape[0]
    else:  # qwen2_vl, qwen2_5_vl: 8×8 patches of 4 px, merged 2×2 → 16 tokens per image
        pixel_values, n_img = torch.randn(batch * 64, 3 * 2 * 4 * 4, generator=g), 16
        extra["image_grid_thw"] = torch.tensor([[1, 8, 8]] * batch)
    ids = torch.cat([torch.randint(3, 200, (batch, 2), generator=g), torch.full((batch, n_img), IMAGE_TOKEN),
                     torch.randint(3, 200, (batch, text_len), generator=g)], dim=1)
    mask = torch.ones_like(ids)
    if pad_left:
        ids[0, :pad_left] = 0
        mask[0, :pad_left] = 0
        ids[0, pad_left:pad_left + 2] = torch.randint(3, 200, (2,), generator=g)  # keep the image tokens in place
    if family in ("qwen2_vl", "qwen2_5_vl"):
        extra["mm_token_type_ids"] = (ids == IMAGE_TOKEN).long()
    return dict(input_ids=ids, attention_mask=mask, pixel_values=pixel_values, **extra)
