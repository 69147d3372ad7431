"""The explorer's pure view functions and the fast store read, against hand-built stores and numpy oracles."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from workbench.app import data
from workbench.app import explorer_view as view
from workbench.errors import WorkbenchError
from workbench.organism import DEFAULT_MODEL, DEFICIT_MODEL
from workbench.store import effects
from workbench.store.effects import EffectStore

TASKS = ("relation", "relation", "verify", "color", "count", "relation", "exists")
RELATIONS = ("left", "above", "left", "", "", "below", "")
ALPHAS = (0.0, 0.5, 2.0)


def _write(st: EffectStore, key: str, values: np.ndarray, target: str = "heads", model: str = "toy",
           shuffle: int | None = None) -> None:
    """values ``[probe, alpha, layer, head]`` as a two-chunk sweep (rows optionally shuffled within each chunk)."""
    n_p, n_a, n_l, n_h = values.shape
    st.ensure(key, {"model": model, "model_fingerprint": "f" * 64, "family": "LLaVA-1.5",
                    "shape": [n_l, n_h if target == "heads" else 4],
                    "probes": "toy", "probeset_hash": "h" * 64, "n_probes": n_p,
                    "spec": {"alphas": list(ALPHAS[:n_a]), "metric": "logit_diff", "positions": "last", "target": target},
                    "chunks": ["L000-002_P000000-000004", "L000-002_P000004-000007"]})
    rows = [{"layer": la, "head": h if target == "heads" else -1, "alpha": ALPHAS[a], "probe_id": f"p{p}", "task": TASKS[p],
             "relation": RELATIONS[p], "value": values[p, a, la, h]}
            for p in range(n_p) for a in range(n_a) for la in range(n_l) for h in range(n_h)]
    frame = pd.DataFrame(rows)
    for name, part in (("L000-002_P000000-000004", frame[frame["probe_id"] < "p4"]),
                       ("L000-002_P000004-000007", frame[frame["probe_id"] >= "p4"])):
        if shuffle is not None:
            part = part.sample(frac=1.0, random_state=shuffle)
        st.write_chunk(key, name, part)


@pytest.fixture
def store(tmp_path):
    values = np.random.default_rng(3).normal(size=(7, 3, 2, 3))
    st = EffectStore(tmp_path)
    _write(st, "a" * 64, values, shuffle=5)
    return tmp_path, "a" * 64, values


def test_sweep_data_is_the_dense_array_of_the_rows_in_any_order(store):
    root, key, values = store
    sd = data.sweep_data(root, key)
    assert sorted(sd.probe_ids) == [f"p{p}" for p in range(7)]  # each once, in the order the shuffled rows show them
    order = [int(p[1:]) for p in sd.probe_ids]
    np.testing.assert_array_equal(sd.values, values[order])
    assert sd.tasks == tuple(TASKS[i] for i in order) and sd.relations == tuple(RELATIONS[i] for i in order)


def test_fast_checksum_equals_numpy_string_bytes(tmp_path):
    """The chunk checksum built from arrow's dictionary equals the definition (numpy ``astype(str)`` bytes per column)."""
    def oracle(table):
        h = hashlib.sha256()
        for name in effects.COLUMNS:
            col = table.column(name).to_numpy(zero_copy_only=False)
            h.update(name.encode())
            h.update(np.ascontiguousarray(col.astype(str) if col.dtype == object else col).tobytes())
        return h.hexdigest()

    for rel in (["left", "", "ä→b", "above"], ["", "", "", ""], [None, "x", "yy", "z"]):
        f = pd.DataFrame({"layer": [0, 1, 2, 3], "head": [0, 0, 1, -1], "alpha": [0.0, 0.5, 2.0, 0.0],
                          "probe_id": ["p1", "p22", "p1", "p333"], "task": ["relation"] * 4, "relation": rel,
                          "value": [0.1, 0.2, 0.3, 0.4]})
        t = pa.Table.from_pandas(f, preserve_index=False)
        split = pa.concat_tables([t.slice(0, 1), t.slice(1)])
        assert effects._values_digest(t) == effects._values_digest(split) == oracle(t)
        pq.write_table(t, tmp_path / "c.parquet", row_group_size=2)  # two row groups: two dictionaries per column
        as_dict = pq.read_table(tmp_path / "c.parquet", read_dictionary=list(effects.STRING_COLUMNS))
        assert pa.types.is_dictionary(as_dict.column("probe_id").type) and as_dict.column("probe_id").num_chunks == 2
        assert effects._values_digest(as_dict) == oracle(t)


def test_task_filter_selects_the_family_or_task_and_refuses_an_absent_one(store):
    root, key, values = store
    sd = data.sweep_data(root, key)
    order = np.array([int(p[1:]) for p in sd.probe_ids])
    v = values[order]
    tasks = np.array([TASKS[i] for i in order])
    rels = np.array([RELATIONS[i] for i in order])
    for task, keep in (("spatial", np.isin(tasks, ["relation", "verify"])),
                       ("control", np.isin(tasks, ["color", "count", "exists"])),
                       ("verify", tasks == "verify"), (data.ALL, np.ones(7, bool))):
        m = data.matrix(root, key, 0.5, data.ALL, task)
        np.testing.assert_allclose(m.mean, v[keep, 1].mean(0), atol=1e-12)
        assert (m.n_probes, m.task) == (int(keep.sum()), task)
    left = data.matrix(root, key, 2.0, "left", "relation")
    np.testing.assert_allclose(left.mean, v[(tasks == "relation") & (rels == "left"), 2].mean(0), atol=1e-12)
    with pytest.raises(WorkbenchError, match="task 'shape'"):
        data.matrix(root, key, 0.0, data.ALL, "shape")
    with pytest.raises(WorkbenchError, match="relation 'below' among its verify probes"):
        data.matrix(root, key, 0.0, "below", "verify")


def test_task_options_default_to_spatial_and_label_the_mix():
    opts = view.task_options(TASKS)
    values = [o["value"] for o in opts]
    assert values == ["spatial", "control", "relation", "verify", "color", "count", "exists", data.ALL]
    assert opts[0]["label"] == "spatial (relation, verify) · n = 4" and "mixes spatial and control" in opts[-1]["label"]
    assert (view.default_task(TASKS) == "spatial" and view.default_task(("color",)) == "control"
            and view.default_task(("x",)) == data.ALL)


def test_query_round_trip_and_bad_values():
    q = view.parse_query({"key": "abc", "alpha": "0.5", "task": "control", "relation": "left", "search": "L3", "junk": "1"})
    assert q == {"key": "abc", "alpha": 0.5, "task": "control", "relation": "left", "search": "L3"}
    assert view.parse_query(dict(item.split("=") for item in view.to_query(q)[1:].split("&"))) == q
    assert view.parse_query({"alpha": "x"}) == {} and view.parse_query({"alpha": "nan"}) == {} and view.to_query({}) == ""
    assert view.parse_query({"task": ["spatial", "control"]}) == {"task": "spatial"}


def _row(key, model, alphas, created):
    return {"key": key, "model": model, "probes": "p", "target": "heads", "positions": "last", "metric": "logit_diff",
            "alphas": alphas, "created": created}


def test_resolve_opens_the_keyed_sweep_else_the_newest_with_the_alpha_asked_or_0():
    rows = [_row("n" * 64, "m1", [0.5], 3), _row("o" * 64, "m1", [0.0, 2.0], 2), _row("x" * 64, "m2", [0.0], 1)]  # newest first
    _, v = view.resolve(rows, {})  # the newest model's newest sweep that ablates (α = 0)
    assert v["key"] == "o" * 64 and v["alpha"] == 0.0
    _, v = view.resolve(rows, {"alpha": 0.5})
    assert v["key"] == "n" * 64
    _, v = view.resolve(rows, {"key": "o" * 64, "alpha": 2.0})
    assert (v["key"], v["model"], v["alpha"]) == ("o" * 64, "m1", 2.0)
    _, v = view.resolve(rows, {"key": "xxxxxx"})  # a unique prefix
    assert (v["key"], v["model"], v["alpha"]) == ("x" * 64, "m2", 0.0)
    _, v = view.resolve(rows, {"key": "zzzzzz", "model": "m2"})  # an unknown key: the filters decide
    assert v["key"] == "x" * 64
    _, v = view.resolve(rows, {"alpha": 2.0})
    assert v["key"] == "o" * 64
    assert view.resolve([], {})[1]["key"] is None


def test_ranked_table_and_search(store):
    root, key, _ = store
    m = data.matrix(root, key, 0.0, data.ALL, "spatial")
    rows = view.ranked(m)
    order = np.argsort(m.mean.ravel(), kind="stable")
    assert [(r["layer"], r["head"]) for r in rows] == [divmod(int(i), 3) for i in order]
    assert [r["rank"] for r in rows] == list(range(1, 7)) and rows[0]["mean"] == pytest.approx(m.mean.min())
    assert rows[0]["low"] <= rows[0]["mean"] <= rows[0]["high"]
    sites = [{"site": s} for s in ("L3H1", "L30H1", "L3H10", "L13H1", "L3 MLP")]
    assert [r["site"] for r in view.search_rows(sites, "l3")] == ["L3H1", "L3H10", "L3 MLP"]
    assert [r["site"] for r in view.search_rows(sites, "L3H1")] == ["L3H1"]
    assert [r["site"] for r in view.search_rows(sites, "mlp")] == ["L3 MLP"] and view.search_rows(sites, "") == sites
    mlp = view.ranked(data.Matrix(np.array([[0.3], [-0.2]]), np.zeros((2, 1)), np.zeros((2, 1)), 5, 0.0, data.ALL, "logit_diff"),
                      mlp=True)
    assert [(r["site"], r["head"]) for r in mlp] == [("L1 MLP", -1), ("L0 MLP", -1)]
    kl = view.ranked(data.Matrix(np.array([[0.1, 0.4]]), np.zeros((1, 2)), np.zeros((1, 2)), 5, 0.0, data.ALL, "kl"))
    assert kl[0]["site"] == "L0H1"  # kl: the largest change first


def test_small_multiples_share_one_symmetric_range(store):
    root, key, _ = store
    sd = data.sweep_data(root, key)
    panels, zrange = view.small_multiples(sd, 2.0, "spatial")
    assert [p["relation"] for p in panels] == ["above", "below", "left"]
    for p in panels:
        keep = np.array([r == p["relation"] for r in sd.relations])
        np.testing.assert_allclose(p["mean"], sd.values[keep, 2].mean(0), atol=1e-12)
        assert p["n"] == int(keep.sum())
    span = max(np.abs(p["mean"]).max() for p in panels)
    assert zrange == pytest.approx((-span, span))
    assert view.small_multiples(sd, 2.0, "control") == ([], None)


def test_matrix_csv_holds_mean_interval_and_rank(store):
    root, key, _ = store
    sd = data.sweep_data(root, key)
    m = data.matrix(root, key, 0.5, "left", "spatial")
    rows = list(csv.DictReader(io.StringIO(view.matrix_csv(m, sd, "spatial"))))
    assert len(rows) == 6
    for r in rows:
        la, h = int(r["layer"]), int(r["head"])
        assert float(r["mean"]) == m.mean[la, h] and float(r["ci_low"]) == m.low[la, h] and float(r["ci_high"]) == m.high[la, h]
        assert (r["site"], r["task"], r["relation"], r["alpha"], int(r["n_probes"])) == (
            f"L{la}H{h}", "spatial", "left", "0.5", m.n_probes)
    assert sorted(int(r["rank"]) for r in rows) == list(range(1, 7))


def test_planted_heads_come_from_the_deficit_folders_planted_json(tmp_path):
    planted = json.loads((DEFICIT_MODEL / "planted.json").read_text())["heads"]
    folder = view.model_folder(DEFICIT_MODEL.name, DEFAULT_MODEL)
    assert folder == DEFICIT_MODEL
    sites, record = view.planted_heads(folder, (6, 8))
    assert (sites == [tuple(h) for h in planted]
            and record["factor"] == json.loads((DEFICIT_MODEL / "planted.json").read_text())["factor"])
    assert view.planted_heads(view.model_folder(DEFAULT_MODEL.name, DEFAULT_MODEL), (6, 8)) is None  # the intact organism
    assert view.model_folder("no-such-model", DEFAULT_MODEL) is None and view.model_folder("../organism", DEFAULT_MODEL) is None
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "planted.json").write_text(json.dumps({"heads": [[0, 1], [9, 9]]}))
    assert view.planted_heads(tmp_path / "m", (6, 8))[0] == [(0, 1)]  # a site outside the sweep's shape is left out
    (tmp_path / "m" / "planted.json").write_text("not json")
    assert view.planted_heads(tmp_path / "m", (6, 8)) is None


def test_clean_rows_and_metric_definitions():
    assert view.clean_rows({}) is None and view.clean_rows({"clean": "x"}) is None
    rec = {"accuracy": {"all": 0.5, "color": 0.9, "relation": 0.3, "spatial": 0.35},
           "n": {"all": 10, "color": 4, "relation": 6, "spatial": 6},
           "chance": {"all": 0.3, "color": 0.25, "relation": 0.25, "spatial": 0.25}}
    rows = view.clean_rows({"clean": rec})
    assert [r["name"] for r in rows] == ["spatial", "relation", "color", "all"] and rows[1] == {"name": "relation",
                                                                                                 "accuracy": 0.3,
                                                                                                 "chance": 0.25, "n": 6}
    assert ("negative = the intervention hurts" in view.metric_definition("logit_diff")
            and "intervened − clean" in view.metric_definition("p_correct"))
    assert "no sign" in view.metric_definition("kl") and not view.hurts_low("kl")


def test_mlp_sweep_has_one_column(tmp_path):
    values = np.random.default_rng(4).normal(size=(7, 2, 2, 1))
    st = EffectStore(tmp_path)
    _write(st, "b" * 64, values, target="mlp")
    sd = data.sweep_data(tmp_path, "b" * 64)
    assert sd.values.shape == (7, 2, 2, 1) and view.is_mlp(sd)
    m = data.matrix(tmp_path, "b" * 64, 0.5, data.ALL, "control")
    keep = np.array([t in ("color", "count", "exists") for t in TASKS])
    np.testing.assert_allclose(m.mean, values[keep, 1].mean(0), atol=1e-12)
    assert [r["head"] for r in view.ranked(m, mlp=True)] == [-1, -1]
