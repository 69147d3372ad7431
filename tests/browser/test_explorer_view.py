"""The explorer as a shareable view, in a real browser, on a store of generated sweeps (written through the store API):
URL state through reload and Back, ``/?key=`` opening an older sweep, the task filter, the ranked table, the CSV
download, planted heads framed on the planted-deficit organism, and an MLP sweep drawn as MLPs.

Every expected value comes from the store through ``workbench.app.data`` (the oracle the page must match), never
from a copied figure."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest

from tests.browser.conftest import GRAPH, checked_page, screenshot, z_of
from workbench.app import data
from workbench.app.background import running_app
from workbench.organism import DEFAULT_MODEL, DEFICIT_MODEL
from workbench.store.effects import EffectStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TASKS = ("relation", "relation", "relation", "relation", "verify", "verify", "color", "color", "shape", "count", "count",
         "exists")
RELATIONS = ("left", "right", "above", "below", "left", "right", "", "", "", "", "", "")


def write_sweep(store: EffectStore, model: str, alphas, target: str = "heads", seed: int = 0, clean: dict | None = None) -> str:
    """A complete sweep of the organism's shape (6 layers × 8 heads) on 12 probes of mixed tasks, seeded random values;
    control probes are offset by +0.5 so that the spatial and control matrices differ everywhere."""
    n_layers, n_heads = 6, 8
    heads = n_heads if target == "heads" else 1
    rng = np.random.default_rng(seed)
    values = rng.normal(scale=0.2, size=(len(TASKS), len(alphas), n_layers, heads))
    values[[t not in ("relation", "verify") for t in TASKS]] += 0.5
    key = f"{seed:02d}" * 32
    manifest = {"model": model, "model_fingerprint": f"{seed}" * 64, "family": "LLaVA-1.5", "shape": [n_layers, n_heads],
                "probes": "generated", "probeset_hash": "e" * 64, "n_probes": len(TASKS),
                "spec": {"alphas": list(alphas), "metric": "logit_diff", "positions": "last", "target": target},
                "chunks": ["L000-006_P000000-000012"]}
    if clean:
        manifest["clean"] = clean
    store.ensure(key, manifest)
    rows = [{"layer": layer, "head": head if target == "heads" else -1, "alpha": float(a), "probe_id": f"q{p:02d}",
             "task": TASKS[p], "relation": RELATIONS[p], "value": float(values[p, ai, layer, head])}
            for p in range(len(TASKS)) for ai, a in enumerate(alphas) for layer in range(n_layers) for head in range(heads)]
    store.write_chunk(key, "L000-006_P000000-000012", pd.DataFrame(rows))
    return key


NEAR_CHANCE = {"accuracy": {"spatial": 0.4, "relation": 0.3, "verify": 0.55, "control": 0.9, "all": 0.65},
               "n": {"spatial": 6, "relation": 4, "verify": 2, "control": 6, "all": 12},
               "chance": {"spatial": 1 / 3, "relation": 0.25, "verify": 0.5, "control": 0.4, "all": 0.37}}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("explorer-view")
    st = EffectStore(root / "store")
    keys = {"planted": write_sweep(st, DEFICIT_MODEL.name, (0.0, 2.0), seed=1),
            "mlp": write_sweep(st, DEFAULT_MODEL.name, (0.0, 2.0), target="mlp", seed=2),
            "old": write_sweep(st, DEFAULT_MODEL.name, (0.0, 2.0), seed=3),
            "new": write_sweep(st, DEFAULT_MODEL.name, (0.0, 0.5), seed=4, clean=NEAR_CHANCE)}
    with running_app(root / "store", "--no-default-sweep", log=root / "app.log") as url:
        yield {"url": url, "store": root / "store", "keys": keys}


@pytest.fixture
def pg(chromium, app, request):
    """A fresh browser context on the app; the test fails on any console error."""
    with checked_page(chromium, request.node.name, height=1100) as page:
        yield page


def shows(page, key: str, task_text: str) -> None:
    """Wait until the page shows sweep ``key`` with a title naming ``task_text``."""
    page.locator("#explorer-info").get_by_text(f"sweep {key[:12]}").wait_for(timeout=30_000)
    page.locator("#explorer-heatmap .gtitle", has_text=task_text).wait_for(timeout=30_000)


def choose(page, control: str, label: str) -> None:
    """Pick ``label`` in the Dash dropdown ``#explorer-<control>``."""
    page.click(f"#explorer-{control}")
    page.get_by_role("option", name=label).first.click()


def test_url_state_survives_reload_and_back(pg, app):
    page = pg
    store, new = app["store"], app["keys"]["new"]
    page.goto(app["url"])
    shows(page, new, "spatial probes")  # the newest sweep; spatial by default, and said so
    spatial = data.matrix(store, new, 0.0, data.ALL, "spatial")
    assert (np.allclose(z_of(page), spatial.mean, atol=1e-9)
            and "n = 6" in page.locator("#explorer-heatmap .gtitle").text_content())
    choose(page, "task", "control (")
    page.wait_for_url("**task=control*", timeout=15_000)
    shows(page, new, "control probes")
    control = data.matrix(store, new, 0.0, data.ALL, "control")
    assert np.allclose(z_of(page), control.mean, atol=1e-9)
    choose(page, "alpha", "0.5")
    page.wait_for_url("**alpha=0.5*", timeout=15_000)
    page.locator("#explorer-heatmap .gtitle", has_text="α = 0.5").wait_for(timeout=15_000)
    at_half = data.matrix(store, new, 0.5, data.ALL, "control").mean
    assert np.allclose(z_of(page), at_half, atol=1e-9)
    page.reload()
    page.locator("#explorer-heatmap .gtitle", has_text="α = 0.5").wait_for(timeout=30_000)
    assert "task=control" in page.url and np.allclose(z_of(page), at_half, atol=1e-9)
    page.go_back()  # α = 0 again, still control
    page.wait_for_function("!window.location.search.includes('alpha=0.5')", timeout=15_000)
    page.locator("#explorer-heatmap .gtitle", has_text="α = 0 (control").wait_for(timeout=15_000)
    assert np.allclose(z_of(page), control.mean, atol=1e-9)
    page.go_back()  # the first view: newest sweep, spatial
    page.locator("#explorer-heatmap .gtitle", has_text="spatial probes").wait_for(timeout=15_000)
    assert np.allclose(z_of(page), spatial.mean, atol=1e-9)


def test_a_key_in_the_url_opens_that_older_sweep_and_the_warning_shows_only_where_recorded(pg, app):
    page = pg
    store, old, new = app["store"], app["keys"]["old"], app["keys"]["new"]
    page.goto(f"{app['url']}/?key={old}&alpha=2")
    shows(page, old, "α = 2 (spatial")
    assert np.allclose(z_of(page), data.matrix(store, old, 2.0, data.ALL, "spatial").mean, atol=1e-9)
    assert "clean accuracy not recorded" in page.locator("#explorer-clean").inner_text()
    assert page.locator("#explorer-warning").inner_text() == ""
    assert page.locator("#explorer-sweep").inner_text().strip().endswith(old[:8])  # the picker names it
    choose(page, "sweep", new[:8])  # the picker opens another sweep
    page.wait_for_url(f"**key={new}*", timeout=15_000)
    shows(page, new, "spatial probes")
    assert "near chance" in page.locator("#explorer-warning").inner_text()  # relation 30% of 4 probes, chance 25%
    assert "relation" in page.locator("#explorer-clean").inner_text()
    screenshot(page, "explorer-clean-warning")


def test_ranked_table_search_and_click_open_the_head_page(pg, app):
    page = pg
    store, old = app["store"], app["keys"]["old"]
    m = data.matrix(store, old, 0.0, data.ALL, "spatial")
    order = np.argsort(m.mean.ravel(), kind="stable")
    first = divmod(int(order[0]), 8)
    page.goto(f"{app['url']}/?key={old}")
    shows(page, old, "spatial probes")
    cells = page.locator("#explorer-table td[data-column='site']")
    cells.first.wait_for(timeout=15_000)
    assert cells.first.inner_text() == f"L{first[0]}H{first[1]}"  # rank 1 = the most negative mean
    page.fill("#explorer-search", "L4H")
    page.press("#explorer-search", "Enter")
    page.wait_for_url("**search=L4H*", timeout=15_000)
    page.wait_for_function(  # the table redrawn for the search (the URL can change before the rows do)
        """() => { const c = [...document.querySelectorAll("#explorer-table td[data-column='site']")];
                   return c.length > 0 && c.every(td => td.innerText.startsWith("L4H")); }""", timeout=30_000)
    sites = page.locator("#explorer-table td[data-column='site']").all_inner_texts()
    assert sorted(sites) == sorted(f"L4H{h}" for h in range(8))
    target = sites[2]
    page.locator("#explorer-table td[data-column='site']", has_text=target).first.click()
    page.wait_for_url("**/head?*", timeout=15_000)
    assert f"key={old}" in page.url and "layer=4" in page.url and f"head={target.split('H')[1]}" in page.url
    page.locator("#head-title").get_by_text(target).wait_for(timeout=15_000)
    page.go_back()
    page.wait_for_url("**search=L4H*", timeout=15_000)


def test_csv_download_holds_the_matrix_shown(pg, app):
    page = pg
    store, new = app["store"], app["keys"]["new"]
    page.goto(f"{app['url']}/?key={new}&alpha=0.5&task=spatial&relation=left")
    shows(page, new, "relation left")
    with page.expect_download(timeout=30_000) as dl:
        page.click("#explorer-csv")
    text = open(dl.value.path(), encoding="utf-8").read()
    rows = list(csv.DictReader(io.StringIO(text)))
    m = data.matrix(store, new, 0.5, "left", "spatial")
    assert len(rows) == m.mean.size and dl.value.suggested_filename.endswith(".csv")
    got = np.zeros_like(m.mean)
    for r in rows:
        got[int(r["layer"]), int(r["head"])] = float(r["mean"])
        assert (r["sweep"], r["task"], r["relation"], int(r["n_probes"])) == (new, "spatial", "left", m.n_probes)
        assert float(r["ci_low"]) == pytest.approx(m.low[int(r["layer"]), int(r["head"])], abs=1e-12)
    np.testing.assert_allclose(got, m.mean, atol=1e-12)
    assert np.allclose(z_of(page), m.mean, atol=1e-9)  # the file is what the heatmap shows
    with page.expect_download(timeout=30_000) as svg:
        page.click("#explorer-svg")
    assert svg.value.suggested_filename.endswith(".svg") and "<svg" in open(svg.value.path(), encoding="utf-8").read(2000)


def test_planted_heads_framed_on_the_deficit_organism_and_per_relation_panels_share_one_scale(pg, app):
    page = pg
    store, key = app["store"], app["keys"]["planted"]
    planted = json.loads((DEFICIT_MODEL / "planted.json").read_text())["heads"]
    page.goto(f"{app['url']}/?key={key}")
    shows(page, key, "spatial probes")
    g = GRAPH.format(id="explorer-heatmap")
    shapes = page.evaluate(f"{g}.layout.shapes.map(s => [s.y0 + 0.5, s.x0 + 0.5])")
    assert sorted(map(tuple, shapes)) == sorted(map(tuple, planted))
    assert page.locator("#explorer-heatmap .layer-above path, #explorer-heatmap .shapelayer path").count() >= len(planted)
    assert "planted.json" in page.locator("#explorer-planted").inner_text()
    sm = GRAPH.format(id="explorer-multiples")
    page.wait_for_function(f"{sm} && {sm}.data && {sm}.data.length > 0", timeout=15_000)
    traces = page.evaluate(f"{sm}.data.map(t => [t.coloraxis, t.z])")
    sd = data.sweep_data(store, key)
    rels = sorted(set(RELATIONS) - {""})
    assert [t[0] for t in traces] == ["coloraxis"] * len(rels)  # one colour axis for every panel
    for (_, z), r in zip(traces, rels):
        np.testing.assert_allclose(np.array(z, dtype=float), sd.values[sd.mask(r, "spatial"), 0].mean(0), atol=1e-9)
    cax = page.evaluate(f"{sm}.layout.coloraxis")
    span = max(np.abs(np.array(z, dtype=float)).max() for _, z in traces)
    assert cax["cmin"] == pytest.approx(-span) and cax["cmax"] == pytest.approx(span)
    screenshot(page, "explorer-planted")


def test_an_mlp_sweep_is_drawn_as_mlps_and_opens_the_mlp_page(pg, app):
    page = pg
    store, key = app["store"], app["keys"]["mlp"]
    page.goto(f"{app['url']}/?key={key}")
    shows(page, key, "one layer's MLP is scaled")
    g = GRAPH.format(id="explorer-heatmap")
    assert page.evaluate(f"{g}.layout.xaxis.ticktext") == ["MLP"]
    assert np.allclose(z_of(page), data.matrix(store, key, 0.0, data.ALL, "spatial").mean, atol=1e-9)
    assert "negative = the intervention hurts" in page.locator("#explorer-definition").inner_text()
    screenshot(page, "explorer-mlp")
    box = page.evaluate(f"""(() => {{ const gd = {g}; const r = gd.getBoundingClientRect(); const fl = gd._fullLayout;
        return [r.left + fl.xaxis._offset + fl.xaxis.d2p(0), r.top + fl.yaxis._offset + fl.yaxis.d2p(3)]; }})()""")
    page.mouse.click(*box)
    page.wait_for_url("**/head?*", timeout=15_000)
    assert "layer=3" in page.url and "head=-1" in page.url
