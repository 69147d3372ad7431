"""Where the intervention sites live in each VLM family: architectures as data.

An attention head's output, in every decoder layer of a Hugging Face language model, is a slice of
the *input* of the attention output projection ``o_proj``: that input is ``[batch, seq,
query_heads · head_dim]``, the concatenation of the heads' attention-weighted values, and
``o_proj`` mixes them back into the residual stream. Scaling the slice of head ``h`` scales exactly
that head's contribution (``o_proj`` is linear), which is why ScAle and head ablation hook there.
Under grouped-query attention the slices are still per *query* head; key/value heads are shared
and do not appear at this site.

The MLP site is the output of each layer's ``mlp`` module, ``[batch, seq, hidden]``.

Each VLM family is one :class:`SiteRow`: where the decoder layers are (a dotted path from the
top-level ``…ForConditionalGeneration``), the names of ``o_proj`` and ``mlp`` inside a layer,
and which config holds the head counts. Adding a family is adding a row; a row is checked
against the loaded model (modules present, shapes agree) by :func:`resolve_site`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.errors import WorkbenchError


@dataclass(frozen=True)
class SiteRow:
    family: str  # human name, e.g. "LLaVA-1.5"
    model_types: tuple[str, ...]  # config.model_type values this row serves
    layers: str  # dotted path to the ModuleList of decoder layers
    attn_out: str = "self_attn.o_proj"  # inside a layer: the Linear whose input is the concatenated heads
    mlp: str = "mlp"  # inside a layer: the module whose output is the MLP contribution
    text_config: str = "text_config"  # attribute of the top config holding the LM's head counts
    example: str = ""  # a hub id of this family, for the docs
    packable: bool = False  # text attends causally with 1D positions: the packed last-token sweep is exact


SITES: tuple[SiteRow, ...] = (
    SiteRow("LLaVA-1.5", ("llava",), "model.language_model.layers", example="llava-hf/llava-1.5-7b-hf", packable=True),
    SiteRow("LLaVA-NeXT", ("llava_next",), "model.language_model.layers", example="llava-hf/llava-v1.6-mistral-7b-hf",
            packable=True),
    SiteRow("Qwen2-VL", ("qwen2_vl",), "model.language_model.layers", example="Qwen/Qwen2-VL-2B-Instruct"),
    SiteRow("Qwen2.5-VL", ("qwen2_5_vl",), "model.language_model.layers", example="Qwen/Qwen2.5-VL-3B-Instruct"),
    SiteRow("Idefics3 / SmolVLM", ("idefics3", "smolvlm"), "model.text_model.layers", example="HuggingFaceTB/SmolVLM-256M-Instruct",
            packable=True),
    SiteRow("PaliGemma", ("paligemma",), "model.language_model.layers", example="google/paligemma-3b-mix-224"),
    SiteRow("Gemma 3", ("gemma3",), "model.language_model.layers", example="google/gemma-3-4b-it"),
)
_BY_TYPE = {t: row for row in SITES for t in row.model_types}


def supported() -> str:
    return ", ".join(f"{r.family} ({'/'.join(r.model_types)})" for r in SITES)


def site_row(model_type: str) -> SiteRow:
    try:
        return _BY_TYPE[model_type]
    except KeyError:
        raise WorkbenchError(f"unsupported architecture {model_type!r}; supported: {supported()}",
                             "add a SiteRow for it to SITES in workbench/models/sites.py") from None


@dataclass(frozen=True)
class Site:
    """A SiteRow resolved against one loaded model: the modules and the counts, checked."""

    row: SiteRow
    n_layers: int
    n_heads: int  # query heads
    n_kv_heads: int
    head_dim: int
    hidden: int

    @property
    def shape(self) -> tuple[int, int]:
        """``[layer, head]`` shape of per-head tensors (query heads)."""
        return self.n_layers, self.n_heads

    def attn_out_path(self, layer: int) -> str:
        return f"{self.row.layers}.{layer}.{self.row.attn_out}"

    def mlp_path(self, layer: int) -> str:
        return f"{self.row.layers}.{layer}.{self.row.mlp}"

    def attn_out(self, model: torch.nn.Module, layer: int) -> torch.nn.Linear:
        return model.get_submodule(self.attn_out_path(layer))

    def mlp(self, model: torch.nn.Module, layer: int) -> torch.nn.Module:
        return model.get_submodule(self.mlp_path(layer))

    def check_head(self, layer: int, head: int) -> None:
        if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
            raise WorkbenchError(f"head L{layer}H{head} is out of range: the model has {self.n_layers} layers (0–{self.n_layers - 1}) "
                                 f"× {self.n_heads} query heads (0–{self.n_heads - 1})", "pick a head inside that range")

    def check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise WorkbenchError(f"layer {layer} is out of range: the model has {self.n_layers} layers (0–{self.n_layers - 1})",
                                 "pick a layer inside that range")


def resolve_site(model: torch.nn.Module) -> Site:
    """Find the model's row and check it against the modules: present, Linear, shapes agree."""
    config = model.config
    row = site_row(getattr(config, "model_type", type(model).__name__))
    tc = getattr(config, row.text_config, None) or config
    n_heads = int(tc.num_attention_heads)
    n_kv = int(getattr(tc, "num_key_value_heads", None) or n_heads)
    hidden = int(tc.hidden_size)
    head_dim = int(getattr(tc, "head_dim", None) or hidden // n_heads)

    def fail(what: str) -> WorkbenchError:
        return WorkbenchError(f"{row.family} site table row does not match this model: {what}",
                              "fix the row in workbench/models/sites.py (or report the transformers version)")

    try:
        layers = model.get_submodule(row.layers)
    except AttributeError:
        raise fail(f"no module at {row.layers!r}") from None
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        raise fail(f"{row.layers!r} is not a list of decoder layers")
    site = Site(row, len(layers), n_heads, n_kv, head_dim, hidden)
    for layer in range(site.n_layers):
        try:
            o_proj, mlp = site.attn_out(model, layer), site.mlp(model, layer)
        except AttributeError:
            raise fail(f"layer {layer} lacks {row.attn_out!r} or {row.mlp!r}") from None
        if not isinstance(o_proj, torch.nn.Linear) or o_proj.in_features != n_heads * head_dim:
            raise fail(f"{site.attn_out_path(layer)} should be a Linear with {n_heads}×{head_dim} inputs")
        if not isinstance(mlp, torch.nn.Module):
            raise fail(f"{site.mlp_path(layer)} is not a module")
    if n_heads % n_kv:
        raise fail(f"{n_heads} query heads is not a multiple of {n_kv} key/value heads")
    return site
