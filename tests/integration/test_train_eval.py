"""``evaluate_vector`` and ``workbench scale train``'s stored evaluation: before / after on the held-out side, per family."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from workbench.cli import app
from workbench.errors import WorkbenchError
from workbench.evaluation import score
from workbench.models.load import load_vlm
from workbench.scale.train import evaluate_vector
from workbench.scale.vector import ScaleVector


@pytest.fixture(scope="module")
def probe_folder(tmp_path_factory, probes32):
    return probes32.save(tmp_path_factory.mktemp("p") / "probes")


def test_evaluate_vector_matches_scoring_with_and_without_the_vector(llava_folder, probes32):
    vlm = load_vlm(str(llava_folder), attn_implementation="eager")
    n_layers, n_heads = vlm.site.shape
    attn = torch.ones(n_layers, n_heads)
    attn[0, 1] = 0.0  # one head removed: "after" must be the model scored with that head ablated
    vec = ScaleVector(attn=attn, mlp=torch.ones(n_layers), model=vlm.name, model_fingerprint=vlm.fingerprint, positions="last",
                      mode="attn", s_max=10.0)
    ev = evaluate_vector(vlm, vec, probes32)
    assert ev["before"] == {**{"spatial": None, "control": None}, **score(vlm, probes32, backend="torch").by_task()}
    assert ev["after"] == {**{"spatial": None, "control": None},
                           **score(vlm, probes32, vec.interventions(), backend="torch").by_task()}
    assert (ev["n"], ev["probes"], ev["probes_hash"]) == (len(probes32), probes32.name, probes32.hash)
    assert ev["accuracy_before"] == ev["before"]["spatial"] and ev["accuracy_after"] == ev["after"]["spatial"]
    spatial_only = probes32.filter(lambda it: it.family == "spatial")
    assert evaluate_vector(vlm, vec, spatial_only)["before"]["control"] is None  # nothing measured it: None, never 0
    other = ScaleVector(attn=torch.ones(n_layers + 1, n_heads), mlp=torch.ones(n_layers + 1), model="x", model_fingerprint="",
                        positions="last", mode="attn", s_max=10.0)
    with pytest.raises(WorkbenchError, match="layers"):
        evaluate_vector(vlm, other, probes32)


def test_scale_train_stores_before_and_after_on_its_test_split(llava_folder, probe_folder, probes32, tmp_path):
    store = tmp_path / "store"
    r = CliRunner().invoke(app, [str(a) for a in ("scale", "train", "--model", llava_folder, "--probes", probe_folder,
                                                  "--store", store, "--out", "v", "--epochs", "1", "--batch", "8")])
    assert r.exit_code == 0, r.output
    ev = ScaleVector.load(store / "scales" / "v").metrics["eval"]
    test = probes32.split("test")
    assert ev["n"] == len(test) and ev["probes_hash"] == test.hash
    for side in ("before", "after"):
        assert {"spatial", "control", "all"} <= set(ev[side]) and all(0 <= ev[side][k] <= 1 for k in ("spatial", "control"))
    vlm = load_vlm(str(llava_folder), attn_implementation="eager")
    assert ev["before"]["spatial"] == score(vlm, test, backend="torch").by_task()["spatial"]  # the model alone, on the test split
    assert "test probes" in r.output and "control" in r.output
    r = CliRunner().invoke(app, [str(a) for a in ("scale", "train", "--model", llava_folder, "--probes", probe_folder,
                                                  "--store", store, "--split", "", "--out", "w", "--epochs", "1",
                                                  "--batch", "8")])
    assert r.exit_code == 0, r.output
    assert "eval" not in ScaleVector.load(store / "scales" / "w").metrics and "not measured" in r.output
