"""Run a sweep through the store: compute only the missing chunks, then read the whole result.

``sweep(vlm, probes, spec, store)`` keys the request (model fingerprint, probe-set hash, spec),
writes the manifest, computes each chunk the store lacks (or holds corrupt, misplaced, or too old to
verify: see :mod:`workbench.store.effects`), writes it atomically,
and returns a :class:`SweepResult` read back from the store — so an interrupted sweep resumes at
the first missing chunk and gives exactly what an uninterrupted one gives.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench import clean
from workbench.errors import Cancelled, WorkbenchError
from workbench.fileio import atomic_write
from workbench.models.load import VLM
from workbench.probes.probeset import ProbeSet
from workbench.store.effects import EffectStore, sweep_key
from workbench.sweeps import aggregate
from workbench.sweeps.engine import Chunk, SweepSpec, chunk_units, plan_chunks
from workbench.sweeps.executors import Executor, LocalExecutor


@dataclass(frozen=True)
class SweepResult:
    key: str
    spec: SweepSpec
    values: torch.Tensor  # spec.kind.result_shape: [probe, alpha, layer, head] (per-head kind) or [probe, alpha, layer]
    probe_ids: tuple[str, ...]
    tasks: tuple[str, ...]
    relations: tuple[str, ...]
    computed: int  # chunks computed by this call
    cached: int  # chunks answered from the store
    dropped: int = 0  # probes a patching sweep dropped (NaN at every site: base and source too close to normalise)


def _long(values: torch.Tensor, chunk: Chunk, probes: ProbeSet, spec: SweepSpec) -> pd.DataFrame:
    v = values.cpu().numpy()
    if not spec.kind.per_head:
        v = v[..., None]  # head axis of size 1, stored as head = axis.NO_HEAD
    n_p, n_a, n_l, n_h = v.shape
    items = probes.items[chunk.probe_start:chunk.probe_stop]
    p, a, l_, h = np.meshgrid(np.arange(n_p), np.arange(n_a), np.arange(n_l), np.arange(n_h), indexing="ij")
    return pd.DataFrame({
        "layer": (l_ + chunk.layer_start).ravel().astype(np.int32),
        "head": spec.kind.stored_heads(h.ravel()).astype(np.int32),
        "alpha": np.asarray(spec.alphas, dtype=np.float64)[a.ravel()],
        "probe_id": np.asarray([it.id for it in items])[p.ravel()],
        "task": np.asarray([it.task for it in items])[p.ravel()],
        "relation": np.asarray([it.relation for it in items])[p.ravel()],
        "value": v.ravel().astype(np.float64),
    })


CLEAN_KEY = clean.MANIFEST_KEY


def clean_record(vlm: VLM, probes: ProbeSet) -> dict:
    """The un-intervened model's accuracy on ``probes`` per task / family (:mod:`workbench.clean`'s record):
    one forward pass per batch through plain torch hooks, no intervention."""
    from workbench.evaluation import score

    return clean.record(score(vlm, probes, backend="torch").by_task(), clean.counts_of(probes), clean.chance_of(probes))


def sweep(vlm: VLM, probes: ProbeSet, spec: SweepSpec, store: EffectStore, engine: str = "auto", layers_per_chunk: int = 8,
          probes_per_chunk: int = 64, progress: Callable[[int, int], None] | None = None, log: Callable[[str], None] = print,
          should_stop: Callable[[], bool] | None = None, executor: Executor | None = None,
          units: Callable[[int, int], None] | None = None, **run_kwargs) -> SweepResult:
    """Effects of ``spec`` on ``probes``, from the store where present, computed where not.

    ``progress(done, total)`` counts the chunks this call computes; ``units(done, total)`` counts their work
    units (probe × variant, :func:`~workbench.sweeps.engine.chunk_units`), moving inside a chunk with the local
    executor (per chunk with Ray), so a watcher sees progress before the first chunk is stored.

    ``should_stop`` is polled before every chunk and, by the executor, while one is computed; when it
    says yes, :class:`~workbench.errors.Cancelled` is raised with every finished chunk already stored
    (a chunk under way is abandoned), so the same call later resumes there.
    ``executor`` computes the missing chunks (default: :class:`~workbench.sweeps.executors.LocalExecutor`,
    in this process); whichever it is, this function alone writes the store, one chunk at a time.

    An empty probe set is refused before anything is written (a sweep of nothing would leave a manifest that
    plans no chunks), and so is a patching sweep (``spec.family.needs_pairs``) of probes without counterfactuals, or
    of pairs that do not align token by token when every position is patched (:func:`check_sweep_pairs`).
    ``SweepResult.dropped`` counts the probes a patching sweep dropped (stored as NaN)."""
    if len(probes) == 0:
        raise WorkbenchError(f"probe set {probes.name!r} has no probes, so there is nothing to sweep",
                             "check the probe set folder and --split (a split or filter may have left no probe)")
    if spec.family.needs_pairs:
        check_sweep_pairs(vlm, probes, spec, run_kwargs.get("batch_size", 16))
    key = sweep_key(vlm.fingerprint, probes.hash, spec.to_json())
    known = (store.folder(key) / "manifest.json").is_file()
    store.ensure(key, {"model": vlm.name, "model_fingerprint": vlm.fingerprint, "family": vlm.site.row.family,
                       "shape": list(vlm.site.shape), "probes": probes.name, "probeset_hash": probes.hash,
                       "n_probes": len(probes),
                       "spec": spec.to_json(), "layers_per_chunk": layers_per_chunk, "probes_per_chunk": probes_per_chunk,
                       "chunks": [c.name for c in plan_chunks(vlm.site.n_layers, len(probes), layers_per_chunk,
                                                              probes_per_chunk)],
                       **({} if known else {CLEAN_KEY: clean_record(vlm, probes)})})
    manifest = store.manifest(key)  # an earlier run's chunking wins, so chunks line up
    if CLEAN_KEY not in manifest:  # a sweep recorded before clean accuracy was: add it once
        manifest = {**manifest, CLEAN_KEY: clean_record(vlm, probes)}
        atomic_write(store.folder(key) / "manifest.json",
                     lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1, sort_keys=True)))
    sizes = manifest.get("layers_per_chunk"), manifest.get("probes_per_chunk")
    if not all(isinstance(n, int) and n > 0 for n in sizes):
        raise WorkbenchError(f"the manifest of sweep {key[:12]}… in {store.root} lacks its chunk sizes",
                             "run `workbench store fsck --fix`")
    chunks = plan_chunks(vlm.site.n_layers, len(probes), *sizes)
    todo, corrupt = store.missing(key, [c.name for c in chunks])
    for report in corrupt:
        log(f"warning: {report}")
    todo = set(todo)
    pending = [c for c in chunks if c.name in todo]
    if progress:
        progress(0, len(pending))
    sizes_done = {"stored": 0, "inside": 0, "total": sum(chunk_units(vlm.site.shape, spec, c) for c in pending)}
    if units:
        units(0, sizes_done["total"])

        def on_units(n: int) -> None:  # inside the chunk being computed
            sizes_done["inside"] += n
            units(sizes_done["stored"] + sizes_done["inside"], sizes_done["total"])

        run_kwargs = {**run_kwargs, "on_units": on_units}

    def check_stop(done: int) -> None:  # between chunks; inside one, the executor raises ("chunk … abandoned")
        if done < len(pending) and should_stop is not None and should_stop():
            raise Cancelled("")

    done = 0
    results = (executor or LocalExecutor()).map(vlm, probes, spec, pending, engine=engine, should_stop=should_stop, **run_kwargs)
    try:
        check_stop(0)
        for chunk, values in results:
            store.write_chunk(key, chunk.name, _long(values, chunk, probes, spec))
            done += 1
            sizes_done.update(stored=sizes_done["stored"] + chunk_units(vlm.site.shape, spec, chunk), inside=0)
            if units:
                units(sizes_done["stored"], sizes_done["total"])
            if progress:
                progress(done, len(pending))
            check_stop(done)
    except Cancelled as e:
        kept = len(chunks) - len(pending) + done  # this sweep's chunks in the store: earlier runs' and this one's
        if kept == 0:
            raise Cancelled(f"sweep {key[:12]} cancelled before any chunk finished: nothing stored") from None
        raise Cancelled(f"sweep {key[:12]} cancelled after {done} of {len(pending)} chunks{f'; {e}' if str(e) else ''}; "
                        f"{kept} of {len(chunks)} chunks kept in the store; rerun to resume") from None
    finally:
        results.close()  # an executor stops its remaining work (Ray kills its actors)
    values = torch.from_numpy(store.read_result(key, [it.id for it in probes.items])).float()  # the one long → dense reader
    return SweepResult(key=key, spec=spec, values=values,
                       probe_ids=tuple(it.id for it in probes),
                       tasks=tuple(it.task for it in probes), relations=tuple(it.relation for it in probes),
                       computed=len(pending), cached=len(chunks) - len(pending),
                       dropped=int(aggregate.dropped(values).sum()) if spec.family.needs_pairs else 0)


def check_sweep_pairs(vlm: VLM, probes: ProbeSet, spec: SweepSpec, batch_size: int = 16) -> None:
    """A patching sweep's refusals, before its manifest is written: probes without a counterfactual (no model work),
    and, for ``positions="all"``, pairs whose prompts do not align token by token (their batches are built, in the
    sweep's batches, so the check sees the padding the sweep will — tokenising only, no forward pass)."""
    from workbench.causal.checks import check_pairs
    from workbench.causal.pairs import pair_batch

    check_pairs(probes, probes.items)
    if spec.positions == "all":
        for s in range(0, len(probes), batch_size):
            pair_batch(vlm, probes, probes.items[s:s + batch_size], spec.direction, spec.positions)
