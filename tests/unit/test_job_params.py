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


# ------------------------------------------------------------ intervention families
def _probe_folder(tmp_path, tasks):
    from workbench.probes.generate import ProbeConfig, generate

    folder = tmp_path / "-".join(tasks)
    generate(ProbeConfig(n=6, seed=0, tasks=tasks)).save(folder)
    return str(folder)


def test_a_patch_sweep_takes_no_alpha_and_a_direction(tmp_path):
    p = sweep_params(tmp_path, "org/model", alphas="", intervention="patch", direction="denoising", min_gap="0.25")
    assert (p["alphas"], p["intervention"], p["direction"], p["min_gap"], p["target"]) == ([1.0], "patch", "denoising",
                                                                                          0.25, "heads")
    assert p["label"] == "sweep patch denoising"
    scale = sweep_params(tmp_path, "org/model", alphas="0", direction="noising")  # a direction is ignored off patching
    assert (scale["intervention"], scale["direction"], scale["min_gap"]) == ("scale", "", 0.0)
    t = sweep_params(tmp_path, "org/model", alphas="0.5, 2", intervention="temperature", target="edges")
    assert (t["alphas"], t["target"]) == ([0.5, 2.0], "edges")


@pytest.mark.parametrize("kwargs, field, message", [
    ({"intervention": "patch", "direction": "noising", "alphas": "0, 2"}, "alphas", "the patch intervention has no α"),
    ({"intervention": "patch", "direction": ""}, "direction", "patching needs a direction"),
    ({"intervention": "patch", "direction": "sideways"}, "direction", "unknown direction 'sideways'"),
    ({"intervention": "patch", "direction": "noising", "metric": "kl"}, "metric", "patching normalises"),
    ({"intervention": "patch", "direction": "noising", "target": "edges"}, "target", "does not apply to attention edges"),
    ({"intervention": "temperature", "alphas": "0.5"}, "target", "temperature intervention does not apply to attention heads"),
    ({"intervention": "ablate"}, "intervention", "unknown intervention 'ablate'"),
    ({"intervention": "patch", "direction": "noising", "min_gap": -1}, "min_gap", "min_gap must be at least 0"),
])
def test_family_refusals_name_their_field(tmp_path, kwargs, field, message):
    kwargs = {"alphas": "", **kwargs}
    with pytest.raises(FieldError, match=message) as e:
        sweep_params(tmp_path, "org/model", **kwargs)
    assert e.value.field == field


def test_patching_needs_probes_with_counterfactuals(tmp_path):
    spatial = _probe_folder(tmp_path, ("relation",))
    assert sweep_params(tmp_path, "org/model", spatial, alphas="", intervention="patch", direction="noising")["probes"] == spatial
    mixed = _probe_folder(tmp_path, ("color", "relation"))
    with pytest.raises(FieldError, match=r"probes of .* have no counterfactual .* so they cannot be patched") as e:
        sweep_params(tmp_path, "org/model", mixed, alphas="", intervention="patch", direction="noising")
    assert e.value.field == "probes"
    assert sweep_params(tmp_path, "org/model", mixed, alphas="0")["probes"] == mixed  # scaling needs no partner


def test_the_job_builds_the_spec_its_params_describe(tmp_path):
    from workbench.jobs.tasks import sweep_spec
    from workbench.sweeps.spec import SweepSpec

    p = sweep_params(tmp_path, "org/model", alphas="", intervention="patch", direction="noising", min_gap=0.5)
    assert sweep_spec(p) == SweepSpec(intervention="patch", direction="noising", min_gap=0.5)
    old = {"alphas": [0.0, 2.0], "positions": "last", "metric": "logit_diff", "target": "mlp"}  # a job from before families
    assert sweep_spec(old).to_json() == SweepSpec(alphas=(0.0, 2.0), target="mlp").to_json()
