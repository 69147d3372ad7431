"""A patching sweep in a real browser: the explorer names the intervention and draws the normalized effect on its own
scale (diverging, centred at 0, "fraction of the logit difference"), with no α to choose; the head page ranks probes
by normalized effect and lists the dropped ones; Compare gives a patching sweep and a scale sweep separate scales;
the Sweeps form refuses patching with α and temperature on heads under the fields.

The sweeps are written straight through the store API (a manifest whose spec is a patching ``SweepSpec``, chunks
holding NaN for the probes dropped as too close to normalise); every expected value comes from ``workbench.app.data``
on that store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.browser.conftest import GRAPH, checked_page, screenshot, z_of
from workbench.app import data
from workbench.app.background import running_app
from workbench.jobs.registry import JobRegistry
from workbench.organism import DEFAULT_MODEL
from workbench.store.effects import EffectStore
from workbench.sweeps.spec import SweepSpec

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PANEL = "document.querySelector('#compare-panel-{i} .js-plotly-plot')"
N_LAYERS, N_HEADS = 6, 8
RELATIONS = ("left", "right", "above", "below", "left", "right", "above", "below", "left", "right", "above", "below")
DROPPED = (3, 7)
CARRIER = (4, 2)  # the head that carries the difference: normalized effect near 1


def write_sweep(store: EffectStore, spec: SweepSpec, values: np.ndarray, seed: int) -> str:
    """Sweep of the organism's shape on 12 spatial probes with ``values [probe, alpha, layer, head]``."""
    key = f"{seed:02d}" * 32
    name = f"L000-{N_LAYERS:03d}_P000000-{len(RELATIONS):06d}"
    store.ensure(key, {"model": DEFAULT_MODEL.name, "model_fingerprint": f"{seed}" * 64, "family": "LLaVA-1.5",
                       "shape": [N_LAYERS, N_HEADS], "probes": "pairs", "probeset_hash": "e" * 64, "n_probes": len(RELATIONS),
                       "spec": spec.to_json(), "chunks": [name]})
    rows = [{"layer": layer, "head": head, "alpha": float(a), "probe_id": f"q{p:02d}", "task": "relation",
             "relation": RELATIONS[p], "value": float(values[p, ai, layer, head])}
            for p in range(len(RELATIONS)) for ai, a in enumerate(spec.alphas) for layer in range(N_LAYERS)
            for head in range(N_HEADS)]
    store.write_chunk(key, name, pd.DataFrame(rows))
    return key


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("patch-view")
    st = EffectStore(root / "store")
    rng = np.random.default_rng(0)
    patch = rng.normal(scale=0.05, size=(len(RELATIONS), 1, N_LAYERS, N_HEADS))
    patch[:, 0, CARRIER[0], CARRIER[1]] = rng.uniform(0.8, 1.0, len(RELATIONS))
    patch[list(DROPPED)] = np.nan
    scale = rng.normal(scale=2.0, size=(len(RELATIONS), 2, N_LAYERS, N_HEADS))  # Δ logit diff: a far wider range
    keys = {"scale": write_sweep(st, SweepSpec(alphas=(0.0, 2.0)), scale, seed=1),
            "patch": write_sweep(st, SweepSpec(intervention="patch", direction="noising"), patch, seed=2)}
    with running_app(root / "store", "--no-default-sweep", log=root / "app.log") as url:
        yield {"url": url, "store": root / "store", "keys": keys}


@pytest.fixture
def pg(chromium, app, request):
    with checked_page(chromium, request.node.name, height=1100) as page:
        yield page


def test_the_explorer_draws_a_patch_sweep_on_its_own_scale_without_an_alpha(pg, app):
    page, store, key = pg, app["store"], app["keys"]["patch"]
    page.goto(f"{app['url']}/?key={key}")
    page.locator("#explorer-info").get_by_text(f"sweep {key[:12]}").wait_for(timeout=30_000)
    title = page.locator("#explorer-heatmap .gtitle", has_text="mean normalized patching effect, noising")
    title.wait_for(timeout=30_000)
    m = data.matrix(store, key, 1.0, data.ALL, "spatial")
    assert np.allclose(z_of(page), m.mean, atol=1e-9) and m.dropped == len(DROPPED)
    assert "(spatial probes" in title.text_content()
    assert f"n = {12 - len(DROPPED)} of 12, {len(DROPPED)} dropped" in title.text_content()
    g = GRAPH.format(id="explorer-heatmap")
    trace = page.evaluate(f"{g}.data[0]")
    span = float(np.nanmax(np.abs(m.mean)))
    assert trace["colorbar"]["title"]["text"] == "fraction of the logit difference"
    assert np.isclose(trace["zmin"], -span) and np.isclose(trace["zmax"], span)  # diverging, centred at 0
    assert page.locator("#explorer-alpha").is_hidden()  # no α to choose: the one α 1.0 is the URL's and the page's
    picker = page.locator(".sweep-picker").inner_text()
    assert "patch · noising · heads@last" in picker
    assert "heads · patch · noising · last token" in page.locator("#explorer-intervention").inner_text()
    definition = page.locator("#explorer-definition").inner_text()
    assert definition.startswith("Normalized patching effect") and "dropped" in definition
    assert f"{len(DROPPED)} dropped" in page.locator("#explorer-n").inner_text()
    assert page.locator("#explorer-multiples .annotation-text", has_text="below (n = 1)").count() == 1  # 2 of 3 dropped
    first = page.locator("#explorer-table tbody tr").first
    assert first.get_attribute("data-site") == f"L{CARRIER[0]}H{CARRIER[1]}"  # rank 1: the largest normalized effect
    assert "largest normalized effect" in page.locator(".explorer-side").inner_text()
    screenshot(page, "explorer-patch")


def test_the_head_page_ranks_probes_by_normalized_effect_and_lists_the_dropped(pg, app):
    page, store, key = pg, app["store"], app["keys"]["patch"]
    layer, head = CARRIER
    page.goto(f"{app['url']}/head?key={key}&layer={layer}&head={head}&alpha=1")
    page.locator("#head-title").get_by_text(f"L{layer}H{head}").wait_for(timeout=30_000)
    d = data.head_detail(store, key, layer, head, alpha=1.0)
    cards = page.locator("#head-affected .probe-card")
    assert [cards.nth(i).get_attribute("data-probe") for i in range(cards.count())] == [p["probe_id"] for p in d["affected"]]
    effects = [p["effect"] for p in d["affected"]]
    assert effects == sorted(effects, reverse=True) and len(effects) == 8  # the top 8 of the 10 used
    assert "Probes ranked by normalized effect, largest first" in page.locator("#head-ranked-title").inner_text()
    dropped = page.locator("#head-dropped").inner_text()
    assert f"Dropped probes: {len(DROPPED)}" in dropped and all(f"q{i:02d}" in dropped for i in DROPPED)
    g = GRAPH.format(id="head-curve")
    page.wait_for_function(f"{g} && {g}.data && {g}.data[0]", timeout=20_000)
    assert page.evaluate(f"{g}.layout.yaxis.title.text") == "fraction of the logit difference"
    assert np.isclose(page.evaluate(f"{g}.data[0].y[0]"), d["curve"][0]["mean"])
    assert page.locator("#head-what").inner_text().startswith("attention heads · patching the head's output")
    assert "Δ" not in page.locator("#head-metric-note").inner_text()
    screenshot(page, "head-patch")


def test_compare_gives_a_patch_sweep_and_a_scale_sweep_separate_scales(pg, app):
    page, store = pg, app["store"]
    kp, ks = app["keys"]["patch"], app["keys"]["scale"]
    page.goto(app["url"] + "/compare")
    page.locator("#compare-items").wait_for(timeout=20_000)
    page.evaluate(f"window.dash_clientside.set_props('compare-items', {{value: {json.dumps([f'sweep:{ks}', f'sweep:{kp}'])}}})")
    page.wait_for_function(f"{PANEL.format(i=1)} && {PANEL.format(i=1)}.data && {PANEL.format(i=0)} && "
                           f"{PANEL.format(i=0)}.data", timeout=20_000)
    ranges = [tuple(page.evaluate(f"[{PANEL.format(i=i)}.data[0].zmin, {PANEL.format(i=i)}.data[0].zmax]")) for i in (0, 1)]
    patch_span = float(np.nanmax(np.abs(data.matrix(store, kp, 1.0).mean)))
    scale_span = float(np.abs(data.matrix(store, ks, 0.0).mean).max())
    assert np.allclose(ranges[1], (-patch_span, patch_span)) and np.allclose(ranges[0], (-scale_span, scale_span))
    bars = [page.evaluate(f"{PANEL.format(i=i)}.data[0].colorbar.title.text") for i in (0, 1)]
    assert bars == ["Δ logit_diff (α = 0)", "fraction of the logit difference"]
    note = page.locator("#compare-scale-note").inner_text()
    assert "each kind has its own shared scale" in note and "not a Δ of the metric" in note
    assert "No difference map" in page.locator("#compare-diff").inner_text()
    screenshot(page, "compare-patch-scale")


def test_the_sweep_form_refuses_patching_with_alpha_and_temperature_on_heads(pg, app):
    page = pg
    page.goto(app["url"] + "/sweeps")
    page.locator("#sweeps-jobs").get_by_text("No sweep jobs yet.").wait_for(timeout=15_000)
    page.locator("#sweeps-intervention label", has_text="patch").click()
    page.fill("#sweeps-alphas", "0, 2")
    page.click("#sweeps-launch")
    page.locator("#sweeps-alphas-error").get_by_text("the patch intervention has no α").wait_for(timeout=10_000)
    page.locator("#sweeps-intervention label", has_text="temperature").click()
    page.fill("#sweeps-alphas", "0.5, 2")
    page.click("#sweeps-launch")
    page.locator("#sweeps-target-error").get_by_text("does not apply to attention heads").wait_for(timeout=10_000)
    assert page.locator("#sweeps-alphas-error").inner_text() == ""
    screenshot(page, "sweeps-form-refusal")
    assert JobRegistry(app["store"]).list() == []


def test_a_head_set_exported_from_a_patch_sweep_ranks_by_normalized_effect(pg, app, tmp_path):
    from workbench.discovery.headsets import HeadSet

    page, store, key = pg, app["store"], app["keys"]["patch"]
    page.goto(app["url"] + "/export")
    page.locator("#export-rule", has_text="normalized patching effect, largest first").wait_for(timeout=20_000)
    assert "fully patched" in page.locator("#export-alpha").inner_text()  # its one α, selectable: not an identity
    assert "all probes" in page.locator("#export-relation").inner_text()  # the relation filter says what it holds, never blank
    page.fill("#export-k", "3")
    with page.expect_download(timeout=15_000) as dl:
        page.click("#export-hs-download-button")
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    hs = HeadSet.load(path)
    mean = data.matrix(store, key, 1.0).mean.ravel()
    top = np.argsort(-mean, kind="stable")[:3]
    assert hs.method == f"patch:noising@last:{key[:12]}" and hs.heads[0] == CARRIER
    assert hs.heads == tuple((int(i) // N_HEADS, int(i) % N_HEADS) for i in top)
    assert "patch:noising@last" in page.locator("#export-hs-preview").inner_text()
    screenshot(page, "export-patch")
