"""A fast, quiet CLI: no torch for --help and the store commands, stored sweeps answered without the model,
library noise silenced unless --verbose; probes matched to the model (--like) and the clean-accuracy warning."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from workbench.cli import app
from workbench.organism import DEFAULT_MODEL

# Runs the CLI in a fresh interpreter and reports, at exit, whether torch / transformers were imported.
PROBE = """
import atexit, sys
atexit.register(lambda: print("HEAVY:" + ",".join(m for m in ("torch", "transformers") if m in sys.modules), file=sys.stderr))
sys.argv = ["workbench", *sys.argv[1:]]
from workbench.cli import main
main()
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)


def _heavy(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("HEAVY:")]
    assert lines, proc.stderr  # the probe ran
    return lines[-1].removeprefix("HEAVY:")


def test_importing_the_cli_app_imports_no_torch():
    code = ("import sys; import workbench.cli.main; "
            "print(sorted(m for m in ('torch', 'transformers', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == "[]"
    # the check can fail: a module that does import torch is seen
    code = "import sys; import workbench.metrics; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.strip() == "True"


def test_help_imports_no_torch_and_the_probe_sees_torch_when_it_is_imported():
    proc = _run("--help")
    assert proc.returncode == 0 and "Spatial Head Workbench" in proc.stdout and "--verbose" in proc.stdout
    assert _heavy(proc) == ""
    proc = _run("model", "families")  # the sites table: torch (so the probe is not blind)
    assert proc.returncode == 0 and "torch" in _heavy(proc)


def _stored_sweep(root, clean_record: dict | None):
    """A complete one-chunk sweep written through the store API (no model): 2 layers × 3 heads, 4 probes, α = 0."""
    from workbench.store.effects import EffectStore, sweep_key
    from workbench.sweeps.spec import SweepSpec

    spec = SweepSpec(alphas=(0.0,)).to_json()
    st = EffectStore(root)
    key = sweep_key("f" * 64, "p" * 64, spec)
    chunk = "L000-002_P000000-000004"
    manifest = {"model": "toy", "model_fingerprint": "f" * 64, "family": "LLaVA-1.5", "shape": [2, 3], "probes": "toy-probes",
                "probeset_hash": "p" * 64, "n_probes": 4, "spec": spec, "layers_per_chunk": 8, "probes_per_chunk": 64,
                "chunks": [chunk], **({"clean": clean_record} if clean_record else {})}
    st.ensure(key, manifest)
    layer, head, probe = np.meshgrid(np.arange(2), np.arange(3), np.arange(4), indexing="ij")
    st.write_chunk(key, chunk, pd.DataFrame({
        "layer": layer.ravel().astype(np.int32), "head": head.ravel().astype(np.int32), "alpha": np.zeros(layer.size),
        "probe_id": probe.ravel().astype(str), "task": "relation", "relation": np.where(probe.ravel() % 2, "left", "right"),
        "value": (-(layer * 3 + head) * 0.1 + probe * 0.01).ravel()}))
    return key


def test_store_commands_import_no_torch_and_show_prints_the_clean_accuracy(tmp_path):
    from workbench import clean

    record = clean.record({"relation": 0.3, "spatial": 0.3}, {"relation": 200, "spatial": 200},
                          {"relation": 0.25, "spatial": 0.25})
    key = _stored_sweep(tmp_path, record)
    for args in (["store", "ls"], ["store", "show", key[:10]], ["store", "rm", "--help"]):
        proc = _run(*args, "--store", str(tmp_path)) if args[-1] != "--help" else _run(*args)
        assert proc.returncode == 0, proc.stderr
        assert _heavy(proc) == "", args
    show = _run("store", "show", key[:10], "--store", str(tmp_path)).stdout
    assert "clean accuracy: spatial 30.0% (chance 25%) · relation 30.0% (chance 25%)" in show
    assert "warning: the clean model is near chance" in show and "L1H2" in show  # the largest |effect|: −0.5 at L1H2
    proc = _run("store", "rm", key[:10], "--store", str(tmp_path))
    assert proc.returncode == 0 and _heavy(proc) == "" and not (tmp_path / "sweeps" / key).exists()


def test_store_gc_and_fsck_import_no_torch(tmp_path):
    _stored_sweep(tmp_path, None)
    for cmd in ("gc", "fsck"):
        proc = _run("store", cmd, "--store", str(tmp_path))
        assert proc.returncode == 0 and _heavy(proc) == "", cmd


def test_every_command_has_working_help():
    import typer

    runner = CliRunner()
    root = typer.main.get_command(app)
    paths = []
    for name, cmd in root.commands.items():
        paths.append([name])
        if hasattr(cmd, "commands"):  # a group (typer's own click, not necessarily the click package)
            paths += [[name, sub] for sub in cmd.commands]
    assert ["probes", "make"] in paths and ["store", "fsck"] in paths and ["sweep"] in paths
    for path in paths:
        r = runner.invoke(app, [*path, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.output, (path, r.output)
    assert "--like" in runner.invoke(app, ["probes", "make", "--help"]).output


def test_cli_literals_match_the_library():
    from workbench.cli import probes as cli_probes
    from workbench.cli import sweeps as cli_sweeps
    from workbench.probes.generate import MAX_CANVAS, MAX_PROBES, ProbeConfig
    from workbench.probes.loaders import LOADERS
    from workbench.sweeps.engine import ENGINES
    from workbench.sweeps.executors import EXECUTORS

    assert cli_probes.FORMATS == tuple(LOADERS)
    assert (cli_probes.MAX_PROBES, cli_probes.MAX_CANVAS) == (MAX_PROBES, MAX_CANVAS)
    assert set(cli_probes.LIKE_FIELDS) <= set(ProbeConfig.__dataclass_fields__)
    assert cli_sweeps.ENGINES == ENGINES and cli_sweeps.EXECUTORS == EXECUTORS


def test_probes_make_like_uses_the_models_record_and_options_still_win(tmp_path):
    from workbench.probes.generate import ProbeConfig, generate
    from workbench.probes.probeset import ProbeSet

    runner = CliRunner()
    r = runner.invoke(app, ["probes", "make", "--like", str(DEFAULT_MODEL), "--out", str(tmp_path / "like"), "--n", "12",
                            "--seed", "4"])
    assert r.exit_code == 0, r.output
    assert "probe configuration from" in r.output and "grid 16" in r.output
    want = generate(ProbeConfig(n=12, seed=4, canvas=64, object_size=14, grid=16))  # assets/models/organism/probes.json
    assert ProbeSet.load(tmp_path / "like").hash == want.hash
    r = runner.invoke(app, ["probes", "make", "--like", "organism", "--grid", "0", "--out", str(tmp_path / "free"), "--n", "12",
                            "--seed", "4"])
    assert r.exit_code == 0, r.output
    assert ProbeSet.load(tmp_path / "free").hash == generate(ProbeConfig(n=12, seed=4, canvas=64, object_size=14, grid=0)).hash
    bare = tmp_path / "bare-model"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    r = runner.invoke(app, ["probes", "make", "--like", str(bare), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "records no probe configuration" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    (bare / "training.json").write_text('{"config": {"canvas": 32, "object_size": 6, "grid": 8}}')  # an organism's record
    r = runner.invoke(app, ["probes", "make", "--like", str(bare), "--out", str(tmp_path / "trained"), "--n", "12",
                            "--seed", "4"])
    assert r.exit_code == 0 and "training.json" in r.output, r.output
    assert ProbeSet.load(tmp_path / "trained").hash == generate(ProbeConfig(n=12, seed=4, canvas=32, object_size=6, grid=8)).hash
    (bare / "probes.json").write_text('{"grid": "16"}')  # probes.json, when there, is what counts
    r = runner.invoke(app, ["probes", "make", "--like", str(bare), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "grid is '16'" in r.output and not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def organism():
    from workbench.models.load import load_vlm

    return load_vlm(DEFAULT_MODEL)


def test_off_distribution_probes_warn_and_matched_ones_do_not(organism):
    """The README's old `probes make --n 300 --seed 1` (free placement) against the same probes made --like the organism."""
    from workbench import clean
    from workbench.cli.probes import recorded_probe_config
    from workbench.probes.generate import ProbeConfig, generate
    from workbench.sweeps.run import clean_record

    free = clean_record(organism, generate(ProbeConfig(n=300, seed=1)))
    like = clean_record(organism, generate(ProbeConfig(n=300, seed=1, **recorded_probe_config("organism")[0])))
    assert free["chance"]["relation"] == 0.25 and free["n"]["spatial"] == 150
    assert clean.warning(free) is not None and "relation" in clean.warning(free)
    assert clean.warning(like) is None and like["accuracy"]["spatial"] > 0.95


def test_sweep_prints_clean_accuracy_then_answers_from_the_store_without_the_model(tmp_path, monkeypatch):
    runner = CliRunner()
    for name, extra in (("free", []), ("like", ["--like", "organism"])):
        r = runner.invoke(app, ["probes", "make", "--out", str(tmp_path / name), "--n", "60", "--seed", "1", *extra])
        assert r.exit_code == 0, r.output
    store = str(tmp_path / "store")
    args = ["sweep", "--target", "mlp", "--store", store, "--probes"]
    r = runner.invoke(app, [*args, str(tmp_path / "free")])
    assert r.exit_code == 0, r.output
    assert "clean accuracy: spatial" in r.output and "warning: the clean model is near chance" in r.output
    assert "Loading weights" not in r.output  # transformers' load bar is silenced by default
    r = runner.invoke(app, [*args, str(tmp_path / "like")])
    assert r.exit_code == 0 and "clean accuracy: spatial 100.0%" in r.output and "warning" not in r.output, r.output

    import workbench.models.load as load

    def no_load(*a, **k):
        raise AssertionError("a stored sweep must be answered without loading the model")

    monkeypatch.setattr(load, "load_vlm", no_load)
    r = runner.invoke(app, [*args, str(tmp_path / "free")])
    assert r.exit_code == 0, r.output
    assert "0 chunks computed (local executor), 1 from the store" in r.output and "model was not loaded" in r.output
    assert "warning: the clean model is near chance" in r.output and "L5 MLP" in r.output
    r = runner.invoke(app, [*args, str(tmp_path / "free"), "--alpha", "0.5"])  # not stored: this one needs the model
    assert r.exit_code != 0 and "without loading the model" in str(r.exception)


def test_verbose_lets_the_load_bar_through():
    runner = CliRunner()
    quiet = runner.invoke(app, ["model", "info"])
    loud = runner.invoke(app, ["--verbose", "model", "info"])
    runner.invoke(app, ["store", "--help"])  # back to quiet for the tests that follow (the switch is process-wide)
    assert quiet.exit_code == 0 and loud.exit_code == 0
    assert "Loading weights" not in quiet.output and "Loading weights" in loud.output
