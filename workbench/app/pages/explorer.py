"""Explorer: the layer × head heatmap of a stored effect matrix; click a head to open its page.

Choices narrow each other: model → probe set → intervention (target and positions) → metric pick a
sweep; α and relation pick the matrix within it. The choices are re-read from the store every few
seconds, so a sweep that finishes elsewhere appears without a reload.

A store entry that cannot be read (a garbage manifest, a broken probe set or vector) is left out of the
choices and named in a notice at the top (:func:`~workbench.app.components.store_notice`, shared by every page); a sweep whose
chunks fail their checks gets its one-line message in place of the heatmap.
"""

from __future__ import annotations

import dash
from dash import Input, Output, State, callback, clientside_callback, dcc, html, no_update

from workbench.app import data, ids
from workbench.app.components import empty_figure, field, heatmap, relation_options, store_notice
from workbench.app.settings import current
from workbench.errors import WorkbenchError

dash.register_page(__name__, path="/", name="Explorer", order=0)
E = ids.explorer
CHOICES = ("model", "probes", "intervention", "metric")


def _intervention(row: dict) -> str:
    return f"{row['target']} · {row['positions']} token{'s' if row['positions'] == 'all' else ''}"


def _pick(options: list[str], value):
    return value if value in options else (options[0] if options else None)


def resolve(rows: list[dict], chosen: dict) -> tuple[dict, dict]:
    """(options per choice, chosen values): each choice narrows the rows the next one sees; keeps what
    was chosen where it is still possible, else the newest sweep's value. Pure, for the tests."""
    options, values = {}, {}
    for name in CHOICES:
        keyf = _intervention if name == "intervention" else (lambda r, n=name: r[n])
        opts = list(dict.fromkeys(keyf(r) for r in rows))
        options[name], values[name] = opts, _pick(opts, chosen.get(name))
        rows = [r for r in rows if keyf(r) == values[name]]
    alphas = sorted({a for r in rows for a in r["alphas"]})
    options["alpha"] = alphas
    default_alpha = 0.0 if 0.0 in alphas else (alphas[0] if alphas else None)
    values["alpha"] = chosen.get("alpha") if chosen.get("alpha") in alphas else default_alpha
    rows = [r for r in rows if values["alpha"] in r["alphas"]]
    values["key"] = rows[0]["key"] if rows else None
    return options, values


def layout(**_):
    return html.Div([
        html.H2("Which heads carry spatial relations?"),
        store_notice(E),
        html.Div(id=E.empty, className="notice"),
        html.Div([
            field("Model", dcc.Dropdown(id=E.model, clearable=False)),
            field("Probe set", dcc.Dropdown(id=E.probes, clearable=False)),
            field("Intervention", dcc.Dropdown(id=E.intervention, clearable=False), hint="scale one site at a time; α = 0 ablates"),
            field("Metric", dcc.Dropdown(id=E.metric, clearable=False)),
            field("α", dcc.Dropdown(id=E.alpha, clearable=False)),
            field("Relation", dcc.Dropdown(id=E.relation, clearable=False, value=data.ALL)),
        ], className="controls"),
        html.Div(id=E.info, className="info"),
        dcc.Loading(dcc.Graph(id=E.heatmap, config={"displaylogo": False}, clear_on_unhover=True), delay_show=300),
        html.P("Hover a cell for its mean effect and 95% bootstrap interval; click it to open the head's page.", className="hint"),
        dcc.Store(id=E.key),
        dcc.Store(id=E.catalog),
        dcc.Interval(id=E.tick, interval=max(2 * current().poll_ms, 1000)),
    ])


@callback(Output(E.catalog, "data"), Input(E.tick, "n_intervals"), State(E.catalog, "data"))
def refresh_catalog(_, previous):
    rows = [r for r in data.catalog(current().store) if r["complete"]]
    return no_update if rows == previous else rows


@callback([Output(getattr(E, n), "options") for n in (*CHOICES, "alpha")] + [Output(getattr(E, n), "value") for n in (*CHOICES, "alpha")]
          + [Output(E.key, "data"), Output(E.empty, "children")],
          Input(E.catalog, "data"), *[Input(getattr(E, n), "value") for n in (*CHOICES, "alpha")])
def choose(rows, *values):
    rows = rows or []
    options, chosen = resolve(rows, dict(zip((*CHOICES, "alpha"), values)))
    empty = "" if rows else ("No finished sweep in this store yet. The default sweep starts with the app (progress in the bar above); "
                             "or launch one on the Sweeps page.")
    opts = [[{"label": str(o) if n != "alpha" else f"{o:g}", "value": o} for o in options[n]] for n in (*CHOICES, "alpha")]
    return (*opts, *[chosen[n] for n in (*CHOICES, "alpha")], chosen["key"], empty)


@callback(Output(E.relation, "options"), Output(E.relation, "value"), Input(E.key, "data"), State(E.relation, "value"))
def relations(key, value):
    try:
        options = relation_options(data.sweep_data(current().store, key).relations if key else ())
    except WorkbenchError:  # the heatmap says why
        options = relation_options(())
    return options, value if value in {o["value"] for o in options} else data.ALL


@callback(Output(E.heatmap, "figure"), Output(E.info, "children"), Input(E.key, "data"), Input(E.alpha, "value"),
          Input(E.relation, "value"))
def draw(key, alpha, relation):
    if not key or alpha is None:
        return empty_figure("no sweep selected"), ""
    try:
        sd = data.sweep_data(current().store, key)
        m = data.matrix(current().store, key, alpha, relation or data.ALL)
    except WorkbenchError as e:  # a chunk that fails its checks, a manifest broken since the catalog was read
        return empty_figure("this sweep cannot be shown (see the message above the heatmap)"), html.Span(str(e), className="field-error",
                                                                                                           role="alert")
    rel = "all probes" if m.relation == data.ALL else f"relation {m.relation}"
    title = f"mean Δ{m.metric} when one head is scaled to α = {alpha:g} ({rel}, n = {m.n_probes})"
    info = [html.Span(f"sweep {key[:12]}", className="mono"), " · ", sd.manifest["model"], " · ", f"{sd.manifest['probes']}",
            " · ", f"{len(sd.alphas)} α × {sd.shape[0]} layers × {sd.shape[1]} heads"]
    data.prefetch_head_pages(current().store, sd.manifest)  # the next click is on the timed path
    return heatmap(m.mean, title, m.low, m.high, colorbar=f"Δ {m.metric}"), info


# Runs in the browser: the click becomes a navigation with no server round trip before the head page's own.
clientside_callback(
    """function(click, key, alpha) {
        if (!click || !key) { return window.dash_clientside.no_update; }
        const p = click.points[0];  // the axes are the indices: x = head, y = layer
        return "/head?" + new URLSearchParams({key: key, layer: p.y, head: p.x, alpha: JSON.stringify(alpha)}).toString();
    }""",
    Output(ids.shell.url, "href"), Input(E.heatmap, "clickData"), State(E.key, "data"), State(E.alpha, "value"), prevent_initial_call=True)
