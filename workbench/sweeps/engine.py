"""Per-head (and per-MLP) effect sweeps: what happens to a metric when one site is scaled.

For every probe, every α and every site (a head ``(layer, head)``, or a layer's MLP), the effect
is the metric under that single-site intervention minus the clean metric (for ``kl`` the
divergence itself). Results are ``[probe, alpha, layer, head]`` (``[probe, alpha, layer]`` for
MLPs), aggregated by :mod:`workbench.sweeps.aggregate`.

Engines:

- ``packed`` (last-token interventions on packable families): one prefix pass per probe batch,
  all variants as packed queries (:mod:`workbench.sweeps.packed`). Exact.
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
from workbench.interventions.core import HeadScale, MlpScale
from workbench.interventions.torch_hooks import TorchHooksBackend
from workbench.models.load import VLM
from workbench.models.prompts import build_batch
from workbench.probes.probeset import ProbeSet
from workbench.sweeps.packed import check_packable, packed_variant_logits
from workbench.sweeps.spec import TARGETS, SweepSpec  # noqa: F401  (the spec lives apart from the engine; both names stay here)

ENGINES = ("auto", "packed", "naive")
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
    if engine == "auto":
        return "packed" if spec.positions == "last" and vlm.site.row.packable else "naive"
    if engine == "packed":
        if spec.positions != "last":
            raise WorkbenchError("the packed engine serves last-token interventions only",
                                 "use --engine naive for --positions all")
        check_packable(vlm)
    return engine


def _variants(vlm: VLM, spec: SweepSpec, chunk: Chunk) -> torch.Tensor:
    """Factors of every variant of the chunk: ``[alpha·layer·head, layer, head]`` or ``[alpha·layer, layer]``."""
    n_layers, n_heads = vlm.site.shape
    layers = range(chunk.layer_start, chunk.layer_stop)
    sites = ([(layer, head) for layer in layers for head in range(n_heads)] if spec.target == "heads"
             else [(layer, 0) for layer in layers])
    shape = (n_layers, n_heads) if spec.target == "heads" else (n_layers,)
    out = torch.ones(len(spec.alphas) * len(sites), *shape)
    for i, alpha in enumerate(spec.alphas):
        for j, (layer, head) in enumerate(sites):
            out[(i * len(sites) + j, layer, head) if spec.target == "heads" else (i * len(sites) + j, layer)] = alpha
    return out


def chunk_units(shape: tuple[int, int], spec: SweepSpec, chunk: Chunk) -> int:
    """Work units of a chunk, for progress: probes × variants (a variant is one α at one site, so
    ``len(alphas) × layers × heads``, or ``len(alphas) × layers`` for MLPs). ``shape`` is the model's ``(layers, heads)``."""
    sites = (chunk.layer_stop - chunk.layer_start) * (shape[1] if spec.target == "heads" else 1)
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
    heads_per = vlm.site.n_heads if spec.target == "heads" else 1
    n_layers = chunk.layer_stop - chunk.layer_start
    be = TorchHooksBackend(vlm)
    out = []
    items = probes.items[chunk.probe_start:chunk.probe_stop]
    head_f, mlp_f = (factors, None) if spec.target == "heads" else (None, factors)
    for s in range(0, len(items), batch_size):
        check()
        batch = build_batch(vlm, probes, items[s:s + batch_size])
        clean = be.last_logits(batch.inputs).float()
        n_batch = len(items[s:s + batch_size])
        if engine == "packed":
            logits = packed_variant_logits(vlm, batch.inputs, head_f, mlp_f, chunk=packed_chunk)
            if on_units is not None:
                on_units(n_batch * len(factors))
        else:
            per_variant = []
            for v in range(len(factors)):
                check()
                ivs = [HeadScale(head_f[v], spec.positions)] if head_f is not None else [MlpScale(mlp_f[v], spec.positions)]
                per_variant.append(be.last_logits(batch.inputs, ivs).float())
                if on_units is not None:
                    on_units(n_batch)
            logits = torch.stack(per_variant, dim=1)
        out.append(_effects(spec.metric, logits, clean, batch.option_ids, batch.answer))
    values = torch.cat(out)  # [probe, variant]
    values = values.reshape(len(items), len(spec.alphas), n_layers, heads_per)
    return values if spec.target == "heads" else values[..., 0]


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
    """Chunk results → the full ``[probe, alpha, layer, head]`` (or ``[probe, alpha, layer]``) tensor."""
    shape = (n_probes, len(spec.alphas), vlm.site.n_layers) + ((vlm.site.n_heads,) if spec.target == "heads" else ())
    full = torch.full(shape, float("nan"))
    for chunk, values in results:
        full[chunk.probe_start:chunk.probe_stop, :, chunk.layer_start:chunk.layer_stop] = values
    if torch.isnan(full).any():
        raise WorkbenchError("the sweep is missing chunks", "run it again to compute them")
    return full
