"""The head page's visuals in a real browser, on the default sweep of a fresh store: attention maps on one shared
absolute scale (checked against the stored maps), the probe chooser and its place in the URL, readable
percentages, and an MLP site shown as an MLP (a small MLP sweep written through the store API)."""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd
import pytest

from tests.browser.conftest import screenshot
from workbench.app.head_visuals import percent
from workbench.store.effects import EffectStore, sweep_key
from workbench.store.library import Library

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _default_sweep(store, timeout: float = 300.0):
    """(manifest, stored attention maps) of the default sweep once the app's job has written both."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = [e for e in EffectStore(store).ls() if e.complete]
        if entries:
            m = entries[0].manifest
            maps = Library(store).attention(m["model_fingerprint"], m["probeset_hash"])
            if maps is not None:
                return m, maps
        time.sleep(1.0)
    raise AssertionError("the default sweep and its attention maps did not appear")


def _key(store) -> str:
    return next(e.key for e in EffectStore(store).ls() if e.complete and e.manifest["spec"]["target"] == "heads")


def _cards(page) -> list[dict]:
    page.locator("#head-attention .probe-card").first.wait_for(timeout=30_000)
    return page.evaluate("""[...document.querySelectorAll('#head-attention .probe-card')].map(c => ({
        probe: c.dataset.probe, max: parseFloat(c.querySelector('.att-bar').dataset.max),
        label: c.querySelector('.att-bar-max').innerText, text: c.innerText, src: c.querySelector('img').src}))""")


def test_attention_maps_share_one_absolute_scale_equal_to_the_stored_maximum(page, server):
    manifest, maps = _default_sweep(server["store"])
    key = _key(server["store"])
    attn = maps.attn.numpy()  # [probe, layer, head, patch]
    scales = []
    for layer, head in ((2, 5), (0, 0)):
        page.goto(f"{server['url']}/head?key={key}&layer={layer}&head={head}")
        cards = _cards(page)
        assert len(cards) == 4 and len({c["max"] for c in cards}) == 1  # one scale for every map shown
        rows = [maps.probe_ids.index(c["probe"]) for c in cards]
        assert cards[0]["max"] == pytest.approx(float(attn[rows].max()), rel=1e-6)  # all heads, the shown probes
        assert {c["label"] for c in cards} == {percent(float(attn[rows].max()))}
        assert "share of the last token's attention, %" in cards[0]["text"]
        for c, row in zip(cards, rows):
            mass = float(attn[row, layer, head].sum())
            assert f"{percent(mass)} of its attention on the image" in c["text"]
            assert not re.search(r"\de[-+]?\d", c["text"])  # never "2e-02%"
        scales.append(cards[0]["max"])
        if (layer, head) == (2, 5):
            screenshot(page, "head-attention")
    assert scales[0] == scales[1]  # the same probes: the same scale on every head's page


def test_probe_chooser_changes_the_maps_and_lives_in_the_url(page, server):
    manifest, maps = _default_sweep(server["store"])
    key = _key(server["store"])
    page.goto(f"{server['url']}/head?key={key}&layer=2&head=5")
    before = _cards(page)
    target = maps.probe_ids[5]
    assert target not in [c["probe"] for c in before]
    page.click("#head-probe")
    page.locator(".dash-dropdown-option").nth(5).click()
    page.wait_for_url(re.compile(rf".*probe={re.escape(target)}.*"), timeout=15_000)
    page.wait_for_function(f"document.querySelector('#head-attention .probe-card').dataset.probe === {target!r}", timeout=15_000)
    after = _cards(page)
    assert [c["probe"] for c in after] == list(maps.probe_ids[5:9])
    assert after[0]["src"] != before[0]["src"]
    page.goto(page.url)  # a shared link: the same maps
    assert [c["probe"] for c in _cards(page)] == list(maps.probe_ids[5:9])
    page.click("#head-scale label:has-text('this head')")
    page.wait_for_url(re.compile(r".*scale=head.*"), timeout=15_000)
    rows = [maps.probe_ids.index(p) for p in maps.probe_ids[5:9]]
    own = float(maps.attn.numpy()[rows, 2, 5].max())  # this head's largest share on the shown probes
    page.wait_for_function(f"Math.abs(parseFloat(document.querySelector('#head-attention .att-bar').dataset.max) - {own!r}) "
                           f"<= 1e-6 * {own!r}", timeout=15_000)
    assert "probe=" in page.url and "scale=head" in page.url


def test_an_mlp_site_is_titled_mlp_and_has_no_attention_maps(page, server):
    manifest, _ = _default_sweep(server["store"])
    store = EffectStore(server["store"])
    heads_key = _key(server["store"])
    frame = store.read(heads_key)
    probes = frame.drop_duplicates("probe_id")[["probe_id", "task", "relation"]]
    n_layers = manifest["shape"][0]
    spec = {**manifest["spec"], "target": "mlp", "alphas": [0.0]}
    key = sweep_key(manifest["model_fingerprint"], manifest["probeset_hash"], spec)
    rng = np.random.default_rng(0)
    rows = pd.DataFrame([{"layer": la, "head": -1, "alpha": 0.0, "probe_id": p.probe_id, "task": p.task, "relation": p.relation,
                          "value": float(rng.normal())} for la in range(n_layers) for p in probes.itertuples()])
    store.ensure(key, {**{k: manifest[k] for k in ("model", "model_fingerprint", "probes", "probeset_hash", "n_probes", "shape")},
                       "spec": spec, "chunks": ["c0"]})
    store.write_chunk(key, "c0", rows)
    for head in (-1, 0):  # the explorer's MLP heatmap has one column, 0: either is the layer's MLP
        page.goto(f"{server['url']}/head?key={key}&layer=1&head={head}")
        page.locator("#head-title").get_by_text("L1 MLP").wait_for(timeout=30_000)
        assert "H0" not in page.locator("#head-title").inner_text()
        assert page.locator("#head-attention img").count() == 0 and page.locator(".att-bar").count() == 0
        assert "has no attention pattern" in page.locator("#head-attention").inner_text()
        gd = "document.querySelector('#head-curve .js-plotly-plot')"
        title = page.wait_for_function(f"{gd} && {gd}._fullLayout && {gd}._fullLayout.title.text", timeout=30_000).json_value()
        assert "L1 MLP" in title and "MLP output" in title and "H0" not in title
    screenshot(page, "head-mlp")
