"""Compare and Train in a real browser. Compare runs on a store written through the store API (two sweeps of
seeded values at three α, a vector with its evaluation and one without): every panel on one colour range equal to
the numpy oracle's, the α list changing the sweep panels, the difference map on its own symmetric range, and
control accuracy (or "not measured") in the table. Train: a short run launched from the page reports spatial and
control before → after, the Run list names that run, and the deficit's label counts planted.json's heads."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.browser.conftest import screenshot
from workbench.app.background import running_app
from workbench.organism import DEFICIT_MODEL
from workbench.scale.vector import ScaleVector
from workbench.store.effects import EffectStore, sweep_key

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ALPHAS = (0.0, 0.5, 2.0)
SHAPE = (3, 4)
N_PROBES = 5
PANEL = "document.querySelector('#compare-panel-{i} .js-plotly-plot')"
DIFF = "document.querySelector('#compare-diff-graph .js-plotly-plot')"


def _write_sweep(store, seed: int, amplitude: float, clean: dict | None) -> tuple[str, np.ndarray]:
    """A complete [probe, α, layer, head] sweep of seeded values; amplitude × (α index + 1) so each α differs."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(N_PROBES, len(ALPHAS), *SHAPE)) * amplitude * np.arange(1, len(ALPHAS) + 1)[None, :, None, None]
    spec = {"alphas": list(ALPHAS), "metric": "logit_diff", "positions": "last", "target": "heads"}
    fp, ph = f"{seed:x}".rjust(64, "f"), f"{seed:x}".rjust(64, "a")
    key = sweep_key(fp, ph, spec)
    st = EffectStore(store)
    st.ensure(key, {"model": f"toy{seed}", "model_fingerprint": fp, "family": "LLaVA-1.5", "shape": list(SHAPE),
                    "probes": "toyprobes", "probeset_hash": ph, "n_probes": N_PROBES, "spec": spec, "chunks": ["c0"],
                    "created": float(seed),
                    **({"clean": clean} if clean else {})})
    rows = [{"layer": la, "head": h, "alpha": ALPHAS[a], "probe_id": f"p{p}", "task": "relation", "relation": "left",
             "value": values[p, a, la, h]} for p in range(N_PROBES) for a in range(len(ALPHAS)) for la in range(SHAPE[0])
            for h in range(SHAPE[1])]
    st.write_chunk(key, "c0", pd.DataFrame(rows))
    return key, values


@pytest.fixture(scope="module")
def compare_app(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    clean = {"accuracy": {"spatial": 0.9, "control": 0.8, "all": 0.85}, "n": {"spatial": 5, "control": 5, "all": 10},
             "chance": {"spatial": 0.375, "control": 0.3, "all": 0.34}}
    ka, va = _write_sweep(store, 1, 1.0, clean)
    kb, vb = _write_sweep(store, 2, 3.0, None)
    base = dict(mlp=torch.ones(SHAPE[0]), model="toy", model_fingerprint="f" * 64, positions="all", mode="attn", s_max=10.0)
    ev = {"probes": "heldout", "probes_hash": "h", "n": 500, "before": {"spatial": 0.544, "control": 0.996, "all": 0.7},
          "after": {"spatial": 1.0, "control": 0.992, "all": 0.99}, "accuracy_before": 0.544, "accuracy_after": 1.0}
    g = torch.Generator().manual_seed(0)
    ScaleVector(attn=1 + 0.5 * torch.randn(SHAPE, generator=g), metrics={"eval": ev},
                **base).save(store / "scales" / "measured.safetensors")
    ScaleVector(attn=1 + 2.0 * torch.randn(SHAPE, generator=g), metrics={},
                **base).save(store / "scales" / "imported.safetensors")
    with running_app(store, "--no-default-sweep", log=store.parent / "app-compare.log") as url:
        yield {"url": url, "store": store, "sweeps": {ka: va, kb: vb}, "keys": (ka, kb)}


@pytest.fixture
def cpage(chromium, compare_app, request):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"browser errors in {request.node.name}: {errors[:3]}"


def _ranges(page, n: int) -> list[tuple[float, float]]:
    page.wait_for_function(" && ".join(f"{PANEL.format(i=i)} && {PANEL.format(i=i)}.data" for i in range(n)), timeout=20_000)
    return [tuple(page.evaluate(f"[{PANEL.format(i=i)}.data[0].zmin, {PANEL.format(i=i)}.data[0].zmax]")) for i in range(n)]


def _choose(page, control: str, label: str) -> None:
    page.click(f"#{control}")
    page.locator(".dash-dropdown-option", has_text=label).first.click()


def _pick_items(page, values: list[str]) -> None:
    """Choose the Compare items through Dash's own ``set_props`` (the same update a click in the list makes)."""
    page.evaluate(f"window.dash_clientside.set_props('compare-items', {{value: {json.dumps(values)}}})")


def test_sweeps_share_one_range_and_the_alpha_choice_changes_them(cpage, compare_app):
    ka, kb = compare_app["keys"]
    va, vb = compare_app["sweeps"][ka], compare_app["sweeps"][kb]
    cpage.goto(compare_app["url"] + "/compare")
    cpage.locator("#compare-heatmaps .js-plotly-plot").first.wait_for(timeout=20_000)
    # the page opens on two vectors (the first kind with two items); choose the two sweeps
    _pick_items(cpage, [f"sweep:{ka}", f"sweep:{kb}"])
    cpage.wait_for_function(f"{PANEL.format(i=0)} && {PANEL.format(i=0)}.layout.title.text.startsWith('sweep')", timeout=20_000)
    first, second = va, vb
    for alpha_index, alpha in enumerate(ALPHAS):
        if alpha_index:
            _choose(cpage, "compare-alpha", f"α = {alpha:g}")
        cpage.wait_for_function(f"{PANEL.format(i=0)}.layout.title.text.includes('α = {alpha:g}')", timeout=20_000)
        means = [v[:, alpha_index].mean(0) for v in (first, second)]
        span = max(np.abs(m).max() for m in means)
        ranges = _ranges(cpage, 2)
        assert ranges[0] == ranges[1] and np.allclose(ranges[0], (-span, span))  # one range, the widest panel's
        z = np.array(cpage.evaluate(f"{PANEL.format(i=0)}.data[0].z"), dtype=float)
        np.testing.assert_allclose(z, means[0], rtol=1e-9, atol=1e-12)  # the panel is the sweep at the chosen α
        diff = np.array(cpage.evaluate(f"{DIFF}.data[0].z"), dtype=float)
        np.testing.assert_allclose(diff, means[1] - means[0], rtol=1e-9, atol=1e-12)  # second − first
        dmin, dmax = cpage.evaluate(f"[{DIFF}.data[0].zmin, {DIFF}.data[0].zmax]")
        assert np.isclose(dmax, np.abs(diff).max()) and np.isclose(dmin, -dmax)  # its own range, symmetric about 0
        assert "second − first" in cpage.evaluate(f"{DIFF}.layout.title.text")
    table = cpage.locator("#compare-table-data").inner_text()
    assert "clean control" in table and "80.0%" in table and "not measured" in table  # sweep 1 recorded it, sweep 2 did not


def test_vectors_share_one_range_and_the_table_has_control_or_not_measured(cpage, compare_app):
    cpage.goto(compare_app["url"] + "/compare")
    ranges = _ranges(cpage, 2)
    attn = [ScaleVector.load(compare_app["store"] / "scales" / n).attn.numpy() for n in ("measured", "imported")]
    span = max(np.abs(a - 1).max() for a in attn)
    assert ranges[0] == ranges[1] and np.allclose(ranges[0], (1 - span, 1 + span), rtol=1e-6)
    rows = cpage.evaluate("""[...document.querySelectorAll('#compare-table-data tr')].map(r =>
        [...r.querySelectorAll('th, td')].map(c => c.innerText.trim()))""")
    header = rows[0]
    body = {r[header.index("item")]: dict(zip(header, r)) for r in rows[1:]}
    assert {"spatial before", "spatial after", "control before", "control after"} <= set(header)
    m, i = body["vector measured"], body["vector imported"]
    assert (m["spatial before"], m["spatial after"], m["control before"], m["control after"]) == (
        "54.4%", "100.0%", "99.6%", "99.2%")
    assert {i[c] for c in ("spatial before", "spatial after", "control before", "control after")} == {"not measured"}
    screenshot(cpage, "compare")


def test_train_page_reports_spatial_and_control_and_names_its_run(cpage, compare_app):
    cpage.goto(compare_app["url"] + "/train")
    planted = len(json.loads((DEFICIT_MODEL / "planted.json").read_text())["heads"])
    cpage.locator("#train-model-hint").get_by_text(f"{planted} damaged head").wait_for(timeout=15_000)
    assert f"({planted} damaged heads)" in cpage.locator("#train-model").inner_text()
    assert cpage.input_value("#train-epochs") == "15" and cpage.input_value("#train-lr") == "0.01"  # the study's settings
    assert "no training run yet" in cpage.locator("#train-job").inner_text()  # true: none yet
    cpage.fill("#train-name", "tiny")
    cpage.fill("#train-epochs", "1")
    cpage.fill("#train-n-train", "40")
    cpage.click("#train-launch")
    cpage.locator("#train-message").get_by_text("started").wait_for(timeout=15_000)
    cpage.locator("#train-job").get_by_text("tiny").wait_for(timeout=30_000)  # the Run list names the run it shows
    assert "no training run yet" not in cpage.locator("#train-job").inner_text()
    cpage.locator("#train-status .job-state", has_text="done").wait_for(timeout=400_000)
    result = cpage.locator("#train-status .job-result").inner_text()
    assert "spatial" in result and "control" in result and "→" in result and "not measured" not in result
    table = cpage.locator("#train-vector-table").inner_text()
    assert "control before" in table and "control after" in table
    cpage.reload()  # coming back: the newest run is shown and named
    cpage.locator("#train-status .job-state", has_text="done").wait_for(timeout=30_000)
    assert ("tiny" in cpage.locator("#train-job").inner_text()
            and "no training run yet" not in cpage.locator("#train-job").inner_text())
    screenshot(cpage, "train")
