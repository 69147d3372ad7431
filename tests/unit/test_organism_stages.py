"""A staged organism recipe records every earlier stage, and the model card shows them in order."""

from __future__ import annotations

import json

from workbench.lab.card import _curves, _device, _init, recipe, recipe_commands, stages
from workbench.lab.config import OrganismConfig
from workbench.lab.stages import init_run


def _curve(start: float, steps: tuple[int, ...]) -> list[dict]:
    return [{"step": s, "loss": start / s, "seconds": s, "spatial": 0.5, "control": 0.9} for s in steps]


def _config(**kw) -> dict:
    from dataclasses import asdict
    return asdict(OrganismConfig(**kw))


def test_a_chain_of_stages_is_recorded_back_to_fresh_weights_and_shown_first_stage_first(tmp_path):
    # stage 1: exported from a checkpoint at step 500 of a 600-step schedule (it carries "step")
    one = {"config": _config(steps=600), "step": 500, "curve": _curve(1.0, (250, 500))}
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "training.json").write_text(json.dumps(one))
    # stage 2: a finished run (no "step": its last logged step stands for it) that started from stage 1
    two = {"config": _config(steps=300, init=str(tmp_path / "s1"), where_loss=1.0), "curve": _curve(2.0, (150, 300)),
           "init_run": init_run(str(tmp_path / "s1")), "seconds": 9.0}
    (tmp_path / "s2").mkdir()
    (tmp_path / "s2" / "training.json").write_text(json.dumps(two))
    three = {"config": _config(steps=100, init=str(tmp_path / "s2"), label_smoothing=0.3), "curve": _curve(3.0, (50, 100)),
             "init_run": init_run(str(tmp_path / "s2")), "init_sha256": "ab" * 32}

    chain = stages(three)
    assert [r["config"]["steps"] for r in chain] == [600, 300, 100]
    assert [r.get("step") for r in chain[:2]] == [500, 300]
    assert chain[1]["init_run"]["curve"] == one["curve"]
    text = _curves(three)
    first, second, third = (text.index(f"Stage {i} ") for i in (1, 2, 3))
    assert first < second < third
    assert "Stage 1 (from fresh weights; lr 0.001, batch 256, patch loss 1.0; stopped at step 500 of a 600-step schedule)" in text
    assert "Stage 2 (from stage 1's weights; lr 0.001, batch 256, patch loss 1.0, where loss 1.0; 300 steps)" in text
    assert "Stage 3 (from stage 2's weights; the configuration above)" in text
    assert f"| 500 | {1.0 / 500:.3f} |" in text and f"| 100 | {3.0 / 100:.3f} |" in text
    assert "stage 3 of a staged recipe" in _init(three)
    # a run from fresh weights has one stage and no stage headings
    assert stages(one) == [one] and "Stage" not in _curves(one) and _init(one) == ""


def test_the_card_retrains_a_staged_run_stage_by_stage_from_fresh_weights(tmp_path):
    one = {"config": _config(steps=600), "step": 500, "curve": _curve(1.0, (250, 500))}
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "training.json").write_text(json.dumps(one))
    two = {"config": _config(steps=300, lr=3e-4, init=str(tmp_path / "s1"), label_smoothing=0.3, where_layer=1),
           "curve": _curve(2.0, (150, 300)), "init_run": init_run(str(tmp_path / "s1"))}
    lines = recipe_commands(two, "assets/models/organism", "ignored for a staged run").splitlines()
    assert lines == [
        "workbench lab train --out /tmp/stage1 --seed 0 --steps 600 --checkpoint /tmp/stage1.ckpt --stop-after 500",
        "workbench lab export /tmp/stage1.ckpt /tmp/stage1",
        "# stage 2 also sets where_layer=1 (analyses/organism_retrain.py takes these)",
        "workbench lab train --out assets/models/organism --seed 0 --init /tmp/stage1 --steps 300 --lr 0.0003 "
        "--label-smoothing 0.3 --force",
    ]
    # a single-stage run is retrained by its own command line
    assert recipe_commands(one, "x", "workbench lab train --out x --seed 0 --force") == (
        "workbench lab train --out x --seed 0 --force")


def test_the_card_pins_the_thread_count_a_cpu_stage_was_trained_with(tmp_path):
    # CPU float sums depend on the thread count: a stage recorded with one count is retrained with it;
    # one resumed under two counts (or trained on a GPU: none recorded) gets no pin
    one = {"config": _config(steps=600), "step": 500, "curve": _curve(1.0, (250, 500)), "threads": [1]}
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "training.json").write_text(json.dumps(one))
    two = {"config": _config(steps=300, init=str(tmp_path / "s1")), "curve": _curve(2.0, (150, 300)),
           "init_run": init_run(str(tmp_path / "s1")), "threads": [1, 2], "device": "cpu"}
    lines = recipe_commands(two, "out", "ignored").splitlines()
    assert lines[0].startswith("OMP_NUM_THREADS=1 workbench lab train --out /tmp/stage1 ")
    assert lines[2].startswith("workbench lab train --out out ")
    assert _device(two) == "cpu (1/2 threads)" and _device({"device": "cuda"}) == "cuda"
    assert recipe_commands(one, "x", "workbench lab train --out x") == "OMP_NUM_THREADS=1 workbench lab train --out x"


def test_a_recipe_ignores_init_folders_and_fills_fields_added_since_with_their_defaults(tmp_path):
    old = _config(steps=600)
    del old["label_smoothing"], old["where_loss"]  # a stage recorded before these fields existed
    for name, config in (("a", old), ("b", _config(steps=600))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "training.json").write_text(json.dumps({"config": config, "step": 500, "curve": []}))
    a = {"config": _config(steps=300, init=str(tmp_path / "a")), "init_run": init_run(str(tmp_path / "a"))}
    b = {"config": _config(steps=300, init=str(tmp_path / "b")), "init_run": init_run(str(tmp_path / "b"))}
    assert recipe(a) == recipe(b) and len(recipe(a)) == 2 and "init" not in recipe(a)[1]
    assert recipe(a)[0]["label_smoothing"] == 0.0
    b["config"]["lr"] = 3e-4  # another setting in any stage is another recipe
    assert recipe(a) != recipe(b)
