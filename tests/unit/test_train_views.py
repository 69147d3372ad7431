"""The Train and Compare pages' pure pieces: accuracy cells, the planted-head count, α choices, shared colour ranges."""

from __future__ import annotations

import json

import numpy as np
import torch

from workbench.app import data
from workbench.app.train_views import (
    NOT_MEASURED,
    alpha_choices,
    eval_cells,
    model_label,
    pct,
    planted_count,
    result_line,
    shared_range,
    symmetric_range,
)
from workbench.organism import DEFICIT_MODEL
from workbench.scale.vector import ScaleVector


def test_percentages_and_what_nobody_measured():
    assert pct(0.544) == "54.4%" and pct(1) == "100.0%" and pct(0.0) == "0.0%"
    assert pct(None) == pct(float("nan")) == pct("x") == pct(True) == NOT_MEASURED
    cells = eval_cells({"spatial": 0.5, "control": 0.25}, {"spatial": 0.75})
    assert cells == {"spatial before": "50.0%", "spatial after": "75.0%", "control before": "25.0%",
                     "control after": NOT_MEASURED}
    assert set(eval_cells(None, None).values()) == {NOT_MEASURED}
    line = result_line("fix", {"spatial": 0.5, "control": 1.0}, {"spatial": 1.0, "control": 1.0}, 500)
    assert line == "saved fix: spatial 50.0% → 100.0%, control 100.0% → 100.0% on 500 test probes"


def test_the_damaged_head_count_is_read_from_planted_json(tmp_path):
    (tmp_path / "planted.json").write_text(json.dumps({"heads": [[0, 1], [2, 3], [1, 1]], "factor": 0.1}))
    assert planted_count(tmp_path) == 3 and model_label("d", tmp_path) == "d (3 damaged heads)"
    assert planted_count(tmp_path / "none") is None and model_label("intact", tmp_path / "none") == "intact"
    (tmp_path / "planted.json").write_text("not json")
    assert planted_count(tmp_path) is None
    shipped = json.loads((DEFICIT_MODEL / "planted.json").read_text())["heads"]
    assert model_label("organism-deficit", DEFICIT_MODEL) == f"organism-deficit ({len(shipped)} damaged heads)"


def test_alpha_choices_prefer_ablation_and_never_default_to_the_identity():
    assert alpha_choices([(0.0, 0.5, 2.0), (2.0, 0.0)]) == ([0.0, 0.5, 2.0], 0.0)
    assert alpha_choices([(1.0, 2.0), (0.5,)]) == ([0.5, 1.0, 2.0], 0.5)
    assert alpha_choices([(1.0, 3.0)]) == ([1.0, 3.0], 3.0)
    assert alpha_choices([]) == ([], None)


def test_shared_range_covers_every_panel_symmetrically():
    a = np.array([[1.0, 1.2], [0.9, 1.0]])  # largest |v − 1| = 0.2
    b = np.array([[1.0, 0.5], [1.1, 1.0]])  # largest |v − 1| = 0.5
    lo, hi = shared_range([a, b], 1.0)
    assert np.isclose(lo, 0.5) and np.isclose(hi, 1.5)
    assert np.allclose(symmetric_range(b - a), (-0.7, 0.7))  # b − a = [[0, −0.7], [0.2, 0]]
    lo, hi = shared_range([np.ones((2, 2))], 1.0)  # nothing moved: a tiny range, never an empty one
    assert lo < 1.0 < hi


def test_vector_rows_carry_spatial_and_control_or_say_not_measured(tmp_path):
    base = dict(mlp=torch.ones(2), model="toy", model_fingerprint="f" * 64, positions="all", mode="attn", s_max=10.0)
    ev = {"probes": "t", "probes_hash": "h", "n": 8, "before": {"spatial": 0.5, "control": 1.0, "all": 0.75},
          "after": {"spatial": 1.0, "control": 0.875, "all": 0.9375}, "accuracy_before": 0.5, "accuracy_after": 1.0}
    ScaleVector(attn=torch.ones(2, 3), metrics={"eval": ev}, **base).save(tmp_path / "scales" / "measured.safetensors")
    ScaleVector(attn=torch.ones(2, 3), metrics={}, **base).save(tmp_path / "scales" / "bare.safetensors")
    rows = {r["name"]: r for r in data.vectors(tmp_path)}
    m, b = rows["measured"], rows["bare"]
    assert m["measured"] and m["eval_n"] == 8 and m["before"]["control"] == 1.0 and m["after"]["control"] == 0.875
    assert eval_cells(m["before"], m["after"]) == {"spatial before": "50.0%", "spatial after": "100.0%",
                                                   "control before": "100.0%", "control after": "87.5%"}
    assert not b["measured"] and b["eval_n"] is None and set(eval_cells(b["before"], b["after"]).values()) == {NOT_MEASURED}
