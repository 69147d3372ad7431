"""Exact fast path for last-token interventions: one prefix pass, all variants packed after it.

A last-token intervention cannot change anything before the last position (attention is
causal), so every variant of a probe shares the prefix — all tokens but the last, image tokens
included. The packed path

1. runs the prefix once per probe with a KV cache;
2. appends V copies of the last token as V *packed query tokens*, in one forward over the cache,
   with a 4D attention mask that lets each copy attend to the (unpadded) prefix and to itself
   only, the same position id for all (the one the last token has in the full forward), and a
   per-token head scale (``HeadScale`` with ``alpha [1, V, layer, head]``, ``positions="all"``),
   so copy v runs variant v;
3. crops the cache back to the prefix for the next chunk of variants.

Each copy then computes exactly what the naive path (one full forward per variant) computes at
the last position, up to floating-point summation order; the tests hold it to 1e-5 relative in
fp32. Variants are MLP scales too (``mlp_alphas``).

Valid for decoders whose text tokens attend causally with 1D rotary positions and no sliding
window: the sites table marks them ``packable`` (LLaVA-1.5 and the organism, LLaVA-NeXT,
Idefics3/SmolVLM). PaliGemma's prompt attends bidirectionally (the last token is part of the
prefix), Qwen2-VL uses 3D rotary positions, and Gemma 3's sliding window is not expressed by a
custom mask: :func:`check_packable` refuses them; the naive path serves every family.
"""

from __future__ import annotations

import torch

from workbench.errors import WorkbenchError
from workbench.interventions.core import HeadScale, MlpScale, check_left_padded
from workbench.interventions.torch_hooks import hooked
from workbench.models.load import VLM


def check_packable(vlm: VLM) -> None:
    """Refuse families whose attention the packed mask cannot reproduce (``SiteRow.packable``)."""
    if not vlm.site.row.packable:
        raise WorkbenchError(f"the packed fast path is not exact for {vlm.site.row.family} (bidirectional prefix, 3D positions "
                             "or a sliding window)", "use the naive path (--engine naive)")


def packed_mask(prefix_mask: torch.Tensor, c: int, dtype: torch.dtype) -> torch.Tensor:
    """The additive 4D mask ``[batch, 1, c, prefix + c]`` of c packed query tokens after a prefix whose
    attention mask is ``prefix_mask [batch, prefix]``: each copy sees the unpadded prefix and itself only."""
    b, prefix_len = prefix_mask.shape
    blocked = torch.finfo(dtype).min
    attend = torch.zeros(b, 1, c, prefix_len + c, dtype=dtype, device=prefix_mask.device)
    attend[:, :, :, :prefix_len].masked_fill_(prefix_mask[:, None, None, :] == 0, blocked)  # padding of the prefix
    attend[:, :, :, prefix_len:].masked_fill_(~torch.eye(c, dtype=torch.bool, device=prefix_mask.device), blocked)
    return attend


@torch.no_grad()
def packed_variant_logits(vlm: VLM, inputs: dict[str, torch.Tensor], head_alphas: torch.Tensor | None = None,
                          mlp_alphas: torch.Tensor | None = None, chunk: int = 256) -> torch.Tensor:
    """Last-position logits ``[batch, variant, vocab]`` for V variants of the clean run.

    ``head_alphas [V, layer, head]`` and/or ``mlp_alphas [V, layer]`` give variant v's factors
    (1 = untouched). Variants are run ``chunk`` at a time after one shared prefix pass.
    """
    check_packable(vlm)
    check_left_padded(inputs.get("attention_mask"))
    site, model = vlm.site, vlm.model
    n_var = (head_alphas if head_alphas is not None else mlp_alphas).shape[0]
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask", torch.ones_like(ids))
    b, t = ids.shape
    prefix_len = t - 1
    prefix = {**inputs, "input_ids": ids[:, :-1], "attention_mask": mask[:, :-1]}
    cache = model(**prefix, use_cache=True, logits_to_keep=1).past_key_values
    dtype = next(model.parameters()).dtype
    out = []
    for start in range(0, n_var, chunk):
        c = min(chunk, n_var - start)
        attend = packed_mask(mask[:, :-1], c, dtype)
        interventions = []
        if head_alphas is not None:
            interventions.append(HeadScale(head_alphas[start:start + c].unsqueeze(0).to(ids.device), positions="all"))
        if mlp_alphas is not None:
            interventions.append(MlpScale(mlp_alphas[start:start + c].unsqueeze(0).to(ids.device), positions="all"))
        with hooked(model, site, interventions):
            logits = model(input_ids=ids[:, -1:].expand(b, c), attention_mask=attend,
                           position_ids=torch.full((b, c), prefix_len, device=ids.device), past_key_values=cache,
                           use_cache=True).logits
        cache.crop(-c)
        out.append(logits.float())
    return torch.cat(out, dim=1)


@torch.no_grad()
def naive_variant_logits(vlm: VLM, inputs: dict[str, torch.Tensor], head_alphas: torch.Tensor | None = None,
                         mlp_alphas: torch.Tensor | None = None) -> torch.Tensor:
    """The reference: one full forward per variant (last-token interventions), ``[batch, variant, vocab]``."""
    from workbench.interventions.torch_hooks import TorchHooksBackend

    be = TorchHooksBackend(vlm)
    n_var = (head_alphas if head_alphas is not None else mlp_alphas).shape[0]
    out = []
    for v in range(n_var):
        ivs = []
        if head_alphas is not None:
            ivs.append(HeadScale(head_alphas[v]))
        if mlp_alphas is not None:
            ivs.append(MlpScale(mlp_alphas[v]))
        out.append(be.last_logits(inputs, ivs).float())
    return torch.stack(out, dim=1)
