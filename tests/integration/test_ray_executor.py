"""The Ray executor on a local Ray instance: same matrices as the local executor, resume across executors,
cancel, and refusals (a worker whose model differs from the caller's, a model built in memory, Ray missing)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import pytest
import torch

from workbench.errors import Cancelled, WorkbenchError
from workbench.jobs.registry import pid_alive
from workbench.store.effects import EffectStore
from workbench.sweeps.engine import SweepSpec
from workbench.sweeps.executors import RayExecutor, make_executor
from workbench.sweeps.run import sweep

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")  # installed by `make test` (dev + ray extras)
pytestmark = pytest.mark.slow

SPEC = SweepSpec(alphas=(0.0, 2.0))
CHUNKING = dict(layers_per_chunk=1, probes_per_chunk=6)  # 2 layers × 4 probe ranges = 8 chunks
LOAD = {"attn_implementation": "eager"}  # as the llava_vlm fixture is loaded


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (the executor then neither starts nor stops Ray itself)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(llava_vlm, probes32, tmp_path_factory):
    return sweep(llava_vlm, probes32, SPEC, EffectStore(tmp_path_factory.mktemp("local")), log=lambda m: None, **CHUNKING)


def test_ray_sweep_equals_the_local_one(local_ray, llava_vlm, probes32, reference, tmp_path):
    executor = RayExecutor(workers=2, load_kwargs=LOAD)
    result = sweep(llava_vlm, probes32, SPEC, EffectStore(tmp_path), log=lambda m: None, executor=executor, **CHUNKING)
    assert result.computed == 8 and result.key == reference.key
    assert len(set(executor.last_worker_pids)) == 2 and os.getpid() not in executor.last_worker_pids  # two actor processes did it
    torch.testing.assert_close(result.values, reference.values, rtol=1e-5, atol=1e-6)


def test_a_sweep_started_locally_is_finished_on_ray(local_ray, llava_vlm, probes32, reference, tmp_path):
    store = EffectStore(tmp_path)
    done = []
    with pytest.raises(Cancelled, match="cancelled after 3 of 8"):
        sweep(llava_vlm, probes32, SPEC, store, log=lambda m: None, progress=lambda d, t: done.append(d),
              should_stop=lambda: bool(done and done[-1] >= 3), **CHUNKING)
    result = sweep(llava_vlm, probes32, SPEC, store, log=lambda m: None, executor=RayExecutor(workers=2, load_kwargs=LOAD),
                   **CHUNKING)
    assert (result.computed, result.cached) == (5, 3)
    torch.testing.assert_close(result.values, reference.values, rtol=1e-5, atol=1e-6)


def test_cancel_stops_the_ray_workers_and_keeps_finished_chunks(local_ray, llava_vlm, probes32, tmp_path):
    store = EffectStore(tmp_path)
    executor = RayExecutor(workers=2, load_kwargs=LOAD)
    done = []
    with pytest.raises(Cancelled):
        sweep(llava_vlm, probes32, SPEC, store, log=lambda m: None, executor=executor, progress=lambda d, t: done.append(d),
              should_stop=lambda: bool(done and done[-1] >= 2), **CHUNKING)
    (entry,) = store.ls()
    assert entry.done == max(done) >= 2 and not entry.complete
    deadline = time.monotonic() + 30
    while any(pid_alive(pid) for pid in executor.last_worker_pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(pid_alive(pid) for pid in executor.last_worker_pids), "the actors outlived the cancel"


def test_a_worker_with_another_model_is_refused(local_ray, llava_vlm, probes32, tmp_path):
    """The actor loads ``vlm.source`` and compares fingerprints: a mismatch is one clear error and nothing is stored."""
    impostor = dataclasses.replace(llava_vlm, _fingerprint="0" * 64)
    store = EffectStore(tmp_path)
    with pytest.raises(WorkbenchError, match="not the caller's 000000000000"):
        sweep(impostor, probes32, SPEC, store, log=lambda m: None, executor=RayExecutor(workers=1, load_kwargs=LOAD), **CHUNKING)
    (entry,) = store.ls()
    assert entry.done == 0


def test_refusals_before_ray_starts(llava_vlm, probes32, tmp_path, monkeypatch):
    in_memory = dataclasses.replace(llava_vlm, source=None)
    with pytest.raises(WorkbenchError, match="built in memory"):
        sweep(in_memory, probes32, SPEC, EffectStore(tmp_path), log=lambda m: None, executor=RayExecutor(), **CHUNKING)
    with pytest.raises(WorkbenchError, match="unknown executor 'dask'"):
        make_executor("dask")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(WorkbenchError, match=r"pip install 'spatial-head-workbench\[ray\]'"):
        sweep(llava_vlm, probes32, SPEC, EffectStore(tmp_path / "b"), log=lambda m: None, executor=RayExecutor(), **CHUNKING)


def test_cli_sweep_on_ray_starts_and_stops_its_own_instance(llava_folder, probes32, tmp_path):
    """No Ray running: the executor starts a local instance, uses it and shuts it down; the store has the sweep."""
    probes32.save(tmp_path / "probes")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    out = subprocess.run([sys.executable, "-m", "workbench", "sweep", "--model", str(llava_folder),
                          "--probes", str(tmp_path / "probes"),
                          "--alpha", "0,2", "--store", str(tmp_path / "s"), "--executor", "ray", "--ray-workers", "2",
                          "--layers-per-chunk", "1", "--probes-per-chunk", "12"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "4 chunks computed (ray executor)" in out.stdout
    (entry,) = EffectStore(tmp_path / "s").ls()
    assert entry.complete and entry.done == 4
    bad = subprocess.run([sys.executable, "-m", "workbench", "sweep", "--model", str(llava_folder),
                          "--probes", str(tmp_path / "probes"),
                          "--store", str(tmp_path / "s2"), "--executor", "dask"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "unknown executor 'dask'" in bad.stderr + bad.stdout
