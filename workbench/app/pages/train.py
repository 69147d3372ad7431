"""Train: fit a ScAle vector as a background job, with live loss and accuracy curves and cancel.

The job (:func:`workbench.jobs.tasks.train_task`) trains on seeded spatial probes, scores the
held-out spatial probes before and after, and saves ``<store>/scales/NAME`` — listed below and on
the Compare and Export pages. A cancelled run saves nothing. The default model is the planted
deficit organism, whose five damaged heads are what ScAle should learn to turn back up.
"""

from __future__ import annotations

import dash
import plotly.graph_objects as go
from dash import ALL, Input, Output, State, callback, ctx, dash_table, dcc, html, no_update
from plotly.subplots import make_subplots

from workbench.app import data, ids
from workbench.app.components import KEEP, field, job_card, store_notice
from workbench.app.exports import saved_headsets
from workbench.app.pages.sweeps import probe_options
from workbench.app.settings import current, known_models
from workbench.jobs import FieldError, JobRegistry, train_params
from workbench.jobs.params import DEFAULT_PROBES

dash.register_page(__name__, path="/train", name="Train", order=2)
T = ids.train
FIELDS = ("model", "name", "probes", "mode", "heads", "s_max", "epochs", "lr", "batch", "n_train")


def layout(**_):
    from workbench.organism import DEFICIT_MODEL

    saved = [{"label": f"{name} ({len(hs.heads)} heads)", "value": ", ".join(f"L{a}H{b}" for a, b in hs.heads)}
             for name, hs in saved_headsets(current().store)]
    runs = JobRegistry(current().store).list("train")  # newest first: coming back shows the run that was being watched
    return html.Div([
        html.H2("Train a ScAle vector"),
        store_notice(T),
        html.Div([
            field("Model", dcc.Dropdown(id=T.model, **KEEP, options=known_models(), value=str(DEFICIT_MODEL), clearable=False), T.model_error),
            field("Vector name", dcc.Input(id=T.name, **KEEP, type="text", value="fix", className="text"), T.name_error),
            field("Probe set", dcc.Dropdown(id=T.probes, **KEEP, options=probe_options(), value=DEFAULT_PROBES, clearable=False), T.probes_error,
                  hint="default: new seeded spatial probes to train, the held-out spatial set to test"),
            field("Mode", dcc.RadioItems(id=T.mode, **KEEP, options=["attn", "mlp", "both"], value="attn", inline=True), T.mode_error),
            field("Heads", dcc.RadioItems(id=T.head_choice, **KEEP, options=[{"label": "all heads", "value": "all"},
                                                                     {"label": "only these", "value": "listed"}], value="all", inline=True)),
            field("Head set", html.Div([dcc.Input(id=T.heads, **KEEP, type="text", placeholder="L0H4, L2H1", className="text"),
                                        dcc.Dropdown(id=T.saved, options=saved, placeholder="or a saved head set")]), T.heads_error),
            field("s_max", dcc.Input(id=T.s_max, **KEEP, type="number", value=10, className="num"), T.s_max_error,
                  hint="each scale stays in [1 − s_max, 1 + s_max]"),
            field("Epochs", dcc.Input(id=T.epochs, **KEEP, type="number", value=3, className="num"), T.epochs_error),
            field("Learning rate", dcc.Input(id=T.lr, **KEEP, type="number", value=0.003, className="num"), T.lr_error),
            field("Batch", dcc.Input(id=T.batch, **KEEP, type="number", value=16, className="num"), T.batch_error),
            field("Training probes", dcc.Input(id=T.n_train, **KEEP, type="number", value=200, className="num"), T.n_train_error,
                  hint="for the default probe set"),
        ], className="controls"),
        html.Button("Train", id=T.launch, className="button", n_clicks=0),
        html.Div(id=T.message, className="message"),
        field("Run", dcc.Dropdown(id=T.job, options=run_options(runs), value=runs[0].id if runs else None,
                                  placeholder="no training run yet", clearable=False)),
        html.Div(id=T.status),
        dcc.Graph(id=T.curves, config={"displaylogo": False}),
        html.H3("Saved vectors"),
        html.Div(id=T.vectors),
        dcc.Interval(id=T.tick, interval=current().poll_ms),
        dcc.Store(id=T.seen),
    ])


@callback(Output(T.heads, "value"), Output(T.head_choice, "value"), Input(T.saved, "value"), prevent_initial_call=True)
def use_saved(heads):
    return (heads, "listed") if heads else (no_update, no_update)


@callback(Output(T.message, "children"), Output(T.job, "value"), *[Output(getattr(T, f"{f}_error"), "children") for f in FIELDS],
          Input(T.launch, "n_clicks"), *[State(getattr(T, f), "value") for f in FIELDS], State(T.head_choice, "value"),
          prevent_initial_call=True)
def launch(_, model, name, probes, mode, heads, s_max, epochs, lr, batch, n_train, head_choice):
    errors = dict.fromkeys(FIELDS, "")
    try:
        params = train_params(current().store, model, name, probes, mode, (heads or "") if head_choice == "listed" else None,
                              s_max, epochs, lr, batch, n_train=n_train, device=current().device)
    except FieldError as e:
        errors[e.field if e.field in errors else "model"] = str(e)
        return "", no_update, *errors.values()
    job = JobRegistry(current().store).submit("train", params)
    return f"started {job.id}", job.id, *errors.values()


def run_options(jobs) -> list[dict]:
    return [{"label": f"{j.params.get('name', j.id)} · {j.state} · {j.id}", "value": j.id} for j in jobs]


def curves(points: list[dict]) -> go.Figure:
    """Running training loss and accuracy per optimizer step, validation per epoch."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss (cross-entropy of the answer)", "accuracy"))
    steps = [p for p in points if p.get("kind") == "step"]
    epochs = [p for p in points if p.get("kind") == "epoch" and "val_loss" in p]
    x = [p["global_step"] for p in steps]
    fig.add_trace(go.Scatter(x=x, y=[p["loss"] for p in steps], name="train loss (running)", line={"color": "#1f77b4"}), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=[p["accuracy"] for p in steps], name="train accuracy (running)", line={"color": "#1f77b4"}), 1, 2)
    if epochs:
        xe = [p["global_step"] for p in epochs]
        fig.add_trace(go.Scatter(x=xe, y=[p["val_loss"] for p in epochs], name="validation loss", mode="lines+markers",
                                 line={"color": "#d62728"}), 1, 1)
        fig.add_trace(go.Scatter(x=xe, y=[p["val_accuracy"] for p in epochs], name="validation accuracy", mode="lines+markers",
                                 line={"color": "#d62728"}), 1, 2)
    fig.update_xaxes(title_text="optimizer step")
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_layout(height=320, margin={"l": 50, "r": 10, "t": 40, "b": 40}, plot_bgcolor="white", legend={"orientation": "h", "y": -0.3})
    return fig


def _vector_table(rows: list[dict]) -> dash_table.DataTable | html.P:
    if not rows:
        return html.P("No saved vector yet.", className="hint")
    fmt = lambda v: "" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    table = [{"name": r["name"], "model": r["model"], "mode": r["mode"], "parameters": r["n_params"], "best epoch": r["best_epoch"],
              "spatial before": fmt(r["before"].get("spatial")), "spatial after": fmt(r["after"].get("spatial")),
              "test probes": r["eval_probes"]} for r in rows]
    return dash_table.DataTable(table, [{"name": c, "id": c} for c in table[0]], id=T.vector_table, style_as_list_view=True,
                                style_cell={"fontFamily": "inherit", "padding": "4px 8px", "textAlign": "left"})


@callback(Output(T.job, "options"), Output(T.status, "children"), Output(T.curves, "figure"), Output(T.vectors, "children"),
          Output(T.seen, "data"), Input(T.tick, "n_intervals"), Input(T.job, "value"), State(T.seen, "data"))
def watch(_, job_id, seen):
    registry = JobRegistry(current().store)
    listed = registry.list("train")
    options = run_options(listed)
    job = next((j for j in listed if j.id == job_id), listed[0] if listed and job_id is None else None)
    saved = data.vectors(current().store)  # read once per tick: the signature and the table share it
    signature = [options, job and [job.id, job.state, job.progress, len(job.points), job.cancel_requested], [v["name"] for v in saved]]
    if signature == seen:
        return no_update, no_update, no_update, no_update, no_update
    if job is None:
        return options, html.P("Launch a run to see its curves here.", className="hint"), curves([]), _vector_table(saved), signature
    extra = None
    if job.state == "done":
        r = job.result
        extra = html.Div(f"saved {r['name']}: spatial accuracy {100 * (r['accuracy_before'] or 0):.1f}% → "
                         f"{100 * (r['accuracy_after'] or 0):.1f}% on the test probes", className="job-result")
    return options, job_card(job, T.match("cancel", job.id), extra), curves(list(job.points)), _vector_table(saved), signature


@callback(Output(T.message, "children", allow_duplicate=True), Input(T.match("cancel", ALL), "n_clicks"), prevent_initial_call=True)
def cancel(clicks):
    if not ctx.triggered_id or not any(c for c in clicks if c):
        return no_update
    job = JobRegistry(current().store).cancel(ctx.triggered_id["id"])
    return f"cancelling {job.id} (it stops after the current step; nothing is saved)"
