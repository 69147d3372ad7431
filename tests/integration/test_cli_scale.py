"""``workbench scale``: train → eval/compare → export/import on a tiny LLaVA folder, and bad input."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from workbench.cli import app
from workbench.scale.vector import ScaleVector

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def probe_folder(tmp_path_factory, probes32):
    return probes32.save(tmp_path_factory.mktemp("p") / "probes")


@pytest.mark.slow
def test_train_eval_compare_export_import(llava_folder, probe_folder, tmp_path):
    store = tmp_path / "store"
    common = ["--model", llava_folder, "--probes", probe_folder, "--store", store]
    r = run("scale", "train", *common, "--split", "", "--out", "a", "--epochs", "1", "--batch", "8", "--lr", "0.05")
    assert r.exit_code == 0, r.output
    r = run("scale", "train", *common, "--split", "", "--out", "b", "--mode", "attn", "--positions", "all", "--epochs", "1",
            "--batch", "8", "--lr", "0.05")
    assert r.exit_code == 0, r.output
    a, b = ScaleVector.load(store / "scales" / "a"), ScaleVector.load(store / "scales" / "b")
    assert a.mode == "both" and b.mode == "attn" and b.positions == "all" and torch.equal(b.mlp, torch.ones_like(b.mlp))
    assert len(a.metrics["history"]) == 1 and a.metrics["config"]["lr"] == 0.05
    r = run("scale", "compare", "a", "b", *common, "--split", "", "--heatmap", tmp_path / "diff.png")
    assert r.exit_code == 0, r.output
    assert "none" in r.output and "spatial 95% CI" in r.output and (tmp_path / "diff.png").stat().st_size > 1000
    r = run("scale", "eval", "a", *common, "--split", "")
    assert r.exit_code == 0 and "a" in r.output
    r = run("scale", "export", "a", "--npy", tmp_path / "npy", "--store", store)
    assert r.exit_code == 0, r.output
    assert np.allclose(np.load(tmp_path / "npy" / "eff_attn.npy"), a.attn.numpy())
    r = run("scale", "import", "--attn", tmp_path / "npy" / "eff_attn.npy", "--mlp", tmp_path / "npy" / "eff_mlp.npy",
            "--model", llava_folder, "--out", tmp_path / "imported.safetensors")
    assert r.exit_code == 0, r.output
    back = ScaleVector.load(tmp_path / "imported")
    assert torch.equal(back.attn, a.attn) and back.model_fingerprint == a.model_fingerprint


def test_bad_input_is_one_line_and_exit_2(llava_folder, probe_folder, tmp_path):
    r = run("scale", "train", "--model", llava_folder, "--probes", probe_folder, "--out", "x", "--mode", "heads",
            "--store", tmp_path)
    assert r.exit_code == 2 and "unknown mode 'heads'" in r.output
    assert not (tmp_path / "scales").exists()
    r = run("scale", "export", "nope", "--npy", tmp_path / "n", "--store", tmp_path)
    assert r.exit_code == 2 and "is missing" in r.output
    np.save(tmp_path / "bad.npy", np.ones((9, 9), dtype=np.float32))
    r = run("scale", "import", "--attn", tmp_path / "bad.npy", "--model", llava_folder, "--out", tmp_path / "v")
    assert r.exit_code == 2 and "has shape [9, 9]" in r.output and not (tmp_path / "v.safetensors").exists()
