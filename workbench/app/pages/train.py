"""Train: fit a ScAle vector as a background job, with live loss and accuracy curves and cancel.

The job (:func:`workbench.jobs.tasks.train_task`) trains on the organism study's repair set (seeded
probes of every task), scores the held-out probes — spatial *and* control — before and after, and
saves ``<store>/scales/NAME``: listed below and on the Compare and Export pages. A cancelled run
saves nothing. The form's defaults are the study's ScAle all-positions setting
(:data:`workbench.jobs.params.STUDY_TRAIN`); the default model is the planted-deficit organism,
whose damaged heads (counted from its ``planted.json``) are what ScAle should learn to turn back up.
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
from workbench.app.train_views import NOT_MEASURED, eval_cells, planted_count, result_line
from workbench.jobs import FieldError, JobRegistry, train_params
from workbench.jobs.params import DEFAULT_PROBES, STUDY_TRAIN

dash.register_page(__name__, path="/train", name="Train", order=2)
T = ids.train
FIELDS = ("model", "name", "probes", "mode", "positions", "heads", "s_max", "epochs", "lr", "batch", "n_train")
D = STUDY_TRAIN


def layout(**_):
    from workbench.organism import DEFICIT_MODEL

    saved = [{"label": f"{name} ({len(hs.heads)} heads)", "value": ", ".join(f"L{a}H{b}" for a, b in hs.heads)}
             for name, hs in saved_headsets(current().store)]
    runs = JobRegistry(current().store).list("train")  # newest first: coming back shows the run that was being watched
    return html.Div([
        html.H2("Train a ScAle vector"),
        store_notice(T),
        html.Div([
            field("Model", html.Div([dcc.Dropdown(id=T.model, **KEEP, options=known_models(), value=str(DEFICIT_MODEL),
                                                  clearable=False),
                                     html.Div(id=T.model_hint, className="field-hint")]), T.model_error),
            field("Vector name", dcc.Input(id=T.name, **KEEP, type="text", value="fix", className="text"), T.name_error),
            field("Probe set", dcc.Dropdown(id=T.probes, **KEEP, options=train_probe_options(), value=DEFAULT_PROBES,
                                            clearable=False),
                  T.probes_error,
                  hint="default: fresh probes of every task to train on (half spatial, half control), "
                       "the 500-probe held-out set (spatial and control) to test"),
            field("Mode", dcc.RadioItems(id=T.mode, **KEEP, options=["attn", "mlp", "both"], value=D["mode"], inline=True),
                  T.mode_error),
            field("Positions", dcc.RadioItems(id=T.positions, **KEEP, options=["last", "all"], value=D["positions"], inline=True),
                  T.positions_error, hint="scale every position, or only the answer's (ScAle's reference)"),
            field("Heads", dcc.RadioItems(id=T.head_choice, **KEEP, options=[{"label": "all heads", "value": "all"},
                                                                     {"label": "only these", "value": "listed"}], value="all",
                                          inline=True)),
            field("Head set", html.Div([dcc.Input(id=T.heads, **KEEP, type="text", placeholder="L0H4, L2H1", className="text"),
                                        dcc.Dropdown(id=T.saved, options=saved, placeholder="or a saved head set")]),
                  T.heads_error),
            field("s_max", dcc.Input(id=T.s_max, **KEEP, type="number", value=D["s_max"], className="num"), T.s_max_error,
                  hint="each scale stays in [1 − s_max, 1 + s_max]"),
            field("Epochs", dcc.Input(id=T.epochs, **KEEP, type="number", value=D["epochs"], className="num"), T.epochs_error,
                  hint="the best epoch (validation loss) is kept"),
            field("Learning rate", dcc.Input(id=T.lr, **KEEP, type="number", value=D["lr"], className="num"), T.lr_error),
            field("Batch", dcc.Input(id=T.batch, **KEEP, type="number", value=D["batch"], className="num"), T.batch_error),
            field("Training probes", dcc.Input(id=T.n_train, **KEEP, type="number", value=D["n_train"], className="num"),
                  T.n_train_error,
                  hint="for the default probe set"),
        ], className="controls"),
        html.P(["Defaults: the organism study's ScAle all-positions setting (",
                html.Code("analyses/organism_study.py"), ", measured in ", html.Code("analyses/results/train_defaults.md"), ")."],
               className="hint", id=T.defaults_note),
        html.Button("Train", id=T.launch, className="button", n_clicks=0),
        html.Div(id=T.message, className="message"),
        field("Run", dcc.Dropdown(id=T.job, options=run_options(runs), value=runs[0].id if runs else None,
                                  placeholder="no training run yet" if not runs else "choose a run", clearable=False)),
        html.Div(id=T.status),
        dcc.Graph(id=T.curves, config={"displaylogo": False}),
        html.H3("Saved vectors"),
        html.P("Accuracy on each vector's test probes without (before) and with it (after); "
               "spatial is what training repairs, control what it may cost.", className="hint"),
        html.Div(id=T.vectors),
        dcc.Interval(id=T.tick, interval=current().poll_ms),
        dcc.Store(id=T.seen),
        dcc.Store(id=T.launched),
    ])


def train_probe_options() -> list[dict]:
    """The sweep form's probe sets, the default labelled as what training does with it (a repair set, then the held-out set)."""
    return [{**o, "label": "default: the study's repair set → held-out set"} if o["value"] == DEFAULT_PROBES else o
            for o in probe_options()]


def deficit_hint(model: str | None) -> str:
    """What the chosen model folder says it is: a planted deficit's damaged-head count, from its planted.json."""
    n = planted_count(model) if model else None
    return "" if n is None else f"planted deficit: {n} damaged head{'s' if n != 1 else ''} (from its planted.json)"


@callback(Output(T.model_hint, "children"), Input(T.model, "value"))
def show_model(model):
    return deficit_hint(model)


@callback(Output(T.heads, "value"), Output(T.head_choice, "value"), Input(T.saved, "value"), prevent_initial_call=True)
def use_saved(heads):
    return (heads, "listed") if heads else (no_update, no_update)


@callback(Output(T.message, "children"), Output(T.launched, "data"),
          *[Output(getattr(T, f"{f}_error"), "children") for f in FIELDS],
          Input(T.launch, "n_clicks"), *[State(getattr(T, f), "value") for f in FIELDS], State(T.head_choice, "value"),
          prevent_initial_call=True)
def launch(_, model, name, probes, mode, positions, heads, s_max, epochs, lr, batch, n_train, head_choice):
    errors = dict.fromkeys(FIELDS, "")
    try:
        params = train_params(current().store, model, name, probes, mode, (heads or "") if head_choice == "listed" else None,
                              s_max, epochs, lr, batch, positions=positions, n_train=n_train, device=current().device)
    except FieldError as e:
        errors[e.field if e.field in errors else "model"] = str(e)
        return "", no_update, *errors.values()
    job = JobRegistry(current().store).submit("train", params)
    return f"started {job.id}", job.id, *errors.values()  # the watcher selects it in the Run list, with its option


def run_options(jobs) -> list[dict]:
    return [{"label": f"{j.params.get('name', j.id)} · {j.state} · {j.id}", "value": j.id} for j in jobs]


def curves(points: list[dict]) -> go.Figure:
    """Running training loss and accuracy per optimizer step, validation per epoch."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss (cross-entropy of the answer)", "accuracy"))
    steps = [p for p in points if p.get("kind") == "step"]
    epochs = [p for p in points if p.get("kind") == "epoch" and "val_loss" in p]
    x = [p["global_step"] for p in steps]
    fig.add_trace(go.Scatter(x=x, y=[p["loss"] for p in steps], name="train loss (running)", line={"color": "#1f77b4"}), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=[p["accuracy"] for p in steps], name="train accuracy (running)", line={"color": "#1f77b4"}),
                  1, 2)
    if epochs:
        xe = [p["global_step"] for p in epochs]
        fig.add_trace(go.Scatter(x=xe, y=[p["val_loss"] for p in epochs], name="validation loss", mode="lines+markers",
                                 line={"color": "#d62728"}), 1, 1)
        fig.add_trace(go.Scatter(x=xe, y=[p["val_accuracy"] for p in epochs], name="validation accuracy", mode="lines+markers",
                                 line={"color": "#d62728"}), 1, 2)
    fig.update_xaxes(title_text="optimizer step")
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_layout(height=320, margin={"l": 50, "r": 10, "t": 40, "b": 40}, plot_bgcolor="white",
                      legend={"orientation": "h", "y": -0.3})
    return fig


def _vector_table(rows: list[dict]) -> dash_table.DataTable | html.P:
    if not rows:
        return html.P("No saved vector yet.", className="hint")
    dash_if_none = lambda v: "–" if v is None else v  # noqa: E731  (an imported vector has no training record)
    table = [{"name": r["name"], "model": r["model"], "mode": r["mode"], "positions": r["positions"],
              "parameters": dash_if_none(r["n_params"]),
              "best epoch": dash_if_none(r["best_epoch"]), **eval_cells(r["before"], r["after"]),
              "test probes": (f"{r['eval_probes']} ({r['eval_n']})" if r["eval_n"] else r["eval_probes"]) or NOT_MEASURED}
             for r in rows]
    return dash_table.DataTable(table, [{"name": c, "id": c} for c in table[0]], id=T.vector_table, style_as_list_view=True,
                                style_cell={"fontFamily": "inherit", "padding": "4px 8px", "textAlign": "left"})


def shown_run(listed: list, job_id: str | None, launched: str | None, launch_triggered: bool):
    """The run to show: the one just launched, else the one chosen when it still exists, else the newest (or None).
    The Run dropdown's value is set to it, so the list never reads "no training run yet" above a run's curves."""
    by_id = {j.id: j for j in listed}
    for candidate in ((launched,) if launch_triggered else ()) + (job_id,):
        if candidate in by_id:
            return by_id[candidate]
    return listed[0] if listed else None


def job_result(job) -> str:
    """The finished job's before → after line (a job that recorded only spatial says control was not measured)."""
    r = job.result or {}
    before = r.get("before") or {"spatial": r.get("accuracy_before")}
    after = r.get("after") or {"spatial": r.get("accuracy_after")}
    return result_line(r.get("name", job.id), before, after, r.get("n_test"), r.get("test_probes", ""))


@callback(Output(T.job, "options"), Output(T.job, "value"), Output(T.status, "children"), Output(T.curves, "figure"),
          Output(T.vectors, "children"), Output(T.seen, "data"),
          Input(T.tick, "n_intervals"), Input(T.job, "value"), Input(T.launched, "data"), State(T.seen, "data"))
def watch(_, job_id, launched, seen):
    registry = JobRegistry(current().store)
    listed = registry.list("train")
    options = run_options(listed)
    job = shown_run(listed, job_id, launched, ctx.triggered_id == T.launched)
    value = job.id if job is not None else None
    saved = data.vectors(current().store)  # read once per tick: the signature and the table share it
    signature = [options, value, job and [job.id, job.state, job.progress, len(job.points), job.cancel_requested],
                 [[v["name"], v["mtime"]] for v in saved]]
    if signature == seen:
        return no_update, no_update, no_update, no_update, no_update, no_update
    value_out = value if value != job_id else no_update
    if job is None:
        return (options, value_out, html.P("Launch a run to see its curves here.", className="hint"), curves([]),
                _vector_table(saved),
                signature)
    extra = html.Div(job_result(job), className="job-result") if job.state == "done" else None
    return (options, value_out, job_card(job, T.match("cancel", job.id), extra), curves(list(job.points)), _vector_table(saved),
            signature)


@callback(Output(T.message, "children", allow_duplicate=True), Input(T.match("cancel", ALL), "n_clicks"),
          prevent_initial_call=True)
def cancel(clicks):
    if not ctx.triggered_id or not any(c for c in clicks if c):
        return no_update
    job = JobRegistry(current().store).cancel(ctx.triggered_id["id"])
    return f"cancelling {job.id} (it stops after the current step; nothing is saved)"
