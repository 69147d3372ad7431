"""Executors: who computes a sweep's chunks, and where.

A sweep is cut into :class:`~workbench.sweeps.engine.Chunk` s (a layer range × a probe range) that
are independent of each other. :func:`workbench.sweeps.run.sweep` decides *which* chunks are missing
from the store and writes each result as it arrives; an executor only turns chunks into values
``spec.kind.result_shape`` (``[probe, alpha, layer, head]``, or ``[probe, alpha, layer]`` for a per-layer kind such
as MLPs), yielding them as they finish,
in any order. Because the store is written by the caller alone, atomically per chunk, an executor can
die at any moment and the next run resumes at the first missing chunk, whichever executor it uses.

- :class:`LocalExecutor` (the default): chunks in order, in this process, on the model already loaded;
  ``on_units`` in ``run_kwargs`` (see :func:`~workbench.sweeps.engine.run_chunk`) reports progress inside each chunk.
- :class:`RayExecutor` (optional extra ``pip install 'spatial-head-workbench[ray]'``): ``workers`` Ray
  actors each load the model from its folder or hub id (``vlm.source``) once, check that its weights'
  fingerprint is the caller's, and take chunks as they free up. Works on a local Ray instance (started
  and stopped by the executor when none is running) or a cluster (``address="auto"`` or ``ray://…``),
  with ``gpus_per_worker`` to place each actor on a GPU. The caller still loads the model itself (for
  its fingerprint and sites), so a 7B driver needs the host memory for one copy.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from workbench.errors import Cancelled, WorkbenchError
from workbench.models.load import VLM
from workbench.names import EXECUTORS
from workbench.probes.probeset import ProbeSet
from workbench.sweeps.engine import Chunk, SweepSpec, run_chunk


class Executor(Protocol):
    name: str

    def map(self, vlm: VLM, probes: ProbeSet, spec: SweepSpec, chunks: list[Chunk], should_stop: Callable[[], bool] | None = None,
            **run_kwargs) -> Iterator[tuple[Chunk, torch.Tensor]]:
        """Values of every chunk, yielded as each finishes. Closing the iterator early stops the work;
        ``should_stop`` saying yes while chunks are computed raises :class:`~workbench.errors.Cancelled`
        without waiting for them to finish."""
        ...


@dataclass(frozen=True)
class LocalExecutor:
    name: str = "local"

    def map(self, vlm: VLM, probes: ProbeSet, spec: SweepSpec, chunks: list[Chunk], should_stop: Callable[[], bool] | None = None,
            **run_kwargs) -> Iterator[tuple[Chunk, torch.Tensor]]:
        for chunk in chunks:
            yield chunk, run_chunk(vlm, probes, spec, chunk, should_stop=should_stop, **run_kwargs)


class _ChunkWorker:
    """One Ray actor: the model loaded once, then chunks on demand. Wrapped by ``ray.remote`` lazily."""

    def __init__(self, source: str, load_kwargs: dict, fingerprint: str, threads: int):
        from workbench.models.load import load_vlm

        torch.set_num_threads(threads)
        self.error: str | None = None
        self.vlm = load_vlm(source, **load_kwargs)
        if self.vlm.fingerprint != fingerprint:
            self.error = (f"the Ray worker loaded {source} with fingerprint {self.vlm.fingerprint[:12]}, "
                          f"not the caller's {fingerprint[:12]}")

    def run(self, probes: ProbeSet, spec: SweepSpec, chunk: Chunk, run_kwargs: dict) -> torch.Tensor:
        if self.error:
            raise WorkbenchError(self.error, "give every Ray node the same model files as the caller")
        return run_chunk(self.vlm, probes, spec, chunk, **run_kwargs)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class RayExecutor:
    """Chunks on Ray actors (see the module docstring). ``load_kwargs`` are :func:`load_vlm`'s (device, dtype …)."""

    workers: int = 1
    address: str | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    load_kwargs: dict = field(default_factory=dict)
    init_kwargs: dict = field(default_factory=dict)
    connect_timeout_s: float = 30.0  # for a given --ray-address: a cluster that accepts and never answers fails after this
    name: str = "ray"
    last_worker_pids: tuple[int, ...] = ()

    def map(self, vlm: VLM, probes: ProbeSet, spec: SweepSpec, chunks: list[Chunk], should_stop: Callable[[], bool] | None = None,
            **run_kwargs) -> Iterator[tuple[Chunk, torch.Tensor]]:
        ray = _import_ray()
        run_kwargs.pop("on_units", None)  # a callback cannot reach into the actors: progress there moves per chunk
        if self.workers < 1:
            raise WorkbenchError(f"Ray needs at least one worker, got {self.workers}", "pass --ray-workers 1 or more")
        if vlm.source is None:
            raise WorkbenchError("Ray workers load the model by folder or hub id, and this one was built in memory",
                                 "save it with save_pretrained and load it from that folder")
        if not chunks:
            return
        started = self._init(ray)
        actors: list[Any] = []
        try:
            cls = ray.remote(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker)(_ChunkWorker)
            n = min(self.workers, len(chunks))
            actors = [cls.remote(vlm.source, self.load_kwargs, vlm.fingerprint, max(1, int(self.cpus_per_worker)))
                      for _ in range(n)]
            probes_ref = ray.put(probes)
            queue = list(chunks)
            pending: dict[Any, tuple[Any, Chunk]] = {}

            def give(actor) -> None:
                chunk = queue.pop(0)
                pending[actor.run.remote(probes_ref, spec, chunk, run_kwargs)] = (actor, chunk)

            for actor in actors:
                give(actor)
            self.last_worker_pids = tuple(ray.get([a.pid.remote() for a in actors]))
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                if not ready:  # the actors are mid-chunk: a cancel kills them (finally) instead of waiting
                    if should_stop is not None and should_stop():
                        raise Cancelled(f"{len(pending)} chunks abandoned on Ray")
                    continue
                (ref,) = ready
                actor, chunk = pending.pop(ref)
                values = _get(ray, ref)
                if queue:
                    give(actor)
                yield chunk, values
        finally:
            for actor in actors:
                ray.kill(actor)
            if started:
                ray.shutdown()

    def _init(self, ray) -> bool:
        """Connect to ``address`` or, when none is given and no Ray is running here, start a local instance (and say so)."""
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home: these machines may have no network
        kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False, **self.init_kwargs}
        fix = "start it (ray start --head) or drop --ray-address"
        if self.address is None:  # a local instance: no network, its start-up has no bound of ours
            ray.init(**kwargs)
            return True
        # ray.init retries a cluster that accepts connections and never answers for ever, so it waits in a daemon
        # thread; past the bound this call fails with one line, and a process that then exits is not held by it
        outcome: dict[str, BaseException | None] = {}

        def connect() -> None:
            try:
                ray.init(address=self.address, **kwargs)
                outcome["error"] = None
            except BaseException as e:  # handed to the caller below
                outcome["error"] = e

        thread = threading.Thread(target=connect, name="ray-init", daemon=True)
        thread.start()
        thread.join(self.connect_timeout_s)
        if "error" not in outcome:
            raise WorkbenchError(f"the Ray cluster at {self.address} did not answer within {self.connect_timeout_s:g} s", fix)
        if isinstance(outcome["error"], ConnectionError):
            raise WorkbenchError(f"cannot reach the Ray cluster at {self.address} ({outcome['error']})", fix) from None
        if outcome["error"] is not None:
            raise outcome["error"]
        return True


def _get(ray, ref) -> torch.Tensor:
    """``ray.get`` with a worker's own error re-raised as itself (a WorkbenchError stays one clear line)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, WorkbenchError):
            raise cause from None
        raise WorkbenchError(f"a Ray worker failed: {cause or e}", "see the worker's log (ray logs) for the traceback") from None
    except ray.exceptions.RayActorError as e:
        raise WorkbenchError(f"a Ray worker died: {e}",
                             "check memory and the worker's log; rerun to resume from the store") from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise WorkbenchError("the Ray executor needs ray, which is not installed",
                             "pip install 'spatial-head-workbench[ray]' (or use the local executor)") from None
    return ray


def make_executor(name: str, workers: int = 1, address: str | None = None, gpus_per_worker: float = 0.0,
                  load_kwargs: dict | None = None) -> Executor:
    """The executor named ``name`` (``local`` or ``ray``), as the CLI builds it."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(workers=workers, address=address, gpus_per_worker=gpus_per_worker, load_kwargs=dict(load_kwargs or {}))
    raise WorkbenchError(f"unknown executor {name!r}", f"use one of {', '.join(EXECUTORS)}")
