"""The shipped organism and its planted-deficit variant: offline loading, held-out targets, the deficit's ground truth.

Accuracies are recomputed here on the fixed 500-probe evaluation set (CPU), never read from a file.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from workbench.evaluation import score
from workbench.models.load import load_vlm
from workbench.organism import DEFAULT_MODEL, DEFICIT_MODEL, read_planted
from workbench.organism.probesets import eval_probes

CONTROL = ("color", "shape", "count", "exists")
pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL / "config.json").is_file(), reason="the organism is not built in assets/")


@pytest.fixture(scope="module")
def eval_set():
    ps = eval_probes(0)
    assert len(ps) == 500 and {it.split for it in ps} == {"test"}
    return ps


@pytest.fixture(scope="module")
def intact_scores(eval_set):
    return score(load_vlm(DEFAULT_MODEL, attn_implementation="eager"), eval_set).by_task()


@pytest.fixture(scope="module")
def deficit_scores(eval_set):
    return score(load_vlm(DEFICIT_MODEL, attn_implementation="eager"), eval_set).by_task()


@pytest.mark.parametrize("folder", [DEFAULT_MODEL, DEFICIT_MODEL], ids=["intact", "deficit"])
def test_loads_offline_through_the_three_loaders(folder):
    code = f"""
from transformers import AutoModelForImageTextToText, AutoProcessor
from workbench.models.load import load_vlm
AutoProcessor.from_pretrained({str(folder)!r}); AutoModelForImageTextToText.from_pretrained({str(folder)!r})
v = load_vlm({str(folder)!r}); print(v.site.row.family, v.site.shape, v.site.n_kv_heads)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = json.loads((folder / "config.json").read_text())["text_config"]
    want = f"LLaVA-1.5 ({text['num_hidden_layers']}, {text['num_attention_heads']}) {text['num_key_value_heads']}"
    assert out.stdout.strip().splitlines()[-1] == want
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert size < 40 * 2**20


def test_recomputed_accuracies_match_the_shipped_record(intact_scores):
    """The numbers in training.json (and the model card) are what the shipped weights score, on this machine."""
    recorded = json.loads((DEFAULT_MODEL / "training.json").read_text())["eval"]
    for task, value in intact_scores.items():
        if task in recorded:
            assert abs(value - recorded[task]) <= 0.01, (task, value, recorded[task])


def test_intact_meets_the_spatial_target(intact_scores):
    assert intact_scores["spatial"] >= 0.90, intact_scores


@pytest.mark.parametrize("task", CONTROL)
def test_intact_meets_the_control_target(intact_scores, task):
    assert intact_scores[task] >= 0.95, (task, intact_scores)


def test_deficit_keeps_every_control_task_within_3_points(intact_scores, deficit_scores):
    for task in CONTROL:
        assert abs(intact_scores[task] - deficit_scores[task]) <= 0.03, (task, intact_scores, deficit_scores)


def test_deficit_costs_spatial_accuracy(intact_scores, deficit_scores):
    assert intact_scores["spatial"] - deficit_scores["spatial"] >= 0.10, (intact_scores, deficit_scores)


def test_deficit_meets_the_spatial_drop_target(intact_scores, deficit_scores):
    assert intact_scores["spatial"] - deficit_scores["spatial"] >= 0.25, (intact_scores, deficit_scores)


def test_deficit_is_exactly_the_planted_surgery():
    """Oracle on the weights: planted heads' o_proj columns are the intact ones times the factor, all else equal."""
    planted = read_planted(DEFICIT_MODEL)
    assert 4 <= len(planted["heads"]) <= 8 and 0.1 <= planted["factor"] <= 0.3
    a, d = load_file(DEFAULT_MODEL / "model.safetensors"), load_file(DEFICIT_MODEL / "model.safetensors")
    assert a.keys() == d.keys()
    config = json.loads((DEFAULT_MODEL / "config.json").read_text())["text_config"]
    hd = config["head_dim"]
    def okey(layer):  # the checkpoint's own key naming (transformers may save the legacy layout)
        (key,) = [k for k in a if "language_model" in k and k.endswith(f"layers.{layer}.self_attn.o_proj.weight")]
        return key

    changed = set()
    for layer, head in planted["heads"]:
        key = okey(layer)
        cols = slice(head * hd, (head + 1) * hd)
        assert torch.allclose(d[key][:, cols], a[key][:, cols] * planted["factor"], rtol=1e-6, atol=0)
        changed.add(key)
    for key in a:
        if key in changed:
            mask = torch.ones(a[key].shape[1], dtype=torch.bool)
            for layer, head in planted["heads"]:
                if key == okey(layer):
                    mask[head * hd:(head + 1) * hd] = False
            assert torch.equal(a[key][:, mask], d[key][:, mask])
        else:
            assert torch.equal(a[key], d[key]), key
