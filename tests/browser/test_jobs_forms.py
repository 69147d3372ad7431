"""The job forms refuse pointless or failing jobs under the field (Sweeps: α = 1 alone; Train: a head outside the model,
an empty head set); job cards say what runs and move inside a chunk with an ETA; a cancel before the first chunk says
nothing was stored; a finished card links to the Explorer on its key; Export never preselects a sweep of α = 1 alone.
One server on a store without the default sweep (module scope); tiny probe sets put in the store's library, chosen
through the form's probe-set menu."""

from __future__ import annotations

import re

import pytest

from workbench.app.background import running_app
from workbench.jobs import JobRegistry, sweep_params
from workbench.organism import DEFAULT_MODEL
from workbench.probes import ProbeConfig, generate
from workbench.probes.items import SPATIAL_TASKS
from workbench.store.effects import EffectStore
from workbench.store.library import Library

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``workbench app --no-default-sweep`` with two tiny spatial probe sets in its library (48 and 8 probes)."""
    store = tmp_path_factory.mktemp("store")
    lib = Library(store)
    for n in (48, 8):
        lib.add_probes(generate(ProbeConfig(n=n, seed=7, tasks=SPATIAL_TASKS, test_fraction=0.0)).filter(lambda it: True,
                                                                                                         name=f"jobs-tiny{n}"))
    with running_app(store, "--no-default-sweep", log=store.parent / f"app-{store.name}.log") as url:
        yield {"url": url, "store": store}


def choose_probes(page, name: str) -> None:
    page.click("#sweeps-probes")
    page.get_by_role("option", name=re.compile(rf"^{name} ")).click()


# the percentage on job ID's card (queried afresh: each poll re-renders the cards); NaN when there is none yet
CARD_PCT = ("(id => { const c = [...document.querySelectorAll('.job-card')].find(e => e.id.includes(id)); "
            "return c ? parseInt(c.querySelector('.job-pct').textContent) : NaN; })")


def launch(page) -> str:
    """Click Launch; the id of the job it started (from the page's message)."""
    page.click("#sweeps-launch")
    message = page.locator("#sweeps-message", has_text="started")
    message.wait_for(timeout=15_000)
    return message.inner_text().split()[-1]


def card_of(page, job_id: str):
    return page.locator(f".job-card[id*='{job_id}']")  # the card's id is the JSON of {"type": "sweeps-card", "id": JOB}


def test_pointless_sweeps_are_refused_under_the_field_and_start_nothing(page, server):
    page.goto(server["url"] + "/sweeps")
    page.locator("#sweeps-jobs").get_by_text("No sweep jobs yet.").wait_for(timeout=15_000)
    for alphas, words in [("1", "α = 1 alone is the identity"), ("", "no α values given"), ("0, 0", "α 0 is given twice")]:
        page.fill("#sweeps-alphas", alphas)
        page.click("#sweeps-launch")
        page.locator("#sweeps-alphas-error").get_by_text(words).wait_for(timeout=10_000)
        assert page.locator("#sweeps-message").inner_text() == ""
    assert JobRegistry(server["store"]).list() == [] and EffectStore(server["store"]).ls() == []  # no job, no manifest
    assert page.locator("#sweeps-jobs").inner_text() == "No sweep jobs yet."


def test_the_training_form_refuses_heads_outside_the_model_and_an_empty_head_set(page, server):
    page.goto(server["url"] + "/train")
    page.click("#train-head-choice label:has-text('only these')")
    for heads, words in [("L0H4, L9H9", "L9H9 is outside the model: it has 6 layers × 8 heads (L0H0 to L5H7)"),
                         ("", "the head set is empty")]:
        page.fill("#train-heads", heads)
        page.click("#train-launch")
        page.locator("#train-heads-error").get_by_text(words).wait_for(timeout=10_000)
    assert JobRegistry(server["store"]).list() == []  # nothing started


def test_a_card_says_what_runs_moves_inside_the_first_chunk_and_a_cancel_there_stores_nothing(page, server):
    page.goto(server["url"] + "/sweeps")
    choose_probes(page, "jobs-tiny48")  # one chunk of 48 probes: every percentage below 100 is inside the first chunk
    page.click("#sweeps-positions label:has-text('all')")  # the naive engine: progress after every variant
    page.fill("#sweeps-alphas", "0, 0.5")
    job_id = launch(page)
    card = card_of(page, job_id)
    card.wait_for(timeout=15_000)
    what = card.locator(".job-what").inner_text()
    for words in ("target: every attention head", "intervention: scaling the head's output by α", "positions: every token",
                  "α: 0, 0.5",
                  "probes: jobs-tiny48 (48)", "model: organism"):
        assert words in what, what
    card.locator(".job-message", has_text="0 of 1 chunks stored").wait_for(timeout=120_000)
    page.wait_for_function(f"id => {{ const p = {CARD_PCT}(id); return p > 0 && p < 100; }}", arg=job_id,
                           timeout=120_000, polling=100)
    card.locator(".job-eta", has_text=re.compile(r"ETA \d")).wait_for(timeout=60_000)
    assert "0 of 1 chunks stored" in card.locator(".job-message").inner_text()  # moving, and still inside the first chunk
    card.get_by_role("button", name="Cancel").click()
    card.locator(".job-state", has_text="cancelled").wait_for(timeout=120_000)
    assert card.locator(".job-message").inner_text().endswith("cancelled before any chunk finished: nothing stored")
    (entry,) = EffectStore(server["store"]).ls()
    assert entry.done == 0 and entry.expected == 1


def test_a_finished_card_opens_that_sweep_in_the_explorer(page, server):
    page.goto(server["url"] + "/sweeps")
    choose_probes(page, "jobs-tiny8")
    page.fill("#sweeps-alphas", "0")
    job_id = launch(page)
    card = card_of(page, job_id)
    card.locator(".job-state", has_text="done").wait_for(timeout=240_000)
    job = JobRegistry(server["store"]).get(job_id)
    link = card.locator("a.job-open")
    assert link.get_attribute("href") == f"/?key={job.result['key']}"
    assert card.locator(".job-eta").count() == 0 and card.locator(".job-pct").inner_text() == "100%"


def test_export_never_preselects_a_sweep_of_alpha_one_alone(page, server):
    tiny8 = next(p["folder"] for p in Library(server["store"]).probesets() if p["name"] == "jobs-tiny8")
    params = sweep_params(server["store"], str(DEFAULT_MODEL), tiny8, "0", attention_probes=0, label="identity only")
    params["alphas"] = [1.0]  # what the form refuses, submitted behind its back: an older store may hold such a sweep
    registry = JobRegistry(server["store"])
    assert registry.wait(registry.submit("sweep", params).id, timeout=240).state == "done"
    usable = next(j.result["key"] for j in registry.list("sweep") if j.state == "done" and j.params["alphas"] == [0.0])
    page.goto(server["url"] + "/export")
    page.locator("#export-alpha").get_by_text("0").wait_for(timeout=15_000)
    assert usable[:8] in page.locator("#export-sweep").inner_text()  # the newest sweep is the identity one; it is passed over
    page.click("#export-sweep")
    identity = page.get_by_role("option", name=re.compile("α = 1 only: the identity"))
    identity.wait_for(timeout=10_000)
    assert identity.is_disabled() or identity.get_attribute("aria-disabled") == "true"
