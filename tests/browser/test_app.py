"""The app in a real browser: launch with the default sweep, heatmap → head page, a sweep and a training run
launched from their pages, cancel, export. Tests run in order on one server and store (module scope)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from tests.browser.conftest import screenshot
from workbench.discovery.headsets import HeadSet
from workbench.jobs import JobRegistry
from workbench.organism import DEFAULT_MODEL
from workbench.scale.vector import ScaleVector
from workbench.store.effects import EffectStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]
GRAPH = "document.querySelector('#{id} .js-plotly-plot')"


def organism_shape() -> tuple[int, int]:
    cfg = json.loads((DEFAULT_MODEL / "config.json").read_text())["text_config"]
    return cfg["num_hidden_layers"], cfg["num_attention_heads"]


def wait_for(page, js: str, timeout: float = 240.0):
    page.wait_for_function(js, timeout=timeout * 1000, polling=200)
    return page.evaluate(js)


def heatmap_shape(page) -> list[int]:
    g = GRAPH.format(id="explorer-heatmap")
    return wait_for(page, f"{g} && {g}.data && {g}.data[0] && {g}.data[0].z && {g}.data[0].z.length > 0 "
                          f"&& [{g}.data[0].z.length, {g}.data[0].z[0].length]")


def click_cell(page, layer: int, head: int) -> None:
    box = page.evaluate(f"""(() => {{ const gd = {GRAPH.format(id='explorer-heatmap')}; const r = gd.getBoundingClientRect();
        const fl = gd._fullLayout; return [r.left + fl.xaxis._offset + fl.xaxis.d2p({head}),"""
                        f""" r.top + fl.yaxis._offset + fl.yaxis.d2p({layer})]; }})()""")
    page.mouse.click(*box)


def test_launch_shows_default_sweep_progress_then_the_heatmap(page, server):
    page.goto(server["url"])
    bar = page.locator("#shell-jobs")
    bar.get_by_text("default sweep of organism").wait_for(timeout=30_000)  # visible progress while it computes
    assert "%" in bar.inner_text()
    assert heatmap_shape(page) == list(organism_shape())
    assert page.locator("#explorer-heatmap .heatmaplayer").count() == 1  # drawn, not only in data
    (entry,) = EffectStore(server["store"]).ls()
    assert entry.complete and page.locator("#explorer-info").inner_text().startswith(f"sweep {entry.key[:12]}")
    screenshot(page, "explorer")


def test_clicking_a_head_opens_its_page(page, server):
    page.goto(server["url"])
    heatmap_shape(page)
    click_cell(page, 2, 5)
    page.wait_for_url("**/head?*", timeout=10_000)
    assert "layer=2" in page.url and "head=5" in page.url
    page.locator("#head-title").get_by_text("L2H5").wait_for(timeout=10_000)
    assert page.locator("#head-affected .probe-card").count() == 8
    assert page.locator("#head-attention img").count() == 4
    curve = page.evaluate(f"{GRAPH.format(id='head-curve')}.data[0].x")
    assert curve == [0, 0.5, 1, 2]  # the swept α and the identity point
    screenshot(page, "head")


def test_sweep_from_its_page_reaches_100_and_appears_in_the_explorer(page, server):
    page.goto(server["url"] + "/sweeps")
    page.fill("#sweeps-alphas", "0, x")
    page.click("#sweeps-launch")
    page.locator("#sweeps-alphas-error").get_by_text("'x' is not a number").wait_for(timeout=10_000)
    n_jobs = len(JobRegistry(server["store"]).list())
    page.fill("#sweeps-alphas", "0, 1.5")
    page.click("#sweeps-launch")
    page.locator("#sweeps-message").get_by_text("started").wait_for(timeout=10_000)
    assert page.locator("#sweeps-alphas-error").inner_text() == ""
    assert len(JobRegistry(server["store"]).list()) == n_jobs + 1  # the bad α list started nothing
    card = page.locator(".job-card", has_text="sweep α = 0, 1.5")
    card.locator(".job-state", has_text="done").wait_for(timeout=240_000)
    assert card.locator(".job-pct").inner_text() == "100%"
    screenshot(page, "sweeps")
    key = JobRegistry(server["store"]).list("sweep")[0].result["key"]
    page.evaluate("window.__no_reload = 1")
    page.click("#shell-nav-explorer")
    page.locator("#explorer-info").get_by_text(f"sweep {key[:12]}").wait_for(timeout=15_000)  # newest sweep with α = 0
    assert page.evaluate("window.__no_reload") == 1
    assert heatmap_shape(page) == list(organism_shape())


def test_cancel_from_the_page_leaves_the_store_consistent(page, server):
    page.goto(server["url"] + "/sweeps")
    # all positions: the naive engine, one forward per variant, so each of the 4 chunks takes a while to cancel in
    # (two α: about 25 s a chunk on 2 cores; a cancel abandons the chunk under way)
    page.click("#sweeps-positions label:has-text('all')")
    page.fill("#sweeps-alphas", "0, 0.25")
    page.click("#sweeps-launch")
    card = page.locator(".job-card", has_text="sweep α = 0, 0.25")
    card.locator(".job-message", has_text="1 of 4 chunks stored").wait_for(timeout=240_000)  # one chunk stored, more to come
    card.get_by_role("button", name="Cancel").click()
    card.locator(".job-state", has_text="cancelled").wait_for(timeout=240_000)
    store = EffectStore(server["store"])
    for entry in store.ls():
        todo, corrupt = store.missing(entry.key, entry.manifest["chunks"])
        assert corrupt == [] and len(todo) == entry.expected - entry.done
        assert not list(store.folder(entry.key).glob(".*.tmp"))
    assert any(not e.complete for e in store.ls())  # the cancelled one: resumable, not finished


def test_training_run_updates_curves_survives_a_page_change_and_is_saved(page, server):
    page.goto(server["url"] + "/train")
    page.click("#train-head-choice label:has-text('only these')")
    page.click("#train-launch")
    page.locator("#train-heads-error").get_by_text("the head set is empty").wait_for(timeout=10_000)
    page.click("#train-head-choice label:has-text('all heads')")
    page.fill("#train-name", "fix-browser")
    page.fill("#train-epochs", "3")
    page.fill("#train-n-train", "320")
    page.click("#train-launch")
    page.locator("#train-message").get_by_text("started").wait_for(timeout=10_000)
    assert page.locator("#train-heads-error").inner_text() == ""
    g = GRAPH.format(id="train-curves")
    first = wait_for(page, f"{g} && {g}.data && {g}.data.length && {g}.data[0].x.length > 0 && {g}.data[0].x.length", timeout=240)
    page.click("#shell-nav-explorer")  # leave while it trains …
    page.locator("#explorer-heatmap").wait_for(timeout=10_000)
    page.click("#shell-nav-train")  # … and come back: the run is still there
    page.locator("#train-status .job-state", has_text="done").wait_for(timeout=300_000)
    final = wait_for(page, f"{g}.data[0].x.length >= {first} && {g}.data[0].x.length")
    (job,) = JobRegistry(server["store"]).list("train")
    steps = [p for p in job.points if p["kind"] == "step"]
    assert final == len(steps) == steps[-1]["global_step"]  # every optimiser step the worker reported is drawn
    assert 0 < first < final  # the curve was drawn while training ran, then grew
    page.locator("#train-vectors").get_by_text("fix-browser").wait_for(timeout=10_000)
    assert (server["store"] / "scales" / "fix-browser.safetensors").is_file()
    screenshot(page, "train")


def test_compare_two_items(page, server):
    page.goto(server["url"] + "/compare")
    page.locator("#compare-heatmaps .js-plotly-plot").first.wait_for(timeout=15_000)
    assert page.locator("#compare-heatmaps .js-plotly-plot").count() == 2  # the two finished sweeps
    assert page.locator("#compare-diff-graph .heatmaplayer").count() == 1
    diff = np.array(page.evaluate(f"{GRAPH.format(id='compare-diff-graph')}.data[0].z"), dtype=float)
    assert diff.shape == organism_shape() and np.abs(diff).max() < 1e-4  # both sweeps hold α = 0 on the same probes
    assert page.locator("#compare-table-data tbody tr").count() == 3  # header + two items
    screenshot(page, "compare")


def test_export_downloads_a_valid_head_set_and_vector(page, server, tmp_path):
    page.goto(server["url"] + "/export")
    page.fill("#export-k", "3")
    with page.expect_download(timeout=15_000) as dl:
        page.click("#export-hs-download-button")
    path = tmp_path / dl.value.suggested_filename
    dl.value.save_as(path)
    doc = json.loads(path.read_text())
    assert doc["format"] and len(doc["heads"]) == 3
    hs = HeadSet.load(path)  # the workbench's own validation
    manifests = {e.key: e.manifest for e in EffectStore(server["store"]).ls()}
    assert hs.model_fingerprint in {m["model_fingerprint"] for m in manifests.values()}
    # The Train page's default vector scales every position (the study's setting): the ScAle reference format would apply
    # it at the last token only, another intervention, so the page refuses that format under the field ...
    page.click("#export-vec-format label:has-text('npy')")
    page.click("#export-vec-download-button")
    page.locator("#export-vector-error").get_by_text("positions", exact=False).wait_for(timeout=15_000)
    # ... and the workbench's own format carries it whole.
    page.click("#export-vec-format label:has-text('safetensors')")
    with page.expect_download(timeout=15_000) as dl:
        page.click("#export-vec-download-button")
    with zipfile.ZipFile(io.BytesIO(open(dl.value.path(), "rb").read())) as z:
        z.extractall(tmp_path / "vec")
    (st,) = (tmp_path / "vec").glob("*.safetensors")
    vec = ScaleVector.load(st)
    assert tuple(vec.attn.shape) == organism_shape() and vec.positions == "all"
    screenshot(page, "export")


# ---------------------------------------------------------------- a non-LLaVA family's sweep (issue 26)

@pytest.fixture(scope="module")
def qwen_app(tmp_path_factory):
    """A tiny random Qwen2.5-VL checkpoint folder (2 layers × 4 query heads), a 4-probe α = 0 sweep of it computed by
    ``workbench sweep`` into a fresh store, and ``workbench app`` serving that store with the folder as its model
    (no default sweep: the store's only sweep is this one)."""
    from typer.testing import CliRunner

    from tests.conftest import cached_probes
    from workbench.app.background import running_app
    from workbench.cli import app
    from workbench.models.scaffold import build_family_folder

    root = tmp_path_factory.mktemp("qwen-app")
    folder = build_family_folder("qwen2_5_vl", root / "tiny-qwen2.5-vl")
    cached_probes(n=4, seed=2, canvas=32, object_size=7).save(root / "probes")
    store = root / "store"
    r = CliRunner().invoke(app, ["sweep", "--model", str(folder), "--probes", str(root / "probes"), "--alpha", "0",
                                 "--store", str(store)])
    assert r.exit_code == 0, r.output
    (entry,) = EffectStore(store).ls()
    with running_app(store, "--model", str(folder), "--no-default-sweep", log=root / "app.log") as url:
        yield {"url": url, "store": store, "key": entry.key, "model": folder.name}


def test_explorer_and_head_page_on_a_qwen2_5_vl_sweep(chromium, qwen_app):
    """The explorer draws the Qwen2.5-VL sweep (its model name, a 2 × 4 grid holding the stored mean effects); a click on
    cell L1H3 opens that head's page, whose α-curve is the swept α = 0 (the stored mean) and the identity point α = 1."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        store = EffectStore(qwen_app["store"])
        frame = store.read(qwen_app["key"])
        spatial = frame[frame["task"].isin(["relation", "verify"])]  # the explorer (and head page) show spatial probes by default
        mean = spatial.groupby(["layer", "head"])["value"].mean()
        page.goto(qwen_app["url"])
        assert heatmap_shape(page) == [2, 4]
        info = page.locator("#explorer-info")
        info.get_by_text(f"sweep {qwen_app['key'][:12]}").wait_for(timeout=15_000)
        assert qwen_app["model"] in info.inner_text() and "1 α × 2 layers × 4 heads" in info.inner_text()
        z = np.array(page.evaluate(f"{GRAPH.format(id='explorer-heatmap')}.data[0].z"), dtype=float)
        assert np.allclose(z, [[mean[(layer, head)] for head in range(4)] for layer in range(2)], atol=1e-6)
        assert np.abs(z).max() > 1e-4, "a non-trivial sweep, or the comparison means nothing"
        screenshot(page, "explorer-qwen2_5_vl")
        click_cell(page, 1, 3)
        page.wait_for_url("**/head?*", timeout=10_000)
        assert "layer=1" in page.url and "head=3" in page.url and qwen_app["key"] in page.url
        title = page.locator("#head-title")
        title.get_by_text("L1H3").wait_for(timeout=10_000)
        assert qwen_app["model"] in title.inner_text()
        curve = page.evaluate(f"{GRAPH.format(id='head-curve')}.data[0]")
        assert curve["x"] == [0, 1] and curve["y"][0] == pytest.approx(mean[(1, 3)], abs=1e-6) and curve["y"][1] == 0
        # every spatial probe of the set (the head page's default task, as the explorer's), ranked by its effect
        assert page.locator("#head-affected .probe-card").count() == spatial["probe_id"].nunique()
        screenshot(page, "head-qwen2_5_vl")
    finally:
        context.close()
    assert not errors, f"browser console errors: {errors[:3]}"
