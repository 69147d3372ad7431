"""Where the intervention sites live in each VLM family: architectures as data.

An attention head's output, in every decoder layer of a Hugging Face language model, is a slice of
the *input* of the attention output projection ``o_proj``: that input is ``[batch, seq,
query_heads · head_dim]``, the concatenation of the heads' attention-weighted values, and
``o_proj`` mixes them back into the residual stream. Scaling the slice of head ``h`` scales exactly
that head's contribution (``o_proj`` is linear), which is why ScAle and head ablation hook there.
Under grouped-query attention the slices are still per *query* head; key/value heads are shared
and do not appear at this site.

The MLP site is the output of the module whose output each layer adds to the residual stream,
``[batch, seq, hidden]``: the ``mlp`` module itself, except where a norm sits between it and the
residual add — Gemma 3's ``post_feedforward_layernorm`` (``RMSNorm(α·y) ≈ RMSNorm(y)``, so scaling
``mlp``'s own output there would do next to nothing); the row then names the norm. Gemma 3 also puts
``post_attention_layernorm`` after ``o_proj`` (``SiteRow.attn_post_norm``): the head site stays the
``o_proj`` input, where α = 0 removes a head exactly, but a head's α ≠ 0 rescales its share of the
sum *before* that norm renormalizes it, so the effect on the residual is not affine in α.
(tests/integration/test_oracles.py checks the MLP claim on every family and the head claim on Gemma 3.)

Each VLM family is one :class:`SiteRow`: where the decoder layers are (a dotted path from the
top-level ``…ForConditionalGeneration``), the names of ``o_proj`` and ``mlp`` inside a layer,
and which config holds the head counts. Adding a family is adding a row; a row is checked
against the loaded model (modules present, shapes agree) by :func:`resolve_site`.

Families whose layers differ. Most decoders repeat one layer; Mllama (Llama 3.2 Vision) interleaves
*cross-attention* layers — queries from the text, keys/values from the vision tower's output, the
result gated by ``tanh(cross_attn_attn_gate)`` — whose projection is ``cross_attn.o_proj``. A row
expresses that as data: extra :class:`LayerKind` entries, each naming the text-config attribute that
lists its layer indices (``cross_attention_layers``) and its own ``attn_out`` / ``mlp`` paths; every
other layer is the row's default kind (``self_attn.o_proj``). Cross-attention heads are heads like
any other — same query-head count and head_dim in Mllama, the same linear ``o_proj`` input site —
so the choice made here is:

* ``Site.n_layers`` counts **every** decoder layer, of every kind, in execution order, and
  ``Site.shape == (n_layers, n_heads)`` indexes a head by its layer's position in that list. In
  Mllama-11B that is 40 layers (8 of them cross-attention) × 32 heads; a ScaleVector, a sweep or a
  ``HeadScale`` covers the cross-attention heads at their own layer index.
* ``Site.kinds[layer]`` names each layer's kind (``"self-attention"`` / ``"cross-attention"``), so
  tables and reports can say which heads attend to the image directly; ``attn_out_path(layer)`` and
  ``mlp_path(layer)`` resolve per kind, so every backend hooks the right module without knowing kinds.
* :func:`resolve_site` checks every layer against its kind: the kind's ``o_proj`` is present and a
  Linear with ``n_heads × head_dim`` inputs (a kind whose head counts differed would be refused,
  not mis-split), and the layer indices the config lists are inside the layer list.
* A layer kind may run only when the batch carries its input (Mllama skips its cross-attention
  layers when there is no image). :meth:`Site.check_inputs` refuses, in one line naming the heads,
  an intervention on such a layer with a batch that lacks that input, instead of letting the hook
  silently never fire.

Families transformers 5.24 has no class for are named in :data:`MISSING` (model_type → what it is,
what to load instead), so :func:`site_row` says so in one line instead of "unsupported architecture":
OpenGVLab's remote-code InternVL (``internvl_chat``) and lmms-lab's original LLaVA-OneVision
(``llava_qwen``). Every family of the table itself — Qwen3-VL, LLaVA-OneVision, InternVL and Mllama
included — is a transformers 5.24 class, checked against its tiny random model in tests/tiny.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from workbench.errors import WorkbenchError


@dataclass(frozen=True)
class LayerKind:
    """A kind of decoder layer that differs from the row's default (e.g. Mllama's cross-attention layers)."""

    name: str  # e.g. "cross-attention"
    layers_from: str  # attribute of the text config listing this kind's layer indices, e.g. "cross_attention_layers"
    attn_out: str  # inside such a layer: the Linear whose input is the concatenated heads, e.g. "cross_attn.o_proj"
    mlp: str = "mlp"
    runs_with: tuple[str, ...] = ()  # model inputs, one of which must be present for these layers to run at all (() = always)


DEFAULT_KIND = "self-attention"


@dataclass(frozen=True)
class SiteRow:
    family: str  # human name, e.g. "LLaVA-1.5"
    model_types: tuple[str, ...]  # config.model_type values this row serves
    layers: str  # dotted path to the ModuleList of decoder layers
    attn_out: str = "self_attn.o_proj"  # inside a layer: the Linear whose input is the concatenated heads
    mlp: str = "mlp"  # inside a layer: the module whose output is the MLP contribution
    text_config: str = "text_config"  # attribute of the top config holding the LM's head counts
    example: str = ""  # a hub id of this family, for the docs
    packable: bool = False  # the packed last-token sweep equals the naive one (tests/integration/test_packed.py)
    positions: str = "1d"  # text rotary ids: "1d" (token index) or "mrope" ([3, batch, seq] from the model's get_rope_index)
    unpackable: str = ""  # when not packable: why the packed path is not exact, for the refusal
    other_kinds: tuple[LayerKind, ...] = ()  # layers that differ from the default (attn_out / mlp above), found from the config
    # a norm between o_proj and the residual add (Gemma 3): α = 0 removes a head exactly, other α are not affine
    attn_post_norm: str = ""

    def attn_out_paths(self) -> str:
        """Every kind's head site, for tables: "self_attn.o_proj" or "self_attn.o_proj; cross-attention: cross_attn.o_proj"."""
        return "; ".join([self.attn_out] + [f"{k.name}: {k.attn_out}" for k in self.other_kinds])


SITES: tuple[SiteRow, ...] = (
    SiteRow("LLaVA-1.5", ("llava",), "model.language_model.layers", example="llava-hf/llava-1.5-7b-hf", packable=True),
    SiteRow("LLaVA-NeXT", ("llava_next",), "model.language_model.layers", example="llava-hf/llava-v1.6-mistral-7b-hf",
            packable=True),
    SiteRow("Qwen2-VL", ("qwen2_vl",), "model.language_model.layers", example="Qwen/Qwen2-VL-2B-Instruct", packable=True,
            positions="mrope"),
    SiteRow("Qwen2.5-VL", ("qwen2_5_vl",), "model.language_model.layers", example="Qwen/Qwen2.5-VL-3B-Instruct", packable=True,
            positions="mrope"),
    SiteRow("Idefics3 / SmolVLM", ("idefics3", "smolvlm"), "model.text_model.layers",
            example="HuggingFaceTB/SmolVLM-256M-Instruct",
            packable=True),
    SiteRow("PaliGemma", ("paligemma",), "model.language_model.layers", example="google/paligemma-3b-mix-224",
            unpackable="its prompt, the last token included, is one bidirectional prefix block, so every prompt token "
                       "attends to the last one and no prefix is shared"),
    SiteRow("Gemma 3", ("gemma3",), "model.language_model.layers", mlp="post_feedforward_layernorm",
            example="google/gemma-3-4b-it",
            packable=True, attn_post_norm="post_attention_layernorm"),
    SiteRow("Qwen3-VL", ("qwen3_vl",), "model.language_model.layers", example="Qwen/Qwen3-VL-2B-Instruct", packable=True,
            positions="mrope"),
    SiteRow("LLaVA-OneVision", ("llava_onevision",), "model.language_model.layers",
            example="llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
            packable=True),
    SiteRow("InternVL", ("internvl",), "model.language_model.layers", example="OpenGVLab/InternVL3-1B-hf", packable=True),
    SiteRow("Mllama (Llama 3.2 Vision)", ("mllama",), "model.language_model.layers",
            example="meta-llama/Llama-3.2-11B-Vision-Instruct",
            other_kinds=(LayerKind("cross-attention", "cross_attention_layers", "cross_attn.o_proj",
                                   runs_with=("pixel_values", "cross_attention_states")),), packable=True),
)
_BY_TYPE = {t: row for row in SITES for t in row.model_types}


#: Families users ask for that transformers 5.24 has no class for: model_type → (what it is, what to use instead).
MISSING: dict[str, tuple[str, str]] = {
    "internvl_chat": ("OpenGVLab's original InternVL checkpoints (InternVLChatModel, remote code) "
                      "have no transformers 5.24 class",
                      "use the transformers-native conversion of the same weights, e.g. OpenGVLab/InternVL3-1B-hf (model_type "
                      "'internvl')"),
    "llava_qwen": ("lmms-lab's original LLaVA-OneVision checkpoints (LLaVA-NeXT repository code) have no transformers 5.24 class",
                   "use the llava-hf conversion, e.g. llava-hf/llava-onevision-qwen2-0.5b-ov-hf (model_type 'llava_onevision')"),
}


def supported() -> str:
    return ", ".join(f"{r.family} ({'/'.join(r.model_types)})" for r in SITES)


def site_row(model_type: str) -> SiteRow:
    if model_type in MISSING:
        raise WorkbenchError(*MISSING[model_type])
    try:
        return _BY_TYPE[model_type]
    except KeyError:
        raise WorkbenchError(f"unsupported architecture {model_type!r}; supported: {supported()}",
                             "add a SiteRow for it to SITES in workbench/models/sites.py") from None


@dataclass(frozen=True)
class Site:
    """A SiteRow resolved against one loaded model: the modules and the counts, checked.

    ``n_layers`` counts every decoder layer of every kind (see the module docstring);
    ``kinds[layer]`` is that layer's kind name (``DEFAULT_KIND`` or one of ``row.other_kinds``).
    """

    row: SiteRow
    n_layers: int
    n_heads: int  # query heads
    n_kv_heads: int
    head_dim: int
    hidden: int
    kinds: tuple[str, ...] = ()  # per layer (resolve_site fills it); empty means every layer is DEFAULT_KIND

    @property
    def shape(self) -> tuple[int, int]:
        """``[layer, head]`` shape of per-head tensors (query heads; every layer kind, in execution order)."""
        return self.n_layers, self.n_heads

    def kind(self, layer: int) -> LayerKind | None:
        """The layer's :class:`LayerKind`, or ``None`` for the row's default kind."""
        name = self.kinds[layer] if self.kinds else DEFAULT_KIND
        return next((k for k in self.row.other_kinds if k.name == name), None)

    def layers_of_kind(self, name: str) -> list[int]:
        return [layer for layer in range(self.n_layers) if (self.kinds[layer] if self.kinds else DEFAULT_KIND) == name]

    def attn_out_path(self, layer: int) -> str:
        kind = self.kind(layer)
        return f"{self.row.layers}.{layer}.{kind.attn_out if kind else self.row.attn_out}"

    def mlp_path(self, layer: int) -> str:
        kind = self.kind(layer)
        return f"{self.row.layers}.{layer}.{kind.mlp if kind else self.row.mlp}"

    def attn_out(self, model: torch.nn.Module, layer: int) -> torch.nn.Linear:
        return model.get_submodule(self.attn_out_path(layer))

    def mlp(self, model: torch.nn.Module, layer: int) -> torch.nn.Module:
        return model.get_submodule(self.mlp_path(layer))

    def check_head(self, layer: int, head: int) -> None:
        if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
            raise WorkbenchError(f"head L{layer}H{head} is out of range: the model has {self.n_layers} layers "
                                 f"(0–{self.n_layers - 1}) × {self.n_heads} query heads (0–{self.n_heads - 1})",
                                 "pick a head inside that range")

    def check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise WorkbenchError(f"layer {layer} is out of range: the model has {self.n_layers} layers (0–{self.n_layers - 1})",
                                 "pick a layer inside that range")

    def check_inputs(self, inputs: Mapping[str, object], layers: Iterable[int] | None = None) -> None:
        """Refuse editing a layer that will not run on this batch (``layers``: the ones edited; ``None`` = all).

        Mllama skips its cross-attention layers when the batch has neither ``pixel_values`` nor
        ``cross_attention_states``; a hook there would silently never fire.
        """
        for kind in self.row.other_kinds:
            if not kind.runs_with or any(inputs.get(key) is not None for key in kind.runs_with):
                continue
            skipped = [layer for layer in self.layers_of_kind(kind.name) if layers is None or layer in set(layers)]
            if skipped:
                raise WorkbenchError(f"{self.row.family}'s {kind.name} layers {skipped} do not run on a batch without "
                                     f"{' or '.join(kind.runs_with)}, so their heads cannot be edited on it",
                                     "give the batch its image (build_batch does), or edit only the other layers")


def resolve_site(model: torch.nn.Module) -> Site:
    """Find the model's row and check it against the modules: present, Linear, shapes agree, per layer kind."""
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
    kinds = [DEFAULT_KIND] * len(layers)
    for kind in row.other_kinds:
        listed = getattr(tc, kind.layers_from, None)
        if listed is None:
            raise fail(f"the text config has no {kind.layers_from!r} listing its {kind.name} layers")
        for layer in listed:
            if not 0 <= int(layer) < len(layers) or kinds[int(layer)] != DEFAULT_KIND:
                raise fail(f"{kind.layers_from} lists layer {layer}, outside the {len(layers)} layers or already of another kind")
            kinds[int(layer)] = kind.name
    site = Site(row, len(layers), n_heads, n_kv, head_dim, hidden, tuple(kinds))
    for layer in range(site.n_layers):
        try:
            o_proj, mlp = site.attn_out(model, layer), site.mlp(model, layer)
        except AttributeError:
            kind = site.kind(layer)
            raise fail(f"layer {layer} ({kinds[layer]}) lacks {kind.attn_out if kind else row.attn_out!r} or "
                       f"{kind.mlp if kind else row.mlp!r}") from None
        if not isinstance(o_proj, torch.nn.Linear) or o_proj.in_features != n_heads * head_dim:
            raise fail(f"{site.attn_out_path(layer)} should be a Linear with {n_heads}×{head_dim} inputs")
        if not isinstance(mlp, torch.nn.Module):
            raise fail(f"{site.mlp_path(layer)} is not a module")
    if n_heads % n_kv:
        raise fail(f"{n_heads} query heads is not a multiple of {n_kv} key/value heads")
    return site
