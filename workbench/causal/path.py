"""Path patching at the last token (TransformerLens / Wang et al. 2022 semantics): a sender head's effect through
one path alone.

Activation patching of a head (replace its output by the source run's, rerun everything downstream) measures its
*total* effect: through every later head and MLP that reads it. Path patching restricts the effect to the paths that
end at chosen **receivers**, with every other head frozen. On a counterfactual pair
(:func:`workbench.causal.pairs.pair_batch`: ``base`` and ``source`` runs, noising or denoising) and with a head's
output the ``o_proj`` input slice ``z[l, h]`` (``[head_dim]`` per token; :mod:`workbench.models.sites`):

**Receivers = the logits** (one step). Run the base prompt with

- the sender's last-token output ``z[s]`` replaced by the source run's,
- every *other* head's last-token output, in every layer, frozen to its base-run value,
- the MLPs recomputed (they are part of the residual-stream paths, as in Wang et al.; ``freeze_mlps=True`` freezes
  them too, leaving only the direct path sender → residual → final norm → unembedding),

and read ``LD = logit[answer] − logit[foil]`` (the final norm is recomputed). The change reaches the logits only
through the residual stream and the MLPs, never through another head.

**Receivers = a set of heads R** (two steps).

1. Run the base prompt as above (sender patched from the source, every other head frozen to base, MLPs
   recomputed or frozen) and *record* what each receiver head computes at the last token, ``z'[r] [batch,
   head_dim]``: its query sees the residual with the sender's change in it; its keys and values at earlier positions
   are the base run's (nothing before the last token changed: attention is causal). The receivers' own outputs are
   frozen in this run too, so no receiver hears another receiver.
2. Run the base prompt again with only the receivers' last-token outputs replaced by ``z'[r]``; everything else,
   downstream of the receivers included, is recomputed. ``LD`` of that run is the sender's effect through
   sender → R → (everything after R) → logits.

A sender in the same layer as every receiver or after it has no path to them: its effect is exactly 0 and costs no
forward. Per probe the result is the change ``LD_patched − LD_base`` and the normalized effect
``(LD_patched − LD_base) / (LD_source − LD_base)`` (:func:`~workbench.causal.pairs.normalized_effect`; NaN for a
probe whose two runs are closer than ``min_gap``).

Engines. ``naive``: per probe batch the base and source runs once, then one full forward per sender (receivers =
logits) or two (receivers = heads); the organism's 48 heads are 48 or 96 forwards. ``packed`` (the default where the
family allows it, :func:`workbench.sweeps.packed.check_packable`): since only the last token is edited, every sender
shares the base run's prefix, so one prefix pass per batch is followed by one forward of all senders as packed copies
of the last token (step 1) and, for receiver heads, one more (step 2) — the same numbers up to summation order
(tests/integration/test_dla_path.py holds the two engines to 1e-5).

Only the last token is patched and frozen, which freezes a path exactly because nothing at an earlier position can
hear the last token. That fails for PaliGemma, whose prompt is one bidirectional prefix block that every position
reads: refused there. With one decoder layer, the sender → logits path is the only way a head reaches the output and
path patching equals activation patching of the head (tests/integration/test_dla_path.py checks it), as it does for
any head of the last layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from workbench.causal.pairs import check_direction, normalized_effect, pair_batch, pair_logit_diff
from workbench.errors import WorkbenchError
from workbench.interventions.core import check_left_padded
from workbench.interventions.torch_hooks import HookSet
from workbench.models.load import VLM
from workbench.probes.items import ProbeItem
from workbench.probes.probeset import ProbeSet

LOGITS = "logits"


@dataclass(frozen=True, eq=False)
class PathResult:
    """Per-probe path-patching effects of each sender head (float32, on the CPU)."""

    effect: torch.Tensor  # [probe, layer, head] normalized effect; NaN: a dropped probe or a head that was no sender
    delta: torch.Tensor  # [probe, layer, head] LD_patched − LD_base (NaN: no sender)
    base_ld: torch.Tensor  # [probe] LD of the base run
    source_ld: torch.Tensor  # [probe] LD of the source run
    senders: torch.Tensor  # [layer, head] bool: the heads computed as senders
    receivers: str | tuple[tuple[int, int], ...]  # "logits" or the receiver heads
    direction: str
    freeze_mlps: bool
    items: tuple[ProbeItem, ...]

    def __len__(self) -> int:
        return len(self.items)

    def mean(self) -> torch.Tensor:
        """``[layer, head]`` mean normalized effect over the probes kept (NaN for heads that were no sender)."""
        return self.effect.nanmean(0)

    def rows(self) -> list[dict]:
        """Long form, one row per probe and sender head, for CSV files and data frames."""
        out = []
        n_layers, n_heads = self.senders.shape
        for p, it in enumerate(self.items):
            common = dict(probe_id=it.id, task=it.task, relation=it.relation, base_ld=float(self.base_ld[p]),
                          source_ld=float(self.source_ld[p]))
            for layer in range(n_layers):
                for head in range(n_heads):
                    if self.senders[layer, head]:
                        out.append(dict(common, layer=layer, head=head, delta=float(self.delta[p, layer, head]),
                                        value=float(self.effect[p, layer, head])))
        return out


def _heads(vlm: VLM, heads: Iterable[tuple[int, int]], what: str) -> tuple[tuple[int, int], ...]:
    out = tuple(dict.fromkeys((int(layer), int(head)) for layer, head in heads))
    if not out:
        raise WorkbenchError(f"no {what} heads given", f"name the {what} heads as (layer, head) pairs, e.g. L3H2")
    for layer, head in out:
        vlm.site.check_head(layer, head)
    return out


def check_family(vlm: VLM) -> None:
    """Refuse families where freezing the last token does not freeze a path (a bidirectional prefix: PaliGemma)."""
    row = vlm.site.row
    if not row.packable and row.unpackable:
        raise WorkbenchError(f"last-token path patching is not defined for {row.family}: {row.unpackable}, so the other "
                             "positions hear the patched last token and freezing it does not freeze the paths",
                             "use activation patching (workbench sweep) for this family")


class _Hooks(HookSet):
    """Last-token hooks for one forward: ``set_z[layer] = (mask [head] bool, values [batch, head, head_dim])`` replaces
    those heads' ``o_proj`` input at the last token; ``record`` (layers) keeps each layer's computed last-token ``z``
    before any replacement; ``set_mlp[layer]`` (``[batch, hidden]``) replaces the MLP site's output at the last token."""

    def __init__(self, vlm: VLM, set_z=None, record=(), set_mlp=None):
        self.vlm, self.set_z, self.record, self.set_mlp = vlm, set_z or {}, set(record), set_mlp or {}
        self.recorded: dict[int, torch.Tensor] = {}
        super().__init__()

    def __enter__(self) -> _Hooks:
        site, model = self.vlm.site, self.vlm.model

        def pre(module, args, layer):
            x = args[0]
            last = x[:, -1].view(x.shape[0], site.n_heads, site.head_dim)
            if layer in self.record:
                self.recorded[layer] = last.detach().clone()
            if layer not in self.set_z:
                return None
            mask, values = self.set_z[layer]
            new = torch.where(mask.view(1, -1, 1), values.to(x.dtype), last)
            x = x.clone()
            x[:, -1] = new.reshape(x.shape[0], -1)
            return (x, *args[1:])

        def post(module, args, output, layer):
            y = output.clone()
            y[:, -1] = self.set_mlp[layer].to(y.dtype)
            return y

        try:
            for layer in sorted(set(self.set_z) | self.record):
                self.handles.append(site.attn_out(model, layer).register_forward_pre_hook(
                    lambda m, a, layer=layer: pre(m, a, layer)))
            for layer in sorted(self.set_mlp):
                self.handles.append(site.mlp(model, layer).register_forward_hook(
                    lambda m, a, o, layer=layer: post(m, a, o, layer)))
        except BaseException:
            self.__exit__()
            raise
        return self


def _run(vlm: VLM, inputs: dict, **hooks) -> tuple[torch.Tensor, _Hooks]:
    with torch.no_grad(), _Hooks(vlm, **hooks) as h:
        logits = vlm.model(**inputs).logits[:, -1].float()
    return logits, h


def _record_all(vlm: VLM, inputs: dict) -> tuple[torch.Tensor, dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """``(logits [B, vocab], z {layer: [B, head, head_dim]}, mlp {layer: [B, hidden]})`` of a plain run, last token."""
    site, model = vlm.site, vlm.model
    mlp: dict[int, torch.Tensor] = {}
    handles = [site.mlp(model, layer).register_forward_hook(
        lambda m, a, o, layer=layer: mlp.__setitem__(layer, o[:, -1].detach().clone())) for layer in range(site.n_layers)]
    try:
        logits, h = _run(vlm, inputs, record=range(site.n_layers))
    finally:
        for handle in handles:
            handle.remove()
    return logits, h.recorded, mlp


def _path_batch(vlm: VLM, probes: ProbeSet, items: Sequence[ProbeItem], direction: str,
                receivers: str | tuple[tuple[int, int], ...], senders: tuple[tuple[int, int], ...], freeze_mlps: bool,
                min_gap: float, engine: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(effect, delta [B, n_senders], base_ld, source_ld [B])`` for one probe batch."""
    site = vlm.site
    pair = pair_batch(vlm, probes, items, direction, "last")
    for inputs in (pair.base.inputs, pair.source.inputs):
        check_left_padded(inputs.get("attention_mask"))
        site.check_inputs(inputs)
    base_logits, z_base, mlp_base = _record_all(vlm, pair.base.inputs)
    source_logits, z_src, _ = _record_all(vlm, pair.source.inputs)
    base_ld, source_ld = pair_logit_diff(base_logits, pair), pair_logit_diff(source_logits, pair)
    every = torch.ones(site.n_heads, dtype=torch.bool, device=base_logits.device)
    frozen_mlps = dict(mlp_base) if freeze_mlps else None
    to_heads = receivers != LOGITS
    r_layers = sorted({layer for layer, _ in receivers}) if to_heads else []
    if engine == "packed":
        ld = _packed_senders(vlm, pair.base.inputs, pair, z_base, z_src, mlp_base, receivers, senders, freeze_mlps, base_ld)
        return _finish(ld, base_ld, source_ld, min_gap)
    patched = []
    for ls, hs in senders:
        if to_heads and ls >= r_layers[-1]:  # no path from this sender to any receiver
            patched.append(base_ld)
            continue
        # step 1: the sender from the source, every other head frozen to base (MLPs recomputed unless frozen)
        values = {layer: z_base[layer] for layer in range(site.n_layers)}
        values[ls] = z_base[ls].clone()
        values[ls][:, hs] = z_src[ls][:, hs]
        set_z = {layer: (every, values[layer]) for layer in range(site.n_layers)}
        logits, h = _run(vlm, pair.base.inputs, set_z=set_z, record=r_layers, set_mlp=frozen_mlps)
        if not to_heads:
            patched.append(pair_logit_diff(logits, pair))
            continue
        # step 2: only the receivers' last-token outputs replaced by what they computed in step 1; the rest recomputed
        set_r = {}
        for layer in r_layers:
            mask = torch.zeros(site.n_heads, dtype=torch.bool, device=base_logits.device)
            mask[[head for rl, head in receivers if rl == layer]] = True
            set_r[layer] = (mask, h.recorded[layer])
        logits, _ = _run(vlm, pair.base.inputs, set_z=set_r)
        patched.append(pair_logit_diff(logits, pair))
    ld = torch.stack(patched, dim=1)  # [B, n_senders]
    return _finish(ld, base_ld, source_ld, min_gap)


def _finish(ld, base_ld, source_ld, min_gap):
    effect = normalized_effect(ld, base_ld, source_ld, min_gap)
    return effect.cpu(), (ld - base_ld[:, None]).float().cpu(), base_ld.float().cpu(), source_ld.float().cpu()


def _packed_senders(vlm: VLM, inputs: dict, pair, z_base: dict, z_src: dict, mlp_base: dict,
                    receivers: str | tuple[tuple[int, int], ...], senders: tuple[tuple[int, int], ...], freeze_mlps: bool,
                    base_ld: torch.Tensor) -> torch.Tensor:
    """``LD [B, n_senders]`` with every sender as one packed copy of the last token after the base run's prefix
    (:func:`workbench.sweeps.packed._packed_runs`). Step 1: ``HeadPatch`` of every head from the base run, then of copy
    v's sender from the source (applied in that order), ``MlpPatch`` of every MLP from the base when frozen; a plain
    hook registered first records the receivers' computed last-token ``z`` per copy. Step 2: the receivers' recordings
    patched into fresh copies, everything else recomputed."""
    from workbench.interventions.core import HeadPatch, MlpPatch
    from workbench.sweeps.packed import _packed_runs

    site, device = vlm.site, inputs["input_ids"].device
    n_l, n_h = site.shape
    to_heads = receivers != LOGITS
    r_layers = sorted({layer for layer, _ in receivers}) if to_heads else []
    live = [j for j, (ls, _) in enumerate(senders) if not to_heads or ls < r_layers[-1]]  # senders with a path
    ld = base_ld[:, None].repeat(1, len(senders))
    if not live:
        return ld
    stack = lambda d: torch.stack([d[layer] for layer in range(n_l)], dim=1)[:, None]  # noqa: E731  [B, 1, layer, ...]
    base_src, source_src = stack(z_base), stack(z_src)
    one_hot = torch.zeros(len(live), n_l, n_h, dtype=torch.bool, device=device)
    for v, j in enumerate(live):
        one_hot[v, senders[j][0], senders[j][1]] = True
    every = torch.ones(n_l, n_h, dtype=torch.bool, device=device)
    mlp_src = stack(mlp_base) if freeze_mlps else None
    n_var = len(live)

    def step1(start: int, c: int) -> list:
        ivs = [HeadPatch(base_src, every, "all"), HeadPatch(source_src, one_hot[start:start + c].unsqueeze(0), "all")]
        if mlp_src is not None:
            ivs.append(MlpPatch(mlp_src, torch.ones(n_l, dtype=torch.bool, device=device), "all"))
        return ivs

    calls: dict[int, list[torch.Tensor]] = {layer: [] for layer in r_layers}
    handles = [site.attn_out(vlm.model, layer).register_forward_pre_hook(
        lambda m, a, layer=layer: calls[layer].append(a[0].detach().view(*a[0].shape[:2], n_h, site.head_dim).clone()))
        for layer in r_layers]
    try:
        with torch.no_grad():
            logits = _packed_runs(vlm, inputs, n_var, n_var, step1)  # one chunk: [B, n_var, vocab]
    finally:
        for h in handles:
            h.remove()
    if to_heads:
        rec = torch.zeros(inputs["input_ids"].shape[0], n_var, n_l, n_h, site.head_dim, dtype=base_src.dtype, device=device)
        r_mask = torch.zeros(n_l, n_h, dtype=torch.bool, device=device)
        for layer in r_layers:
            prefix_call, copies = calls[layer]  # the prefix pass, then the copies' pass
            assert copies.shape[1] == n_var, (copies.shape, n_var)
            rec[:, :, layer] = copies
        for layer, head in receivers:
            r_mask[layer, head] = True
        with torch.no_grad():
            logits = _packed_runs(vlm, inputs, n_var, n_var, lambda start, c: [HeadPatch(rec[:, start:start + c], r_mask, "all")])
    ld[:, live] = pair_logit_diff(logits, pair).to(ld.dtype)
    return ld


ENGINES = ("auto", "packed", "naive")


def resolve_engine(vlm: VLM, engine: str) -> str:
    """``auto`` → ``packed`` where the family's packed path is exact (``SiteRow.packable``), else ``naive``."""
    if engine not in ENGINES:
        raise WorkbenchError(f"unknown engine {engine!r}", f"choose from: {', '.join(ENGINES)}")
    if engine == "naive":
        return engine
    from workbench.sweeps.packed import check_packable

    if engine == "packed":
        check_packable(vlm)
        return engine
    try:
        check_packable(vlm)
    except WorkbenchError:
        return "naive"
    return "packed"


def parse_receivers(vlm: VLM, receivers: str | Iterable[tuple[int, int]]) -> str | tuple[tuple[int, int], ...]:
    if isinstance(receivers, str):
        if receivers != LOGITS:
            raise WorkbenchError(f"unknown receivers {receivers!r}", "pass 'logits' or a list of (layer, head) receiver heads")
        return LOGITS
    return _heads(vlm, receivers, "receiver")


def path_patch(vlm: VLM, probes: ProbeSet, receivers: str | Iterable[tuple[int, int]] = LOGITS,
               items: Sequence[ProbeItem] | None = None, direction: str = "noising",
               senders: Iterable[tuple[int, int]] | None = None, freeze_mlps: bool = False, batch_size: int = 16,
               min_gap: float = 0.0, engine: str = "auto") -> PathResult:
    """Each sender head's last-token effect on ``logit[answer] − logit[foil]`` through the receivers alone.

    ``receivers``: ``"logits"`` or a list of ``(layer, head)``; ``senders``: ``(layer, head)`` pairs (default: every
    head); ``engine``: auto, packed or naive (the same numbers; packed runs the senders as packed copies of the last
    token). See the module docstring for the algorithm (what is frozen, what is recomputed)."""
    check_direction(direction)
    check_family(vlm)
    recv = parse_receivers(vlm, receivers)
    engine = resolve_engine(vlm, engine)
    site = vlm.site
    send = (tuple((layer, head) for layer in range(site.n_layers) for head in range(site.n_heads)) if senders is None
            else _heads(vlm, senders, "sender"))
    items = list(probes.items if items is None else items)
    if not items:
        raise WorkbenchError(f"probe set {probes.name!r} has no probes to patch", "check the probe set folder and --split")
    if batch_size <= 0:
        raise WorkbenchError(f"batch size must be positive, got {batch_size}", "pass --batch-size 1 or more")
    parts = [_path_batch(vlm, probes, items[i:i + batch_size], direction, recv, send, freeze_mlps, min_gap, engine)
             for i in range(0, len(items), batch_size)]
    eff, delta, base_ld, source_ld = (torch.cat([p[k] for p in parts]) for k in range(4))
    n = len(items)
    effect = torch.full((n, site.n_layers, site.n_heads), float("nan"))
    full_delta = torch.full((n, site.n_layers, site.n_heads), float("nan"))
    mask = torch.zeros(site.shape, dtype=torch.bool)
    for j, (layer, head) in enumerate(send):
        effect[:, layer, head], full_delta[:, layer, head] = eff[:, j], delta[:, j]
        mask[layer, head] = True
    return PathResult(effect=effect, delta=full_delta, base_ld=base_ld, source_ld=source_ld, senders=mask, receivers=recv,
                      direction=direction, freeze_mlps=freeze_mlps, items=tuple(items))
