"""Exact fast path for last-token interventions: one prefix pass, all variants packed after it.

A last-token intervention cannot change anything before the last position when the prompt's text
attends causally, so every variant of a probe shares the prefix — all tokens but the last, image
tokens included. The packed path

1. runs the prefix once per probe batch, filling a plain :class:`~transformers.DynamicCache`
   (every layer keeps every key, sliding-window layers included — see below);
2. appends V copies of the last token as V *packed query tokens*, in one forward over the cache,
   with a 4D attention mask that lets each copy attend to the (unpadded) prefix and to itself
   only, the position ids the last token has in the full forward given to every copy, and a
   per-token head scale (``HeadScale`` with ``alpha [1, V, layer, head]``, ``positions="all"``),
   so copy v runs variant v;
3. crops each cache layer back to its length after the prefix for the next chunk of variants (a
   cross-attention layer's cache holds image keys, which the copies do not extend: it is left as is).

Each copy then computes exactly what the naive path (one full forward per variant) computes at
the last position, up to floating-point summation order; ``tests/integration/test_packed.py``
holds it to 1e-5 relative in fp32, with left padding and several chunks, for head and MLP
variants, on every row marked ``packable``: LLaVA-1.5, LLaVA-NeXT, LLaVA-OneVision, Idefics3 /
SmolVLM, InternVL, Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Gemma 3 and Mllama. What varies by family is
read as data:

- **Position ids** (``SiteRow.positions``). ``"1d"``: token i of the padded row has position i
  (what the Llama/Mistral/Qwen2/Gemma decoders compute when given none), so the prefix gets
  ``0 … t−2`` and every copy ``t−1``. ``"mrope"`` (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): multimodal
  rotary ids ``[3 (temporal, height, width), batch, seq]`` from the model's own
  ``get_rope_index`` over the *full* prompt; the prefix gets their first t−1 columns and every
  copy the last column. The model computes these ids only when none are passed, so cropping the
  inputs alone would be wrong: after an image a text token's id is its index plus the row's
  (negative) rope delta — an image of n tokens spans only max(h, w) ids — which a forward over
  the copies alone cannot know.
- **Per-token inputs** (:data:`PER_TOKEN`: ``mm_token_type_ids``, ``token_type_ids``,
  ``cross_attention_mask`` …) are cropped with the prefix; those the copies need too
  (:data:`COPIES_CARRY`: Mllama's ``cross_attention_mask [batch, seq, images, tiles]``, which image
  tiles a token's cross-attention layers see) give every copy the last token's row.
- **Sliding-window layers** (read from the text config's ``layer_types`` / ``sliding_window``:
  Gemma 3). The model takes a dict of masks keyed by layer type and uses any 4D mask as given, so
  the copies get one mask per type: on ``"sliding_attention"`` layers a copy at position p sees
  only prefix keys j with p − j < window (the rule of the model's own mask,
  ``kv_idx > q_idx − sliding_window``). The model's default cache keeps only window − 1 keys on
  those layers, which would drop keys and shift the copies' key indices, hence the plain cache.

The same machinery (:func:`_packed_runs`) serves last-token **patching** (:func:`packed_patch_logits`): the
copies carry a per-copy ``HeadPatch`` / ``MlpPatch`` mask instead of a factor, and copy v replaces its site's
last-token output by the paired run's, recorded once per batch (:func:`~workbench.interventions.torch_hooks.record_sites`).
A last-token patch, like a last-token scale, changes nothing before the last position, so the prefix is shared.

Refused (:func:`check_packable`, one line naming the reason; the naive path serves every family):
a row not marked ``packable`` says why in ``SiteRow.unpackable`` — PaliGemma, whose prompt (the
last token included) is one bidirectional prefix block: every prompt token attends to the last
one, so a last-token edit changes the whole prompt from the next layer on and no prefix is shared
(an exact saving there would be a different one: the vision tower once per batch, recomputing only
the layers from the edited one up; not built). A new row without ``packable`` is refused as not
yet checked against the naive path.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from workbench.errors import WorkbenchError
from workbench.interventions.core import HeadPatch, HeadScale, MlpPatch, MlpScale, check_left_padded
from workbench.interventions.torch_hooks import SiteOutputs, hooked
from workbench.models.load import VLM

PER_TOKEN = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids", "cross_attention_mask")  # [batch, seq, …]
COPIES_CARRY = ("cross_attention_mask",)  # per-token inputs the packed copies need too: each copy gets the last token's row
POSITION_SCHEMES = ("1d", "mrope")


def check_packable(vlm: VLM) -> None:
    """Refuse families whose attention the packed mask cannot reproduce (``SiteRow.packable``), saying why."""
    row = vlm.site.row
    if not row.packable:
        why = row.unpackable or "its packed path has not been checked against the naive one"
        raise WorkbenchError(f"the packed fast path is not exact for {row.family}: {why}", "use the naive path (--engine naive)")
    if row.positions not in POSITION_SCHEMES:
        raise WorkbenchError(f"{row.family} has unknown position scheme {row.positions!r}",
                             f"set SiteRow.positions to one of {', '.join(POSITION_SCHEMES)} in workbench/models/sites.py")


def full_positions(vlm: VLM, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Position ids of the full prompt as the model computes them when given none:
    ``[batch, seq]`` (``"1d"``) or ``[3, batch, seq]`` (``"mrope"``, from the model's ``get_rope_index``)."""
    ids = inputs["input_ids"]
    index = torch.arange(ids.shape[1], device=ids.device).expand(ids.shape)
    if vlm.site.row.positions != "mrope":
        return index
    if "mm_token_type_ids" in inputs:
        return vlm.model.model.get_rope_index(**inputs)[0].to(ids.device)
    if inputs.get("image_grid_thw") is not None or inputs.get("video_grid_thw") is not None:
        raise WorkbenchError(f"this {vlm.site.row.family} batch has images but no mm_token_type_ids, so its M-RoPE ids "
                             "cannot be computed",
                             "build the batch with the family's processor (build_batch), which returns mm_token_type_ids")
    return index.expand(3, *ids.shape)  # text only: the model's own fallback, the token index on all three axes


def sliding_window(vlm: VLM) -> int | None:
    """The text decoder's window when some of its layers are ``"sliding_attention"`` (else None)."""
    tc = vlm.model.config.get_text_config(decoder=True)
    return tc.sliding_window if "sliding_attention" in (getattr(tc, "layer_types", None) or ()) else None


def packed_mask(prefix_mask: torch.Tensor, c: int, dtype: torch.dtype, window: int | None = None) -> torch.Tensor:
    """The additive 4D mask ``[batch, 1, c, prefix + c]`` of c packed query tokens after a prefix whose
    attention mask is ``prefix_mask [batch, prefix]``: each copy sees the unpadded prefix and itself only.

    With ``window``, a copy (at position ``prefix``) also stops seeing prefix keys j with ``prefix − j ≥ window``."""
    b, prefix_len = prefix_mask.shape
    blocked = torch.finfo(dtype).min
    seen = prefix_mask != 0  # [batch, prefix]
    if window is not None:
        seen = seen & (torch.arange(prefix_len, device=prefix_mask.device) > prefix_len - window)
    attend = torch.zeros(b, 1, c, prefix_len + c, dtype=dtype, device=prefix_mask.device)
    attend[:, :, :, :prefix_len].masked_fill_(~seen[:, None, None, :], blocked)
    attend[:, :, :, prefix_len:].masked_fill_(~torch.eye(c, dtype=torch.bool, device=prefix_mask.device), blocked)
    return attend


def _cached(layer) -> int:
    """Keys held by one cache layer (0 for a layer never filled, e.g. a cross-attention layer without an image)."""
    keys = getattr(layer, "keys", None)
    return 0 if keys is None else keys.shape[-2]


def _packed_runs(vlm: VLM, inputs: dict[str, torch.Tensor], n_var: int, chunk: int, interventions_for) -> torch.Tensor:
    """The shared machinery of every packed path: one prefix pass over ``inputs`` (all tokens but the last), then
    the ``n_var`` variants ``chunk`` at a time as packed copies of the last token, the cache cropped back between
    chunks. ``interventions_for(start, c)`` gives the interventions of copies ``start … start + c − 1`` (applied with
    ``positions="all"`` over the c copies, a per-copy factor or mask on the copies' seq axis). Returns the copies'
    logits ``[batch, n_var, vocab]`` (float32)."""
    check_packable(vlm)
    check_left_padded(inputs.get("attention_mask"))
    site, model = vlm.site, vlm.model
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask", torch.ones_like(ids))
    b, t = ids.shape
    positions = full_positions(vlm, {**inputs, "attention_mask": mask})  # [..., batch, t]
    window = sliding_window(vlm)
    prefix = {k: (v[:, :-1] if k in PER_TOKEN else v) for k, v in {**inputs, "attention_mask": mask}.items()}
    cache = DynamicCache()  # full-length on every layer: a sliding-window layer's own cache would drop keys
    model(**prefix, position_ids=positions[..., :-1], cache=cache, use_cache=True, logits_to_keep=1)
    prefix_lengths = [_cached(layer) for layer in cache.layers]  # a cross-attention layer holds image keys, not tokens
    dtype = next(model.parameters()).dtype
    out = []
    for start in range(0, n_var, chunk):
        c = min(chunk, n_var - start)
        attend = packed_mask(mask[:, :-1], c, dtype)
        if window is not None:
            attend = {"full_attention": attend, "sliding_attention": packed_mask(mask[:, :-1], c, dtype, window)}
        last = positions[..., -1:]
        carried = {k: inputs[k][:, -1:].expand(b, c, *inputs[k].shape[2:]) for k in COPIES_CARRY if k in inputs}
        with hooked(model, site, interventions_for(start, c)):
            logits = model(input_ids=ids[:, -1:].expand(b, c), attention_mask=attend,
                           position_ids=last.expand(*last.shape[:-1], c),
                           cache=cache, use_cache=True, **carried).logits
        for layer, n in zip(cache.layers, prefix_lengths):  # back to the prefix: drop what the copies appended
            if _cached(layer) > n:
                layer.crop(n - _cached(layer))
        out.append(logits.float())
    return torch.cat(out, dim=1)


@torch.no_grad()
def packed_variant_logits(vlm: VLM, inputs: dict[str, torch.Tensor], head_alphas: torch.Tensor | None = None,
                          mlp_alphas: torch.Tensor | None = None, chunk: int = 256) -> torch.Tensor:
    """Last-position logits ``[batch, variant, vocab]`` for V variants of the clean run.

    ``head_alphas [V, layer, head]`` and/or ``mlp_alphas [V, layer]`` give variant v's factors
    (1 = untouched). Variants are run ``chunk`` at a time after one shared prefix pass.
    """
    device = inputs["input_ids"].device
    n_var = (head_alphas if head_alphas is not None else mlp_alphas).shape[0]

    def interventions(start: int, c: int) -> list:
        ivs = []
        if head_alphas is not None:
            ivs.append(HeadScale(head_alphas[start:start + c].unsqueeze(0).to(device), positions="all"))
        if mlp_alphas is not None:
            ivs.append(MlpScale(mlp_alphas[start:start + c].unsqueeze(0).to(device), positions="all"))
        return ivs

    return _packed_runs(vlm, inputs, n_var, chunk, interventions)


def _check_patch_source(source: SiteOutputs, head_mask: torch.Tensor | None, mlp_mask: torch.Tensor | None,
                        positions: str = "last") -> int:
    """The number of variants, after refusing masks the source cannot serve."""
    if head_mask is None and mlp_mask is None:
        raise WorkbenchError("no patch masks given", "pass head_mask [V, layer, head] and/or mlp_mask [V, layer]")
    if source.positions != positions:
        raise WorkbenchError(f"the patch source was recorded at positions={source.positions!r}, not {positions!r}",
                             f"record it with record_sites(..., positions={positions!r})")
    for name, m, rec in (("head_mask", head_mask, source.heads), ("mlp_mask", mlp_mask, source.mlp)):
        if m is not None and rec is None:
            raise WorkbenchError(f"{name} given, but the source run recorded no {name.split('_')[0]} outputs",
                                 "record them (record_sites(..., heads=True, mlp=True))")
    sizes = {m.shape[0] for m in (head_mask, mlp_mask) if m is not None}
    if len(sizes) != 1:
        raise WorkbenchError(f"head_mask and mlp_mask give different numbers of variants ({sorted(sizes)})",
                             "give both masks one row per variant")
    return sizes.pop()


@torch.no_grad()
def packed_patch_logits(vlm: VLM, inputs: dict[str, torch.Tensor], source: SiteOutputs, head_mask: torch.Tensor | None = None,
                        mlp_mask: torch.Tensor | None = None, chunk: int = 256) -> torch.Tensor:
    """Last-position logits ``[batch, variant, vocab]`` of V last-token patches of the run on ``inputs`` (the base).

    ``source`` holds the paired run's last-token site outputs (:func:`~workbench.interventions.torch_hooks.record_sites`
    on the source batch, row i paired with row i of ``inputs``); ``head_mask [V, layer, head]`` and/or ``mlp_mask [V,
    layer]`` (bool) say which sites variant v replaces by the source's. One prefix pass over the base, then copy v
    carries patch v (:func:`_packed_runs`): the same numbers as :func:`naive_patch_logits`, up to summation order."""
    n_var = _check_patch_source(source, head_mask, mlp_mask)
    device = inputs["input_ids"].device
    heads = None if source.heads is None else source.heads.to(device)[:, None]  # [batch, 1 (every copy), layer, head, dim]
    mlps = None if source.mlp is None else source.mlp.to(device)[:, None]  # [batch, 1, layer, hidden]

    def interventions(start: int, c: int) -> list:
        ivs = []
        if head_mask is not None:
            ivs.append(HeadPatch(heads, head_mask[start:start + c].unsqueeze(0).to(device), positions="all"))
        if mlp_mask is not None:
            ivs.append(MlpPatch(mlps, mlp_mask[start:start + c].unsqueeze(0).to(device), positions="all"))
        return ivs

    return _packed_runs(vlm, inputs, n_var, chunk, interventions)


@torch.no_grad()
def naive_patch_logits(vlm: VLM, inputs: dict[str, torch.Tensor], source: SiteOutputs, head_mask: torch.Tensor | None = None,
                       mlp_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The reference of :func:`packed_patch_logits`: one full forward of the base per variant, ``[batch, variant,
    vocab]``. ``source`` may also hold all positions (``record_sites(..., positions="all")``): then every position of
    the selected sites is patched (the two batches must align token by token)."""
    from workbench.interventions.torch_hooks import TorchHooksBackend

    n_var = _check_patch_source(source, head_mask, mlp_mask, source.positions)
    be = TorchHooksBackend(vlm)
    out = []
    for v in range(n_var):
        ivs = []
        if head_mask is not None:
            ivs.append(HeadPatch(source.heads, head_mask[v], source.positions))
        if mlp_mask is not None:
            ivs.append(MlpPatch(source.mlp, mlp_mask[v], source.positions))
        out.append(be.last_logits(inputs, ivs).float())
    return torch.stack(out, dim=1)


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
