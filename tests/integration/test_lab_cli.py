"""``workbench lab``: the organism's training commands, apart from the library (``workbench organism`` keeps ``eval``).

A checkpoint exported as a stage's folder holds the checkpoint's weights and record; a pool built by ``lab pool``
is the one a training run of that recipe loads; the options a model card prints are the ones ``lab train`` has.
"""

import json
from dataclasses import asdict, fields

import torch
import typer
from typer.testing import CliRunner

from workbench.cli import app
from workbench.cli.lab import train_fields
from workbench.lab.config import OrganismConfig
from workbench.lab.train import train

TINY = dict(n_train=256, steps=6, batch=32, eval_every=3, data="set", patch=8, grid=0, object_size=0, patch_loss=0.0, layers=2,
            heads=4, kv_heads=2, head_dim=8, vision_hidden=32, vision_layers=1)


def test_lab_export_writes_a_checkpoint_as_the_next_stage_s_folder(tmp_path):
    from transformers import LlavaForConditionalGeneration

    cfg, ckpt = OrganismConfig(**TINY), tmp_path / "a.ckpt"
    assert train(cfg, tmp_path / "a", device="cpu", log=lambda m: None, checkpoint=ckpt, stop_after=3) is None
    r = CliRunner().invoke(app, ["lab", "export", str(ckpt), str(tmp_path / "stage")])
    assert r.exit_code == 0, r.output
    assert "(step 3) written to" in r.output
    record = json.loads((tmp_path / "stage" / "training.json").read_text())
    state = torch.load(ckpt, weights_only=True)
    assert record["config"] == asdict(cfg) and record["step"] == 3 and [p["step"] for p in record["curve"]] == [3]
    weights = LlavaForConditionalGeneration.from_pretrained(tmp_path / "stage", dtype=torch.float32).state_dict()
    assert weights.keys() == state["model"].keys() and all(torch.equal(weights[k], state["model"][k]) for k in weights)


def test_lab_export_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "x.ckpt").write_bytes(b"not a checkpoint")
    r = CliRunner().invoke(app, ["lab", "export", str(tmp_path / "x.ckpt"), str(tmp_path / "out")])
    assert r.exit_code == 2 and "is not a workbench training checkpoint" in r.output and not (tmp_path / "out").exists()


def test_lab_pool_builds_the_pool_a_training_run_of_that_recipe_loads(tmp_path):
    from workbench.lab.data import render_pool
    from workbench.lab.model import build
    from workbench.lab.train import saved_pool

    r = CliRunner().invoke(app, ["lab", "pool", "--dir", str(tmp_path / "pool"), "--n-train", "40", "--workers", "1"])
    assert r.exit_code == 0, r.output
    cfg = OrganismConfig(n_train=40)  # the shipped recipe's scenes, seed 0
    pool = saved_pool(cfg, tmp_path / "pool", log=lambda m: None)
    _, _, processor = build(cfg, tmp_path / "m")
    want = render_pool(processor, 0, 40, cfg.scene, workers=1, log=lambda m: None)
    assert pool.pixels.shape == (40, 64, 64, 3) and torch.equal(pool.pixels, want.pixels)
    assert torch.equal(pool.input_ids, want.input_ids) and pool.tasks == want.tasks


def test_the_card_s_retrain_flags_are_exactly_the_options_of_lab_train():
    lab = typer.main.get_command(app).commands["lab"]
    options = {opt for p in lab.commands["train"].params for opt in p.opts}
    flag = {f.name: f"--{f.name.replace('_', '-')}" for f in fields(OrganismConfig)}
    assert {flag[k] for k in train_fields()} <= options
    assert [k for k in flag if k not in train_fields() and flag[k] in options] == ["seed", "init"]  # given to every stage


def test_organism_train_and_plant_remain_as_hidden_names():
    organism = typer.main.get_command(app).commands["organism"]
    assert [n for n, c in organism.commands.items() if not c.hidden] == ["eval"]
    for args in (["organism", "train", "--steps", "0"], ["lab", "train", "--steps", "0"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and "--steps and --batch must be positive" in r.output, args
