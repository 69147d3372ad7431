"""Per-site effect sweeps: what happens to a metric when one site is intervened on.

The sites are a kind's (:mod:`workbench.axis`: heads, MLPs, attention edges) and the intervention a
family's. For the α families (``scale``, ``temperature``) the effect of every probe, α and site is the
metric under that single-site intervention minus the clean metric (for ``kl`` the divergence itself).
For ``patch`` it is the normalized patching effect of the site on the answer-vs-foil logit difference
(:mod:`workbench.causal.pairs`): per probe batch the base and the source runs go once each (the source's
site outputs cached, :func:`~workbench.interventions.torch_hooks.record_sites`), then one variant per site
replaces that site's output in the base run by the source's. Results are
:meth:`~workbench.axis.SiteKind.result_shape`: ``[probe, alpha, layer, head]`` for a per-head kind,
``[probe, alpha, layer]`` for a per-layer one (a patching sweep's α axis is its single value 1); NaN marks
a probe a patching sweep dropped. Aggregated by :mod:`workbench.sweeps.aggregate`.

Engines:

- ``packed`` (last-token interventions of a family and kind in :data:`PACKED`, on packable model
  families): one prefix pass per probe batch, all variants as packed queries (:mod:`workbench.sweeps.packed`). Exact.
- ``naive``: one forward per variant over the probe batch, through the plain-hook backend.
  Serves every family and ``positions="all"``.

Work is split into :class:`Chunk` s — a layer range × a probe range — that are independent, so
an executor (:mod:`workbench.sweeps.executors`) can run them anywhere and the store can keep each
as soon as it is done. A chunk being computed can be abandoned at the next forward pass
(``should_stop``): nothing of it is kept, and the chunks already stored are untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from workbench import metrics
from workbench.errors import Cancelled, WorkbenchError
from workbench.interventions.attention import EdgeScale, ImageTemperature
from workbench.interventions.core import HeadPatch, HeadScale, MlpPatch, MlpScale
from workbench.interventions.torch_hooks import TorchHooksBackend, record_sites
from workbench.models.load import VLM
from workbench.models.prompts import build_batch
from workbench.names import ENGINES  # noqa: E402  (torch-free, so the CLI checks it without this module)
from workbench.probes.probeset import ProbeSet
from workbench.sweeps.packed import check_packable, packed_patch_logits, packed_variant_logits
from workbench.sweeps.spec import TARGETS, SweepSpec  # noqa: F401  (the spec lives apart from the engine; both names stay here)

# The α families' interventions, keyed by (family name, site kind name). Contract of an entry:
# ``builder(factors, positions) -> list[Intervention]``, one intervention per variant: ``factors`` is ``[V, layer,
# head]`` for a per-head kind or ``[V, layer]`` for a per-layer one (1 = untouched; the variant's α at its site), and
# element v must do exactly what variant v asks on its own (the naive engine runs ``[ivs[v]]`` per forward). ``factors[v]``
# may also carry a batch axis (``[batch, layer, head]``: a factor per batch row), which attribution uses with V = 1.
BUILDERS: dict[tuple[str, str], Callable[[torch.Tensor, str], list]] = {
    ("scale", "heads"): lambda factors, positions: [HeadScale(f, positions) for f in factors],
    ("scale", "mlp"): lambda factors, positions: [MlpScale(f, positions) for f in factors],
    # attention edges (workbench.interventions.attention): image keys read from each batch's input_ids (image_keys=None)
    ("scale", "edges"): lambda factors, positions: [EdgeScale(f, None, positions) for f in factors],
    ("temperature", "edges"): lambda factors, positions: [ImageTemperature(f, None, positions) for f in factors],
}

# Patching, keyed by site kind name: the intervention replacing a site's output by the source run's. A per-head kind
# records and patches head outputs (o_proj inputs), a per-layer kind MLP outputs (record_sites' ``heads`` / ``mlp``).
PATCHES: dict[str, type] = {
    "heads": HeadPatch,
    "mlp": MlpPatch,
}

# (family, kind) pairs the packed engine serves at the last token (its variants are per-copy factors or masks).
PACKED = {("scale", "heads"), ("scale", "mlp"), ("patch", "heads"), ("patch", "mlp")}


@dataclass(frozen=True)
class Chunk:
    """An independent unit of work: layers ``[layer_start, layer_stop)`` × probes ``[probe_start, probe_stop)``."""

    layer_start: int
    layer_stop: int
    probe_start: int
    probe_stop: int

    @property
    def name(self) -> str:
        return f"L{self.layer_start:03d}-{self.layer_stop:03d}_P{self.probe_start:06d}-{self.probe_stop:06d}"


def check_chunk_sizes(layers_per_chunk: int, probes_per_chunk: int) -> None:
    """Chunk sizes need no model: callers check them before loading one."""
    if layers_per_chunk <= 0 or probes_per_chunk <= 0:
        raise WorkbenchError(f"chunk sizes must be positive, got {layers_per_chunk} layers × {probes_per_chunk} probes",
                             "pass --layers-per-chunk and --probes-per-chunk ≥ 1")


def check_engine(engine: str) -> None:
    """The engine's name (which engines serve a model is :func:`resolve_engine`'s, once it is loaded)."""
    if engine not in ENGINES:
        raise WorkbenchError(f"unknown engine {engine!r}", f"choose from: {', '.join(ENGINES)}")


def plan_chunks(n_layers: int, n_probes: int, layers_per_chunk: int = 8, probes_per_chunk: int = 64) -> list[Chunk]:
    check_chunk_sizes(layers_per_chunk, probes_per_chunk)
    return [Chunk(l0, min(l0 + layers_per_chunk, n_layers), p0, min(p0 + probes_per_chunk, n_probes))
            for p0 in range(0, n_probes, probes_per_chunk) for l0 in range(0, n_layers, layers_per_chunk)]


def resolve_engine(vlm: VLM, spec: SweepSpec, engine: str) -> str:
    check_engine(engine)
    packable = spec.positions == "last" and (spec.intervention, spec.target) in PACKED
    if engine == "auto":
        return "packed" if packable and vlm.site.row.packable else "naive"
    if engine == "packed":
        if spec.positions != "last":
            raise WorkbenchError("the packed engine serves last-token interventions only",
                                 "use --engine naive for --positions all")
        if not packable:
            raise WorkbenchError(f"the packed engine does not serve {spec.intervention} on {spec.kind.title}",
                                 "use --engine naive (or auto)")
        check_packable(vlm)
    return engine


def _variants(vlm: VLM, spec: SweepSpec, chunk: Chunk) -> torch.Tensor:
    """Factors of every variant of the chunk, α-major then site (:meth:`SiteKind.sites` order):
    ``[alpha·layer·head, layer, head]`` for a per-head kind, ``[alpha·layer, layer]`` for a per-layer one.
    For patching the "factor" is a 0/1 mask (the single α is 1: the variant's site fully patched)."""
    n_layers, n_heads = vlm.site.shape
    kind = spec.kind
    sites = kind.sites(range(chunk.layer_start, chunk.layer_stop), n_heads)
    out = torch.ones(len(spec.alphas) * len(sites), *((n_layers, n_heads) if kind.per_head else (n_layers,)))
    if not spec.family.has_alpha:
        out.zero_()
    for i, alpha in enumerate(spec.alphas):
        for j, (layer, head) in enumerate(sites):
            out[(i * len(sites) + j, layer) + ((head,) if kind.per_head else ())] = alpha
    return out


def chunk_units(shape: tuple[int, int], spec: SweepSpec, chunk: Chunk) -> int:
    """Work units of a chunk, for progress: probes × variants (a variant is one α at one site, so
    ``len(alphas) × layers × heads``, or ``len(alphas) × layers`` for a per-layer kind).
    ``shape`` is the model's ``(layers, heads)``."""
    sites = (chunk.layer_stop - chunk.layer_start) * spec.kind.width(shape[1])
    return (chunk.probe_stop - chunk.probe_start) * len(spec.alphas) * sites


def run_chunk(vlm: VLM, probes: ProbeSet, spec: SweepSpec, chunk: Chunk, engine: str = "auto",
              batch_size: int = 16, packed_chunk: int = 512, should_stop: Callable[[], bool] | None = None,
              on_units: Callable[[int], None] | None = None) -> torch.Tensor:
    """Effects of one chunk: ``[probe, alpha, layer, head]`` (``[probe, alpha, layer]`` for MLPs).

    ``should_stop`` is polled before every forward pass (each probe batch of the packed engine, each
    variant of the naive one); when it says yes, :class:`~workbench.errors.Cancelled` abandons the chunk.
    ``on_units(n)`` is told each time n more work units (:func:`chunk_units`: probe × variant) are computed —
    after each probe batch of the packed engine, after each variant of a batch in the naive one — so a caller
    can show progress inside a chunk; it only counts and changes no number."""
    def check() -> None:
        if should_stop is not None and should_stop():
            raise Cancelled(f"chunk {chunk.name} abandoned")

    engine = resolve_engine(vlm, spec, engine)
    factors = _variants(vlm, spec, chunk)
    items = probes.items[chunk.probe_start:chunk.probe_stop]
    batches = [items[s:s + batch_size] for s in range(0, len(items), batch_size)]
    run = _patch_batch if spec.family.needs_pairs else _scale_batch
    out = []
    for batch_items in batches:
        check()
        out.append(run(vlm, probes, spec, chunk, batch_items, factors, engine, packed_chunk, check, on_units))
    values = torch.cat(out).cpu()  # [probe, variant]
    n_layers = chunk.layer_stop - chunk.layer_start
    return values.reshape(spec.kind.result_shape(len(items), len(spec.alphas), n_layers, vlm.site.n_heads))


def _scale_batch(vlm: VLM, probes: ProbeSet, spec: SweepSpec, chunk: Chunk, items, factors: torch.Tensor, engine: str,
                 packed_chunk: int, check, on_units) -> torch.Tensor:
    """``[batch, variant]`` effects of an α family's variants on one probe batch."""
    be = TorchHooksBackend(vlm)
    batch = build_batch(vlm, probes, items)
    clean = be.last_logits(batch.inputs).float()
    if engine == "packed":
        head_f, mlp_f = (factors, None) if spec.kind.per_head else (None, factors)
        logits = packed_variant_logits(vlm, batch.inputs, head_f, mlp_f, chunk=packed_chunk)
        if on_units is not None:
            on_units(len(items) * len(factors))
    else:
        ivs = BUILDERS[(spec.intervention, spec.target)](factors, spec.positions)
        per_variant = []
        for iv in ivs:
            check()
            per_variant.append(be.last_logits(batch.inputs, [iv]).float())
            if on_units is not None:
                on_units(len(items))
        logits = torch.stack(per_variant, dim=1)
    return _effects(spec.metric, logits, clean, batch.option_ids, batch.answer)


def _patch_batch(vlm: VLM, probes: ProbeSet, spec: SweepSpec, chunk: Chunk, items, masks: torch.Tensor, engine: str,
                 packed_chunk: int, check, on_units) -> torch.Tensor:
    """``[batch, variant]`` normalized patching effects on one probe batch (NaN: a dropped probe).

    The source run, once, gives LD_source and the site outputs of the chunk's layers; variant v replaces site v of the
    base run by the source's (``masks [V, layer, (head)]``, one site each). LD_base comes from the base run: in the packed
    engine an extra copy that patches nothing (no separate forward: it shares the prefix pass with the patches)."""
    from workbench.causal.pairs import normalized_effect, pair_batch, pair_logit_diff

    pair = pair_batch(vlm, probes, items, spec.direction, spec.positions)
    patch_cls, per_head = PATCHES[spec.target], spec.kind.per_head
    layers = range(chunk.layer_start, chunk.layer_stop)
    source = record_sites(vlm, pair.source.inputs, spec.positions, heads=per_head, mlp=not per_head, layers=layers)
    check()
    masks = masks.bool()
    if engine == "packed":  # copy 0 patches nothing: the base run's logits, from the prefix pass the patches share
        with_base = torch.cat([torch.zeros_like(masks[:1]), masks])
        head_m, mlp_m = (with_base, None) if per_head else (None, with_base)
        logits = packed_patch_logits(vlm, pair.base.inputs, source, head_m, mlp_m, chunk=packed_chunk)
        base_logits, logits = logits[:, 0], logits[:, 1:]
        if on_units is not None:
            on_units(len(items) * len(masks))
    else:
        base_logits = record_sites(vlm, pair.base.inputs, spec.positions, heads=False, mlp=False).logits
        be = TorchHooksBackend(vlm)
        recorded = source.heads if per_head else source.mlp
        per_variant = []
        for m in masks:
            check()
            per_variant.append(be.last_logits(pair.base.inputs, [patch_cls(recorded, m, spec.positions)]).float())
            if on_units is not None:
                on_units(len(items))
        logits = torch.stack(per_variant, dim=1)
    return normalized_effect(pair_logit_diff(logits, pair), pair_logit_diff(base_logits, pair),
                             pair_logit_diff(source.logits, pair), spec.min_gap).cpu()


def _effects(metric: str, logits: torch.Tensor, clean: torch.Tensor, option_ids: torch.Tensor,
             answer: torch.Tensor) -> torch.Tensor:
    """``[batch, variant]`` effect of each variant on the metric."""
    b, v, vocab = logits.shape
    flat = logits.reshape(b * v, vocab)
    opt, ans = option_ids.repeat_interleave(v, 0), answer.repeat_interleave(v, 0)
    if metric == "kl":
        return metrics.kl(flat, clean.repeat_interleave(v, 0)).reshape(b, v)
    return (metrics.compute(metric, flat, opt, ans)
            - metrics.compute(metric, clean, option_ids, answer).repeat_interleave(v, 0)).reshape(b, v)


def assemble(vlm: VLM, spec: SweepSpec, n_probes: int, results: list[tuple[Chunk, torch.Tensor]]) -> torch.Tensor:
    """Chunk results → the full :meth:`~workbench.axis.SiteKind.result_shape` tensor. A cell no chunk covers is
    refused; NaN inside a chunk's values is data (a probe a patching sweep dropped), not a hole."""
    shape = spec.kind.result_shape(n_probes, len(spec.alphas), vlm.site.n_layers, vlm.site.n_heads)
    full = torch.full(shape, float("nan"))
    covered = torch.zeros(shape, dtype=torch.bool)
    for chunk, values in results:
        full[chunk.probe_start:chunk.probe_stop, :, chunk.layer_start:chunk.layer_stop] = values
        covered[chunk.probe_start:chunk.probe_stop, :, chunk.layer_start:chunk.layer_stop] = True
    if not covered.all():
        raise WorkbenchError("the sweep is missing chunks", "run it again to compute them")
    return full
