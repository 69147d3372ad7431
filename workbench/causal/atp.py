"""Attribution patching (AtP): every site's patching effect from one source forward, one base forward and one backward.

Exact activation patching runs the base prompt once per site with that site's output replaced by its
output in the source run (:mod:`workbench.causal.pairs`: noising = clean base, counterfactual source;
denoising the other way round). AtP (Nanda 2023; Syed, Rager & Conmy 2023; Kramár et al. 2024) replaces
each of those forwards by the first-order Taylor term of the metric around the base run:

    LD(z_base + Δ) − LD(z_base)  ≈  ⟨∂LD/∂z |_base , Δ⟩,      Δ = z_source − z_base,

where ``LD = logit[answer] − logit[foil]`` at the last token and ``z`` is the site's output: a head's slice
of the ``o_proj`` input ``[head_dim]`` or a layer's MLP output ``[hidden]``, at the last token
(``positions="last"``) or summed over every token (``positions="all"``, aligned pairs only). The gradient
of every site comes from one backward pass: a zero tensor ``δ`` of the sites' shape is added to the sites'
outputs in the base forward (``z + δ``, the identity at δ = 0), and ``∂LD/∂δ = ∂LD/∂z``.

The estimate is normalised like the exact sweep, ``est / (LD_source − LD_base)`` (1: the site alone moves
the base run all the way to the source run), with probes whose gap is below ``spec.min_gap`` dropped (NaN).
It is exact when LD is linear in the site's output along Δ (and to O(ε²) for a source ε·Δ away, which
tests/integration/test_atp.py checks against finite differences); for a full patch it is an estimate whose
quality the recall table reports (Spearman and top-k overlap against the exact patching sweep). Known
failure mode: saturated softmaxes (attention, or a confident answer) have small gradients, so a site whose
patch crosses a saturation is under-estimated.

Shapes: results are ``[probe, 1, layer, head]`` for heads and ``[probe, 1, layer]`` for MLPs — the layout of a
patching sweep's values (the α axis holds the single value 1, fully patched).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch

from workbench.causal.pairs import PairBatch, normalized_effect, pair_batch, pair_logit_diff
from workbench.errors import WorkbenchError
from workbench.interventions.core import check_left_padded, split_heads
from workbench.models.load import VLM
from workbench.probes.probeset import ProbeSet
from workbench.sweeps.spec import SweepSpec


def check_spec(spec: SweepSpec) -> None:
    """AtP estimates a patching sweep: refuse a spec of another family (there is no source run to patch from)."""
    if not spec.family.needs_pairs:
        raise WorkbenchError(f"attribution patching estimates a patching sweep, not a {spec.intervention!r} one",
                             "pass SweepSpec(intervention='patch', direction='noising' or 'denoising')")


@contextmanager
def _sites(vlm: VLM, per_head: bool, positions: str, record: list, deltas: list | None):
    """Hook every layer's site: append its output (detached; the last token ``[batch, …]`` or every token
    ``[batch, seq, …]``) to ``record`` in layer order and, when ``deltas`` is a list, add a fresh zero leaf
    δ of that shape (requires_grad) to the output and append δ to ``deltas``: the identity in value, and
    ``∂LD/∂δ = ∂LD/∂z``."""
    site, model = vlm.site, vlm.model
    handles = []

    def edit(y: torch.Tensor) -> torch.Tensor:
        """``y [batch, seq, head, head_dim]`` (heads) or ``[batch, seq, hidden]`` (MLP) → recorded, plus δ."""
        record.append((y[:, -1] if positions == "last" else y).detach())
        if deltas is None:
            return y
        d = torch.zeros_like(y[:, -1] if positions == "last" else y, requires_grad=True)
        deltas.append(d)
        if positions == "last":
            return torch.cat([y[:, :-1], y[:, -1:] + d[:, None]], dim=1)
        return y + d

    try:
        for layer in range(site.n_layers):
            if per_head:
                def pre(module, args):
                    x = args[0]
                    return (edit(split_heads(x, site)).reshape(x.shape), *args[1:])

                handles.append(site.attn_out(model, layer).register_forward_pre_hook(pre))
            else:
                def post(module, args, output):
                    return edit(output)

                handles.append(site.mlp(model, layer).register_forward_hook(post))
        yield
    finally:
        for h in handles:
            h.remove()


def _forward(vlm: VLM, inputs: dict, per_head: bool, positions: str,
             grad: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Last-token logits ``[batch, vocab]``, every site's output stacked on a layer axis after the batch (and
    seq) axes — ``[batch, (seq,) layer, head, head_dim]`` or ``[batch, (seq,) layer, hidden]`` — and, with
    ``grad``, the per-layer zero leaves δ added to the sites (in layer order; empty without ``grad``)."""
    check_left_padded(inputs.get("attention_mask"))
    vlm.site.check_inputs(inputs, None)  # a layer that does not run would leave a hole in the record
    record: list[torch.Tensor] = []
    deltas: list[torch.Tensor] | None = [] if grad else None
    with torch.set_grad_enabled(grad), _sites(vlm, per_head, positions, record, deltas):
        logits = vlm.model(**inputs).logits[:, -1].float()
    if len(record) != vlm.site.n_layers:
        raise WorkbenchError(f"{len(record)} of {vlm.site.n_layers} layers' sites ran in one forward pass",
                             "this model runs some layers more than once or not at all; AtP needs each exactly once")
    return logits, torch.stack(record, dim=1 if positions == "last" else 2), deltas or []


def pair_estimates(vlm: VLM, pair: PairBatch, per_head: bool, positions: str = "last") -> tuple[torch.Tensor, ...]:
    """The raw first-order estimates of one pair batch and the two runs' logit differences.

    Returns ``est [batch, layer, head]`` (``[batch, layer]`` for MLPs): ⟨∂LD/∂z, z_source − z_base⟩ per site,
    in logit-difference units (not normalised), and ``ld_base, ld_source [batch]``. Cost: one forward of the
    source (no gradient) and one forward plus one backward of the base."""
    src_logits, z_src, _ = _forward(vlm, pair.source.inputs, per_head, positions)
    base_logits, z_base, deltas = _forward(vlm, pair.base.inputs, per_head, positions, grad=True)
    if z_src.shape != z_base.shape:
        raise WorkbenchError(f"the base and source runs have sites of shapes {list(z_base.shape)} and {list(z_src.shape)}",
                             "patch all positions only between prompts that align token by token")
    ld_base = pair_logit_diff(base_logits, pair)
    grads = torch.autograd.grad(ld_base.sum(), deltas)  # rows are independent: d(sum)/dδ_i = dLD_i/dδ_i
    grad = torch.stack(grads, dim=1 if positions == "last" else 2)
    prod = grad.float() * (z_src.float() - z_base.float())  # [batch, (seq,) layer, (head,) features]
    est = prod.sum(-1)
    if positions == "all":
        est = est.sum(1)  # every position is patched at once: the first-order terms add
    return est, ld_base.detach(), pair_logit_diff(src_logits, pair)


def atp(vlm: VLM, probes: ProbeSet, spec: SweepSpec, batch_size: int = 16,
        progress: Callable[[int, int], None] | None = None, items: Sequence | None = None) -> torch.Tensor:
    """AtP estimates of the patching sweep ``spec`` on ``probes`` (spatial probes with counterfactuals).

    ``[probe, 1, layer, head]`` for ``spec.target == "heads"`` (``[probe, 1, layer]`` for MLPs): the
    normalised effect estimate ``⟨∂LD/∂z, z_source − z_base⟩ / (LD_source − LD_base)``, NaN for dropped probes
    (``|LD_source − LD_base| < spec.min_gap``). ``items`` defaults to every probe of ``probes``."""
    check_spec(spec)
    items = list(probes.items if items is None else items)
    if not items:
        raise WorkbenchError(f"probe set {probes.name!r} has no probes to estimate", "check the probe set and its split")
    per_head = spec.kind.per_head
    out = []
    for s in range(0, len(items), batch_size):
        pair = pair_batch(vlm, probes, items[s:s + batch_size], spec.direction, spec.positions)
        est, ld_base, ld_src = pair_estimates(vlm, pair, per_head, spec.positions)
        flat = est.reshape(len(pair), -1)
        eff = normalized_effect(ld_base[:, None] + flat, ld_base, ld_src, spec.min_gap)
        out.append(eff.reshape(est.shape).cpu())
        if progress:
            progress(min(s + batch_size, len(items)), len(items))
    return torch.cat(out).unsqueeze(1)
