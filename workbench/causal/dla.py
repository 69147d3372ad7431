"""Direct logit attribution (DLA): how much of the answer-vs-foil logit difference each head writes directly.

At the last token the residual stream that reaches the final norm is a sum (pre-norm decoders: every layer
*adds* its attention output and its MLP output to what it received)::

    x_final = e + Σ_l ( attn_l + mlp_l ),      attn_l = Σ_h z[l, h] @ W_O[l][:, h-slice]ᵀ + b_O[l]

with ``e`` the input of layer 0 (token embedding and whatever a family adds before the first layer, e.g.
Gemma's √hidden scale) and ``z[l, h]`` head h's attention-weighted values, the ``o_proj`` input slice of
:mod:`workbench.models.sites`. The logits are ``W_U · RMSNorm(x_final)`` with ``RMSNorm(x) = g ⊙ x / rms(x)``.
Freezing ``rms(x_final)`` at its value on the clean run makes the map from the residual to the logit
difference *linear*, so it distributes over the sum::

    LD = logit[answer] − logit[foil] = Σ_c  (g ⊙ c / rms) · (W_U[answer] − W_U[foil])   (+ b_U[answer] − b_U[foil])

over the components c = each head, each MLP, the embedding term and the biases; with the norm frozen this is an
identity, not an approximation (``DLAResult.error`` is the measured ``|Σ − LD|``, float32 rounding: ~1e-6).
A head's DLA is its *direct* effect only: what it writes straight into the final residual, not what it
does through later heads and MLPs (for that, :mod:`workbench.causal.path`).

Families (checked from the site row and at run time):

- LLaVA / Llama, Qwen2(-VL), Qwen2.5-VL, Qwen3-VL, Idefics3 / SmolVLM, InternVL, LLaVA-NeXT / OneVision,
  PaliGemma: pre-norm layers ``x + attn(norm(x))``, ``x + mlp(norm(x))``. Handled as above.
- **Gemma 3** puts ``post_attention_layernorm`` after ``o_proj`` (``SiteRow.attn_post_norm``) and
  ``post_feedforward_layernorm`` after the MLP. The MLP site of its row is that norm's output, so the MLP term is
  exact as is. The heads' sum passes through the post-attention RMSNorm before the residual add; it is handled
  *exactly* the same way as the final norm: that norm's rms, per layer and probe, is frozen at the clean run, and a
  head's term is ``(g_post ⊙ z_h W_hᵀ / rms_post)`` projected as above. The decomposition is still an identity at
  the clean run; a head's term is its direct effect with both norms' scales frozen.
- **Mllama** is refused: its cross-attention layers add ``tanh(gate) · attn`` and a row-masked, gated MLP, which
  its site row does not describe.
- Any other family whose layers turn out not to be additive at the last token is refused at run time (each layer's
  output is checked against its input plus the two captured terms), naming the first layer that is not.

The answer and the foil per probe: for a probe with a counterfactual partner, the clean probe's answer token and
its counterfactual's answer token (the direction :func:`workbench.causal.pairs.pair_batch` patches along); for any
other probe, the correct option and the best-scoring wrong option on the clean run (``DLAResult.foil_kind`` says
which, per probe). Only the clean run is needed: one forward per probe batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from workbench.errors import WorkbenchError
from workbench.interventions.torch_hooks import HookSet
from workbench.models.load import VLM
from workbench.models.prompts import build_batch
from workbench.probes.items import ProbeItem
from workbench.probes.probeset import ProbeSet

FOIL_KINDS = ("counterfactual", "best wrong option")


@dataclass(frozen=True, eq=False)
class DLAResult:
    """Per-probe direct logit attribution onto ``logit[answer] − logit[foil]`` (float32, on the CPU).

    ``heads + mlp + embed + bias`` summed over layers and heads is ``logit_diff`` up to ``error``."""

    heads: torch.Tensor  # [probe, layer, head] each head's direct term
    mlp: torch.Tensor  # [probe, layer] each layer's MLP output's direct term
    embed: torch.Tensor  # [probe] the input of layer 0 (embeddings) at the last token
    bias: torch.Tensor  # [probe] every o_proj bias and the lm_head bias (0 for bias-free families)
    logit_diff: torch.Tensor  # [probe] the model's own LD on the clean run
    answer: torch.Tensor  # [probe] vocabulary id of the answer token
    foil: torch.Tensor  # [probe] vocabulary id of the foil token
    foil_kind: tuple[str, ...]  # per probe: "counterfactual" or "best wrong option"
    items: tuple[ProbeItem, ...]
    frozen_norms: tuple[str, ...]  # the norms whose scale was frozen at the clean run (module paths)

    def __len__(self) -> int:
        return len(self.items)

    def total(self) -> torch.Tensor:
        """``[probe]`` the sum of every term: equals ``logit_diff`` (the decomposition is exact with the norms frozen)."""
        return self.heads.sum((1, 2)) + self.mlp.sum(1) + self.embed + self.bias

    @property
    def error(self) -> float:
        """``max_probe |Σ terms − LD|``: float rounding only (the test holds it under 1e-4 in float32)."""
        return float((self.total() - self.logit_diff).abs().max()) if len(self) else 0.0

    def rows(self) -> list[dict]:
        """Long form, one row per probe and component: ``component`` is head / mlp / embed / bias; ``layer`` and
        ``head`` are −1 where they do not apply. For CSV files and data frames."""
        out = []
        n_layers, n_heads = self.heads.shape[1:]
        for p, it in enumerate(self.items):
            common = dict(probe_id=it.id, task=it.task, relation=it.relation, foil_kind=self.foil_kind[p],
                          logit_diff=float(self.logit_diff[p]))
            for layer in range(n_layers):
                for head in range(n_heads):
                    out.append(dict(common, component="head", layer=layer, head=head, value=float(self.heads[p, layer, head])))
                out.append(dict(common, component="mlp", layer=layer, head=-1, value=float(self.mlp[p, layer])))
            out.append(dict(common, component="embed", layer=-1, head=-1, value=float(self.embed[p])))
            out.append(dict(common, component="bias", layer=-1, head=-1, value=float(self.bias[p])))
        return out


def check_family(vlm: VLM) -> None:
    """Refuse, in one line, a family whose residual stream is not the sum DLA decomposes (see the module docstring)."""
    row = vlm.site.row
    if row.other_kinds:
        kinds = ", ".join(k.name for k in row.other_kinds)
        raise WorkbenchError(f"direct logit attribution is not defined for {row.family}: its {kinds} layers add a gated "
                             "(tanh(gate)·) and row-masked attention and MLP output to the residual stream, so the residual "
                             "is not the plain sum of o_proj and MLP outputs that DLA splits",
                             "use path patching (workbench causal path) or activation patching for this family")


def final_norm_path(vlm: VLM) -> str:
    """The final norm: the ``norm`` beside the decoder layers (``model.language_model.norm`` for most families)."""
    parent = vlm.site.row.layers.rsplit(".", 1)[0]
    path = f"{parent}.norm"
    try:
        vlm.model.get_submodule(path)
    except AttributeError:
        raise WorkbenchError(f"{vlm.site.row.family}: no final norm at {path!r} beside the decoder layers",
                             "direct logit attribution needs the language model's final norm; report this family") from None
    return path


def _rms_eps(norm: torch.nn.Module, what: str) -> float:
    for attr in ("variance_epsilon", "eps"):
        value = getattr(norm, attr, None)
        if isinstance(value, (int, float)):
            return float(value)
    raise WorkbenchError(f"{what} ({type(norm).__name__}) has no epsilon (variance_epsilon / eps), so it is not an RMSNorm "
                         "whose scale can be frozen", "direct logit attribution serves RMSNorm families only")


def rms_gain(norm: torch.nn.Module, hidden: int, what: str) -> tuple[torch.Tensor, float]:
    """``(g [hidden] float32, eps)`` of an RMSNorm ``y = g ⊙ x / sqrt(mean(x²) + eps)``, whatever its parametrisation
    (Llama's ``w``, Gemma's ``1 + w``): ``g = norm(1) · sqrt(1 + eps)``. Checked against the clean run by the caller."""
    eps = _rms_eps(norm, what)
    w = next(norm.parameters(), None)
    if w is None:
        raise WorkbenchError(f"{what} ({type(norm).__name__}) has no weight", "direct logit attribution serves RMSNorm families")
    with torch.no_grad():
        ones = torch.ones(1, hidden, dtype=w.dtype, device=w.device)
        g = norm(ones).float()[0] * math.sqrt(1.0 + eps)
    return g, eps


def _frozen_scale(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, eps: float, what: str, tol: float) -> torch.Tensor:
    """``1 / rms(x) [batch]`` of the norm's input ``x [batch, hidden]`` at the clean run, after checking that the
    norm's output ``y`` is ``g ⊙ x / rms(x)`` (else the norm is not an RMSNorm and its scale cannot be frozen)."""
    inv = torch.rsqrt(x.pow(2).mean(-1) + eps)
    err = float((g * x * inv[:, None] - y).abs().max())
    if err > tol * max(1.0, float(y.abs().max())):
        raise WorkbenchError(f"{what} does not compute g ⊙ x / rms(x) (off by {err:.2g} on the clean run), so its scale "
                             "cannot be frozen to make the logits linear in the residual",
                             "direct logit attribution serves RMSNorm families only")
    return inv


def _tolerance(dtype: torch.dtype) -> float:
    return 1e-3 if dtype in (torch.float32, torch.float64) else 5e-2


class _Capture(HookSet):
    """Forward hooks that keep, at the last token, each layer's input and output, each ``o_proj``'s input (the heads)
    and output, each MLP site's output, the post-attention norm's output (Gemma 3) and the final norm's in/out."""

    def __init__(self, vlm: VLM, norm_path: str):
        self.vlm, self.norm_path = vlm, norm_path
        self.data: dict[tuple, torch.Tensor] = {}
        super().__init__()

    def _last(self, t) -> torch.Tensor:
        t = t[0] if isinstance(t, (tuple, list)) else t
        return t[:, -1].detach().float()

    def __enter__(self) -> _Capture:
        model, site = self.vlm.model, self.vlm.site
        layers = model.get_submodule(site.row.layers)

        def keep(key):
            def hook(module, args, output):
                self.data[key] = self._last(output)
            return hook

        def keep_in(key):
            def hook(module, args, kwargs=None):
                x = args[0] if args else kwargs["hidden_states"]
                self.data[key] = self._last(x)
            return hook

        try:
            for layer in range(site.n_layers):
                block = layers[layer]
                self.handles.append(block.register_forward_pre_hook(keep_in(("in", layer)), with_kwargs=True))
                self.handles.append(block.register_forward_hook(keep(("out", layer))))
                o_proj = site.attn_out(model, layer)
                self.handles.append(o_proj.register_forward_pre_hook(lambda m, a, layer=layer: self.data.__setitem__(
                    ("z", layer), self._last(a[0]))))
                self.handles.append(o_proj.register_forward_hook(keep(("o", layer))))
                self.handles.append(site.mlp(model, layer).register_forward_hook(keep(("mlp", layer))))
                if site.row.attn_post_norm:
                    post = block.get_submodule(site.row.attn_post_norm)
                    self.handles.append(post.register_forward_hook(keep(("post", layer))))
            norm = model.get_submodule(self.norm_path)
            self.handles.append(norm.register_forward_pre_hook(lambda m, a: self.data.__setitem__(("x",), self._last(a[0]))))
            self.handles.append(norm.register_forward_hook(keep(("y",))))
        except BaseException:
            self.__exit__()
            raise
        return self


def _answer_foil(items: Sequence[ProbeItem], option_ids: torch.Tensor, answer_idx: torch.Tensor,
                 logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``(answer [B], foil [B], kinds)``: the counterfactual's answer as the foil when the probe has one, else the best
    wrong option by the clean logits."""
    answer = option_ids.gather(1, answer_idx[:, None])[:, 0]
    ol = logits.gather(1, option_ids.clamp(min=0)).masked_fill(option_ids < 0, float("-inf"))
    best_wrong = ol.scatter(1, answer_idx[:, None], float("-inf")).argmax(1)
    foil_idx, kinds = [], []
    for row, it in enumerate(items):
        if len(it.options) < 2:
            raise WorkbenchError(f"probe {it.id!r} has one option, so it has no foil to attribute against",
                                 "use probes with two or more options")
        if it.has_counterfactual and it.cf_answer and it.cf_answer != it.answer:
            foil_idx.append(it.options.index(it.cf_answer))
            kinds.append(FOIL_KINDS[0])
        else:
            foil_idx.append(int(best_wrong[row]))
            kinds.append(FOIL_KINDS[1])
    foil = option_ids.gather(1, torch.tensor(foil_idx, device=option_ids.device)[:, None])[:, 0]
    return answer, foil, kinds


def _dla_batch(vlm: VLM, probes: ProbeSet, items: Sequence[ProbeItem], norm_path: str) -> dict:
    site, model = vlm.site, vlm.model
    batch = build_batch(vlm, probes, items)
    site.check_inputs(batch.inputs)
    with torch.no_grad(), _Capture(vlm, norm_path) as cap:
        logits = model(**batch.inputs).logits[:, -1].float()
    d = cap.data
    tol = _tolerance(vlm.dtype)
    answer, foil, kinds = _answer_foil(items, batch.option_ids, batch.answer, logits)
    ld = logits.gather(1, answer[:, None])[:, 0] - logits.gather(1, foil[:, None])[:, 0]

    # the residual really is the sum, layer by layer, at the last token
    for layer in range(site.n_layers):
        attn = d[("post", layer)] if site.row.attn_post_norm else d[("o", layer)]
        got, want = d[("in", layer)] + attn + d[("mlp", layer)], d[("out", layer)]
        scale = max(1.0, float(want.abs().max()))
        if float((got - want).abs().max()) > tol * scale:
            raise WorkbenchError(f"{site.row.family}: decoder layer {layer}'s output at the last token is not its input plus "
                                 f"its attention output ({site.attn_out_path(layer)}) plus its MLP output "
                                 f"({site.mlp_path(layer)}), so the residual stream is not the sum DLA splits",
                                 "use path patching (workbench causal path) for this family")
        nxt = d[("in", layer + 1)] if layer + 1 < site.n_layers else d[("x",)]
        if float((nxt - want).abs().max()) > tol * scale:
            where = f"layer {layer + 1}'s input" if layer + 1 < site.n_layers else "the final norm's input"
            raise WorkbenchError(f"{site.row.family}: {where} at the last token is not decoder layer {layer}'s output, so "
                                 "something between them writes to the residual stream", "use path patching for this family")

    # the final norm, frozen: u = g ⊙ (W_U[a] − W_U[f]) / rms(x_final), so that a component c's term is c · u
    head_mod = model.get_output_embeddings()
    w_u = head_mod.weight
    g, eps = rms_gain(model.get_submodule(norm_path), site.hidden, f"the final norm {norm_path}")
    inv = _frozen_scale(d[("x",)], d[("y",)], g, eps, f"the final norm {norm_path}", tol)
    direction = (w_u[answer].float() - w_u[foil].float())  # [B, hidden]
    u = g * direction * inv[:, None]
    bias = torch.zeros_like(ld)
    if getattr(head_mod, "bias", None) is not None:
        bias = bias + head_mod.bias[answer].float() - head_mod.bias[foil].float()
    recon = (d[("y",)] * direction).sum(-1) + bias
    if float((recon - ld).abs().max()) > tol * max(1.0, float(ld.abs().max())):
        raise WorkbenchError(f"{site.row.family}: the logits are not the output embedding of the final norm's output "
                             "(soft-capped or post-processed), so they are not linear in the residual stream",
                             "use path patching (workbench causal path) for this family")

    n_b = len(items)
    heads = torch.zeros(n_b, site.n_layers, site.n_heads)
    mlp = torch.zeros(n_b, site.n_layers)
    for layer in range(site.n_layers):
        o_proj = site.attn_out(model, layer)
        u_l = u
        if site.row.attn_post_norm:
            post_path = f"{site.row.layers}.{layer}.{site.row.attn_post_norm}"
            g_p, eps_p = rms_gain(model.get_submodule(post_path), site.hidden, post_path)
            inv_p = _frozen_scale(d[("o", layer)], d[("post", layer)], g_p, eps_p, post_path, tol)
            u_l = u * g_p * inv_p[:, None]
        w_o = o_proj.weight.float().view(site.hidden, site.n_heads, site.head_dim)  # [hidden, head, head_dim]
        z = d[("z", layer)].view(n_b, site.n_heads, site.head_dim)
        v = torch.einsum("ohd,bo->bhd", w_o, u_l)  # what one unit of each head's z is worth in LD
        heads[:, layer] = (z * v).sum(-1).cpu()
        mlp[:, layer] = (d[("mlp", layer)] * u).sum(-1).cpu()
        if o_proj.bias is not None:
            bias = bias + (o_proj.bias.float()[None] * u_l).sum(-1)
    embed = (d[("in", 0)] * u).sum(-1)
    return dict(heads=heads, mlp=mlp, embed=embed.cpu(), bias=bias.cpu(), logit_diff=ld.cpu(), answer=answer.cpu(),
                foil=foil.cpu(), kinds=kinds)


def direct_logit_attribution(vlm: VLM, probes: ProbeSet, items: Sequence[ProbeItem] | None = None,
                             batch_size: int = 16) -> DLAResult:
    """Each head's, MLP's and the embeddings' direct term in ``logit[answer] − logit[foil]`` at the last token, per probe.

    One forward per batch of ``batch_size`` probes (the clean run; hooks read the last token). See the module docstring
    for the algebra, which families are served and how answer and foil are chosen."""
    check_family(vlm)
    items = list(probes.items if items is None else items)
    if not items:
        raise WorkbenchError(f"probe set {probes.name!r} has no probes to attribute", "check the probe set folder and --split")
    if batch_size <= 0:
        raise WorkbenchError(f"batch size must be positive, got {batch_size}", "pass --batch-size 1 or more")
    norm_path = final_norm_path(vlm)
    parts = [_dla_batch(vlm, probes, items[i:i + batch_size], norm_path) for i in range(0, len(items), batch_size)]
    cat = {k: torch.cat([p[k] for p in parts]) for k in ("heads", "mlp", "embed", "bias", "logit_diff", "answer", "foil")}
    frozen = [norm_path] + ([f"{vlm.site.row.layers}.*.{vlm.site.row.attn_post_norm}"] if vlm.site.row.attn_post_norm else [])
    return DLAResult(**cat, foil_kind=tuple(k for p in parts for k in p["kinds"]), items=tuple(items), frozen_norms=tuple(frozen))
