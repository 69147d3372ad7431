"""Sweeps: launch a sweep of heads, MLPs or attention edges as a background job, watch its progress, cancel it.

The intervention is one of :data:`workbench.axis.FAMILIES`: scale (α), patch (activation patching from each probe's
counterfactual, noising or denoising; no α: leave the α field empty) or temperature (edges only). Refusals of a
combination come under the field they are about: patching with α, patching on probes without counterfactuals,
temperature on heads.

The form is validated by :func:`workbench.jobs.sweep_params`; a bad field gets its message under it and
nothing starts (α = 1 alone, the identity, is refused as a sweep that measures nothing). Jobs run in worker
processes (:class:`workbench.jobs.JobRegistry`); this page only lists them, so leaving and coming back shows
each where it is. Each card says what the job runs (:func:`workbench.app.jobs_view.describe`), its progress in
work units (probe × variant, so it moves inside a chunk) with an ETA, and, once done, links to the Explorer
on that sweep. A cancelled sweep keeps the chunks it finished (its card says how many) and resumes from
there when launched again.
"""

from __future__ import annotations

import dash
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update

from workbench import axis
from workbench.app import ids
from workbench.app.components import KEEP, field, job_card, store_notice
from workbench.app.jobs_view import explorer_href
from workbench.app.settings import current, known_models
from workbench.jobs import FieldError, JobRegistry, sweep_params
from workbench.jobs.params import DEFAULT_PROBES, METRICS
from workbench.store.library import Library

dash.register_page(__name__, path="/sweeps", name="Sweeps", order=1)
S = ids.sweeps
FIELDS = ("model", "probes", "alphas", "metric", "positions", "target", "intervention", "direction", "min_gap")


def probe_options() -> list[dict]:
    opts = [{"label": "default: held-out spatial probes (250)", "value": DEFAULT_PROBES}]
    for p in Library(current().store).probesets():
        if p["name"] != "heldout-spatial":
            opts.append({"label": f"{p['name']} ({p['n']}) · {p['hash'][:8]}", "value": p["folder"]})
    return opts


def layout(**_):
    s = current()
    return html.Div([
        html.H2("Run a sweep"),
        store_notice(S),
        html.Div([
            field("Model", dcc.Dropdown(id=S.model, **KEEP, options=known_models(), value=s.model, clearable=False),
                  S.model_error),
            field("or a model folder / hub id", dcc.Input(id=S.model_path, **KEEP, type="text",
                                                          placeholder="/path/to/llava-folder",
                                                          debounce=False, className="text")),
            field("Probe set", dcc.Dropdown(id=S.probes, **KEEP, options=probe_options(), value=DEFAULT_PROBES, clearable=False),
                  S.probes_error),
            field("Intervention", dcc.RadioItems(id=S.intervention, **KEEP, options=list(axis.INTERVENTIONS), value="scale",
                                                 inline=True), S.intervention_error,
                  hint="scale a site by α; patch it from the paired (counterfactual) run; or set its image-attention "
                       "temperature"),
            field("α values", dcc.Input(id=S.alphas, **KEEP, type="text", value="0, 0.5, 2", className="text"), S.alphas_error,
                  hint="comma-separated; α = 0 ablates, 1 alone (the identity) measures nothing; the temperature for "
                       "temperature; empty for patch (no α)"),
            field("Metric", dcc.Dropdown(id=S.metric, **KEEP, options=list(METRICS), value="logit_diff", clearable=False),
                  S.metric_error),
            field("Positions", dcc.RadioItems(id=S.positions, **KEEP, options=["last", "all"], value="last", inline=True),
                  S.positions_error),
            field("Target", dcc.RadioItems(id=S.target, **KEEP, options=list(axis.TARGETS), value=axis.HEADS.name, inline=True),
                  S.target_error, hint="heads, layers' MLPs, or edges: a head's last-token attention to the image"),
            field("Direction", dcc.RadioItems(id=S.direction, **KEEP, options=list(axis.DIRECTIONS), value=axis.DIRECTIONS[0],
                                              inline=True), S.direction_error,
                  hint="patch only: noising = clean run, the counterfactual's site patched in; denoising = the reverse"),
            field("min gap", dcc.Input(id=S.min_gap, **KEEP, type="number", value=0, min=0, step="any", className="num"),
                  S.min_gap_error, hint="patch only: probes with |source − base| logit difference below it are dropped"),
        ], className="controls"),
        html.Button("Launch sweep", id=S.launch, className="button", n_clicks=0),
        html.Div(id=S.message, className="message"),
        html.H3("Sweep jobs"),
        html.Div(id=S.jobs, className="jobs"),
        dcc.Interval(id=S.tick, interval=s.poll_ms),
        dcc.Store(id=S.seen),
    ])


@callback(Output(S.message, "children"), *[Output(getattr(S, f"{f}_error"), "children") for f in FIELDS],
          Input(S.launch, "n_clicks"), *[State(getattr(S, f), "value") for f in FIELDS], State(S.model_path, "value"),
          prevent_initial_call=True)
def launch(_, model, probes, alphas, metric, positions, target, intervention, direction, min_gap, model_path):
    errors = dict.fromkeys(FIELDS, "")
    try:
        fam = axis.family(intervention or "scale")
        label = f"sweep α = {alphas}" if fam is axis.SCALE else \
            f"sweep {fam.name} {direction if fam.needs_pairs else alphas}"
        params = sweep_params(current().store, (model_path or "").strip() or model, probes, alphas, metric, positions, target,
                              device=current().device, label=label, intervention=intervention or "scale",
                              direction=direction or "", min_gap=min_gap)
    except FieldError as e:
        errors[e.field if e.field in errors else "model"] = str(e)
        return "", *errors.values()
    job = JobRegistry(current().store).submit("sweep", params)
    return f"started {job.id}", *errors.values()


@callback(Output(S.jobs, "children"), Output(S.seen, "data"), Input(S.tick, "n_intervals"), Input(S.message, "children"),
          State(S.seen, "data"))
def jobs(_, __, seen):
    listed = JobRegistry(current().store).list("sweep")
    signature = [[j.id, j.state, j.progress, j.error, j.cancel_requested] for j in listed[:20]]
    if signature == seen:
        return no_update, no_update  # nothing moved: keep the buttons under the pointer
    if not listed:
        return html.P("No sweep jobs yet.", className="hint"), signature
    cards = []
    for j in listed[:20]:
        extra = None
        if j.state == "done" and j.result.get("key"):
            r = j.result
            extra = html.Div([f"sweep {r['key'][:12]} · {r['computed']} chunks computed, {r['cached']} from the store · ",
                              dcc.Link("open in the Explorer", href=explorer_href(r["key"]), className="job-open")],
                             className="job-result")
        cards.append(job_card(j, S.match("cancel", j.id), extra))
    return cards, signature


@callback(Output(S.message, "children", allow_duplicate=True), Input(S.match("cancel", ALL), "n_clicks"),
          prevent_initial_call=True)
def cancel(clicks):
    if not ctx.triggered_id or not any(clicks):
        return no_update
    job = JobRegistry(current().store).cancel(ctx.triggered_id["id"])
    return (f"cancelling {job.id}: it stops at its next forward pass; finished chunks stay in the store, "
            "the chunk under way is dropped")
