"""The job forms' refusals (α = 1 alone, heads outside the model, an empty head set), the ETA, and what job cards and
the Export page say — pure functions, checked against hand-written configs, rows and hand-computed numbers."""

from __future__ import annotations

import json

import pytest

from workbench.app.jobs_view import (
    alpha_options,
    describe,
    eta_text,
    explorer_href,
    export_sweeps,
    progress_text,
    rankable_alphas,
)
from workbench.jobs.params import (
    DEFAULT_PROBES,
    FieldError,
    check_heads_in_model,
    check_not_identity,
    heads_for_model,
    model_shape,
    sweep_params,
    train_params,
)
from workbench.jobs.registry import Job
from workbench.jobs.worker import FileReporter


def model_folder(tmp_path, **text) -> str:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava", "text_config": text}))
    return str(tmp_path)


# ------------------------------------------------------------ α = 1 alone
@pytest.mark.parametrize("alphas", ["1", "1.0", " 1 "])
def test_alpha_one_alone_is_refused_under_the_alpha_field(tmp_path, alphas):
    with pytest.raises(FieldError, match="α = 1 alone is the identity") as e:
        sweep_params(tmp_path, "org/model", alphas=alphas)
    assert e.value.field == "alphas"


def test_alpha_one_among_other_factors_is_fine(tmp_path):
    assert sweep_params(tmp_path, "org/model", alphas="1, 0")["alphas"] == [1.0, 0.0]
    check_not_identity((0.5,))  # no identity at all


# ------------------------------------------------------------ heads against the model's shape
def test_model_shape_reads_the_text_config_or_a_flat_one(tmp_path):
    assert model_shape(model_folder(tmp_path, num_hidden_layers=6, num_attention_heads=8)) == (6, 8)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "config.json").write_text(json.dumps({"num_hidden_layers": 3, "num_attention_heads": 2}))
    assert model_shape(str(flat)) == (3, 2)


@pytest.mark.parametrize("config", [None, "{not json", json.dumps({"text_config": {"num_hidden_layers": 6}}),
                                    json.dumps({"num_hidden_layers": True, "num_attention_heads": 8})])
def test_model_shape_is_unknown_rather_than_guessed(tmp_path, config):
    if config is not None:
        (tmp_path / "config.json").write_text(config)
    assert model_shape(str(tmp_path)) is None
    assert model_shape("org/hub-model") is None


def test_a_head_outside_the_model_is_refused_naming_the_shape(tmp_path):
    model = model_folder(tmp_path, num_hidden_layers=6, num_attention_heads=8)
    assert heads_for_model("L0H0, L5H7", model) == [[0, 0], [5, 7]]  # the corners are inside
    with pytest.raises(FieldError) as e:
        heads_for_model("L0H4, L9H9", model)
    assert e.value.field == "heads"
    assert e.value.problem == "L9H9 is outside the model: it has 6 layers × 8 heads (L0H0 to L5H7)"
    with pytest.raises(FieldError, match="L6H0, L0H8 are outside the model: it has 6 layers × 8 heads"):
        heads_for_model("L6H0 L0H8 L1H1", model)


def test_an_empty_head_set_is_refused_and_an_unknown_shape_checks_only_that():
    with pytest.raises(FieldError, match="the head set is empty") as e:
        check_heads_in_model([], (6, 8))
    assert e.value.field == "heads"
    check_heads_in_model([[99, 99]], None)  # a hub id: the job checks once the model is loaded
    with pytest.raises(FieldError, match="the head set is empty"):
        heads_for_model(" , ", "org/hub-model")


# ------------------------------------------------------------ the ETA
def job(state="running", **progress) -> Job:
    return Job(id="j", kind="sweep", params={}, state=state, created=0.0, progress=progress)


def test_eta_extrapolates_the_measured_rate_from_the_last_update():
    j = job(done=10, total=40, since=100.0, since_done=0, at=110.0)  # 10 units in 10 s: 30 left → 30 s after t = 110
    assert j.eta(now=110.0) == pytest.approx(30.0)
    assert j.eta(now=115.0) == pytest.approx(25.0)
    assert j.eta(now=200.0) == 0.0  # overdue: never negative
    # units done before this total was set do not count towards the rate: 20 − 12 = 8 units in 4 s → 2 units/s
    assert job(done=20, total=40, since=100.0, since_done=12, at=104.0).eta(now=104.0) == pytest.approx(10.0)


@pytest.mark.parametrize("j", [job(done=0, total=40, since=100.0, since_done=0, at=100.0), job(done=0, total=0),
                               job(done=5, total=40), job(state="done", done=40, total=40, since=100.0, since_done=0, at=140.0)])
def test_no_eta_until_a_rate_is_measurable_nor_for_a_finished_job(j):
    assert j.eta(now=1e9) is None


def test_eta_text():
    assert [eta_text(s) for s in (None, 0.0, 5.2, 59.0, 65.0, 3599.5, 3700.0)] == [
        "ETA —", "ETA 0 s", "ETA 6 s", "ETA 59 s", "ETA 1 min 05 s", "ETA 1 h 00 min", "ETA 1 h 02 min"]


def test_progress_text_gives_the_share_of_units_and_the_eta():
    assert progress_text(job(done=10, total=40, since=100.0, since_done=0, at=110.0), now=110.0) == ("25%", "ETA 30 s")
    assert progress_text(job(done=0, total=40, since=100.0, since_done=0, at=100.0)) == ("0%", "ETA —")
    assert progress_text(job(state="cancelled", done=3, total=40)) == ("8%", "")


def test_the_worker_measures_the_rate_from_the_first_finished_unit(tmp_path, monkeypatch):
    (tmp_path / "status.json").write_text(json.dumps({"state": "running", "progress": {"done": 0, "total": 0, "message": ""}}))
    clock = iter([50.0, 100.0, 103.0, 105.0, 106.0, 107.0, 108.0])
    monkeypatch.setattr("workbench.jobs.worker.time.time", lambda: next(clock))
    rep = FileReporter(tmp_path, min_interval=0.0)

    def progress() -> dict:
        return json.loads((tmp_path / "status.json").read_text())["progress"]

    rep.progress(0, 0, "loading")  # t = 50: a message only, no total yet
    rep.progress(0, 40, "computing", chunks_done=0)  # t = 100: the total is set
    rep.progress(4, 40)  # t = 103: the first units, after the start-up: the measurement starts here
    assert job(**progress()).eta(now=103.0) is None  # one point is no rate
    rep.progress(8, 40)  # t = 105: 4 units in 2 s
    assert progress() == {"done": 8, "total": 40, "message": "computing", "base_done": 0, "since": 103.0, "since_done": 4,
                          "at": 105.0, "chunks_done": 0}
    assert job(**progress()).eta(now=105.0) == pytest.approx(16.0)  # 32 left at 2 units/s
    rep.progress(0, 0, "a warning")  # t = 106: message only, the measurement stands
    assert (progress()["since"], progress()["done"], progress()["message"]) == (103.0, 8, "a warning")
    rep.progress(1, 1, "attention maps")  # t = 107: a new total starts a new measurement
    p = progress()
    assert (p["base_done"], p["since"], p["since_done"], p["at"], p["done"], p["total"]) == (1, None, None, 107.0, 1, 1)


# ------------------------------------------------------------ what a card says
def test_a_sweep_card_says_target_intervention_positions_alphas_probes_and_model():
    params = {"model": "/models/organism", "probes": DEFAULT_PROBES, "alphas": [0.0, 0.5, 2.0], "metric": "logit_diff",
              "positions": "last", "target": "heads"}
    assert describe("sweep", params) == (
        "target: every attention head, one at a time · intervention: scaling the head's output by α · "
        "positions: last token · "
        "α: 0, 0.5, 2 · metric: logit_diff · probes: the organism's held-out spatial set (default) · model: organism")
    mlp = describe("sweep", {**params, "target": "mlp", "positions": "all", "probes": "/data/probes/spatial32",
                             "model": "org/vlm-7b"})
    assert mlp.startswith("target: every layer's MLP, one at a time · intervention: scaling the layer's MLP output by α · "
                          "positions: every token")
    assert mlp.endswith("probes: spatial32 · model: org/vlm-7b")


def test_a_library_copy_of_a_probe_set_is_named_by_its_header(tmp_path):
    (tmp_path / "probeset.json").write_text(json.dumps({"name": "spatial-48", "n_items": 48}))  # the folder is only a hash
    text = describe("sweep", {"probes": str(tmp_path), "model": "m", "alphas": [0]})
    assert text.endswith("probes: spatial-48 (48) · model: m")


def test_a_training_card_names_its_heads():
    text = describe("train", {"model": "/m/organism-deficit", "probes": DEFAULT_PROBES, "mode": "attn", "heads": [[0, 4], [2, 1]],
                              "positions": "all", "epochs": 15, "lr": 0.01, "batch": 32})
    assert "heads: L0H4, L2H1" in text and "positions: every token" in text and text.endswith("model: organism-deficit")
    assert "probes: the study's repair set (every task), tested on the organism's held-out set (default)" in text


def test_the_explorer_link_carries_the_key():
    assert explorer_href("3f2a9c") == "/?key=3f2a9c"
    assert explorer_href("3f2a9c", alpha=0.5, relation=None) == "/?key=3f2a9c&alpha=0.5"


# ------------------------------------------------------------ Export: never rank on α = 1
def row(key, alphas, complete=True, target="heads") -> dict:
    return {"key": key, "alphas": alphas, "complete": complete, "target": target, "label": f"sweep {key}"}


def test_export_lists_an_identity_sweep_disabled_and_preselects_the_newest_usable_one():
    rows = [row("ident", [1.0]), row("mlp", [0.0], target="mlp"), row("partial", [0.0], complete=False), row("good", [0.0, 1.0]),
            row("older", [2.0])]
    options, first = export_sweeps(rows)
    assert first == "good"
    assert options == [{"label": "sweep ident (α = 1 only: the identity, every effect 0, nothing to rank)", "value": "ident",
                        "disabled": True},
                       {"label": "sweep good", "value": "good", "disabled": False},
                       {"label": "sweep older", "value": "older", "disabled": False}]
    alone = export_sweeps([row("ident", [1.0])])
    assert alone == ([{"label": "sweep ident (α = 1 only: the identity, every effect 0, nothing to rank)", "value": "ident",
                       "disabled": True}], None)


def test_rank_by_alpha_disables_the_identity():
    assert rankable_alphas([1.0, 0.0, 2.0]) == [0.0, 2.0]
    options, value = alpha_options([1.0, 0.0, 2.0])
    assert value == 0.0 and [o["disabled"] for o in options] == [True, False, False]
    assert options[0]["label"] == "1 (identity: nothing to rank)"
    assert alpha_options([1.0])[1] is None


def test_the_training_form_refuses_a_head_outside_the_model_folder(tmp_path):
    model = model_folder(tmp_path, num_hidden_layers=6, num_attention_heads=8)
    with pytest.raises(FieldError, match=r"^L9H9 is outside the model: it has 6 layers × 8 heads \(L0H0 to L5H7\)") as e:
        train_params(tmp_path, model, "fix", heads="L0H4, L9H9")
    assert e.value.field == "heads"
    assert train_params(tmp_path, model, "fix", heads="L5H7")["heads"] == [[5, 7]]
