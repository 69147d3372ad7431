"""The app's pure data layer against a hand-built store: means, intervals, head details, exports."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.app import data, exports
from workbench.discovery.headsets import HeadSet
from workbench.errors import WorkbenchError
from workbench.scale.vector import ScaleVector
from workbench.store.effects import EffectStore

ALPHAS = (0.0, 2.0)
RELATIONS = ("left", "right", "left", "above", "below", "left")


@pytest.fixture
def store(tmp_path):
    """A 3-layer × 4-head sweep of 6 probes; value = seeded random, so every aggregate has a numpy oracle."""
    rng = np.random.default_rng(7)
    values = rng.normal(size=(6, 2, 3, 4))  # [probe, alpha, layer, head]
    rows = [{"layer": layer, "head": head, "alpha": ALPHAS[a], "probe_id": f"p{p}", "task": "relation", "relation": RELATIONS[p],
             "value": values[p, a, layer, head]} for p in range(6) for a in range(2) for layer in range(3) for head in range(4)]
    st = EffectStore(tmp_path)
    key = "k" * 64
    st.ensure(key, {"model": "toy", "model_fingerprint": "f" * 64, "family": "LLaVA-1.5", "shape": [3, 4], "probes": "toyprobes",
                    "probeset_hash": "h" * 64, "n_probes": 6,
                    "spec": {"alphas": list(ALPHAS), "metric": "logit_diff", "positions": "last", "target": "heads"},
                    "chunks": ["c0", "c1"]})
    frame = pd.DataFrame(rows)
    st.write_chunk(key, "c0", frame[frame["probe_id"] < "p3"])
    st.write_chunk(key, "c1", frame[frame["probe_id"] >= "p3"])
    return tmp_path, key, values


def test_catalog_lists_the_sweep_with_its_spec(store):
    root, key, _ = store
    (row,) = data.catalog(root)
    assert (row["key"], row["model"], row["alphas"], row["complete"], row["shape"]) == (key, "toy", [0.0, 2.0], True, [3, 4])


def test_matrix_is_the_mean_over_probes_with_a_bootstrap_interval(store):
    root, key, values = store
    m = data.matrix(root, key, 2.0)
    np.testing.assert_allclose(m.mean, values[:, 1].mean(0), atol=1e-12)
    assert m.n_probes == 6 and (m.low <= m.mean + 1e-12).all() and (m.mean <= m.high + 1e-12).all()
    left = data.matrix(root, key, 0.0, "left")
    mask = np.array([r == "left" for r in RELATIONS])
    np.testing.assert_allclose(left.mean, values[mask, 0].mean(0), atol=1e-12)
    assert left.n_probes == 3


def test_bootstrap_equals_an_explicit_resampling_loop():
    values = np.random.default_rng(1).normal(size=(9, 5))
    low, high = data.bootstrap(values, n_boot=200, seed=3)
    idx = np.random.default_rng(3).integers(0, 9, 200 * 9).reshape(200, 9)
    means = np.stack([values[i].mean(0) for i in idx])
    np.testing.assert_allclose(low, np.percentile(means, 2.5, axis=0), atol=1e-12)
    np.testing.assert_allclose(high, np.percentile(means, 97.5, axis=0), atol=1e-12)
    const_low, const_high = data.bootstrap(np.full((5, 2), 0.25))
    np.testing.assert_allclose([const_low, const_high], 0.25)


def test_unknown_alpha_relation_and_head_are_clear_errors(store):
    root, key, _ = store
    with pytest.raises(WorkbenchError, match="no α = 0.5"):
        data.matrix(root, key, 0.5)
    with pytest.raises(WorkbenchError, match="relation 'behind'"):
        data.matrix(root, key, 0.0, "behind")
    with pytest.raises(WorkbenchError, match="outside this model's 3 layers × 4 heads"):
        data.head_detail(root, key, 3, 0)


def test_head_detail_curve_relations_and_most_affected(store):
    root, key, values = store
    d = data.head_detail(root, key, 1, 2, top=3)
    v = values[:, :, 1, 2]
    assert [p["alpha"] for p in d["curve"]] == [0.0, 1.0, 2.0]
    identity = d["curve"][1]
    assert identity["identity"] and identity["mean"] == 0.0
    assert d["curve"][0]["mean"] == pytest.approx(v[:, 0].mean()) and d["curve"][2]["mean"] == pytest.approx(v[:, 1].mean())
    assert d["per_relation"]["left"] == pytest.approx([v[[0, 2, 5], 0].mean(), v[[0, 2, 5], 1].mean()])
    expected = [f"p{i}" for i in np.argsort(-np.abs(v[:, 0]), kind="stable")[:3]]
    assert [p["probe_id"] for p in d["affected"]] == expected
    assert d["attention"] == []  # no probe copy and no maps in this store: nothing to draw, no error


def test_head_detail_ranks_probes_at_the_explorers_alpha(store):
    root, key, values = store
    v = values[:, :, 1, 2]
    d = data.head_detail(root, key, 1, 2, top=3, alpha=2.0)
    assert d["ablation_alpha"] == 2.0 and not d["problems"]
    assert [p["probe_id"] for p in d["affected"]] == [f"p{i}" for i in np.argsort(-np.abs(v[:, 1]), kind="stable")[:3]]
    assert [p["effect"] for p in d["affected"]] == pytest.approx(sorted(v[:, 1], key=lambda x: -abs(x))[:3])
    unknown = data.head_detail(root, key, 1, 2, top=3, alpha=0.5)  # not swept: the default α, said in one line
    assert unknown["ablation_alpha"] == 0.0 and unknown["problems"] == [
        "α = 0.5 is not a ranked α of this sweep; ranking at α = 0"]


def test_headset_export_ranks_by_how_much_alpha_lowers_the_metric(store, tmp_path):
    root, key, values = store
    hs = exports.headset(root, key, 0.0, 3)
    mean = values[:, 0].mean(0)
    order = np.argsort(mean.ravel())[:3]
    assert list(hs.heads) == [(int(i) // 4, int(i) % 4) for i in order]
    assert hs.scores == pytest.approx(tuple(-mean.ravel()[order]))
    for fmt in ("json", "csv"):
        name, blob = exports.headset_file(hs, fmt)
        assert name.endswith(f".{fmt}")
        path = tmp_path / name
        path.write_bytes(blob)
        back = HeadSet.load(path)
        assert back.heads == hs.heads and back.model_fingerprint == "f" * 64
    assert json.loads(exports.headset_file(hs, "json")[1])["heads"] == [list(h) for h in hs.heads]
    exports.save_headset(root, hs, "top3")
    assert [(n, h.heads) for n, h in exports.saved_headsets(root)] == [("top3", hs.heads)]


def test_vector_exports_hold_the_saved_scales(tmp_path):
    attn = torch.linspace(0.5, 1.5, 12).reshape(3, 4)
    vec = ScaleVector(attn=attn, mlp=torch.tensor([1.0, 0.9, 1.1]), model="toy", model_fingerprint="f" * 64, positions="last",
                      mode="both", s_max=10.0,
                      metrics={"eval": {"before": {"spatial": 0.5}, "after": {"spatial": 0.75}, "probes": "t"}})
    vec.save(tmp_path / "scales" / "fix.safetensors")
    (row,) = data.vectors(tmp_path)
    assert (row["name"], row["before"]["spatial"], row["after"]["spatial"]) == ("fix", 0.5, 0.75)
    np.testing.assert_array_equal(data.vector_matrix(tmp_path, "fix")[0], attn.numpy())
    name, blob = exports.vector_file(tmp_path, "fix", "npy")
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        np.testing.assert_array_equal(np.load(io.BytesIO(z.read("eff_attn.npy"))), attn.numpy())
        assert np.load(io.BytesIO(z.read("eff_mlp.npy"))).shape == (3,)
    name, blob = exports.vector_file(tmp_path, "fix", "safetensors")
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        assert sorted(z.namelist()) == ["fix.json", "fix.safetensors"]
        z.extractall(tmp_path / "out")
    assert torch.equal(ScaleVector.load(tmp_path / "out" / "fix.safetensors").attn, attn)
    with pytest.raises(WorkbenchError, match="unknown vector format"):
        exports.vector_file(tmp_path, "fix", "pt")


def test_the_server_side_never_imports_model_code(store):
    """Building the app and computing every page's data loads no transformers / nnsight / model loader."""
    root, key, _ = store
    code = f"""
import sys
from workbench.app import create_app, data, exports
create_app({str(root)!r}, "toy")
data.head_detail({str(root)!r}, {key!r}, 1, 2)
data.matrix({str(root)!r}, {key!r}, 0.0)
exports.headset({str(root)!r}, {key!r}, 0.0, 2)
print(sorted(m for m in ("transformers", "nnsight", "transformer_lens", "workbench.models.load") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_running_app_reports_a_server_that_does_not_start(tmp_path):
    """The helper the browser tests and the benchmark use: a server that exits is one clear error with its output."""
    from workbench.app.background import running_app
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="did not start.*model folder /nonexistent/model does not exist"):
        with running_app(tmp_path, "--model", "/nonexistent/model", log=tmp_path / "app.log", timeout=60):
            pass
