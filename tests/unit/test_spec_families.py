"""SweepSpec over the site axis and the intervention families: what each family accepts and refuses, and that a
scale spec's JSON (hence every stored sweep's key) is what it was before families existed."""

from __future__ import annotations

import pytest

from workbench import axis
from workbench.errors import WorkbenchError
from workbench.sweeps.spec import SweepSpec


def test_a_scale_spec_keeps_its_pre_family_json():
    # the exact dict SweepSpec.to_json() wrote before intervention/direction/min_gap existed
    assert SweepSpec(alphas=(0.0, 0.5)).to_json() == {"alphas": [0.0, 0.5], "positions": "last", "metric": "logit_diff",
                                                     "target": "heads", "metric_version": 1}


def test_family_defaults_and_round_trip():
    assert SweepSpec().alphas == (0.0,)
    patch = SweepSpec(intervention="patch", direction="denoising", target="mlp", min_gap=0.5)
    assert patch.alphas == (1.0,) and patch.to_json()["direction"] == "denoising"
    assert SweepSpec.from_json(patch.to_json()) == patch
    assert SweepSpec(intervention="temperature", target="edges").alphas == axis.TEMPERATURE.default_alphas


@pytest.mark.parametrize("kwargs, words", [
    ({"intervention": "patch"}, "patching needs a direction"),
    ({"intervention": "patch", "direction": "sideways"}, "unknown direction 'sideways'"),
    ({"direction": "noising"}, "applies to patching only"),
    ({"intervention": "patch", "direction": "noising", "alphas": (0.0,)}, "has no α"),
    ({"intervention": "patch", "direction": "noising", "metric": "accuracy"}, "not 'accuracy'"),
    ({"intervention": "temperature", "target": "heads", "alphas": (2.0,)}, "does not apply to attention heads"),
    ({"intervention": "temperature", "target": "edges", "alphas": (0.0, 2.0)}, "temperature must be > 0"),
    ({"intervention": "patch", "direction": "noising", "target": "edges"}, "does not apply to attention edges"),
    ({"min_gap": 0.5}, "min_gap applies to patching only"),
    ({"target": "neurons"}, "unknown target 'neurons'"),
    ({"intervention": "steer"}, "unknown intervention 'steer'"),
])
def test_refusals_name_the_problem(kwargs, words):
    with pytest.raises(WorkbenchError, match=words):
        SweepSpec(**kwargs)


def test_site_kinds_shape_and_label_results():
    assert axis.HEADS.result_shape(5, 2, 6, 8) == (5, 2, 6, 8) and axis.MLP.result_shape(5, 2, 6, 8) == (5, 2, 6)
    assert axis.MLP.sites(range(2, 4), 8) == [(2, axis.NO_HEAD), (3, axis.NO_HEAD)]
    assert axis.EDGES.sites([1], 2) == [(1, 0), (1, 1)]
    assert [axis.KINDS[k].label(3, 5) for k in ("heads", "edges")] == ["L3H5", "L3H5→img"]
    assert axis.MLP.label(3) == "L3 MLP" and axis.MLP.width(8) == 1 and axis.HEADS.n_sites(6, 8) == 48
