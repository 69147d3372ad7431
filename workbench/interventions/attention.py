"""Attention-edge interventions: what a head reads from the image, edited inside the attention.

The ``edges`` site kind (:mod:`workbench.axis`) is one (layer, query head): that head's attention
from the query rows (the last token, or every token) to the **image keys** — the positions whose
``input_ids`` are the model's image token. Two families act there:

- :class:`EdgeScale` (family ``scale``): the post-softmax weights ``p [batch, head, query, key]``
  of the edited rows on image keys times ``α``, then each edited row renormalised to sum 1::

      p'_j = w_j p_j / Σ_k w_k p_k,   w_j = α if key j is an image key else 1

  α = 0 is the **knock-out**: the head's image keys masked for that row and the remaining mass
  (text keys) renormalised — as if the head could not see the image at all. α = 1 is the identity.
  (For α > 0 this equals adding log α to the image-key logits.) A row whose whole mass sits on image
  keys cannot be knocked out (0/0); it is left unchanged — never the case for the last token, which
  attends to itself, a text token.
- :class:`ImageTemperature` (family ``temperature``): the pre-softmax attention logits ``s`` of the
  edited rows on image keys divided by the temperature ``T`` (``s_j / T`` for image keys, ``s_j``
  otherwise). T < 1 sharpens the head's attention over the image, T > 1 smooths it; T = 1 is the
  identity. This is ScalingVis / AdaptVis (Chen et al., ICML 2025, "Why Is Spatial Reasoning Hard
  for VLMs? An Attention Mechanism Perspective on Focus Areas", arXiv 2503.01773): their code
  (github.com/shiqichen17/AdaptVis, ``model_zoo/llama/modeling_llama_add_attn.py``) multiplies the
  scaled logits ``q·k/√d`` of the **last query row** on the image-token span by a weight ``w``
  in every layer and head, before the mask and the softmax, on the prompt forward only; ``w = 1/T``.

  **AdaptVis's confidence rule** (:meth:`ImageTemperature.confidence_driven`; the same repository,
  ``model_zoo/llava15.py``, ``method == 'adapt_vis'``): run the model unedited, take the confidence
  = the largest softmax probability of its first generated token (``max softmax(scores[0])``);
  if confidence < ``threshold`` use ``weight1`` (< 1: smooth, "broaden the attention window"),
  else ``weight2`` (> 1: sharpen "on highly relevant regions"); then run again with that weight on
  every layer and head. Their example (``run.sh``): weight1 0.5, weight2 1.5, threshold 0.4, i.e.
  here ``smooth=2.0``, ``sharpen=1/1.5``, ``threshold=0.4``. The first generated token is exactly
  the next-token distribution at the last position that every metric of the workbench reads.

Shapes. A factor tensor (``alpha`` / ``temperature``) is ``[layer, head]`` or ``[batch, layer,
head]`` (one variant per batch row); with ``positions="all"`` also ``[batch|1, seq, layer, head]``.
``image_keys`` is ``bool [batch, keys]`` (True = image key), or ``None``: taken from each forward's
``input_ids`` (:func:`image_key_mask`), which is what lets :func:`workbench.evaluation.score` and the
sweep engine run these interventions over batches they build themselves.

Mechanism. In transformers 5 every decoder attention module calls
``ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)``
at each forward. :func:`edges_hooked` (and :func:`register_edges`, which
:func:`workbench.interventions.torch_hooks.register` calls) gives each *edited* layer's self-attention
module, for the duration of the block, a config view whose ``_attn_implementation`` is
:data:`ATTENTION_NAME`, a function registered once in ``AttentionInterface``: an eager attention that
applies the edits of that layer. Nothing else changes — the causal / padding mask is still built by
the model from its own config (4D additive for eager, boolean or ``None`` for sdpa; both are read),
and the vision tower is never touched. Layers whose factors are all 1 are not swapped at all, so
α = 1 and T = 1 are the identity *exactly* (bit for bit); in an edited layer the unedited heads and
rows go through the eager formula (bit-identical to ``attn_implementation="eager"``; within float
tolerance of sdpa). Factors that need a gradient (attribution, :mod:`workbench.sweeps.attribution`,
differentiates at 1) are never skipped: the edit runs everywhere, equal to the unedited forward within
fp32 tolerance at 1. Every swap is undone on exit, also when the body raises.

KV cache. The image mask must cover every key. With ``image_keys=None`` the mask is rebuilt from the
prompt forward and extended, on each cached decoding forward, by that forward's new ``input_ids``
(so ``generate()`` works, each step's last token being edited, as for head scaling). An explicit
``image_keys`` shorter than the keys is padded with False (keys after it are generated tokens); a
mask longer than the keys, flash / flex attention (no dense weights) and cross-attention layers
(Mllama: every key is image) are refused. These interventions run on the plain-torch backend only.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from workbench.axis import POSITIONS
from workbench.errors import WorkbenchError
from workbench.models.sites import Site

ATTENTION_NAME = "workbench_edges"
MODES = ("uniform", "confidence")
# AdaptVis's example setting (run.sh of github.com/shiqichen17/AdaptVis): weight1 0.5, weight2 1.5, threshold 0.4
ADAPTVIS_SMOOTH, ADAPTVIS_SHARPEN, ADAPTVIS_THRESHOLD = 2.0, 1 / 1.5, 0.4


# ---------------------------------------------------------------------------------------------- image keys

def image_token_id(config) -> int | None:
    """The id of the model's image token (``image_token_id`` / ``image_token_index`` of the top config), or None."""
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    return None


def _require_token(model: torch.nn.Module) -> int:
    token = image_token_id(model.config)
    if token is None:
        raise WorkbenchError(f"{type(model).__name__} names no image token (no image_token_id in its config), "
                             "so it has no image keys to edit", "edge interventions need a VLM with image tokens in input_ids")
    return token


def _mask_from_ids(token: int, input_ids: torch.Tensor) -> torch.Tensor:
    mask = input_ids == token
    empty = (~mask.any(dim=-1)).nonzero().flatten().tolist()
    if empty:
        raise WorkbenchError(f"batch rows {empty} hold no image tokens (id {token}), so they have no image keys to edit",
                             "give every row its image (build_batch does), or pass image_keys explicitly")
    return mask


def image_key_mask(vlm, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``bool [batch, seq]``: True where the batch's ``input_ids`` are the model's image token."""
    model = getattr(vlm, "model", vlm)
    token = _require_token(model)
    ids = inputs.get("input_ids")
    if ids is None:
        raise WorkbenchError("the batch has no input_ids, so its image keys are unknown", "pass input_ids (build_batch does)")
    return _mask_from_ids(token, ids)


# ---------------------------------------------------------------------------------------------- interventions

def _check_factor(name: str, t, positions: str, what: str, positive: bool) -> None:
    if positions not in POSITIONS:
        raise WorkbenchError(f"unknown positions {positions!r}", "use 'last' (the answer token) or 'all'")
    ok_dims = (2, 3, 4) if positions == "all" else (2, 3)
    if not isinstance(t, torch.Tensor) or t.dim() not in ok_dims:
        shape = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        extra = " (or [batch|1, seq, layer, head] with positions all)" if positions == "all" else ""
        raise WorkbenchError(f"{name} {what} must be a tensor [layer, head] or [batch, layer, head]{extra}, got {shape}",
                             f"build it with {name}.at(site, {{(layer, head): value}})")
    if not bool(torch.isfinite(t).all()):
        raise WorkbenchError(f"{name} {what} holds a NaN or infinite value", "pass finite factors")
    if positive and not bool((t > 0).all()):
        raise WorkbenchError(f"{name} temperatures must be > 0, got {float(t.min()):g}",
                             "pass temperatures > 0 (< 1 sharpens, > 1 smooths, 1 = unchanged)")
    if not positive and not bool((t >= 0).all()):
        raise WorkbenchError(f"EdgeScale alpha must be ≥ 0 (an attention weight times α), got {float(t.min()):g}",
                             "pass α ≥ 0 (0 = knock-out, 1 = unchanged)")


def _check_keys(name: str, keys) -> None:
    if keys is not None and (not isinstance(keys, torch.Tensor) or keys.dtype != torch.bool or keys.dim() != 2):
        raise WorkbenchError(f"{name} image_keys must be a bool tensor [batch, keys] or None",
                             "pass image_key_mask(vlm, inputs), or None to read them from each batch")


def _check_site(name: str, t: torch.Tensor, keys, site: Site, batch: int | None) -> None:
    if tuple(t.shape[-2:]) != site.shape:
        raise WorkbenchError(f"{name} factors have shape {list(t.shape)}, but the model has {site.n_layers} layers × "
                             f"{site.n_heads} query heads", f"pass factors of shape [{site.n_layers}, {site.n_heads}] "
                             f"(or [batch, {site.n_layers}, {site.n_heads}])")
    if t.dim() >= 3 and batch is not None and t.shape[0] not in (1, batch):
        raise WorkbenchError(f"{name} has {t.shape[0]} variants for a batch of {batch}",
                             "give one row of factors per batch row, or a single [layer, head] tensor")
    if keys is not None and batch is not None and keys.shape[0] not in (1, batch):
        raise WorkbenchError(f"{name} image_keys has {keys.shape[0]} rows for a batch of {batch}",
                             "pass image_key_mask(vlm, inputs) of this batch, or None")
    other = [layer for layer in _edited_layers(t, site) if site.kind(layer) is not None]
    if other:
        raise WorkbenchError(f"{name} edits layers {other}, which are {site.kinds[other[0]]} layers (every key there is "
                             "image), not self-attention over image tokens", "edit only the self-attention layers")


def _changes(t: torch.Tensor) -> torch.Tensor:
    """Where a factor changes anything: ``t != 1`` — or everywhere when ``t`` needs a gradient (attribution
    differentiates at t = 1, so the edit must run there, not be skipped as the identity)."""
    return torch.ones_like(t, dtype=torch.bool) if t.requires_grad else t != 1


def _edited_layers(t: torch.Tensor, site: Site) -> list[int]:
    flat = _changes(t).reshape(-1, t.shape[-2], t.shape[-1]).any(dim=(0, 2))
    return [layer for layer in range(site.n_layers) if bool(flat[layer]) and (not t.requires_grad or site.kind(layer) is None)]


def _at(site: Site, heads, value: float) -> torch.Tensor:
    items = heads.items() if isinstance(heads, Mapping) else ((h, value) for h in heads)
    t = torch.ones(site.shape)
    for (layer, head), v in items:
        site.check_head(int(layer), int(head))
        t[int(layer), int(head)] = float(v)
    return t


@dataclass(frozen=True, eq=False)
class EdgeScale:
    """Attention weights of the edited query rows on image keys times ``alpha``, rows renormalised.

    ``alpha [layer, head]`` (or ``[batch, layer, head]``; with ``positions="all"`` also ``[batch|1, seq,
    layer, head]``), ≥ 0; 0 knocks the head's image edges out, 1 changes nothing."""

    alpha: torch.Tensor
    image_keys: torch.Tensor | None = None
    positions: str = "last"

    def __post_init__(self) -> None:
        _check_factor("EdgeScale", self.alpha, self.positions, "alpha", positive=False)
        _check_keys("EdgeScale", self.image_keys)

    @classmethod
    def at(cls, site: Site, heads: Mapping[tuple[int, int], float] | Sequence[tuple[int, int]], alpha: float = 0.0,
           image_keys: torch.Tensor | None = None, positions: str = "last") -> EdgeScale:
        """α at the given heads (``{(layer, head): α}`` or a list that all get ``alpha``, default 0: knock-out), 1 elsewhere."""
        return cls(_at(site, heads, alpha), image_keys, positions)

    @property
    def factors(self) -> torch.Tensor:
        return self.alpha

    def check(self, site: Site, batch: int | None = None) -> None:
        _check_site("EdgeScale", self.alpha, self.image_keys, site, batch)


@dataclass(frozen=True, eq=False)
class ImageTemperature:
    """Attention logits of the edited query rows on image keys divided by ``temperature`` (> 0) before the softmax.

    ``temperature`` has :class:`EdgeScale`'s shapes. ``mode`` records how it was chosen: ``"uniform"``
    (given) or ``"confidence"`` (:meth:`confidence_driven`, AdaptVis; ``confidence [batch]`` then holds
    the unedited first-token confidence that decided each row)."""

    temperature: torch.Tensor
    image_keys: torch.Tensor | None = None
    positions: str = "last"
    mode: str = "uniform"
    confidence: torch.Tensor | None = field(default=None)

    def __post_init__(self) -> None:
        _check_factor("ImageTemperature", self.temperature, self.positions, "temperature", positive=True)
        _check_keys("ImageTemperature", self.image_keys)
        if self.mode not in MODES:
            raise WorkbenchError(f"unknown ImageTemperature mode {self.mode!r}", f"choose from: {', '.join(MODES)}")

    @property
    def factors(self) -> torch.Tensor:
        return self.temperature

    @classmethod
    def at(cls, site: Site, heads: Mapping[tuple[int, int], float] | Sequence[tuple[int, int]], temperature: float = 2.0,
           image_keys: torch.Tensor | None = None, positions: str = "last") -> ImageTemperature:
        """``temperature`` at the given heads (or ``{(layer, head): T}``), 1 elsewhere."""
        return cls(_at(site, heads, temperature), image_keys, positions)

    @classmethod
    def uniform(cls, site: Site, temperature: float, image_keys: torch.Tensor | None = None,
                positions: str = "last") -> ImageTemperature:
        """One temperature on every layer and head (ScalingVis with weight ``1/temperature``)."""
        return cls(torch.full(site.shape, float(temperature)), image_keys, positions)

    @classmethod
    @torch.no_grad()
    def confidence_driven(cls, vlm, inputs: Mapping[str, torch.Tensor], smooth: float = ADAPTVIS_SMOOTH,
                          sharpen: float = ADAPTVIS_SHARPEN, threshold: float = ADAPTVIS_THRESHOLD,
                          clean_logits: torch.Tensor | None = None) -> ImageTemperature:
        """AdaptVis: per batch row, ``smooth`` on every layer and head where the unedited model's first-token
        confidence (max softmax probability at the last position) is below ``threshold``, else ``sharpen``.

        ``clean_logits [batch, vocab]`` (the unedited last-position logits) skips the clean forward when the
        caller has them. Returns ``temperature [batch, layer, head]`` with ``mode="confidence"``."""
        for name, t in (("smooth", smooth), ("sharpen", sharpen)):
            if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
                raise WorkbenchError(f"AdaptVis {name} temperature must be a finite number > 0, got {t!r}",
                                     "e.g. smooth=2.0 (weight 0.5), sharpen=0.667 (weight 1.5)")
        if not (isinstance(threshold, (int, float)) and 0 <= threshold <= 1):
            raise WorkbenchError(f"AdaptVis threshold must be a probability in [0, 1], got {threshold!r}", "e.g. threshold=0.4")
        if clean_logits is None:
            clean_logits = vlm.model(**inputs).logits[:, -1]
        confidence = torch.softmax(clean_logits.float(), dim=-1).max(dim=-1).values.cpu()  # [batch]
        per_row = torch.where(confidence < threshold, torch.tensor(float(smooth)), torch.tensor(float(sharpen)))
        temperature = per_row[:, None, None].expand(-1, *vlm.site.shape).clone()
        return cls(temperature, None, "last", "confidence", confidence)

    def check(self, site: Site, batch: int | None = None) -> None:
        _check_site("ImageTemperature", self.temperature, self.image_keys, site, batch)


EdgeIntervention = EdgeScale | ImageTemperature
EDGE_CLASSES = (EdgeScale, ImageTemperature)


def edge_interventions(interventions: Sequence) -> list[EdgeIntervention]:
    return [iv for iv in interventions if isinstance(iv, EDGE_CLASSES)]


def check_backend(interventions: Sequence, backend: str) -> None:
    """Refuse edge interventions on a backend that would silently ignore them (all but ``torch``)."""
    if backend != "torch" and edge_interventions(interventions):
        raise WorkbenchError(f"attention-edge interventions (EdgeScale, ImageTemperature) run on the torch backend, "
                             f"not {backend}",
                             "use backend='torch' (--backend torch)")


# ---------------------------------------------------------------------------------------------- the attention

def _layer_factor(t: torch.Tensor, layer: int, positions: str, batch: int, q_len: int, device) -> torch.Tensor:
    """Factors of one layer as ``[batch|1, head, query|1, 1]`` for the edited rows (float32)."""
    f = t[..., layer, :].to(device=device, dtype=torch.float32)  # [head], [batch, head] or [batch|1, seq, head]
    if f.dim() == 1:
        f = f.reshape(1, -1, 1, 1)
    elif f.dim() == 2:
        f = f.reshape(f.shape[0], -1, 1, 1)
    else:
        if f.shape[1] != q_len:
            raise WorkbenchError(f"per-token factors cover {f.shape[1]} tokens, but this forward has {q_len} queries",
                                 "per-token factors need the full prompt forward (no KV cache)")
        f = f.permute(0, 2, 1)[..., None]  # [batch|1, head, seq, 1]
    if f.shape[0] not in (1, batch):
        raise WorkbenchError(f"{f.shape[0]} variants for a batch of {batch}", "give one row of factors per batch row")
    return f


def _rows(positions: str, q_len: int, device) -> torch.Tensor:
    """``bool [1, 1, query, 1]``: the query rows the intervention edits (the last, or all)."""
    rows = torch.zeros(1, 1, q_len, 1, dtype=torch.bool, device=device)
    rows[..., -1 if positions == "last" else slice(None), :] = True
    return rows


def _keys_for(mask: torch.Tensor, k_len: int, batch: int, device) -> torch.Tensor:
    """Image-key mask ``[batch|1, 1, 1, keys]`` covering all ``k_len`` keys."""
    if mask.shape[-1] > k_len:
        raise WorkbenchError(f"the image-key mask covers {mask.shape[-1]} positions but the attention has only {k_len} keys",
                             "pass image_keys of the batch being run (image_key_mask(vlm, inputs))")
    if mask.shape[0] not in (1, batch):
        raise WorkbenchError(f"the image-key mask has {mask.shape[0]} rows for a batch of {batch}",
                             "pass image_keys of the batch being run")
    mask = mask.to(device)
    if mask.shape[-1] < k_len:  # keys after the mask: tokens generated after the prompt, not image
        mask = torch.cat([mask, mask.new_zeros(mask.shape[0], k_len - mask.shape[-1])], dim=-1)
    return mask[:, None, None, :]


def _additive(attention_mask, q_len: int, k_len: int, causal: bool, dtype, device) -> torch.Tensor | None:
    """The model's mask as an additive float bias ``[batch|1, 1, query, keys]`` (None: nothing to add)."""
    if attention_mask is None:
        if not causal or q_len == 1:
            return None
        # sdpa skips the mask when plain causal: queries are the last q_len of the k_len positions
        allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)
        attention_mask = allowed[None, None]
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 4:
        raise WorkbenchError(f"edge interventions need a dense 4D attention mask, got {type(attention_mask).__name__}",
                             "load the model with attn_implementation='eager' or 'sdpa' (not flash / flex attention)")
    mask = attention_mask[:, :, :, :k_len]
    if mask.dtype == torch.bool:
        return torch.where(mask, torch.zeros((), dtype=dtype, device=device), torch.finfo(dtype).min)
    return mask


def edited_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask, scaling: float,
                     layer: int, edits: Sequence[EdgeIntervention], image_keys: torch.Tensor, *, n_rep: int = 1,
                     causal: bool = True, softcap: float | None = None, dropout: float = 0.0,
                     training: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention of one layer with its edge edits (pure).

    ``query [batch, head, q, d]``, ``key``/``value [batch, kv_head, k, d]`` (``n_rep`` query heads per
    kv head), ``image_keys bool [batch|1, ≤k]``. Returns ``(output [batch, q, head, d], weights
    [batch, head, q, k])`` like transformers' ``eager_attention_forward``, whose formula it follows
    step for step so that unedited heads and rows are bit-identical to it."""
    b, h, q_len, _ = query.shape
    if n_rep > 1:
        key = key[:, :, None].expand(b, key.shape[1], n_rep, *key.shape[2:]).reshape(b, h, *key.shape[2:])
        value = value[:, :, None].expand(b, value.shape[1], n_rep, *value.shape[2:]).reshape(b, h, *value.shape[2:])
    k_len = key.shape[2]
    img = _keys_for(image_keys, k_len, b, query.device)  # [b|1, 1, 1, k]
    rows = _rows("last", q_len, query.device), _rows("all", q_len, query.device)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if softcap:
        scores = torch.tanh(scores / softcap) * softcap
    for iv in edits:
        if isinstance(iv, ImageTemperature):
            t = _layer_factor(iv.temperature, layer, iv.positions, b, q_len, query.device)
            on = rows[iv.positions == "all"] & img & _changes(t)
            scores = torch.where(on, scores / t.to(scores.dtype), scores)
    bias = _additive(attention_mask, q_len, k_len, causal, scores.dtype, query.device)
    if bias is not None:
        scores = scores + bias
    probs = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32)
    for iv in edits:
        if isinstance(iv, EdgeScale):
            a = _layer_factor(iv.alpha, layer, iv.positions, b, q_len, query.device)
            row = rows[iv.positions == "all"] & _changes(a)  # [b|1, h, q|1 → q, 1]
            weighted = probs * torch.where(img, a, torch.ones((), device=query.device))
            total = weighted.sum(dim=-1, keepdim=True)
            row = row & (total > 0)  # a row entirely on image keys cannot be renormalised: left as is
            probs = torch.where(row, weighted / torch.where(total > 0, total, torch.ones_like(total)), probs)
    probs = probs.to(query.dtype)
    probs = torch.nn.functional.dropout(probs, p=dropout, training=training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return out, probs


class _State:
    """One registration: the edits, the layers where each changes anything, and the current forward's image-key mask."""

    def __init__(self, model: torch.nn.Module, edits: list[EdgeIntervention], site: Site):
        self.edits = edits
        self.site = site
        self.token = _require_token(model) if any(iv.image_keys is None for iv in edits) else None
        self.mask: torch.Tensor | None = None  # from input_ids (image_keys=None), [batch, keys seen so far]
        self.layers = {id(iv): frozenset(_edited_layers(iv.factors, site)) for iv in edits}  # where each edit changes anything

    def capture(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            raise WorkbenchError("the forward has no input_ids, so its image keys are unknown",
                                 "pass input_ids, or give the edge intervention image_keys explicitly")
        cache = kwargs.get("cache", kwargs.get("past_key_values"))  # transformers 5.24 names it cache
        past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        if past == 0:
            self.mask = _mask_from_ids(self.token, ids)
        elif self.mask is not None and self.mask.shape[0] == ids.shape[0] and self.mask.shape[1] == past:
            self.mask = torch.cat([self.mask, ids == self.token], dim=1)
        else:
            raise WorkbenchError(f"a cached forward ({past} past keys) whose prompt this block did not see",
                                 "run the prompt forward inside the block, or pass image_keys explicitly")

    def image_keys(self, iv: EdgeIntervention) -> torch.Tensor:
        if iv.image_keys is not None:
            return iv.image_keys
        if self.mask is None:
            raise WorkbenchError("no image-key mask: the attention ran outside a top-level forward of the hooked model",
                                 "call the hooked model itself (model(**inputs)), or pass image_keys explicitly")
        return self.mask


class _EdgeConfig:
    """A view of an attention module's config that routes its attention to :data:`ATTENTION_NAME`."""

    _attn_implementation = ATTENTION_NAME

    def __init__(self, base, state: _State, layer: int):
        self.__dict__.update(_base=base, _state=state, _layer=layer)

    def __getattr__(self, name: str):
        return getattr(self.__dict__["_base"], name)


def _fallback(module: torch.nn.Module, base_config):
    """The function the module would have called: its configured implementation, else its file's eager."""
    from transformers import AttentionInterface

    default = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    name = getattr(base_config, "_attn_implementation", None) or "eager"
    return AttentionInterface._global_mapping.get(name, default) if name != "eager" else default


def _edge_attention(module: torch.nn.Module, query, key, value, attention_mask, scaling: float | None = None,
                    dropout: float = 0.0, **kwargs):
    """The function registered as :data:`ATTENTION_NAME`: the layer's edits, then eager attention."""
    config = module.config
    if not isinstance(config, _EdgeConfig):  # someone else set this name on a config: nothing to edit
        raise WorkbenchError(f"{ATTENTION_NAME} attention was called outside edges_hooked", "use edges_hooked() / hooked()")
    state, layer = config._state, config._layer
    edits = [iv for iv in state.edits if layer in state.layers[id(iv)]]
    if not edits:
        return _fallback(module, config._base)(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                               **kwargs)
    if kwargs.get("sliding_window") and attention_mask is None:
        raise WorkbenchError("a sliding-window layer without a dense mask", "load the model with attn_implementation='eager'")
    keys = {id(iv): state.image_keys(iv) for iv in edits}
    if len({id(k) for k in keys.values()}) > 1:
        raise WorkbenchError("edge interventions of one block disagree about the image keys",
                             "give them the same image_keys (or None for all)")
    scaling = module.scaling if scaling is None else scaling
    causal = kwargs.get("is_causal")
    causal = bool(getattr(module, "is_causal", True) if causal is None else causal)
    return edited_attention(query, key, value, attention_mask, scaling, layer, edits, next(iter(keys.values())),
                            n_rep=query.shape[1] // key.shape[1], causal=causal,
                            softcap=kwargs.get("softcap"), dropout=dropout, training=module.training)


def _ensure_registered() -> None:
    """Register :data:`ATTENTION_NAME` in transformers' AttentionInterface (once; imported late: transformers is heavy)."""
    from transformers import AttentionInterface

    if AttentionInterface._global_mapping.get(ATTENTION_NAME) is not _edge_attention:
        AttentionInterface.register(ATTENTION_NAME, _edge_attention)


class _Restore:
    """A handle (``remove()``) that puts an attention module's own config back."""

    def __init__(self, module: torch.nn.Module, config):
        self.module, self.config = module, config

    def remove(self) -> None:
        if isinstance(self.module.__dict__.get("config"), _EdgeConfig):
            self.module.config = self.config


def attention_module(model: torch.nn.Module, site: Site, layer: int) -> torch.nn.Module:
    """The self-attention module of ``layer`` (the parent of its ``o_proj``), checked to dispatch through AttentionInterface."""
    path = site.attn_out_path(layer).rsplit(".", 1)[0]
    module = model.get_submodule(path)
    if not hasattr(getattr(module, "config", None), "_attn_implementation"):
        raise WorkbenchError(f"{path} has no config._attn_implementation, so its attention cannot be edited",
                             "edge interventions need a transformers 5 attention module")
    return module


def register_edges(model: torch.nn.Module, site: Site, interventions: Sequence) -> list:
    """Route each edited layer's attention through the edge edits; returns handles (``h.remove()`` undoes each).
    Prefer :func:`edges_hooked` (or :func:`workbench.interventions.torch_hooks.hooked`), which always undoes them."""
    edits = edge_interventions(interventions)
    if not edits:
        return []
    for iv in edits:
        iv.check(site)
    state = _State(model, edits, site)
    layers = sorted(set().union(*state.layers.values()))
    if not layers:
        return []  # every factor is 1: nothing is swapped, the forward is the model's own, exactly
    _ensure_registered()
    handles: list = []
    try:
        for layer in layers:
            module = attention_module(model, site, layer)
            if isinstance(module.config, _EdgeConfig):
                raise WorkbenchError(f"layer {layer}'s attention already carries edge edits from another block",
                                     "apply all edge interventions of a forward in one hooked() block")
            handles.append(_Restore(module, module.config))
            module.config = _EdgeConfig(module.config, state, layer)
        if state.token is not None:
            handles.append(model.register_forward_pre_hook(state.capture, with_kwargs=True))
    except BaseException:
        for h in reversed(handles):
            h.remove()
        raise
    return handles


@contextmanager
def edges_hooked(model: torch.nn.Module, site: Site, interventions: Sequence) -> Iterator[list]:
    """Apply the edge interventions for the duration of the block; everything is restored on exit, also on error."""
    handles = register_edges(model, site, interventions)
    try:
        yield handles
    finally:
        for h in reversed(handles):
            h.remove()
