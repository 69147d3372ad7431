"""Where each head looks: the last token's attention over the image patches.

A head that carries "left of" should, at the answer position, attend to the two objects it relates.
This module reads that directly: one eager forward with ``output_attentions=True`` and, for every
layer and query head, the softmax row of the **last** position restricted to the image-token
positions, ``attn [probe, layer, head, patch]``. Rows do not sum to 1 over patches (the rest of the
mass is on text tokens); that remainder is itself informative, so nothing is renormalised.

The patches form a ``rows × cols`` grid in raster order when the image tokens are one square grid
(LLaVA-1.5: 24 × 24; the organism: 4 × 4, a 64 px image in 16 px patches). Families with tiled or variable-resolution images
(SmolVLM crops, Qwen2-VL merges) are returned as a ``1 × patches`` strip: the numbers are right, but
drawing them on the image is not attempted (untested on those families).
"""

from __future__ import annotations

import math

import torch

from workbench.errors import WorkbenchError
from workbench.models.load import VLM
from workbench.models.prompts import build_batch
from workbench.probes.probeset import ProbeSet
from workbench.store.library import AttentionMaps


def image_token_id(config) -> int:
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise WorkbenchError(f"{type(config).__name__} names no image token",
                         "attention maps need a model with image tokens in its input")


@torch.no_grad()
def last_token_image_attention(vlm: VLM, probes: ProbeSet, n: int = 16, batch_size: int = 8) -> AttentionMaps:
    """``attn [probe, layer, head, patch]`` for the first ``n`` probes (every probe must hold one image)."""
    items = probes.items[:n]
    if not items:
        raise WorkbenchError("the probe set is empty", "compute attention maps on a probe set with items")
    model = vlm.model
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")  # sdpa/flash kernels do not return weights
    token = image_token_id(model.config)
    rows = []
    try:
        for s in range(0, len(items), batch_size):
            batch = build_batch(vlm, probes, items[s:s + batch_size])
            out = model(**batch.inputs, output_attentions=True)
            ids = batch.inputs["input_ids"]
            per_layer = torch.stack([a[:, :, -1, :].float() for a in out.attentions], dim=1)  # [b, layer, head, seq]
            for i in range(ids.shape[0]):
                where = (ids[i] == token).nonzero().flatten()
                rows.append(per_layer[i][:, :, where].cpu())
    finally:
        model.set_attn_implementation(previous)
    counts = {r.shape[-1] for r in rows}
    if len(counts) != 1:
        raise WorkbenchError(f"probes have different image-token counts {sorted(counts)}", "use one image size per probe set")
    patches = counts.pop()
    side = math.isqrt(patches)
    grid = (side, side) if side * side == patches else (1, patches)
    return AttentionMaps(attn=torch.stack(rows), probe_ids=tuple(it.id for it in items), grid=grid)
