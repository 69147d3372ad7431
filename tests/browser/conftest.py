"""A real app server (``python -m workbench app``) on a fresh store, and Debian's headless Chromium via Playwright.

Chromium comes from the system package (``apt-get install chromium``, done by ``.ci/run``); no browser
is ever downloaded. Without /usr/bin/chromium the browser tests are skipped, unless
``WORKBENCH_REQUIRE_BROWSER=1`` (set by CI), which turns the skip into a failure.
Set ``WORKBENCH_SCREENSHOTS=DIR`` to keep a screenshot of every page visited (the README's come from there).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from workbench.app.background import running_app

CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium():
    if not (Path(CHROMIUM).is_file() and shutil.which(CHROMIUM)):
        if os.environ.get("WORKBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``workbench app`` on an empty store: it starts the default sweep itself."""
    store = tmp_path_factory.mktemp("store")
    with running_app(store, log=store.parent / f"app-{store.name}.log") as url:
        yield {"url": url, "store": store}



GRAPH = "document.querySelector('#{id} .js-plotly-plot')"  # a page's plotly figure by its component id


def z_of(page, graph: str = "explorer-heatmap") -> np.ndarray:
    """The z matrix a heatmap shows, once the page has drawn it."""
    g = GRAPH.format(id=graph)
    page.wait_for_function(f"{g} && {g}.data && {g}.data[0] && {g}.data[0].z", timeout=30_000)
    return np.array(page.evaluate(f"{g}.data[0].z"), dtype=float)

@contextmanager
def checked_page(chromium, test_name: str, height: int = 900):
    """A page in a fresh browser context (no cache, downloads allowed); the test fails on any console error."""
    context = chromium.new_context(viewport={"width": 1280, "height": height}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"browser console errors in {test_name}: {errors[:3]}"


@pytest.fixture
def page(chromium, server, request):
    with checked_page(chromium, request.node.name) as pg:
        yield pg


def screenshot(page, name: str) -> None:
    folder = os.environ.get("WORKBENCH_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
