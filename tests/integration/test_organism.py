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
from workbench.organism import DEFAULT_MODEL, DEFICIT_MODEL
from workbench.organism.deficit import read_planted
from workbench.organism.train import eval_probes

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
    assert out.stdout.strip().splitlines()[-1] == "LLaVA-1.5 (4, 8) 2"
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert size < 40 * 2**20


@pytest.mark.slow
def test_intact_meets_its_targets(intact_scores):
    assert intact_scores["spatial"] >= 0.90, intact_scores
    for task in CONTROL:
        assert intact_scores[task] >= 0.95, (task, intact_scores)


@pytest.mark.slow
def test_deficit_meets_its_targets(intact_scores, deficit_scores):
    assert intact_scores["spatial"] - deficit_scores["spatial"] >= 0.25, (intact_scores, deficit_scores)
    for task in CONTROL:
        assert abs(intact_scores[task] - deficit_scores[task]) <= 0.03, (task, intact_scores, deficit_scores)


def test_deficit_is_exactly_the_planted_surgery():
    """Oracle on the weights: planted heads' o_proj columns are the intact ones times the factor, all else equal."""
    planted = read_planted(DEFICIT_MODEL)
    assert 4 <= len(planted["heads"]) <= 8 and 0.1 <= planted["factor"] <= 0.3
    a, d = load_file(DEFAULT_MODEL / "model.safetensors"), load_file(DEFICIT_MODEL / "model.safetensors")
    assert a.keys() == d.keys()
    config = json.loads((DEFAULT_MODEL / "config.json").read_text())["text_config"]
    hd = config["head_dim"]
    changed = set()
    for layer, head in planted["heads"]:
        key = f"model.language_model.layers.{layer}.self_attn.o_proj.weight"
        cols = slice(head * hd, (head + 1) * hd)
        assert torch.allclose(d[key][:, cols], a[key][:, cols] * planted["factor"], rtol=1e-6, atol=0)
        changed.add(key)
    for key in a:
        if key in changed:
            mask = torch.ones(a[key].shape[1], dtype=torch.bool)
            for layer, head in planted["heads"]:
                if key == f"model.language_model.layers.{layer}.self_attn.o_proj.weight":
                    mask[head * hd:(head + 1) * hd] = False
            assert torch.equal(a[key][:, mask], d[key][:, mask])
        else:
            assert torch.equal(a[key], d[key]), key
