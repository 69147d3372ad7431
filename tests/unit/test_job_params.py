"""Form input → job parameters: every bad field is named, with the fix."""

from __future__ import annotations

import pytest

from workbench.jobs.params import DEFAULT_PROBES, STUDY_TRAIN, FieldError, parse_alphas, parse_heads, sweep_params, train_params


def test_alphas_parse_and_keep_order():
    assert parse_alphas("0, .5,2") == (0.0, 0.5, 2.0)
    assert parse_alphas("1.5;0") == (1.5, 0.0)


@pytest.mark.parametrize("text, message", [("", "no α values"), ("0, x", "'x' is not a number"), ("nan", "not a finite number"),
                                           ("0, .5,2, 2", "α 2 is given twice")])
def test_bad_alphas_name_the_field(text, message):
    with pytest.raises(FieldError, match=message) as e:
        parse_alphas(text)
    assert e.value.field == "alphas"


def test_heads_parse_in_both_notations():
    assert parse_heads("L0H4, L2H1") == [[0, 4], [2, 1]]
    assert parse_heads("0:4 2:1; l3h5, L0H4") == [[0, 4], [2, 1], [3, 5]]


@pytest.mark.parametrize("text, message", [("", "the head set is empty"), ("  ,; ", "the head set is empty"),
                                           ("L0H", "'L0H' is not a head")])
def test_bad_heads_name_the_field(text, message):
    with pytest.raises(FieldError, match=message) as e:
        parse_heads(text)
    assert e.value.field == "heads"


def test_sweep_params_validate_every_choice(tmp_path):
    p = sweep_params(tmp_path, "org/model", alphas="0, 2", metric="kl")
    assert (p["alphas"], p["metric"], p["probes"], p["positions"]) == ([0.0, 2.0], "kl", DEFAULT_PROBES, "last")
    for kwargs, field in [({"metric": "bleu"}, "metric"), ({"positions": "first"}, "positions"),
                          ({"probes": str(tmp_path)}, "probes"), ({"model": "/no/such/folder"}, "model"),
                          ({"model": ""}, "model")]:
        with pytest.raises(FieldError) as e:
            sweep_params(tmp_path, **{"model": "org/model", **kwargs})
        assert e.value.field == field


def test_train_params(tmp_path):
    p = train_params(tmp_path, "org/model", "fix-1", heads="L1H2")
    assert p["heads"] == [[1, 2]] and all(p[k] == v for k, v in STUDY_TRAIN.items())  # the defaults: the organism study's
    assert train_params(tmp_path, "org/model", "fix-1")["heads"] is None  # None = all heads; "" is an error
    for kwargs, field in [({"name": "bad name"}, "name"), ({"heads": ""}, "heads"), ({"epochs": 0}, "epochs"),
                          ({"lr": "fast"}, "lr"), ({"mode": "mlp", "heads": "L0H0"}, "heads"), ({"s_max": -1}, "s_max")]:
        with pytest.raises(FieldError) as e:
            train_params(tmp_path, **{"model": "org/model", "name": "fix", **kwargs})
        assert e.value.field == field
