"""Parity with the ScAle reference code (``rchowdhubnor/ScAle``): its per-task split and the files it saves.

The split is checked against a reimplementation of ``create_train_test_split.py`` written here from the
reference's text (not from :mod:`workbench.scale.split`); the files against the names and shapes
``ft_vlm_spatial.py`` writes (``eff_attn_final.npy`` [L, H], ``eff_mlp_final.npy`` [L],
``epoch_scales/eff_*_epoch{N}.npy``, no file for a part the mode does not train).
"""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from workbench.cli import app
from workbench.errors import WorkbenchError
from workbench.probes.probeset import ProbeSet
from workbench.scale.split import reference_split, split_indices
from workbench.scale.vector import ScaleVector

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------ the reference's split, rewritten here
def reference_make_split(ds: list[dict], seed: int) -> dict:
    """``create_train_test_split.py``: rows whose id starts with each prefix, one RandomState for the three tasks
    in this order, permutation, floor(20%) train, the rest test, plus the concatenated "all"."""
    prefixes = {"spatialmap": "spatialmap", "mazenav": "mazenav", "spatialgrid": "spatialgrid"}
    task_indices = {t: [i for i, ex in enumerate(ds) if ex["id"].startswith(p)] for t, p in prefixes.items()}
    rng = np.random.RandomState(seed)
    out = {"seed": seed, "train_frac": 0.20, "train": {}, "test": {}}
    train_all, test_all = [], []
    for task, idxs in task_indices.items():
        idxs = list(idxs)
        perm = rng.permutation(len(idxs))
        shuffled = [idxs[i] for i in perm]
        n_train = int(math.floor(len(shuffled) * 0.20))
        out["train"][task], out["test"][task] = shuffled[:n_train], shuffled[n_train:]
        train_all.extend(shuffled[:n_train])
        test_all.extend(shuffled[n_train:])
    out["train"]["all"], out["test"]["all"] = train_all, test_all
    return out


def spatialeval_rows(sizes: dict[str, int], seed: int) -> list[dict]:
    """Rows with SpatialEval-like ids (``spatialmap.vqa.17``), the tasks interleaved in a seeded order."""
    rows = [{"id": f"{t}.vqa.{k}"} for t, n in sizes.items() for k in range(n)]
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in order]


@pytest.mark.parametrize("sizes", [{"spatialmap": 1500, "mazenav": 1500, "spatialgrid": 1500, "spatialreal": 136},
                                   {"spatialgrid": 41, "spatialmap": 37, "spatialreal": 9, "mazenav": 23}])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_split_is_the_references_index_for_index(sizes, seed):
    rows = spatialeval_rows(sizes, seed=7)
    want = reference_make_split(rows, seed)
    got = split_indices([r["id"].split(".")[0] for r in rows], seed)
    assert got == want
    assert json.loads(json.dumps(got)) == want  # plain ints: the reference's JSON
    if sizes["spatialmap"] == 1500:
        assert [len(got["train"][t]) for t in ("spatialmap", "mazenav", "spatialgrid")] == [300, 300, 300]
    real = {i for i, r in enumerate(rows) if r["id"].startswith("spatialreal")}
    assert not real & (set(got["train"]["all"]) | set(got["test"]["all"]))  # spatialreal is in no run


def _spatialeval_like(probes32, sizes: dict[str, int]) -> ProbeSet:
    """probes32's items relabelled as SpatialEval tasks (interleaved), so a tiny LLaVA can train on them."""
    tasks = [t for t, n in sizes.items() for _ in range(n)]
    order = np.random.default_rng(3).permutation(len(tasks))
    items = [replace(it, task=tasks[j], family="spatial", id=f"{tasks[j]}.vqa.{k}")
             for k, (it, j) in enumerate(zip(probes32.items, order))]
    return ProbeSet(items, {k: probes32.image_bytes(k) for k in probes32.image_keys()}, name="se-tiny")


def test_reference_split_sides_are_the_probes_at_the_references_rows(probes32):
    ps = _spatialeval_like(probes32, {"spatialmap": 6, "mazenav": 5, "spatialgrid": 7, "spatialreal": 2})
    rows = [{"id": it.id} for it in ps]
    for seed in (0, 1, 2):
        want = reference_make_split(rows, seed)
        for task in ("spatialmap", "mazenav", "spatialgrid", None):
            train, test = reference_split(ps, seed, task)
            key = task or "all"
            assert [it.id for it in train] == [ps[i].id for i in sorted(want["train"][key])]
            assert [it.id for it in test] == [ps[i].id for i in sorted(want["test"][key])]


def test_a_probe_set_missing_a_reference_task_or_too_small_is_refused(probes32):
    ps = _spatialeval_like(probes32, {"spatialmap": 6, "spatialgrid": 7})
    with pytest.raises(WorkbenchError, match="no mazenav probes"):
        reference_split(ps, 0)
    ps = _spatialeval_like(probes32, {"spatialmap": 6, "mazenav": 4, "spatialgrid": 7})
    with pytest.raises(WorkbenchError, match=r"of mazenav leaves no train probe: floor\(20% of 4\) = 0"):
        reference_split(ps, 0, "mazenav")
    assert len(reference_split(ps, 0)[0]) == 2  # pooled: spatialmap's 1 + spatialgrid's 1
    with pytest.raises(WorkbenchError, match="task 'spatialreal' is not one"):
        reference_split(ps, 0, "spatialreal")
    with pytest.raises(WorkbenchError, match="not an integer"):
        split_indices(["spatialmap"], -1)


def test_other_probe_sets_split_per_task_in_order_of_appearance(probes32):
    tasks = [it.task for it in probes32]
    first = list(dict.fromkeys(tasks))
    rng = np.random.RandomState(1)
    got = split_indices(tasks, 1)
    for t in first:
        idxs = [i for i, x in enumerate(tasks) if x == t]
        perm = rng.permutation(len(idxs))
        n = int(math.floor(len(idxs) * 0.2))
        assert got["train"][t] == [idxs[i] for i in perm[:n]] and got["test"][t] == [idxs[i] for i in perm[n:]]
    assert sorted(got["train"]["all"] + got["test"]["all"]) == list(range(len(tasks)))


@pytest.mark.slow
def test_train_per_task_trains_one_vector_per_task_on_the_references_rows(llava_folder, probes32, tmp_path):
    ps = _spatialeval_like(probes32, {"spatialmap": 5, "mazenav": 6, "spatialgrid": 5, "spatialreal": 2})
    folder = ps.save(tmp_path / "se")
    store = tmp_path / "store"
    r = run("scale", "train", "--model", llava_folder, "--probes", folder, "--store", store, "--out", "se0", "--paper-split", "0",
            "--per-task", "--mode", "attn", "--epochs", "1", "--batch", "1")
    assert r.exit_code == 0, r.output
    want = reference_make_split([{"id": it.id} for it in ps], 0)
    assert sorted(p.name for p in (store / "scales").glob("*.safetensors")) == [
        "se0-mazenav.safetensors", "se0-spatialgrid.safetensors", "se0-spatialmap.safetensors"]
    for task in ("spatialmap", "mazenav", "spatialgrid"):
        vec = ScaleVector.load(store / "scales" / f"se0-{task}")
        rows = set(want["train"][task])
        expected = ps.filter(lambda it, rows=rows: ps.items.index(it) in rows)
        assert vec.probes_hash == expected.hash and vec.extra["paper_split"]["task"] == task
        assert vec.extra["paper_split"]["n_train"] == len(want["train"][task]) == 1
    common = ["--model", llava_folder, "--probes", folder, "--store", store]
    r = run("scale", "eval", "se0-mazenav", *common, "--paper-split", "0", "--paper-task", "mazenav")
    assert r.exit_code == 0, r.output
    assert f"se-tiny.paper0-mazenav-test ({len(want['test']['mazenav'])} probes)" in r.output
    r = run("scale", "eval", "se0-mazenav", *common, "--paper-task", "mazenav")
    assert r.exit_code == 2 and "add --paper-split SEED" in r.output
    r = run("scale", "train", "--model", llava_folder, "--probes", folder, "--store", store, "--out", "x", "--per-task")
    assert r.exit_code == 2 and "add --paper-split SEED" in r.output and not (store / "scales" / "x-spatialmap.json").exists()


# ------------------------------------------------------------------ export / import
@pytest.fixture()
def store_with(llava_vlm, tmp_path):
    """Save a vector of the tiny LLaVA's shape with the given mode and positions into a fresh store."""
    store = tmp_path / "store"

    def make(name, mode="both", positions="last"):
        n_layers, n_heads = llava_vlm.site.shape
        g = torch.Generator().manual_seed(len(name))
        attn = torch.ones(n_layers, n_heads) if mode == "mlp" else 1 + 0.5 * torch.randn(n_layers, n_heads, generator=g)
        mlp = torch.ones(n_layers) if mode == "attn" else 1 + 0.5 * torch.randn(n_layers, generator=g)
        vec = ScaleVector(attn=attn, mlp=mlp, model=llava_vlm.name, model_fingerprint=llava_vlm.fingerprint, mode=mode,
                          positions=positions)
        vec.save(store / "scales" / name)
        return vec

    return store, make


@pytest.mark.parametrize("mode", ["attn", "mlp", "both"])
def test_export_writes_one_file_per_trained_part_and_import_keeps_mode_and_positions(store_with, llava_folder, tmp_path, mode):
    store, make = store_with
    vec = make("v", mode)
    out = tmp_path / "run"
    r = run("scale", "export", "v", "--npy", out, "--suffix", "_final", "--store", store)
    assert r.exit_code == 0, r.output
    names = {"attn": ["eff_attn_final.npy"], "mlp": ["eff_mlp_final.npy"], "both": ["eff_attn_final.npy", "eff_mlp_final.npy"]}
    assert sorted(p.name for p in out.iterdir()) == names[mode]
    if mode != "mlp":
        np.testing.assert_array_equal(np.load(out / "eff_attn_final.npy"), vec.attn.numpy())
        assert np.load(out / "eff_attn_final.npy").shape == tuple(vec.shape)
    if mode != "attn":
        np.testing.assert_array_equal(np.load(out / "eff_mlp_final.npy"), vec.mlp.numpy())
    r = run("scale", "import", "--from", out, "--model", llava_folder, "--out", tmp_path / "back.safetensors")
    assert r.exit_code == 0, r.output
    back = ScaleVector.load(tmp_path / "back")
    assert (back.mode, back.positions) == (mode, "last")
    assert torch.equal(back.attn, vec.attn) and torch.equal(back.mlp, vec.mlp)


def test_an_all_positions_vector_is_refused_for_the_reference_format_unless_allowed(store_with, llava_folder, tmp_path):
    store, make = store_with
    vec = make("everywhere", "attn", "all")
    out = tmp_path / "npy"
    r = run("scale", "export", "everywhere", "--npy", out, "--store", store)
    assert r.exit_code == 2
    line = r.output.strip()
    assert (len(line.splitlines()) == 1 and "positions=all" in line and "last token only" in line
            and "--allow-all-positions" in line)
    assert not out.exists()
    r = run("scale", "export", "everywhere", "--npy", out, "--store", store, "--allow-all-positions")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["eff_attn.npy", "workbench_export.json"]
    meta = json.loads((out / "workbench_export.json").read_text())
    assert meta["positions"] == "all" and "last token only" in meta["warning"]
    r = run("scale", "import", "--from", out, "--model", llava_folder, "--out", tmp_path / "back.safetensors")
    assert r.exit_code == 0, r.output
    back = ScaleVector.load(tmp_path / "back")
    assert (back.mode, back.positions) == ("attn", "all") and torch.equal(back.attn, vec.attn)
    assert "last token only" in back.extra["export_warning"]
    r = run("scale", "import", "--attn", out / "eff_attn.npy", "--model", llava_folder, "--out", tmp_path / "files.safetensors")
    assert r.exit_code == 0 and ScaleVector.load(tmp_path / "files").positions == "all"  # the JSON beside the file counts too


def _reference_run(folder, shape, epochs=3, parts=("attn", "mlp")):
    """A run folder laid out as ft_vlm_spatial.py leaves it; epoch N's scales are 1 + N/10 (final: 1 + epochs/10)."""
    (folder / "epoch_scales").mkdir(parents=True)
    n_layers, n_heads = shape
    arrays = {"attn": lambda v: np.full((n_layers, n_heads), v, np.float32), "mlp": lambda v: np.full(n_layers, v, np.float32)}
    for part in parts:
        for n in range(1, epochs + 1):
            np.save(folder / "epoch_scales" / f"eff_{part}_epoch{n}.npy", arrays[part](1 + n / 10))
        np.save(folder / f"eff_{part}_final.npy", arrays[part](1 + epochs / 10))
    (folder / "training_log.csv").write_text("epoch\n")


def test_import_reads_a_reference_run_final_or_epoch_n(llava_vlm, llava_folder, tmp_path):
    shape = llava_vlm.site.shape
    _reference_run(tmp_path / "run", shape)
    r = run("scale", "import", "--from", tmp_path / "run", "--model", llava_folder, "--out", tmp_path / "final.safetensors")
    assert r.exit_code == 0, r.output
    v = ScaleVector.load(tmp_path / "final")
    assert (v.mode, v.positions) == ("both", "last") and torch.allclose(v.attn, torch.full(shape, 1.3))
    assert torch.allclose(v.mlp, torch.full((shape[0],), 1.3))
    r = run("scale", "import", "--from", tmp_path / "run", "--epoch", "2", "--model", llava_folder,
            "--out", tmp_path / "e2.safetensors")
    assert r.exit_code == 0, r.output
    v = ScaleVector.load(tmp_path / "e2")
    assert torch.allclose(v.attn, torch.full(shape, 1.2)) and torch.allclose(v.mlp, torch.full((shape[0],), 1.2))
    r = run("scale", "import", "--from", tmp_path / "run", "--epoch", "7", "--model", llava_folder, "--out", tmp_path / "e7")
    assert r.exit_code == 2 and "no eff_attn_epoch7.npy or eff_mlp_epoch7.npy" in r.output and "epochs: 1, 2, 3" in r.output
    assert not (tmp_path / "e7.safetensors").exists()

    _reference_run(tmp_path / "attn_run", shape, epochs=2, parts=("attn",))  # MODE_ONLY=attn: no eff_mlp files
    r = run("scale", "import", "--from", tmp_path / "attn_run", "--epoch", "1", "--model", llava_folder,
            "--out", tmp_path / "a.safetensors")
    assert r.exit_code == 0, r.output
    v = ScaleVector.load(tmp_path / "a")
    assert v.mode == "attn" and torch.equal(v.mlp, torch.ones(shape[0])) and torch.allclose(v.attn, torch.full(shape, 1.1))


def test_import_refusals_are_one_line_and_write_nothing(llava_vlm, llava_folder, tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("scale", "import", "--from", tmp_path / "empty", "--model", llava_folder, "--out", tmp_path / "v")
    assert r.exit_code == 2 and "no final scales; no epoch scales" in r.output
    _reference_run(tmp_path / "epochs_only", llava_vlm.site.shape, epochs=2)
    for p in (tmp_path / "epochs_only").glob("*_final.npy"):
        p.unlink()
    r = run("scale", "import", "--from", tmp_path / "epochs_only", "--model", llava_folder, "--out", tmp_path / "v")
    assert r.exit_code == 2 and "epochs: 1, 2" in r.output and "--epoch N" in r.output
    (tmp_path / "suffixed").mkdir()
    np.save(tmp_path / "suffixed" / "eff_attn_seed0.npy", np.ones(llava_vlm.site.shape, np.float32))
    r = run("scale", "import", "--from", tmp_path / "suffixed", "--model", llava_folder, "--out", tmp_path / "v")
    assert r.exit_code == 2 and "other arrays: eff_attn_seed0.npy" in r.output and "--attn / --mlp" in r.output
    r = run("scale", "import", "--from", tmp_path / "empty", "--attn", tmp_path / "x.npy", "--model", llava_folder,
            "--out", tmp_path / "v")
    assert r.exit_code == 2 and "not both" in r.output
    r = run("scale", "import", "--epoch", "1", "--model", llava_folder, "--out", tmp_path / "v")
    assert r.exit_code == 2 and "add --from DIR" in r.output
    assert not (tmp_path / "v.safetensors").exists() and not (tmp_path / "v.json").exists()
