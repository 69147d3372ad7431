"""The effect store: cache hits without the model, exact resume after SIGKILL, concurrent writers, checksums."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.errors import Cancelled, WorkbenchError
from workbench.store.effects import COLUMNS, CorruptChunk, EffectStore, sweep_key
from workbench.sweeps.aggregate import bootstrap_ci, by_relation, mean
from workbench.sweeps.engine import SweepSpec
from workbench.sweeps.run import sweep

SPEC = SweepSpec(alphas=(0.0, 2.0))
CHUNKING = dict(layers_per_chunk=1, probes_per_chunk=3)  # 2 layers × 2 probe ranges = 4 chunks


@pytest.fixture(scope="module")
def six(probes32):
    return probes32.filter(lambda it: int(it.id) < 6, name="six")


@pytest.fixture(scope="module")
def reference(llava_vlm, six, tmp_path_factory):
    return sweep(llava_vlm, six, SPEC, EffectStore(tmp_path_factory.mktemp("ref")), log=lambda m: None, **CHUNKING)


def test_result_shape_long_form_and_cache_hit_without_the_model(llava_vlm, six, reference, tmp_path, monkeypatch):
    store = EffectStore(tmp_path)
    first = sweep(llava_vlm, six, SPEC, store, log=lambda m: None, **CHUNKING)
    assert first.computed == 4 and first.cached == 0 and first.values.shape == (6, 2, 2, 4)
    assert torch.equal(first.values, reference.values)
    frame = pd.read_parquet(next(store.folder(first.key).glob("*.parquet")))
    assert tuple(frame.columns) == COLUMNS and len(frame) == 3 * 2 * 1 * 4

    def no_forward(*a, **k):
        raise AssertionError("the model must not run for a cached sweep")

    monkeypatch.setattr(llava_vlm.model, "forward", no_forward)
    again = sweep(llava_vlm, six, SPEC, store, log=lambda m: None, **CHUNKING)
    assert again.computed == 0 and again.cached == 4 and torch.equal(again.values, first.values)


def test_key_covers_model_probes_and_spec():
    spec = SPEC.to_json()
    k = sweep_key("m", "p", spec)
    assert k == sweep_key("m", "p", dict(spec))
    assert len({k, sweep_key("m2", "p", spec), sweep_key("m", "p2", spec), sweep_key("m", "p", {**spec, "metric": "kl"}),
                sweep_key("m", "p", {**spec, "metric_version": 99})}) == 5


def test_corrupt_chunk_is_reported_never_used_and_recomputed(llava_vlm, six, reference, tmp_path):
    store = EffectStore(tmp_path)
    res = sweep(llava_vlm, six, SPEC, store, log=lambda m: None, **CHUNKING)
    name = store.chunk_names(res.key)[1]
    path = store.folder(res.key) / f"{name}.parquet"
    table = pd.read_parquet(path)
    table.loc[0, "value"] += 1.0
    table.to_parquet(path)  # valid parquet, but the checksum no longer matches
    with pytest.raises(CorruptChunk, match=f"{name}.parquet fails its checksum"):
        store.read(res.key)
    warnings = []
    fixed = sweep(llava_vlm, six, SPEC, store, log=warnings.append, **CHUNKING)
    assert fixed.computed == 1 and any("fails its checksum" in w for w in warnings)
    assert torch.equal(fixed.values, reference.values)
    path.write_bytes(b"garbage")
    assert store.missing(res.key, [name])[0] == [name]


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from workbench.models.load import load_vlm
    from workbench.probes.probeset import ProbeSet
    from workbench.store.effects import EffectStore
    from workbench.sweeps.engine import SweepSpec
    from workbench.sweeps.run import sweep
    model, probes, store, alphas, kill_after = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    def progress(done, total):
        if done == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    res = sweep(load_vlm(model, attn_implementation="eager"), ProbeSet.load(probes),
                SweepSpec(alphas=tuple(map(float, alphas.split(",")))), EffectStore(store), progress=progress,
                layers_per_chunk=1, probes_per_chunk=3, log=lambda m: None)
    print("computed", res.computed, "cached", res.cached)
""")


def _run(llava_folder, probes_dir, store, alphas="0,2", kill_after=-1):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(llava_folder), str(probes_dir), str(store), alphas,
                             str(kill_after)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_cancel_mid_chunk_abandons_that_chunk_keeps_the_finished_ones_and_resumes(llava_vlm, six, tmp_path):
    """All positions: the naive engine, which polls ``should_stop`` before each probe batch and each variant."""
    spec = SweepSpec(alphas=(0.0, 2.0), positions="all")
    store, done, polls = EffectStore(tmp_path / "s"), [], []

    def should_stop() -> bool:
        polls.append(done[-1])  # chunks stored so far (progress reports 0 first)
        return polls.count(1) == 3  # the third poll after chunk 1 is stored: inside chunk 2, before its first variant

    with pytest.raises(Cancelled, match="cancelled after 1 of 4 chunks; chunk .* abandoned"):
        sweep(llava_vlm, six, spec, store, log=lambda m: None, progress=lambda d, t: done.append(d), should_stop=should_stop,
              **CHUNKING)
    # 1 before chunk 1; in chunk 1: 1 batch (3 probes) + 8 variants (2 α × 4 heads); 1 after it; chunk 2: its batch, then stop
    assert len(polls) == 1 + (1 + 8) + 1 + 2
    (entry,) = store.ls()
    assert entry.done == 1 and not entry.complete and not list((tmp_path / "s").rglob("*.tmp"))
    resumed = sweep(llava_vlm, six, spec, store, log=lambda m: None, **CHUNKING)
    assert (resumed.computed, resumed.cached) == (3, 1)
    whole = sweep(llava_vlm, six, spec, EffectStore(tmp_path / "whole"), log=lambda m: None, **CHUNKING)
    assert torch.equal(resumed.values, whole.values)


@pytest.mark.slow
def test_sigkilled_sweep_resumes_at_the_first_missing_chunk(llava_folder, llava_vlm, six, reference, tmp_path):
    six.save(tmp_path / "probes")
    p = _run(llava_folder, tmp_path / "probes", tmp_path / "store", kill_after=2)
    p.wait(timeout=300)
    assert p.returncode == -signal.SIGKILL
    store = EffectStore(tmp_path / "store")
    key = store.ls()[0].key
    assert store.ls()[0].done == 2 and not store.ls()[0].complete
    p = _run(llava_folder, tmp_path / "probes", tmp_path / "store")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    assert out.split() == ["computed", "2", "cached", "2"]
    assert torch.equal(sweep(llava_vlm, six, SPEC, store, log=lambda m: None, **CHUNKING).values, reference.values)
    assert store.ls()[0].key == key and store.ls()[0].complete


@pytest.mark.slow
def test_two_sweeps_writing_one_store_at_once(llava_folder, llava_vlm, six, reference, tmp_path):
    six.save(tmp_path / "probes")
    procs = [_run(llava_folder, tmp_path / "probes", tmp_path / "store", alphas) for alphas in ("0,2", "0,2", "0.5")]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    store = EffectStore(tmp_path / "store")
    entries = store.ls()
    assert len(entries) == 2 and all(e.complete for e in entries)
    assert torch.equal(sweep(llava_vlm, six, SPEC, store, log=lambda m: None, **CHUNKING).values, reference.values)
    assert not list((tmp_path / "store").rglob("*.tmp"))


def test_ls_rm_gc_and_resolve(llava_vlm, six, tmp_path):
    store = EffectStore(tmp_path)
    res = sweep(llava_vlm, six, SweepSpec(alphas=(0.0,)), store, log=lambda m: None, **CHUNKING)
    assert store.resolve(res.key[:8]) == res.key
    with pytest.raises(WorkbenchError, match="no sweeps match"):
        store.resolve("zzzz")
    stale = store.folder(res.key) / ".x.parquet.123.tmp"
    stale.write_text("half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert store.gc() == [str(stale)] and store.ls()[0].complete
    store.rm(res.key)
    assert store.ls() == []
    (store.folder(res.key)).mkdir()
    (store.folder(res.key) / "manifest.json").write_text("{oops")
    with pytest.raises(WorkbenchError, match="manifest.json is corrupt"):
        store.manifest(res.key)


def test_aggregates_by_hand():
    v = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]])  # [probe, site]
    assert mean(v).tolist() == [3.0, 6.0]
    rel = by_relation(v, ("left", "left", "above"))
    assert rel["left"].tolist() == [2.0, 4.0] and rel["above"].tolist() == [5.0, 10.0]


def _numpy_bootstrap(v: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The documented bootstrap written directly: resample rows by index (the draws read row by row from
    ``default_rng(seed).integers(0, n, n_boot·n)``), nanmean each resample, take the 2.5 / 97.5 percentiles."""
    n = v.shape[0]
    idx = np.random.default_rng(seed).integers(0, n, n_boot * n).reshape(n_boot, n)  # [boot, probe]
    with np.errstate(invalid="ignore"):
        means = np.stack([np.nanmean(v[row], axis=0) for row in idx])  # [boot, site]
    return np.nanpercentile(means, 2.5, axis=0), np.nanpercentile(means, 97.5, axis=0)


@pytest.mark.parametrize("with_nan", [False, True])
def test_bootstrap_is_the_resampled_mean_computed_directly(with_nan):
    v = np.random.default_rng(7).normal(size=(23, 5)) * [1.0, 2.0, 0.5, 3.0, 1.0]  # [probe, site]
    if with_nan:
        v[[0, 4, 9], 1] = np.nan  # probes not used at site 1 (patching stores NaN)
    low, high = bootstrap_ci(v, n_boot=300, seed=5)
    want_low, want_high = _numpy_bootstrap(v, 300, 5)
    np.testing.assert_allclose(low, want_low, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(high, want_high, rtol=1e-12, atol=1e-12)
    t_low, t_high = bootstrap_ci(torch.from_numpy(v).float(), n_boot=300, seed=5)  # a tensor in, the same numbers out
    assert t_low.dtype == torch.float32 and np.allclose(t_low.numpy(), want_low, atol=1e-6)


def test_bootstrap_interval_matches_the_normal_theory_interval_of_the_mean():
    """Seed-free: for 400 normal draws per site the 95% percentile interval of the bootstrapped mean is the mean ±
    1.96 · sd / √n (sd with ddof 0: the bootstrap's plug-in) to within 8% of its half-width; a resample over the wrong
    axis, a median instead of a mean, or a 90% interval all miss it by far more."""
    v = np.random.default_rng(11).normal(loc=[0.0, 5.0, -2.0], scale=[1.0, 0.2, 3.0], size=(400, 3))
    low, high = bootstrap_ci(v, n_boot=4000, seed=3)
    half = 1.959964 * v.std(axis=0) / np.sqrt(len(v))
    assert np.all(np.abs(low - (v.mean(0) - half)) <= 0.08 * half), (low, v.mean(0) - half)
    assert np.all(np.abs(high - (v.mean(0) + half)) <= 0.08 * half), (high, v.mean(0) + half)


def test_cli_sweep_store_round_trip(llava_folder, six, tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app

    six.save(tmp_path / "probes")
    runner = CliRunner()
    args = ["sweep", "--model", str(llava_folder), "--probes", str(tmp_path / "probes"), "--alpha", "0,2",
            "--store", str(tmp_path / "s")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "1 chunks computed (local executor), 0 from the store" in r.output and "L1H" in r.output
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "0 chunks computed (local executor), 1 from the store" in r.output
    r = runner.invoke(app, ["store", "ls", "--store", str(tmp_path / "s")])
    assert r.exit_code == 0 and "1/1" in r.output
    key = EffectStore(tmp_path / "s").ls()[0].key
    r = runner.invoke(app, ["store", "show", key[:10], "--store", str(tmp_path / "s")])
    assert r.exit_code == 0 and key in r.output and "95% CI" in r.output
    r = runner.invoke(app, ["store", "rm", key[:10], "--store", str(tmp_path / "s")])
    assert r.exit_code == 0 and EffectStore(tmp_path / "s").ls() == []
    for bad, msg in ((["--alpha", "0,x"], "is not a comma-separated list"), (["--metric", "acc"], "unknown metric"),
                     (["--engine", "packed", "--positions", "all"], "last-token interventions only")):
        r = runner.invoke(app, args[:-4] + bad + ["--store", str(tmp_path / "s")])
        assert r.exit_code == 2 and msg in r.output, r.output
    r = runner.invoke(app, ["sweep", "--model", str(llava_folder), "--probes", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_cli_heads_export_import(llava_folder, llava_vlm, six, tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.discovery.headsets import HeadSet

    store = EffectStore(tmp_path / "s")
    res = sweep(llava_vlm, six, SPEC, store, log=lambda m: None, **CHUNKING)
    runner = CliRunner()
    for suffix in (".json", ".csv"):
        r = runner.invoke(app, ["heads", "export", "--sweep", res.key[:10], "--k", "3", "--out", str(tmp_path / f"h{suffix}"),
                                "--store", str(tmp_path / "s")])
        assert r.exit_code == 0, r.output
    hs, hs_csv = HeadSet.load(tmp_path / "h.json"), HeadSet.load(tmp_path / "h.csv")
    assert (hs_csv.heads, hs_csv.scores, hs_csv.method) == (hs.heads, hs.scores, hs.method) and len(hs.heads) == 3  # two exports
    drop = -res.values[:, 0].mean(0)  # α = 0 is index 0 of SPEC.alphas
    assert drop[hs.heads[0]] == pytest.approx(float(drop.max()), abs=1e-6)
    r = runner.invoke(app, ["heads", "import", str(tmp_path / "h.json"), "--model", str(llava_folder)])
    assert r.exit_code == 0 and f"L{hs.heads[0][0]}H{hs.heads[0][1]}" in r.output
    other = HeadSet("x", "0" * 64, hs.method, hs.heads, hs.scores, hs.created).save(tmp_path / "other.json")
    r = runner.invoke(app, ["heads", "import", str(other), "--model", str(llava_folder)])
    assert r.exit_code == 2 and "made for 'x'" in r.output
    r = runner.invoke(app, ["heads", "export", "--sweep", res.key[:10], "--alpha", "0.5", "--out", str(tmp_path / "z.json"),
                            "--store", str(tmp_path / "s")])
    assert r.exit_code == 2 and "has no α = 0.5" in r.output and not (tmp_path / "z.json").exists()
