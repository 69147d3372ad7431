"""The head page's honest visuals as pure functions: percentages, the attention overlay on one absolute scale, the
probe window, the task filter, and head_detail against a hand-built store with probes and attention maps."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from workbench.app import data
from workbench.app import head_visuals as hv
from workbench.errors import WorkbenchError
from workbench.figures import ATTENTION_INK, attention_overlay
from workbench.probes.generate import ProbeConfig, generate
from workbench.store.effects import EffectStore
from workbench.store.library import AttentionMaps, Library

# ---------------------------------------------------------------- percent


@pytest.mark.parametrize("share, text", [(0.0, "0%"), (1e-7, "<0.01%"), (0.00002, "<0.01%"), (0.0002, "0.02%"), (0.0035, "0.35%"),
                                         (0.01, "1.0%"), (0.123, "12.3%"), (0.9999, ">99.9%"), (1.0, "100%")])
def test_percent_is_readable(share, text):
    assert hv.percent(share) == text


def test_percent_never_prints_an_exponent_nor_rounds_a_real_share_to_zero():
    for share in np.geomspace(1e-12, 1.0, 200):
        text = hv.percent(float(share))
        assert not re.search(r"\de", text) and text != "0%", (share, text)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            hv.percent(bad)


# ---------------------------------------------------------------- the overlay
RED = (230, 25, 25)


def _scene() -> Image.Image:
    """64 × 64, black, a red 24 × 24 block inside each 32-px quadrant (rows and columns 4 … 27 of it): one per patch of a
    2 × 2 grid."""
    img = np.zeros((64, 64, 3), dtype=np.uint8)
    for y0 in (0, 32):
        for x0 in (0, 32):
            img[y0 + 4:y0 + 28, x0 + 4:x0 + 28] = RED
    return Image.fromarray(img, "RGB")


def test_overlay_keeps_colours_outside_attention_and_blends_them_by_alpha_inside():
    w = np.array([[0.0, 0.25], [0.0, 0.5]])  # patch (1, 1) holds the maximum
    out = np.asarray(attention_overlay(_scene(), w, scale_max=0.5, size=64, fill=0.3, frame=2)).astype(int)
    # a red pixel in a zero-attention patch: its exact colour (also on the frame ring: opacity 0)
    assert tuple(out[10, 10]) == RED and tuple(out[0, 0]) == (0, 0, 0) and tuple(out[40, 1]) == (0, 0, 0)
    # inside the max patch (t = 1): 70% red + 30% ink, still red-dominant; its frame: the ink itself
    expect = np.rint(0.7 * np.array(RED) + 0.3 * np.array(ATTENTION_INK)).astype(int)
    assert tuple(out[40, 40]) == tuple(expect) and out[40, 40, 0] > 2 * out[40, 40, 1]
    assert tuple(out[33, 40]) == ATTENTION_INK and tuple(out[63, 63]) == ATTENTION_INK
    # half the maximum (t = 0.5): the wash at opacity 0.15 inside, the frame at 0.5
    assert tuple(out[10, 40]) == tuple(np.rint(0.85 * np.array(RED) + 0.15 * np.array(ATTENTION_INK)).astype(int))
    assert tuple(out[0, 40]) == tuple(np.rint(0.5 * np.array(ATTENTION_INK)).astype(int))
    # the frame is 2 px: row 1 of patch (0, 1) is on it, row 2 (black background) gets the wash only, 0.15 · 255 = 38.25
    assert tuple(out[1, 40]) == (128, 128, 128) and tuple(out[2, 40]) == (38, 38, 38)


def test_overlay_scale_is_absolute_a_tiny_head_draws_almost_nothing():
    w = np.array([[0.0, 0.25], [0.0, 0.5]])
    faint = np.asarray(attention_overlay(_scene(), w * 1e-5, scale_max=0.5, size=64)).astype(int)
    assert np.abs(faint - np.asarray(_scene()).astype(int)).max() <= 1  # 0.0005% on a 0 … 50% scale: invisible
    own = np.asarray(attention_overlay(_scene(), w * 1e-5, scale_max=0.5e-5, size=64)).astype(int)
    same = np.asarray(attention_overlay(_scene(), w, scale_max=0.5, size=64)).astype(int)
    assert np.abs(own - same).max() <= 1  # the same ratio to the scale: the same picture (up to rounding)
    with pytest.raises(ValueError):
        attention_overlay(_scene(), -w, scale_max=0.5)


# ---------------------------------------------------------------- window, scale, filter, metric text
def test_attention_window_starts_at_the_chosen_probe_and_wraps():
    ids = ["a", "b", "c", "d", "e"]
    assert hv.attention_window(ids, None, 4) == ([0, 1, 2, 3], None)
    assert hv.attention_window(ids, "d", 4) == ([3, 4, 0, 1], None)
    assert hv.attention_window(ids[:2], "b", 4) == ([1, 0], None)
    shown, problem = hv.attention_window(ids, "zz", 2)
    assert shown == [0, 1] and "'zz' has no stored attention map" in problem


def test_attention_scale_is_the_max_over_the_shown_probes():
    attn = np.zeros((3, 2, 2, 4))
    attn[0, 1, 1, 2] = 0.9  # another head, a shown probe
    attn[1, 0, 0, 0] = 0.2  # this head, a shown probe
    attn[2, 0, 0, 1] = 0.95  # this head, a probe not shown
    assert hv.attention_scale(attn, [0, 1], 0, 0, "model") == 0.9
    assert hv.attention_scale(attn, [0, 1], 0, 0, "head") == 0.2
    with pytest.raises(WorkbenchError, match="unknown attention scale"):
        hv.attention_scale(attn, [0], 0, 0, "image")


def test_task_filter_never_mixes_families_unless_asked():
    tasks = ["relation", "verify", "color", "count", "relation"]
    fams = [hv.family_of(t) for t in tasks]
    assert fams == ["spatial", "spatial", "control", "control", "spatial"]
    assert hv.default_task(fams) == "spatial"
    assert hv.task_mask("spatial", tasks, fams).tolist() == [True, True, False, False, True]
    assert hv.task_mask("task:count", tasks, fams).tolist() == [False, False, False, True, False]
    assert hv.task_mask("all", tasks, fams).all()
    assert hv.normalize_task("count", tasks) == "task:count" and hv.normalize_task("spatial", tasks) == "spatial"
    labels = {c["value"]: c["n"] for c in hv.task_choices(tasks, fams)}
    assert labels == {"spatial": 3, "control": 2, "all": 5, "task:color": 1, "task:count": 1, "task:relation": 2,
                      "task:verify": 1}
    with pytest.raises(WorkbenchError, match="no probe of this sweep matches"):
        hv.task_mask("task:shape", tasks, fams)
    assert "all" not in {c["value"] for c in hv.task_choices(["relation"], ["spatial"])}  # one family: no "all" to mix


def test_metric_notes_state_definition_and_sign():
    note = hv.metric_note("logit_diff")
    assert "intervened − clean" in note and "negative = the intervention hurts the correct answer" in note
    assert "no sign" in hv.metric_note("kl") and hv.metric_axis("kl").startswith("KL(clean ‖ intervened)")
    assert hv.metric_axis("accuracy") == "Δ accuracy"


# ---------------------------------------------------------------- head_detail on a hand-built store
@pytest.fixture
def store(tmp_path):
    """A 2-layer × 3-head sweep of 8 generated probes (spatial and control), their copy, and attention maps of 6 of them
    on a 2 × 2 patch grid; plus an MLP sweep of the same probes."""
    probes = generate(ProbeConfig(n=8, seed=3, canvas=32))
    lib = Library(tmp_path)
    lib.add_probes(probes)
    rng = np.random.default_rng(5)
    alphas = (0.0, 2.0)
    values = rng.normal(size=(8, 2, 2, 3))
    keys = {}
    for target, heads in (("heads", 3), ("mlp", 1)):
        rows = [{"layer": la, "head": h if target == "heads" else -1, "alpha": alphas[a], "probe_id": it.id, "task": it.task,
                 "relation": it.relation or "", "value": values[p, a, la, h]}
                for p, it in enumerate(probes.items) for a in range(2) for la in range(2) for h in range(heads)]
        key = (target[0] * 64)[:64]
        st = EffectStore(tmp_path)
        st.ensure(key, {"model": "toy", "model_fingerprint": "f" * 64, "shape": [2, 3], "probes": probes.name,
                        "probeset_hash": probes.hash, "n_probes": 8,
                        "spec": {"alphas": list(alphas), "metric": "logit_diff", "positions": "last", "target": target},
                        "chunks": ["c0"]})
        st.write_chunk(key, "c0", pd.DataFrame(rows))
        keys[target] = key
    attn = torch.from_numpy(rng.dirichlet(np.ones(10), size=(6, 2, 3))[..., :4].astype(np.float32))  # 4 patches + 6 text tokens
    ids = tuple(it.id for it in probes.items[:6])
    lib.save_attention("f" * 64, probes.hash, AttentionMaps(attn=attn, probe_ids=ids, grid=(2, 2)))
    return tmp_path, keys, values, probes, attn.numpy()


def test_head_detail_averages_spatial_probes_and_shares_one_attention_scale(store):
    root, keys, values, probes, attn = store
    d = data.head_detail(root, keys["heads"], 1, 2, attention_probes=3)
    spatial = np.array([it.family == "spatial" for it in probes.items])
    assert 0 < spatial.sum() < 8 and d["task"] == "spatial" and d["n_curve"] == spatial.sum()
    by_alpha = {p["alpha"]: p["mean"] for p in d["curve"]}
    assert by_alpha[0.0] == pytest.approx(values[spatial, 0, 1, 2].mean()) and by_alpha[1.0] == 0.0
    family = {it.id: it.family for it in probes.items}
    assert d["affected"] and all(family[p["probe_id"]] == "spatial" for p in d["affected"])
    for r, n in d["relation_n"].items():
        assert n == sum(it.relation == r for it in probes.items)
    assert [a["probe_id"] for a in d["attention"]] == [it.id for it in probes.items[:3]]
    assert d["attention_scale"] == pytest.approx(attn[:3].max())  # every head of the model, the shown probes
    assert [a["mass"] for a in d["attention"]] == pytest.approx(attn[:3, 1, 2].sum(-1))
    moved = data.head_detail(root, keys["heads"], 1, 2, attention_probes=3, probe=probes.items[4].id, scale="head")
    assert [a["probe_id"] for a in moved["attention"]] == [probes.items[i].id for i in (4, 5, 0)]
    assert moved["attention_scale"] == pytest.approx(attn[[4, 5, 0], 1, 2].max())
    everything = data.head_detail(root, keys["heads"], 1, 2, task="all", probe="nope")
    assert everything["n_curve"] == 8 and "'nope' has no stored attention map" in everything["problems"][0]


def test_an_mlp_site_is_labelled_mlp_and_has_no_attention(store):
    root, keys, values, _, _ = store
    for head in (-1, 0):
        d = data.head_detail(root, keys["mlp"], 1, head)
        assert (d["site"], d["is_mlp"], d["head"], d["attention"]) == ("L1 MLP", True, -1, [])
    with pytest.raises(WorkbenchError, match="on attention heads, not MLPs"):
        data.head_detail(root, keys["heads"], 1, -1)
