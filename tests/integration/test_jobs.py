"""Background jobs end to end: real worker processes running sweeps and ScAle training on the organism."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from workbench.jobs import JobRegistry, sweep_params, train_params
from workbench.organism import DEFAULT_MODEL, DEFICIT_MODEL
from workbench.probes import ProbeConfig, generate
from workbench.store.effects import EffectStore
from workbench.store.library import Library

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def probes_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probes") / "spatial32"
    generate(ProbeConfig(n=32, seed=3, tasks=("relation", "verify"), test_fraction=0.0)).save(folder)
    return folder


def test_sweep_job_stores_its_matrix_probes_and_attention(tmp_path, probes_dir):
    reg = JobRegistry(tmp_path)
    job = reg.submit("sweep", sweep_params(tmp_path, str(DEFAULT_MODEL), str(probes_dir), "0, 2", probes_per_chunk=16))
    done = reg.wait(job.id, timeout=300)
    assert done.state == "done", done.error
    assert done.fraction == 1.0 and done.result["computed"] == 2 and done.result["cached"] == 0
    entry = EffectStore(tmp_path).ls()[0]
    assert entry.key == done.result["key"] and entry.complete
    lib = Library(tmp_path)
    maps = lib.attention(entry.manifest["model_fingerprint"], entry.manifest["probeset_hash"])
    vision = json.loads((DEFAULT_MODEL / "config.json").read_text())["vision_config"]
    side = vision["image_size"] // vision["patch_size"]  # the organism's image-token grid
    assert tuple(maps.attn.shape) == (16, 6, 8, side * side) and maps.grid == (side, side)
    assert float(maps.attn.sum(-1).max()) <= 1.0 + 1e-5  # softmax mass on the image, at most all of it
    assert len(lib.probes(entry.manifest["probeset_hash"])) == 32


def test_cancelled_sweep_leaves_whole_chunks_and_resumes(tmp_path, probes_dir):
    reg = JobRegistry(tmp_path)
    params = sweep_params(tmp_path, str(DEFAULT_MODEL), str(probes_dir), "0, 0.5, 2", positions="all", probes_per_chunk=4,
                          attention_probes=0)
    job = reg.submit("sweep", params)
    deadline = time.monotonic() + 300
    while reg.get(job.id).progress.get("chunks_done", 0) < 1:  # progress "done" counts work units, inside chunks
        assert time.monotonic() < deadline and not reg.get(job.id).final, reg.get(job.id).error
        time.sleep(0.1)
    reg.cancel(job.id)
    cancelled = reg.wait(job.id, timeout=300)
    assert cancelled.state == "cancelled" and "cancelled after" in cancelled.error
    store = EffectStore(tmp_path)
    (entry,) = store.ls()
    todo, corrupt = store.missing(entry.key, entry.manifest["chunks"])
    assert corrupt == [] and 0 < entry.done < entry.expected == 8 and len(todo) == entry.expected - entry.done
    assert not list(store.folder(entry.key).glob(".*.tmp"))
    again = reg.wait(reg.submit("sweep", params).id, timeout=300)
    assert again.state == "done" and again.result["cached"] == entry.done and again.result["computed"] == 8 - entry.done


def test_failures_come_back_as_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reg = JobRegistry(tmp_path)
    params = sweep_params(tmp_path, "nobody/no-such-model")
    job = reg.wait(reg.submit("sweep", params).id, timeout=120)
    assert job.state == "failed" and "HF_HUB_OFFLINE" in job.error and "\n" not in job.error
    # a worker that dies without a word is reported, not left "running" forever
    dead = reg.submit("sweep", params, start=False)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (reg.folder(dead.id) / "pid").write_text(str(gone.pid))
    assert reg.get(dead.id).state == "failed" and "worker stopped" in reg.get(dead.id).error


def test_training_job_reports_curves_scores_and_saves(tmp_path):
    reg = JobRegistry(tmp_path)
    params = train_params(tmp_path, str(DEFICIT_MODEL), "fix", mode="attn", epochs=1, n_train=48, lr=3e-3, batch=16)
    job = reg.wait(reg.submit("train", params).id, timeout=300)
    assert job.state == "done", job.error
    steps = [p for p in job.points if p["kind"] == "step"]
    assert len(steps) == 3 and [p["global_step"] for p in steps] == [1, 2, 3]  # 43 training probes (5 for validation), batch 16
    assert (tmp_path / "scales" / "fix.safetensors").is_file() and (tmp_path / "scales" / "fix.json").is_file()
    # the job's numbers are the deficit model's on the organism's held-out set, without and with the saved vector,
    # recomputed here in this process from the files alone
    from workbench.evaluation import score
    from workbench.jobs.tasks import default_test_probes
    from workbench.models.load import load_vlm
    from workbench.scale.vector import ScaleVector

    vlm, test = load_vlm(DEFICIT_MODEL, attn_implementation="eager"), default_test_probes()
    before = score(vlm, test).by_task()
    after = score(vlm, test, ScaleVector.load(tmp_path / "scales" / "fix.safetensors").interventions()).by_task()
    assert (job.result["n_test"], job.result["test_probes"]) == (len(test), test.name)
    assert job.result["accuracy_before"] == pytest.approx(before["spatial"], abs=1e-9)
    assert job.result["accuracy_after"] == pytest.approx(after["spatial"], abs=1e-9)
    assert job.result["before"] == pytest.approx(before, abs=1e-9) and job.result["after"] == pytest.approx(after, abs=1e-9)
    saved = json.loads((tmp_path / "scales" / "fix.json").read_text())["metrics"]["eval"]
    assert {"spatial", "control", "all"} <= set(saved["before"]) and {"spatial", "control", "all"} <= set(saved["after"])
    assert saved["accuracy_before"] == saved["before"]["spatial"] == job.result["before"]["spatial"]
    # asked to stop before it starts: cancelled, nothing saved
    early = reg.submit("train", {**params, "name": "never"}, start=False)
    reg.cancel(early.id)
    reg.start(early.id)
    assert reg.wait(early.id, timeout=120).state == "cancelled"
    assert not (tmp_path / "scales" / "never.safetensors").exists()
