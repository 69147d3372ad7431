"""`workbench probes …` end to end: outputs, determinism, and bad input (one line, exit 2, nothing written)."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from workbench.cli import app
from workbench.probes.probeset import MANIFEST_FILE, ProbeSet
from workbench.probes.scenes import PALETTE

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_make_twice_gives_identical_manifests_and_a_contact_sheet(tmp_path):
    r1 = run("probes", "make", "--out", tmp_path / "a", "--n", 300, "--seed", 4)
    r2 = run("probes", "make", "--out", tmp_path / "b", "--n", 300, "--seed", 4)
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    assert (tmp_path / "a" / MANIFEST_FILE).read_bytes() == (tmp_path / "b" / MANIFEST_FILE).read_bytes()
    assert ProbeSet.load(tmp_path / "a").hash == ProbeSet.load(tmp_path / "b").hash
    sheet = np.asarray(Image.open(tmp_path / "a" / "contact_sheet.png").convert("RGB"))
    assert sheet.shape[1] > 1000
    assert sum((sheet == rgb).all(-1).any() for rgb in PALETTE.values()) == len(PALETTE)  # the scenes are drawn
    assert "relation" in r1.output and "300 items" in r1.output


def test_show_prints_counts_and_writes_sheet(tmp_path):
    assert run("probes", "make", "--out", tmp_path / "p", "--n", 120, "--seed", 1).exit_code == 0
    r = run("probes", "show", tmp_path / "p", "--sheet", tmp_path / "sheet.png")
    assert r.exit_code == 0, r.output
    assert "items per task" in r.output and "spatial items per relation" in r.output
    assert Image.open(tmp_path / "sheet.png").size[1] > 100


def test_make_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    r = run("probes", "make", "--out", out, "--n", 10)
    assert r.exit_code == 2 and "already exists" in r.output and (out / "mine.txt").exists()
    assert run("probes", "make", "--out", out, "--n", 10, "--force").exit_code == 0
    assert len(ProbeSet.load(out)) == 10


@pytest.mark.parametrize("args,msg", [
    (["--n", "0"], "n must be positive"),
    (["--n", "-5"], "n must be positive"),
    (["--relations", "left,behind"], "unknown relation 'behind'"),
    (["--tasks", ""], "--tasks is empty"),
    (["--split-by", "coin"], "unknown split 'coin'"),
    (["--canvas", "10"], "too small"),
])
def test_make_bad_input_writes_nothing(tmp_path, args, msg):
    r = run("probes", "make", "--out", tmp_path / "p", *args)
    assert r.exit_code == 2 and msg in r.output
    assert list(tmp_path.iterdir()) == []


def test_show_bad_input(tmp_path):
    r = run("probes", "show", tmp_path / "missing")
    assert r.exit_code == 2 and "does not exist" in r.output
    assert run("probes", "make", "--out", tmp_path / "p", "--n", 20).exit_code == 0
    sheet = (tmp_path / "p" / "contact_sheet.png").read_bytes()
    (tmp_path / "p" / MANIFEST_FILE).write_text("{broken\n")
    r = run("probes", "show", tmp_path / "p", "--sheet", tmp_path / "new.png")
    assert r.exit_code == 2 and "manifest.jsonl line 1 is corrupt" in r.output
    assert not (tmp_path / "new.png").exists() and (tmp_path / "p" / "contact_sheet.png").read_bytes() == sheet


def test_import_refuses_unknown_format_and_missing_images(tmp_path):
    r = run("probes", "import", "coco", tmp_path / "x.jsonl", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "unknown benchmark format 'coco'" in r.output
    r = run("probes", "import", "whatsup", tmp_path / "x.jsonl", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "pass --images DIR" in r.output
    assert not (tmp_path / "o").exists()


def test_console_entry_point_exits_nonzero_with_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "workbench", "probes", "make", "--out", str(tmp_path / "o"), "--n", "0"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["error: n must be positive, got 0 (pass --n 1 or more)"]
    assert not (tmp_path / "o").exists()


def test_every_subcommand_has_help():
    for cmd in ([], ["probes"], ["probes", "make"], ["probes", "show"], ["probes", "import"], ["model"], ["model", "info"],
                ["model", "families"], ["organism"], ["organism", "eval"], ["organism", "train"], ["organism", "plant"],
                ["lab"], ["lab", "train"], ["lab", "pool"], ["lab", "export"], ["lab", "plant"],
                ["sweep"], ["store"], ["store", "ls"], ["store", "show"], ["store", "rm"],
                ["store", "gc"], ["heads"], ["heads", "export"], ["heads", "import"]):
        r = run(*cmd, "--help")
        assert r.exit_code == 0 and "Usage" in r.output, cmd
