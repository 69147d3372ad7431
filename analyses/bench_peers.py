"""The workbench's sweeps against the loops a user of the peer libraries would write, on the organism (CPU).

Called from :mod:`analyses.bench_sweep` (one run, one results file); ``.venv/bin/python analyses/bench_peers.py
[--probes 16] [--peer-variants 0]`` prints the two peer tables alone. Every loop computes the same numbers on the
same probe batch — ``n`` spatial probes of the organism's fixed evaluation set (``eval_probes(0)``, the first ``n``
that have a counterfactual), built once with ``build_batch`` and handed to every tool as the same tensors
(``input_ids [n, seq]``, ``attention_mask``, ``pixel_values [n, 3, 64, 64]``; the patching rows also the
counterfactuals' batch) — and each table says how far each peer's numbers are from the workbench's packed path.

Head sweep (last token, α ∈ {0, 0.5, 2} on each of the 6 × 8 heads: 144 variants), effect = the logit difference
(correct option minus the best wrong one, :func:`workbench.metrics.logit_diff`) under the variant minus the clean
one, ``[probe, alpha, layer, head]``:

    workbench packed  ``run_chunk(engine="packed")`` over the whole model: it builds its own batch, runs the clean
                      forward, one prefix pass and the 144 variants as packed queries
    workbench naive   ``run_chunk(engine="naive")``: one forward per variant over the batch
    TransformerLens 4 ``TransformerBridge.boot_transformers(folder)``, then the clean ``bridge(ids, **image inputs)``
                      and one ``bridge.run_with_hooks(ids, fwd_hooks=[(f"blocks.{l}.attn.hook_z", fn)],
                      attention_mask=…, pixel_values=…)`` per (head, α), ``fn`` scaling ``z[:, -1, h]`` (``hook_z`` is
                      ``[batch, seq, head, head_dim]``)
    nnsight           one ``with model.trace(**inputs):`` per (head, α) on the nnsight model the workbench loaded
                      (nnsight's ``TransformersModel`` over the folder), scaling the slice
                      ``o_proj.input[:, -1, h·d:(h+1)·d]`` of ``model.model.language_model.layers[l].self_attn``
                      and saving ``model.output.logits[:, -1]``

The peers' loops are written here as their users would write them, on each library's public API — not through the
workbench's backends. The metric is the workbench's function for every tool (the metric is not what is timed: it
is a few microseconds). Peers start from the built batch; the workbench's time includes building it (conservative
against the workbench).

Patching (last token, each head's output replaced by its output in the source run: ``noising``, base = the clean
probes, source = their counterfactuals, paired by ``pair_batch``), value = the normalized effect (patched − base) /
(source − base) of the answer-vs-foil logit difference (:mod:`workbench.causal.pairs`), ``[probe, layer, head]``;
every tool runs its own base and source forwards:

    workbench packed / naive   ``run_chunk`` with the patch spec (``engine="packed"``: the base and source runs
                               recorded once, ``packed_patch_logits``; ``"naive"``: one forward per head)
    TransformerLens 4          ``bridge.run_with_cache(source ids, names_filter=hook_z names, …)``, then one
                               ``run_with_hooks`` per head writing the cached source ``z[:, -1, h]`` into the base run
    nnsight                    one trace over the source saving every layer's ``o_proj.input[:, -1]``, then one trace
                               per head setting the base's slice to the source's

Timing: the workbench packed sweep is the median of ``repeats`` runs after a warm-up run (it is short, so one
run is at the mercy of the machine's other load), and it is re-timed right before every other row: each ratio is a
row over the packed time measured next to it (column "packed next to it"), so both see the same load on a shared
machine; every other loop runs once after a one-variant warm-up call (each of
its forwards has the same shape, so one run is a steady state), as in :mod:`bench_sweep`. ``--peer-variants N`` times
only N of a peer's variants, evenly spread, and scales by the forwards (``(1 + total) / (1 + N)``, or ``2 +`` for
patching: the clean / base and source runs are not scaled; marked ``(est. from N)``; the equality check then covers
those N). Memory (:class:`PeakMemory`): the peak resident set size above the one at the start of the loop,
sampled every 5 ms from ``/proc/self/statm`` by a thread (tracemalloc does not see torch's allocations; getrusage's
maxrss is the process's lifetime peak, which an earlier, larger step would hide). The organism is small (~20 MB of
weights, 16 prompts of ~33 tokens), so these peaks are a few MiB: the loops' transient activations.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import torch

from workbench import metrics
from workbench.causal.pairs import PairBatch, normalized_effect, pair_batch, pair_logit_diff
from workbench.models.load import VLM
from workbench.models.prompts import Batch, build_batch
from workbench.probes.probeset import ProbeSet
from workbench.sweeps.spec import SweepSpec

ALPHAS = (0.0, 0.5, 2.0)
TOL = 1e-4  # fp32: the loops differ only in summation order (and the bridge's position ids, see tl_backend)


def rss() -> int:
    """This process's resident set size in bytes, from ``/proc/self/statm`` (Linux; 0 where it is absent)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _trim() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``) so that RSS at the start of a block counts what is
    live, not what earlier steps freed into malloc's arenas (which would hide a block's own transient peak)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory above the start of a ``with`` block, in MiB (:attr:`mib`).

    CUDA: ``torch.cuda.max_memory_allocated`` after a reset, minus what was allocated at the start (the caching
    allocator's view: tensors, not reserved blocks). CPU: the resident set size sampled every ``every`` seconds by a
    thread (``/proc/self/statm``), after freed heap memory is handed back to the OS (:func:`_trim`); tracemalloc does
    not see torch's allocations, and getrusage's maxrss is the process's lifetime peak, which an earlier, larger step
    hides."""

    def __init__(self, device: torch.device | str = "cpu", every: float = 0.005):
        self.cuda = torch.device(device).type == "cuda"
        self.every, self.peak, self.start = every, 0, 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            _trim()
            self.start = self.peak = rss()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss())

    @property
    def mib(self) -> float:
        return max(0, self.peak - self.start) / 2**20


def measure(fn, warmup=None, repeats: int = 1) -> tuple[float, float, object]:
    """``(median seconds of repeats, largest peak MiB above the start, the last result)``, after one call of
    ``warmup`` (if given). CPU only (no CUDA synchronisation: the peers' loops run on the CPU here)."""
    if warmup is not None:
        warmup()
    times, peaks, out = [], [], None
    for _ in range(repeats):
        with PeakMemory() as mem:
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        peaks.append(mem.mib)
    return statistics.median(times), max(peaks), out


def spatial_probes(n: int) -> ProbeSet:
    """The first ``n`` probes of the organism's evaluation set that have a counterfactual (spatial items)."""
    from workbench.organism.probesets import eval_probes

    ps = eval_probes(0)
    keep = {it.id for it in [it for it in ps.items if it.has_counterfactual][:n]}
    return ps.filter(lambda it: it.id in keep)


def variant_list(shape: tuple[int, int], alphas=ALPHAS) -> list[tuple[int, int, int, float]]:
    """``(alpha index, layer, head, α)`` in the engine's order (α outermost, then layer, then head)."""
    layers, heads = shape
    return [(i, layer, head, a) for i, a in enumerate(alphas) for layer in range(layers) for head in range(heads)]


def spread(items: list, n: int) -> list:
    """``n`` of ``items`` evenly spread over the list (all of them when ``n`` is 0 or ≥ the length)."""
    if n <= 0 or n >= len(items):
        return items
    return [items[i] for i in torch.linspace(0, len(items) - 1, n).round().long().tolist()]


def logit_diff(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``[probe]`` logit difference from last-position logits ``[probe, vocab]``."""
    return metrics.logit_diff(logits.float(), batch.option_ids, batch.answer)


# ------------------------------------------------------------------------------------------------ the workbench's loops
HEAD_SPEC = SweepSpec(alphas=ALPHAS, metric="logit_diff")  # scale every head at the last token
PATCH_SPEC = SweepSpec(intervention="patch", direction="noising")  # patch every head at the last token from the cf


def workbench_sweep(vlm: VLM, probes: ProbeSet, spec: SweepSpec, engine: str) -> torch.Tensor:
    """``[probe, alpha, layer, head]`` through the workbench's engine, the whole model and every probe as one chunk and
    one batch (scale: logit-difference effects; patch: normalized effects, α axis of 1)."""
    from workbench.sweeps.engine import Chunk, run_chunk

    chunk = Chunk(0, vlm.site.n_layers, 0, len(probes))
    return run_chunk(vlm, probes, spec, chunk, engine=engine, batch_size=len(probes), packed_chunk=1024)


# ------------------------------------------------------------------------------------------------ TransformerLens 4
def boot_bridge(folder):
    """TransformerLens 4's bridge over the model folder, as its docs boot it (its on-the-fly ``pip install
    torchvision`` fallback switched off, as the workbench's TL backend does: nothing is installed here)."""
    from transformer_lens.model_bridge import TransformerBridge

    from workbench.interventions.tl_backend import _no_pip_install

    with _no_pip_install():
        return TransformerBridge.boot_transformers(str(folder), device="cpu", dtype=torch.float32)


def _image_kwargs(inputs: dict) -> dict:
    return {k: v for k, v in inputs.items() if k != "input_ids"}  # attention_mask, pixel_values


@torch.no_grad()
def tl_head_sweep(bridge, batch: Batch, shape, variants) -> torch.Tensor:
    """TL4 user loop: the clean forward, then one ``run_with_hooks`` per (head, α) on ``hook_z``.
    Returns ``[probe, len(variants)]`` effects."""
    ids, kw = batch.inputs["input_ids"], _image_kwargs(batch.inputs)
    clean = logit_diff(bridge(ids, **kw)[:, -1], batch)
    out = []
    for _, layer, head, alpha in variants:
        def scale(z, hook, head=head, alpha=alpha):  # z [batch, seq, head, head_dim]
            z[:, -1, head] = z[:, -1, head] * alpha
            return z

        logits = bridge.run_with_hooks(ids, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", scale)], **kw)
        out.append(logit_diff(logits[:, -1], batch) - clean)
    return torch.stack(out, dim=1)


@torch.no_grad()
def tl_patch_sweep(bridge, pair: PairBatch, sites) -> torch.Tensor:
    """TL4 user loop for last-token activation patching: ``run_with_cache`` over the source (its ``hook_z`` and its
    logits), the base's clean forward, then one ``run_with_hooks`` per head writing the source's ``z[:, -1, h]`` into
    the base run. Returns ``[probe, len(sites)]`` normalized effects."""
    src_logits, cache = bridge.run_with_cache(pair.source.inputs["input_ids"],
                                              names_filter=lambda name: name.endswith("attn.hook_z"),
                                              **_image_kwargs(pair.source.inputs))
    ids, kw = pair.base.inputs["input_ids"], _image_kwargs(pair.base.inputs)
    base = pair_logit_diff(bridge(ids, **kw)[:, -1].float(), pair)
    out = []
    for layer, head in sites:
        src = cache[f"blocks.{layer}.attn.hook_z"][:, -1, head]  # [batch, head_dim]

        def patch(z, hook, head=head, src=src):  # z [batch, seq, head, head_dim]
            z[:, -1, head] = src
            return z

        logits = bridge.run_with_hooks(ids, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch)], **kw)
        out.append(pair_logit_diff(logits[:, -1].float(), pair))
    return normalized_effect(torch.stack(out, dim=1), base, pair_logit_diff(src_logits[:, -1].float(), pair))


# ------------------------------------------------------------------------------------------------ nnsight
def _o_proj(model, layer: int):
    """The envoy of layer ``layer``'s attention output projection (its input: the heads' outputs, concatenated)."""
    return model.model.language_model.layers[layer].self_attn.o_proj


@torch.no_grad()
def nnsight_head_sweep(model, batch: Batch, head_dim: int, variants) -> torch.Tensor:
    """nnsight user loop: one trace per (head, α), scaling the head's slice of ``o_proj``'s input at the last token.
    Returns ``[probe, len(variants)]`` effects."""
    with model.trace(**batch.inputs):
        clean_logits = model.output.logits[:, -1].save()
    clean = logit_diff(clean_logits, batch)
    out = []
    for _, layer, head, alpha in variants:
        sl = slice(head * head_dim, (head + 1) * head_dim)
        with model.trace(**batch.inputs):
            x = _o_proj(model, layer).input  # [batch, seq, heads · head_dim]
            x[:, -1, sl] = x[:, -1, sl] * alpha
            logits = model.output.logits[:, -1].save()
        out.append(logit_diff(logits, batch) - clean)
    return torch.stack(out, dim=1)


@torch.no_grad()
def nnsight_patch_sweep(model, pair: PairBatch, n_layers: int, head_dim: int, sites) -> torch.Tensor:
    """nnsight user loop for last-token patching: one trace over the source saving each layer's ``o_proj`` input at the
    last token (and its logits), one over the base (its logits), then one trace per head setting the base's slice to
    the source's. Returns ``[probe, len(sites)]`` normalized effects."""
    cached = []  # each [batch, heads · d]; made outside the trace (nnsight hands back only saved values it assigns)
    with model.trace(**pair.source.inputs):
        for layer in range(n_layers):
            cached.append(_o_proj(model, layer).input[:, -1].save())
        src_logits = model.output.logits[:, -1].save()
    with model.trace(**pair.base.inputs):
        base_logits = model.output.logits[:, -1].save()
    out = []
    for layer, head in sites:
        sl = slice(head * head_dim, (head + 1) * head_dim)
        with model.trace(**pair.base.inputs):
            _o_proj(model, layer).input[:, -1, sl] = cached[layer][:, sl]
            logits = model.output.logits[:, -1].save()
        out.append(pair_logit_diff(logits.float(), pair))
    return normalized_effect(torch.stack(out, dim=1), pair_logit_diff(base_logits.float(), pair),
                             pair_logit_diff(src_logits.float(), pair))


# ------------------------------------------------------------------------------------------------ the comparison
def compare(vlm: VLM, n_probes: int = 16, repeats: int = 3, peer_variants: int = 0, log=print) -> dict[str, list[dict]]:
    """Both tables' rows: ``{"heads": [...], "patch": [...]}``, each row ``{tool, loop, forwards, seconds, peak_mib,
    max_diff, timed, total, ref}`` (``ref``: the packed sweep's seconds timed right before the row; ``max_diff``: max
    |row − workbench packed| over the variants the row computed, the workbench packed row's own against the workbench
    naive one). ``vlm`` is the organism from ``load_vlm`` (its
    ``nn`` is nnsight's model over the same weights); ``peer_variants`` > 0 times that many variants of each peer loop
    and scales (see the module docstring)."""
    site = vlm.site
    layers, heads = site.shape
    probes = spatial_probes(n_probes)
    batch = build_batch(vlm, probes, probes.items)
    pair = pair_batch(vlm, probes, probes.items, "noising")
    log(f"peers: {len(probes)} probes, prompts of {batch.inputs['input_ids'].shape[1]} tokens (padded), booting the bridge")
    bridge = boot_bridge(vlm.source)
    out: dict[str, list[dict]] = {"heads": [], "patch": []}

    # head sweep: α ∈ ALPHAS on every head, [probe, alpha, layer, head]
    variants = variant_list(site.shape)
    total = len(variants)
    timed = spread(variants, peer_variants)
    rows = out["heads"]
    t, mem, packed = measure(lambda: workbench_sweep(vlm, probes, HEAD_SPEC, "packed"),
                             warmup=lambda: workbench_sweep(vlm, probes, HEAD_SPEC, "packed"), repeats=repeats)
    tn, mem_n, naive = measure(lambda: workbench_sweep(vlm, probes, HEAD_SPEC, "naive"))
    ref = packed.reshape(len(probes), -1)  # [probe, variant] in the engine's order (α, layer, head)
    idx = [a * layers * heads + layer * heads + head for a, layer, head, _ in timed]
    rows.append(dict(tool="workbench packed", loop="run_chunk(engine='packed')", forwards="clean, prefix, 1 packed",
                     seconds=t, peak_mib=mem, max_diff=float((packed - naive).abs().max()), timed=total, total=total))
    rows.append(dict(tool="workbench naive", loop="run_chunk(engine='naive')", forwards=f"1 + {total}", seconds=tn,
                     peak_mib=mem_n, max_diff=float((naive - packed).abs().max()), timed=total, total=total))
    log(f"  workbench packed {t:.3f} s, naive {tn:.2f} s; TransformerLens 4 ({len(timed)} variants)")
    def packed_now(spec: SweepSpec) -> float:  # the packed sweep re-timed next to each loop: both see the same load
        return measure(lambda: workbench_sweep(vlm, probes, spec, "packed"), repeats=repeats)[0]

    rows[-1]["ref"] = packed_now(HEAD_SPEC)
    rows[0]["ref"] = t
    ref_t = packed_now(HEAD_SPEC)
    tt, mem_t, tl = measure(lambda: tl_head_sweep(bridge, batch, site.shape, timed),
                            warmup=lambda: tl_head_sweep(bridge, batch, site.shape, timed[:1]))
    rows.append(dict(tool="TransformerLens 4", loop="run_with_hooks per (head, α), hook_z", forwards=f"1 + {len(timed)}",
                     seconds=tt * (1 + total) / (1 + len(timed)), peak_mib=mem_t,
                     max_diff=float((tl - ref[:, idx]).abs().max()), timed=len(timed), total=total, ref=ref_t))
    log(f"  TransformerLens 4 {tt:.2f} s; nnsight")
    ref_t = packed_now(HEAD_SPEC)
    tz, mem_z, nz = measure(lambda: nnsight_head_sweep(vlm.nn, batch, site.head_dim, timed),
                            warmup=lambda: nnsight_head_sweep(vlm.nn, batch, site.head_dim, timed[:1]))
    rows.append(dict(tool="nnsight", loop="model.trace per (head, α), o_proj input", forwards=f"1 + {len(timed)}",
                     seconds=tz * (1 + total) / (1 + len(timed)), peak_mib=mem_z,
                     max_diff=float((nz - ref[:, idx]).abs().max()), timed=len(timed), total=total, ref=ref_t))
    log(f"  nnsight {tz:.2f} s")

    # patching: every head at the last token, noising, [probe, 1, layer, head] normalized effects
    sites = [(layer, head) for layer in range(layers) for head in range(heads)]
    total = len(sites)
    timed = spread(sites, peer_variants)
    idx = [layer * heads + head for layer, head in timed]
    rows = out["patch"]
    t, mem, packed = measure(lambda: workbench_sweep(vlm, probes, PATCH_SPEC, "packed"),
                             warmup=lambda: workbench_sweep(vlm, probes, PATCH_SPEC, "packed"), repeats=repeats)
    tn, mem_n, naive = measure(lambda: workbench_sweep(vlm, probes, PATCH_SPEC, "naive"))
    ref = packed.reshape(len(probes), -1)
    rows.append(dict(tool="workbench packed", loop="run_chunk(patch, engine='packed')",
                     forwards="base, source, prefix, 1 packed", seconds=t, peak_mib=mem,
                     max_diff=float((packed - naive).abs().max()), timed=total, total=total))
    rows.append(dict(tool="workbench naive", loop="run_chunk(patch, engine='naive')", forwards=f"2 + {total}", seconds=tn,
                     peak_mib=mem_n, max_diff=float((naive - packed).abs().max()), timed=total, total=total))
    log(f"  patching: workbench packed {t:.3f} s, naive {tn:.2f} s; TransformerLens 4")
    rows[0]["ref"], rows[1]["ref"] = t, packed_now(PATCH_SPEC)
    ref_t = packed_now(PATCH_SPEC)
    tt, mem_t, tl = measure(lambda: tl_patch_sweep(bridge, pair, timed),
                            warmup=lambda: tl_patch_sweep(bridge, pair, timed[:1]))
    rows.append(dict(tool="TransformerLens 4", loop="run_with_cache(source), run_with_hooks per head",
                     forwards=f"2 + {len(timed)}",
                     seconds=tt * (2 + total) / (2 + len(timed)), peak_mib=mem_t,
                     max_diff=float((tl - ref[:, idx]).abs().max()),
                     timed=len(timed), total=total, ref=ref_t))
    log(f"  TransformerLens 4 {tt:.2f} s; nnsight")
    ref_t = packed_now(PATCH_SPEC)
    tz, mem_z, nz = measure(lambda: nnsight_patch_sweep(vlm.nn, pair, layers, site.head_dim, timed),
                            warmup=lambda: nnsight_patch_sweep(vlm.nn, pair, layers, site.head_dim, timed[:1]))
    rows.append(dict(tool="nnsight", loop="model.trace per head (source traced once)", forwards=f"2 + {len(timed)}",
                     seconds=tz * (2 + total) / (2 + len(timed)), peak_mib=mem_z,
                     max_diff=float((nz - ref[:, idx]).abs().max()),
                     timed=len(timed), total=total, ref=ref_t))
    log(f"  nnsight {tz:.2f} s")
    gap = (pair_logit_diff(record_logits(vlm, pair.source.inputs), pair)
           - pair_logit_diff(record_logits(vlm, pair.base.inputs), pair)).abs()
    out["min_gap"] = float(gap.min())  # the smallest |LD_source − LD_base|: the normalisation's divisor
    return out


def record_logits(vlm: VLM, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return vlm.model(**inputs).logits[:, -1].float()


def tables(result: dict, width: int = 160) -> None:
    """Print both comparison tables (rich), the speedups against the workbench packed row."""
    from rich.console import Console
    from rich.table import Table

    titles = {"heads": "head sweep vs the peers: organism, CPU, α ∈ {0, 0.5, 2} on every head, last token, "
                       "logit-difference effects [probe, alpha, layer, head]",
              "patch": "last-token patching vs the peers: organism, CPU, every head, noising (counterfactual → clean), "
                       "normalized effects [probe, layer, head]"}
    for key in ("heads", "patch"):
        rows = result[key]
        t = Table(title=titles[key])
        for c in ("tool", "loop", "forwards", "seconds", "peak RSS MiB", "packed next to it", "÷ packed next to it",
                  "max |Δ| vs packed"):
            t.add_column(c, justify="right")
        for r in rows:
            secs = f"{r['seconds']:.3f}" + (f" (est. from {r['timed']})" if r["timed"] < r["total"] else "")
            vs = "-" if r is rows[0] else f"{r['seconds'] / r['ref']:.1f}x"
            t.add_row(r["tool"], r["loop"], r["forwards"], secs, f"{r['peak_mib']:.1f}", f"{r['ref']:.3f}", vs,
                      f"{r['max_diff']:.1e}")
        if key == "patch":
            t.caption = (f"max |Δ| on normalized effects (patched − base) / (source − base); "
                         f"the smallest |source − base| is {result['min_gap']:.2f}")
        Console(width=width).print(t)


def main() -> None:
    """The two peer tables alone (the same code :mod:`bench_sweep` runs after its own rows)."""
    import argparse
    from importlib.metadata import version

    from workbench.models.load import load_vlm
    from workbench.organism import DEFAULT_MODEL

    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", type=int, default=16)
    ap.add_argument("--peer-variants", type=int, default=0, help="variants of each peer loop timed and scaled (0 = all)")
    args = ap.parse_args()
    print(f"versions: torch {torch.__version__}, transformer-lens {version('transformer-lens')}, nnsight {version('nnsight')}; "
          f"{torch.get_num_threads()} torch threads; load average at the start: {os.getloadavg()}")
    tables(compare(load_vlm(DEFAULT_MODEL), args.probes, peer_variants=args.peer_variants))
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
