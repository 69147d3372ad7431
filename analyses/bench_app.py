"""Benchmark: the app at the organism's scale and at a real model's (LLaVA-7B: 32 × 32 heads), from the store.

Targets (issue 22, item 8): explorer first render ≤ 1 s, heatmap click → head page ≤ 300 ms (median), store read of
the dense matrix ≤ 0.5 s. Two stores, each measured the same way:

    organism   the app's default sweep (held-out spatial probes, 250; α ∈ {0, 0.5, 2}; last token; with attention
               maps), computed by a job worker exactly as ``workbench app`` does on an empty store
    7B shape   a sweep of LLaVA-1.5-7B's head shape, 32 layers × 32 heads, 1,000 probes (6 tasks), 3 α: 3,072,000
               effects with generated (seeded normal) values, written through the store API (``EffectStore.ensure`` /
               ``write_chunk``, the chunking a real sweep uses: 8 layers × 64 probes per chunk, 64 chunks); no probe
               set or attention maps are stored for it, so its head page has no thumbnails

What each row measures (all from the store, no model):

    store read, first                 ``EffectStore.read_dense`` in a fresh interpreter (imports done first, not
                                      counted) with no dense copy: every chunk read, checksummed and verified,
                                      scattered into the dense ``[probe, α, layer, head]`` array, ``dense.npz`` written
    store read, cold process          ``data.sweep_data`` then, as every later read: each chunk's footer checked
                                      against the dense copy, the copy read and its sha256 verified (footer cache
                                      cleared; the OS page cache is warm for both rows)
    store read, long form             ``EffectStore.read_table``: every chunk read and verified, for reference
    explorer render, pure, cold       the explorer page's ``layout()`` for ``/?key=KEY`` in that fresh process after
                                      the read: catalog, matrix with its bootstrap CI, heatmap, ranked table, per-
                                      relation panels, serialised to JSON as Dash sends it (so cold = read + this)
    explorer render, pure, warm       the same for other views of the cached sweep (another α / task)
    browser: explorer first render    Debian's headless Chromium on ``workbench app``: a fresh browser context (no
                                      HTTP cache) goes to ``/?key=KEY`` until the heatmap is drawn and the ranked
                                      table has rows. The first visit is a cold server (sweep not yet read)
    browser: scripts cached           the same, in a browser that has loaded the app before (its HTTP cache holds
                                      Dash's and plotly's scripts): a reload, or a shared link opened again
    server head_detail, cold / warm   ``data.head_detail`` in a fresh process, then for other heads
    browser: click → head page        from the mouse click on a heatmap cell until the head page shows that head's
                                      title, its α-curve and its probe cards (and, on the organism, attention images)
    browser floor                     a head page opened in a fresh browser context until its α-curve is drawn: what
                                      any Dash page with plotly graphs costs on this machine (the JS bundles and
                                      plotly.js load and compile), so the explorer's own share can be read off

The machine's load average is printed before and after: the browser rows are CPU-bound, and on a shared machine
they scale with the load.

    .venv/bin/python analyses/bench_app.py [--heads 12] [--renders 6] [--store DIR] [--only organism|7b]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from workbench.app.background import running_app
from workbench.organism import DEFAULT_MODEL

TARGETS_MS = {"store": 500.0, "render": 1000.0, "click": 300.0}
CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
GRAPH = "document.querySelector('#{id} .js-plotly-plot')"
SEVEN_B = {"layers": 32, "heads": 32, "probes": 1000, "alphas": (0.0, 0.5, 2.0)}


def build_organism_store(store: Path) -> str:
    """The default sweep's key, computing it (by a job worker) when the store lacks it."""
    from workbench.app.data import catalog
    from workbench.cli.app import ensure_default_sweep
    from workbench.jobs import JobRegistry

    job = ensure_default_sweep(store, str(DEFAULT_MODEL))
    if job is not None:
        t0 = time.perf_counter()
        job = JobRegistry(store).wait(job.id, timeout=1800)
        if job.state != "done":
            raise SystemExit(f"the default sweep ended {job.state}: {job.error}")
        print(f"default sweep computed in {time.perf_counter() - t0:.1f} s (job {job.id})")
    rows = [r for r in catalog(store) if r["complete"] and r["model"] == DEFAULT_MODEL.name]
    return rows[0]["key"]


def build_7b_store(store: Path, seed: int = 0) -> str:
    """A complete sweep of LLaVA-7B's head shape with generated values, written chunk by chunk through the store API."""
    import pandas as pd

    from workbench.store.effects import EffectStore, sweep_key
    from workbench.sweeps.engine import plan_chunks

    n_layers, n_heads, n_probes, alphas = SEVEN_B["layers"], SEVEN_B["heads"], SEVEN_B["probes"], SEVEN_B["alphas"]
    spec = {"alphas": list(alphas), "metric": "logit_diff", "positions": "last", "target": "heads", "metric_version": 1}
    key = sweep_key("bench-7b-shape-" + "0" * 49, "bench-probes-" + "0" * 51, spec)
    st = EffectStore(store)
    if any(e.key == key and e.complete for e in st.ls()):
        return key
    tasks = np.array([("relation", "verify", "color", "shape", "count", "exists")[i % 6] for i in range(n_probes)], dtype=object)
    relations = np.array([("left", "right", "above", "below")[i % 4] if t in ("relation", "verify") else ""
                          for i, t in enumerate(tasks)],
                         dtype=object)
    ids = np.array([f"gen{i:05d}" for i in range(n_probes)], dtype=object)
    chunks = plan_chunks(n_layers, n_probes, 8, 64)
    st.ensure(key, {"model": "llava-1.5-7b-shape (generated values)", "model_fingerprint": "bench-7b-shape-" + "0" * 49,
                    "family": "LLaVA-1.5", "shape": [n_layers, n_heads], "probes": "generated-1000",
                    "probeset_hash": "bench-probes-" + "0" * 51,
                    "n_probes": n_probes, "spec": spec, "layers_per_chunk": 8, "probes_per_chunk": 64,
                    "chunks": [c.name for c in chunks]})
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for c in chunks:
        p, a, la, h = (x.ravel() for x in np.meshgrid(np.arange(c.probe_start, c.probe_stop), np.arange(len(alphas)),
                                                      np.arange(c.layer_start, c.layer_stop), np.arange(n_heads), indexing="ij"))
        st.write_chunk(key, c.name, pd.DataFrame({"layer": la, "head": h, "alpha": np.asarray(alphas)[a], "probe_id": ids[p],
                                                  "task": tasks[p], "relation": relations[p],
                                                  "value": rng.normal(scale=0.1, size=p.size) - 0.02 * (la == 3) * (h < 4)}))
    print(f"7B-shape sweep written in {time.perf_counter() - t0:.1f} s ({len(chunks)} chunks, "
          f"{n_probes * len(alphas) * n_layers * n_heads:,} values)")
    return key


def sites(shape: tuple[int, int], n: int) -> list[tuple[int, int]]:
    every = [(layer, head) for layer in range(shape[0]) for head in range(shape[1])]
    step = max(1, len(every) // n)
    return every[::step][:n]


def pure_timings(store: Path, key: str, heads: list[tuple[int, int]]) -> dict:
    """Store read, explorer layout and head_detail in a fresh interpreter (imports first, not timed), ms."""
    code = f"""
import json, time
import plotly
from workbench.app import create_app, data
create_app({str(store)!r}, {str(DEFAULT_MODEL)!r})
from workbench.app.pages import explorer
from workbench.store.effects import EffectStore
root, key, heads = {str(store)!r}, {key!r}, {heads!r}
def ms(f):
    t = time.perf_counter(); f(); return 1e3 * (time.perf_counter() - t)
out = {{}}
from workbench.store import effects
(EffectStore(root).folder(key) / effects.DENSE_FILE).unlink(missing_ok=True)
out["store_first"] = ms(lambda: EffectStore(root).read_dense(key))  # every chunk read and verified; writes the dense copy
effects._FOOTERS.clear()
out["store"] = ms(lambda: data.sweep_data(root, key))  # what every later read does: footers checked, the dense copy verified
out["store_table"] = ms(lambda: EffectStore(root).read_table(key))
render = lambda **q: json.dumps(explorer.layout(key=key, **q), cls=plotly.utils.PlotlyJSONEncoder)
out["render_cold"] = ms(render)
sd = data.sweep_data(root, key)
views = [dict(alpha=str(a), task=t) for a in sd.alphas for t in ("spatial", "control", "all")]
out["render_warm"] = [ms(lambda q=q: render(**q)) for q in views]
out["head_cold"] = ms(lambda: data.head_detail(root, key, *heads[0]))
out["head_warm"] = [ms(lambda s=s: data.head_detail(root, key, *s)) for s in heads[1:]]
print(json.dumps(out))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def browser_timings(store: Path, key: str, heads: list[tuple[int, int]], renders: int,
                    attention: bool) -> tuple[list[float], list[float], list[float], list[float]]:
    """(explorer first render ms per fresh context, click → head page ms per head, head page first render ms per fresh
    context: the floor of a Dash page with plotly graphs in a fresh browser context on this machine, for reference;
    explorer render ms in a browser that has the app's scripts cached)."""
    from playwright.sync_api import sync_playwright

    heat = GRAPH.format(id="explorer-heatmap")
    drawn = (f"{heat} && {heat}.data && {heat}.data[0] && {heat}.data[0].z"
             " && document.querySelector('#explorer-heatmap .heatmaplayer')"
             " && document.querySelectorAll('#explorer-table td').length > 0")
    with running_app(store, "--no-default-sweep") as url:
        renders_ms, clicks = [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            for _ in range(renders):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(f"{url}/?key={key}")
                page.wait_for_function(drawn, timeout=120_000, polling="raf")
                renders_ms.append(1e3 * (time.perf_counter() - t0))
                context.close()
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(f"{url}/?key={key}")
            page.wait_for_function(drawn, timeout=120_000)
            cached = []
            for _ in range(renders):  # the same browser again: its HTTP cache holds the JS bundles (a reload, a shared link)
                t0 = time.perf_counter()
                page.goto(f"{url}/?key={key}")
                page.wait_for_function(drawn, timeout=120_000, polling="raf")
                cached.append(1e3 * (time.perf_counter() - t0))
            context.close()
            floor = []
            curve = GRAPH.format(id="head-curve")
            for _ in range(renders):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(f"{url}/head?key={key}&layer={heads[0][0]}&head={heads[0][1]}&alpha=0")
                page.wait_for_function(f"{curve} && {curve}.data && {curve}.data.length > 0 && "
                                       "document.querySelector('#head-curve .scatterlayer')", timeout=120_000, polling="raf")
                floor.append(1e3 * (time.perf_counter() - t0))
                context.close()
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for layer, head in heads:
                page.goto(f"{url}/?key={key}")
                page.wait_for_function(drawn, timeout=120_000)
                page.wait_for_timeout(300)  # let the explorer settle: nothing of it is counted
                x, y = page.evaluate(f"""(() => {{ const gd = {heat}; gd.scrollIntoView({{block: "center"}});
                    const r = gd.getBoundingClientRect(); const fl = gd._fullLayout;
                    return [r.left + fl.xaxis._offset + fl.xaxis.d2p({head}),"""
                                     f""" r.top + fl.yaxis._offset + fl.yaxis.d2p({layer})]; }})()""")
                images = " && document.querySelectorAll('#head-attention img').length > 0" if attention else ""
                done = (f"(() => {{ const t = document.querySelector('#head-title'); const c = {curve};"
                        f" return t && t.textContent.includes('L{layer}H{head}') && c && c.data && c.data.length > 0{images}"
                        f" && document.querySelectorAll('#head-affected .probe-card').length > 0; }})()")
                t0 = time.perf_counter()
                page.mouse.click(x, y)
                page.wait_for_function(done, timeout=60_000, polling="raf")
                clicks.append(1e3 * (time.perf_counter() - t0))
            browser.close()
    return renders_ms, clicks, floor, cached


def verdict(ms: float, target: str) -> str:
    return f"{ms / TARGETS_MS[target]:.2f} ({'met' if ms <= TARGETS_MS[target] else 'NOT met'})"


def report(name: str, store: Path, key: str, pure: dict, renders: list[float], clicks: list[float], floor: list[float],
           cached: list[float]) -> None:
    table = Table(title=f"{name}: store {store} (sweep {key[:12]})")
    for col in ("stage", "n", "median ms", "max ms", "median / target"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    rows = [("store read, long form (arrow table, every chunk verified)", [pure["store_table"]], None),
            ("store read → dense array, first read (chunks verified, dense.npz written)", [pure["store_first"]], None),
            ("store read → dense (probe, α, layer, head) array, cold process", [pure["store"]], "store"),
            ("explorer render, pure, after the read", [pure["render_cold"]], None),
            ("explorer render, pure, cold total (read + render)", [pure["store"] + pure["render_cold"]], "render"),
            ("explorer render, pure, warm (other α / task)", pure["render_warm"], "render"),
            ("browser: explorer first render, cold server", renders[:1], "render"),
            ("browser: explorer first render, warm server", renders[1:], "render"),
            ("browser: explorer render, scripts cached (reload, link)", cached, "render"),
            ("server head_detail, cold process", [pure["head_cold"]], None),
            ("server head_detail, warm", pure["head_warm"], None),
            ("browser: click → head page drawn", clicks, "click"),
            ("browser floor, for reference: head page first render", floor, None)]
    for stage, ms, target in rows:
        if not ms:
            continue
        med = statistics.median(ms)
        table.add_row(stage, str(len(ms)), f"{med:.1f}", f"{max(ms):.1f}", verdict(med, target) if target else "")
    Console(width=140).print(table)
    print(f"{name}: clicks, ms, in order:", " ".join(f"{t:.0f}" for t in clicks))
    print(f"{name}: browser first renders, ms, in order:", " ".join(f"{t:.0f}" for t in renders))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heads", type=int, default=12, help="heads clicked (spread over the layer × head grid)")
    ap.add_argument("--renders", type=int, default=6, help="explorer first renders in fresh browser contexts")
    ap.add_argument("--store", type=Path, default=None, help="store to use for both (default: a fresh temporary one)")
    ap.add_argument("--only", choices=("organism", "7b"), default=None)
    args = ap.parse_args()
    tmp = None if args.store else tempfile.TemporaryDirectory(prefix="bench-app-")
    store = args.store or Path(tmp.name)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    cases = []
    if args.only in (None, "organism"):
        cfg = json.loads((DEFAULT_MODEL / "config.json").read_text())["text_config"]
        cases.append(("organism", build_organism_store(store), (cfg["num_hidden_layers"], cfg["num_attention_heads"]), True))
    if args.only in (None, "7b"):
        cases.append(("LLaVA-7B shape, 32 × 32 heads, 1,000 probes, 3 α", build_7b_store(store),
                      (SEVEN_B["layers"], SEVEN_B["heads"]), False))
    for name, key, shape, attention in cases:
        heads = sites(shape, args.heads)
        pure = pure_timings(store, key, heads)
        renders, clicks, floor, cached = browser_timings(store, key, heads, args.renders, attention)
        report(name, store, key, pure, renders, clicks, floor, cached)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
