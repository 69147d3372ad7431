"""The store, the aggregates and the app on the site axis and the intervention families, against hand-built stores.

A patching sweep is written straight through the store API (its manifest's spec is ``SweepSpec(intervention="patch",
...).to_json()``), with NaN for the probes it dropped, so the app's numbers are checked against NumPy oracles
computed here from the same array, before any engine produces one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from workbench import axis
from workbench.app import data, exports
from workbench.app import explorer_view as view
from workbench.app import head_visuals as hv
from workbench.app.jobs_view import alpha_options, describe, export_sweeps, rankable_alphas
from workbench.errors import WorkbenchError
from workbench.store.effects import EffectStore
from workbench.store.fsck import fsck
from workbench.sweeps import aggregate
from workbench.sweeps.spec import SweepSpec

N_LAYERS, N_HEADS, N_PROBES = 3, 4, 8
RELATIONS = ("left", "right", "left", "above", "below", "left", "right", "above")
DROPPED = (2, 5)  # probes the patching sweep could not normalise: NaN at every site
PATCH = SweepSpec(intervention="patch", direction="noising").to_json()
SCALE = SweepSpec(alphas=(0.0, 2.0)).to_json()


def write(st: EffectStore, key: str, spec: dict, values: np.ndarray, chunks: int = 2) -> None:
    """Sweep ``key`` with ``values [probe, alpha, layer, head]`` (head axis 1 for a per-layer kind), in ``chunks``
    probe chunks named as the engine names them."""
    kind = axis.kind(spec["target"])
    n_p = values.shape[0]
    edges = np.linspace(0, n_p, chunks + 1).astype(int)
    names = [f"L000-{N_LAYERS:03d}_P{a:06d}-{b:06d}" for a, b in zip(edges[:-1], edges[1:])]
    st.ensure(key, {"model": "toy", "model_fingerprint": "f" * 64, "family": "LLaVA-1.5", "shape": [N_LAYERS, N_HEADS],
                    "probes": "toyprobes", "probeset_hash": "h" * 64, "n_probes": n_p, "spec": spec, "chunks": names})
    for name, a, b in zip(names, edges[:-1], edges[1:]):
        rows = [{"layer": layer, "head": int(kind.stored_heads(np.array(h))), "alpha": float(alpha), "probe_id": f"p{p}",
                 "task": "relation", "relation": RELATIONS[p % len(RELATIONS)], "value": values[p, ai, layer, h]}
                for p in range(a, b) for ai, alpha in enumerate(spec["alphas"]) for layer in range(N_LAYERS)
                for h in range(values.shape[3])]
        st.write_chunk(key, name, pd.DataFrame(rows))


def patch_values(seed: int = 3) -> np.ndarray:
    v = np.random.default_rng(seed).uniform(-0.2, 1.0, size=(N_PROBES, 1, N_LAYERS, N_HEADS))
    v[list(DROPPED)] = np.nan
    return v


@pytest.fixture
def stores(tmp_path):
    st = EffectStore(tmp_path)
    pv = patch_values()
    sv = np.random.default_rng(4).normal(size=(N_PROBES, 2, N_LAYERS, N_HEADS))
    keys = {"patch": "a" * 64, "scale": "b" * 64, "mlp_patch": "c" * 64}
    write(st, keys["patch"], PATCH, pv)
    write(st, keys["scale"], SCALE, sv)
    mlp = SweepSpec(intervention="patch", direction="denoising", target="mlp").to_json()
    mv = np.random.default_rng(5).uniform(size=(N_PROBES, 1, N_LAYERS, 1))
    mv[list(DROPPED)] = np.nan
    write(st, keys["mlp_patch"], mlp, mv)
    return tmp_path, keys, {"patch": pv, "scale": sv, "mlp_patch": mv}


# ---------------------------------------------------------------- the store keeps NaN as a value
def test_nan_values_are_stored_verified_and_densified_exactly(stores):
    root, keys, vals = stores
    st = EffectStore(root)
    entry = st.entry(keys["patch"])
    assert (entry.complete, entry.problems) == (True, ())
    first = st.read_dense(keys["patch"])  # from the chunks, then cached
    assert (st.folder(keys["patch"]) / "dense.npz").is_file()
    again = EffectStore(root).read_dense(keys["patch"])  # from the dense copy
    for d in (first, again):
        np.testing.assert_array_equal(d.values, vals["patch"])  # NaN where it was written, every other value exact
    assert np.isnan(first.values[list(DROPPED)]).all() and not np.isnan(np.delete(first.values, DROPPED, 0)).any()
    assert fsck(root) == []


def test_a_missing_chunk_is_incomplete_not_nan(stores):
    root, keys, _ = stores
    st = EffectStore(root)
    (st.folder(keys["patch"]) / f"{st.manifest(keys['patch'])['chunks'][1]}.parquet").unlink()
    assert not st.entry(keys["patch"]).complete
    with pytest.raises(WorkbenchError, match=r"is incomplete \(1 of 2 chunks missing\)"):
        st.read_dense(keys["patch"])


def test_a_cell_no_row_wrote_is_refused_not_read_as_nan(tmp_path):
    """A chunk whose rows repeat one cell and so leave another without a row (its checksum is its own, its row
    count right) is refused: a hole is not a dropped probe."""
    st = EffectStore(tmp_path)
    key = "d" * 64
    spec = SweepSpec(intervention="patch", direction="noising").to_json()
    name = f"L000-{N_LAYERS:03d}_P000000-000002"
    st.ensure(key, {"model": "toy", "model_fingerprint": "f" * 64, "shape": [N_LAYERS, N_HEADS], "probes": "t",
                    "probeset_hash": "h" * 64, "n_probes": 2, "spec": spec, "chunks": [name]})
    rows = [{"layer": layer, "head": h, "alpha": 1.0, "probe_id": f"p{p}", "task": "relation", "relation": "left",
             "value": 0.5} for p in range(2) for layer in range(N_LAYERS) for h in range(N_HEADS)]
    rows[-1] = {**rows[-1], "head": 0}  # L2H3 of p1 never written, L2H0 twice
    st.write_chunk(key, name, pd.DataFrame(rows))
    with pytest.raises(WorkbenchError, match="lacks 1 of its 24 effects"):
        st.read_dense(key)


def test_read_result_is_the_engines_shape_in_the_asked_probe_order(stores):
    root, keys, vals = stores
    st = EffectStore(root)
    order = [f"p{i}" for i in (7, 0, 3)]
    heads = st.read_result(keys["scale"], order)
    np.testing.assert_array_equal(heads, vals["scale"][[7, 0, 3]])
    mlp = st.read_result(keys["mlp_patch"])
    assert mlp.shape == (N_PROBES, 1, N_LAYERS)  # [probe, alpha, layer]: a per-layer kind has no head axis
    np.testing.assert_array_equal(mlp, vals["mlp_patch"][..., 0])
    with pytest.raises(WorkbenchError, match="holds no probe 'zz'"):
        st.read_result(keys["scale"], ["p0", "zz"])


def test_an_unknown_target_is_a_manifest_problem(stores):
    root, keys, _ = stores
    st = EffectStore(root)
    path = st.folder(keys["scale"]) / "manifest.json"
    m = json.loads(path.read_text())
    m["spec"]["target"] = "neurons"
    path.write_text(json.dumps(m))
    with pytest.raises(WorkbenchError, match="unknown spec.target 'neurons'"):
        st.manifest(keys["scale"])


# ---------------------------------------------------------------- one bootstrap, NaN-aware
def test_bootstrap_with_nan_equals_an_explicit_resampling_loop():
    v = np.random.default_rng(1).normal(size=(9, 5))
    v[[1, 4], :] = np.nan  # two dropped probes
    v[6, 2] = np.nan  # one probe missing at one site only
    v[:, 4] = np.nan  # a site no probe measured
    low, high = aggregate.bootstrap_ci(v, n_boot=300, seed=3)
    idx = np.random.default_rng(3).integers(0, 9, 300 * 9).reshape(300, 9)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        means = np.stack([np.nanmean(v[i], 0) for i in idx])
    np.testing.assert_allclose(low[:4], np.nanpercentile(means[:, :4], 2.5, axis=0), atol=1e-12)
    np.testing.assert_allclose(high[:4], np.nanpercentile(means[:, :4], 97.5, axis=0), atol=1e-12)
    assert np.isnan(low[4]) and np.isnan(high[4])
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(aggregate.mean(v)[:4], np.nanmean(v[:, :4], 0), atol=1e-12)
    assert np.isnan(aggregate.mean(v)[4])
    assert aggregate.n_used(v).tolist() == [7, 7, 6, 7, 0]


def test_the_app_and_the_api_bootstrap_are_one_function():
    torch = pytest.importorskip("torch")
    v = np.random.default_rng(2).normal(size=(12, 3))
    low, high = data.bootstrap(v)
    tl, th = aggregate.bootstrap_ci(torch.from_numpy(v))
    assert isinstance(tl, torch.Tensor) and tl.dtype == torch.float64
    np.testing.assert_array_equal(low, tl.numpy())
    np.testing.assert_array_equal(high, th.numpy())
    assert aggregate.N_BOOT == 1000


# ---------------------------------------------------------------- the app on a patching sweep
def test_default_alpha_is_family_aware():
    assert data.default_alpha([0.0, 1.0, 2.0]) == 0.0
    assert data.default_alpha([1.0, 2.0]) == 2.0  # scale: never the identity when another α exists
    assert data.default_alpha([1.0], "patch") == 1.0  # patching's one α is the patched site: selectable
    assert data.default_alpha([2.0, 0.5, 1.0], "temperature") == 0.5  # the family's first default
    assert data.default_alpha([1.0, 3.0], "temperature") == 3.0
    assert rankable_alphas([1.0], "patch") == [1.0] and rankable_alphas([1.0]) == []
    opts, first = alpha_options([1.0], "patch")
    assert first == 1.0 and opts == [{"label": "1 (fully patched)", "value": 1.0, "disabled": False}]


def test_patch_matrix_is_the_nanmean_over_the_probes_used_and_counts_them(stores):
    root, keys, vals = stores
    m = data.matrix(root, keys["patch"], 1.0)
    v = vals["patch"][:, 0]
    np.testing.assert_allclose(m.mean, np.nanmean(v, 0), atol=1e-12)
    assert (m.n_probes, m.dropped, m.intervention) == (N_PROBES, len(DROPPED), "patch")
    assert (m.n_used == N_PROBES - len(DROPPED)).all()
    low, high = aggregate.bootstrap_ci(v)
    np.testing.assert_array_equal(m.low, low)
    np.testing.assert_array_equal(m.high, high)
    left = data.matrix(root, keys["patch"], 1.0, "left")  # probes 0, 2, 5: two of them dropped
    np.testing.assert_allclose(left.mean, v[0], atol=1e-12)
    assert (left.n_probes, left.dropped) == (3, 2)


def test_catalog_and_picker_name_the_intervention(stores):
    root, keys, _ = stores
    rows = {r["key"]: r for r in data.catalog(root)}
    patch, scale = rows[keys["patch"]], rows[keys["scale"]]
    assert "patch · noising · heads@last" in patch["label"] and "α" not in patch["label"]
    assert "logit_diff · heads@last · α 0, 2" in scale["label"]
    assert view.intervention_label(patch) == "heads · patch · noising · last token"
    assert view.intervention_label(scale) == "heads · last token"  # as before families: old links keep working
    assert view.intervention_label(rows[keys["mlp_patch"]]) == "mlp · patch · denoising · last token"
    options, chosen = view.resolve([patch, scale], {"key": keys["patch"][:8]})
    assert (chosen["key"], chosen["alpha"]) == (keys["patch"], 1.0)
    assert chosen["intervention"] == "heads · patch · noising · last token"
    assert view.resolve([patch, scale], {"intervention": "heads · last token"})[1]["alpha"] == 0.0


def test_patch_ranking_is_largest_effect_first_and_labels_come_from_the_kind(stores):
    root, keys, vals = stores
    m = data.matrix(root, keys["patch"], 1.0)
    rows = view.ranked(m, kind=axis.HEADS)
    flat = np.nanmean(vals["patch"][:, 0], 0).ravel()
    best = int(np.argmax(flat))
    assert rows[0]["site"] == f"L{best // N_HEADS}H{best % N_HEADS}" and rows[0]["mean"] == pytest.approx(flat.max())
    assert [r["mean"] for r in rows] == sorted(flat.tolist(), reverse=True)
    assert rows[0]["n"] == N_PROBES - len(DROPPED)
    edges = view.ranked(m, kind=axis.EDGES)
    assert edges[0]["site"] == f"L{best // N_HEADS}H{best % N_HEADS}→img"
    scale = data.matrix(root, keys["scale"], 0.0)
    assert view.ranked(scale)[0]["mean"] == pytest.approx(float(scale.mean.min()))  # Δ: most negative first


def test_value_units_keep_patching_off_the_delta_scale(stores):
    assert data.value_unit(PATCH) == "fraction of the logit difference" == data.PATCH_UNIT
    assert data.value_unit(SCALE) == "Δ logit_diff"
    assert view.diverging("logit_diff", "patch") and view.high_first("logit_diff", "patch")
    assert hv.metric_axis("logit_diff", "patch") == hv.PATCH_AXIS
    note = view.metric_definition("logit_diff", "patch")
    assert note.startswith("Normalized patching effect (patched − base) / (source − base)") and "dropped" in note
    assert "Δ" not in note
    assert "temperature = 1 is the unchanged model" in view.metric_definition("logit_diff", "temperature")


def test_head_detail_of_a_patch_site_ranks_by_effect_and_lists_the_dropped(stores):
    root, keys, vals = stores
    d = data.head_detail(root, keys["patch"], 1, 2)
    col = vals["patch"][:, 0, 1, 2]
    assert (d["site"], d["intervention"], d["direction"], d["alpha_name"]) == ("L1H2", "patch", "noising", "")
    assert [p["probe_id"] for p in d["dropped"]] == [f"p{i}" for i in DROPPED]
    used = [i for i in range(N_PROBES) if i not in DROPPED]
    expect = sorted(used, key=lambda i: -col[i])
    assert [p["probe_id"] for p in d["affected"]] == [f"p{i}" for i in expect]
    assert d["n_ranked"] == len(used)
    assert [(c["alpha"], c["n"]) for c in d["curve"]] == [(1.0, len(used))]  # no identity point: patching has no α = 1 identity
    assert d["curve"][0]["mean"] == pytest.approx(np.nanmean(col))
    assert d["metric_axis"] == hv.PATCH_AXIS
    assert d["intervention_phrase"] == "patching the head's output from the counterfactual run into the clean run (noising)"
    mlp = data.head_detail(root, keys["mlp_patch"], 2, -1)
    assert (mlp["site"], mlp["is_mlp"], mlp["attention"]) == ("L2 MLP", True, [])
    assert mlp["intervention_phrase"].endswith("from the clean run into the counterfactual run (denoising)")


def test_headset_from_a_patch_sweep_ranks_by_normalized_effect_and_says_so(stores):
    root, keys, vals = stores
    hs = exports.headset(root, keys["patch"], 1.0, 3)
    flat = np.nanmean(vals["patch"][:, 0], 0).ravel()
    top = np.argsort(-flat, kind="stable")[:3]
    assert hs.heads == tuple((int(i) // N_HEADS, int(i) % N_HEADS) for i in top)
    assert hs.scores == pytest.approx(tuple(flat[top]))
    assert hs.method == f"patch:noising@last:{keys['patch'][:12]}"
    scale = exports.headset(root, keys["scale"], 0.0, 2, "left")
    sflat = np.nanmean(vals["scale"][[0, 2, 5], 0], 0).ravel()
    stop = np.argsort(sflat, kind="stable")[:2]  # most negative first, score = −mean
    assert scale.heads == tuple((int(i) // N_HEADS, int(i) % N_HEADS) for i in stop)
    assert scale.scores == pytest.approx(tuple(-sflat[stop]))
    assert scale.method == f"sweep:logit_diff@alpha=0:left:{keys['scale'][:12]}"
    with pytest.raises(WorkbenchError, match="intervened on MLPs, not heads"):
        exports.headset(root, keys["mlp_patch"], 1.0, 2)
    listed = {o["value"]: o for o in export_sweeps(data.catalog(root))[0]}
    assert set(listed) == {keys["patch"], keys["scale"]} and not listed[keys["patch"]]["disabled"]


def test_a_patch_job_card_says_what_runs():
    text = describe("sweep", {"model": "/m/organism", "probes": "default", "alphas": [1.0], "metric": "logit_diff",
                              "positions": "last", "target": "heads", "intervention": "patch", "direction": "denoising"})
    assert text.startswith("target: every attention head, one at a time · intervention: patching the head's output from "
                           "the clean run into the counterfactual run (denoising) · positions: last token · "
                           "value: normalized effect of the logit difference")
    assert "α" not in text


def test_cli_heads_export_of_a_patch_sweep(stores, tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.discovery.headsets import HeadSet

    root, keys, vals = stores
    out = tmp_path / "hs.json"
    r = CliRunner().invoke(app, ["heads", "export", "--sweep", keys["patch"][:10], "--out", str(out), "--k", "2",
                                 "--store", str(root)])
    assert r.exit_code == 0, r.output
    hs = HeadSet.load(out)
    flat = np.nanmean(vals["patch"][:, 0], 0).ravel()
    top = np.argsort(-flat, kind="stable")[:2]
    assert hs.heads == tuple((int(i) // N_HEADS, int(i) % N_HEADS) for i in top)
    assert hs.method.startswith("patch:noising@last:")
    r = CliRunner().invoke(app, ["heads", "export", "--sweep", keys["mlp_patch"][:10], "--out", str(tmp_path / "m.json"),
                                 "--store", str(root)])
    assert r.exit_code == 2 and "intervened on MLPs, not heads" in r.output


def test_store_shows_summary_rows_are_the_explorers_numbers(stores):
    """``aggregate.top_sites`` (for ``workbench store show``) on the dense reader gives, per site, the mean, interval
    and count the explorer's matrix gives over all probes."""
    root, keys, vals = stores
    st = EffectStore(root)
    dense = st.read_dense(keys["patch"])
    rows = aggregate.top_sites(dense.values, dense.alphas, dense.relations, lambda layer, head: axis.HEADS.label(layer, head),
                               n=5)
    m = data.matrix(root, keys["patch"], 1.0, data.ALL, data.ALL)
    flat = np.nanmean(vals["patch"][:, 0], 0)
    assert [r["site"] for r in rows] == [f"L{i // N_HEADS}H{i % N_HEADS}" for i in np.argsort(-np.abs(flat).ravel())[:5]]
    for r in rows:
        assert (r["mean"], r["low"], r["high"], r["n_used"]) == (m.mean[r["layer"], r["head"]], m.low[r["layer"], r["head"]],
                                                                 m.high[r["layer"], r["head"]], m.n_used[r["layer"], r["head"]])
    left = [i for i, rel in enumerate(dense.relations) if rel == "left"]
    assert rows[0]["relations"]["left"] == pytest.approx(np.nanmean(dense.values[left, 0, rows[0]["layer"], rows[0]["head"]]))


def test_a_temperature_sweep_of_edges_is_labelled_by_its_kind_and_family(tmp_path):
    st = EffectStore(tmp_path)
    spec = SweepSpec(intervention="temperature", target="edges").to_json()  # α = the temperatures 0.5, 2
    v = np.random.default_rng(6).normal(size=(N_PROBES, 2, N_LAYERS, N_HEADS))
    key = "e" * 64
    write(st, key, spec, v)
    (row,) = data.catalog(tmp_path)
    assert "logit_diff · edges@last · temperature 0.5, 2" in row["label"]
    assert view.intervention_label(row) == "edges · temperature · last token"
    d = data.head_detail(tmp_path, key, 1, 2)
    assert (d["site"], d["alpha_name"], d["ablation_alpha"]) == ("L1H2→img", "temperature", 0.5)
    assert [(c["alpha"], c.get("identity", False)) for c in d["curve"]] == [(0.5, False), (1.0, True), (2.0, False)]
    assert d["intervention_phrase"] == "dividing the head's attention logits from the last token to the image by the temperature"
    m = data.matrix(tmp_path, key, 0.5)
    assert view.ranked(m, kind=data.sweep_data(tmp_path, key).kind)[0]["site"].endswith("→img")
    hs = exports.headset(tmp_path, key, 2.0, 2)
    assert hs.method == f"temperature-edges:logit_diff@temperature=2:{key[:12]}"
    assert data.value_unit(spec) == "Δ logit_diff"
