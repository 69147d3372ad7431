"""Explorer: the layer × head heatmap of a stored effect matrix; click a head to open its page.

The view is a function of its address (see :mod:`workbench.app.explorer_view`): ``/?key=KEY&alpha=A&task=T&…``.
Every control writes the query string (a browser history entry, so Back returns to the previous view and a reload
or a shared link shows the same one), and the page is built from it in one server round trip. ``/`` alone shows
the newest finished sweep; ``/?key=KEY`` (or a unique prefix of it) that sweep.

Beside the heatmap: the clean model's accuracy per task on the sweep's probes (with a one-line warning when it is
near chance on the spatial tasks), a ranked table of every site with a search box (a row opens the site's page),
and below it one heatmap per relation on one shared colour scale. Where the sweep's model folder has a
``planted.json`` (a planted-deficit organism), its planted heads are framed. Downloads: the heatmap as PNG or SVG
(drawn by plotly in the browser) and the matrix as CSV.

A store entry that cannot be read (a garbage manifest, a broken probe set or vector) is left out of the choices and
named in a notice at the top (:func:`~workbench.app.components.store_notice`, shared by every page); a sweep whose
chunks fail their checks gets its one-line message in place of the heatmap. The sweep list is re-read every few
seconds, so a sweep that finishes elsewhere appears in the picker (and is shown, when the page had none).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import dash
import plotly.graph_objects as go
from dash import Input, Output, State, callback, clientside_callback, dcc, html, no_update

from workbench import axis, clean
from workbench.app import data, ids
from workbench.app import explorer_view as view
from workbench.app import head_visuals as hv
from workbench.app.components import empty_figure, field, heatmap, relation_options, store_notice
from workbench.app.settings import current
from workbench.errors import WorkbenchError

dash.register_page(__name__, path="/", name="Explorer", order=0)
E = ids.explorer
CHOICES = view.CHOICES
CONTROLS = ("sweep", *CHOICES, "alpha", "task", "relation")  # the dropdowns, in the order the URL callback reads them
FRAME = {"type": "rect", "line": {"color": "#111", "width": 2.5}, "fillcolor": "rgba(0,0,0,0)", "layer": "above"}
resolve = view.resolve  # kept here for callers of the page module


def _frames(sites, xref: str = "x", yref: str = "y") -> list[dict]:
    return [{**FRAME, "xref": xref, "yref": yref, "x0": h - 0.5, "x1": h + 0.5, "y0": layer - 0.5, "y1": layer + 0.5}
            for layer, h in sites]


def _planted(sd: data.SweepData):
    """(sites to frame, the note under the heatmap) for the sweep's model, ``([], "")`` when it has no planted.json."""
    folder = view.model_folder(sd.manifest["model"], current().model)
    got = view.planted_heads(folder, sd.shape if not view.is_mlp(sd) else (sd.shape[0], 10**9))
    if got is None:
        return [], ""
    sites, record = got
    factor = record.get("factor")
    what = f"turned down to ×{factor:g}" if isinstance(factor, (int, float)) else "turned down"
    if view.is_mlp(sd):
        return [], (f"{folder.name}/planted.json records {len(sites)} planted attention heads ({what}); this sweep scales MLPs, "
                    "so they are not marked.")
    names = ", ".join(data.site_label(a, b) for a, b in sites)
    return sites, f"framed: the {len(sites)} heads {folder.name}/planted.json records as planted ({what}): {names}."


def _clean_panel(sd: data.SweepData, task: str):
    rows = view.clean_rows(sd.manifest)
    if rows is None:
        return html.Div([html.H4("Clean accuracy"), html.P("clean accuracy not recorded (this sweep predates the record; "
                                                           "rerun it to record it)", className="hint")], id=E.clean,
                        className="side-box")
    picked = {task} | (set(view.FAMILIES.get(task, ())) if task in view.FAMILIES else set())
    body = [html.Tr([html.Td(r["name"]), html.Td(f"{100 * r['accuracy']:.1f}%", className="num-cell"),
                     html.Td("" if r["chance"] is None else f"{100 * r['chance']:.0f}%", className="num-cell"),
                     html.Td("" if r["n"] is None else str(r["n"]), className="num-cell")],
                    className="picked" if r["name"] in picked else None) for r in rows]
    return html.Div([html.H4("Clean accuracy (no intervention)"),
                     html.Table([html.Thead(html.Tr([html.Th("task"), html.Th("accuracy"), html.Th("chance"), html.Th("n")])),
                                 html.Tbody(body)], className="clean-table")], id=E.clean, className="side-box")


TABLE_ROWS = 30  # rows the ranked table shows; the search narrows the list


def _table(rows: list[dict], unit: str, total: int, state: dict):
    """The ranked sites as a plain table whose every cell links to the site's page (a click, or open in a new tab);
    ``unit``: what a value is (:func:`workbench.app.data.value_unit`)."""
    head = html.Tr([html.Th("rank"), html.Th("site"), html.Th(f"mean {unit}" if not unit.startswith("KL") else "mean KL"),
                    html.Th("95% CI")])
    body = []
    for r in rows[:TABLE_ROWS]:
        href = "/head?" + urlencode({"key": state["key"], "layer": r["layer"], "head": r["head"],
                                     "alpha": json.dumps(state["alpha"])})
        cells = [str(r["rank"]), r["site"], f"{r['mean']:+.4f}", f"[{r['low']:+.4f}, {r['high']:+.4f}]"]
        body.append(html.Tr([html.Td(dcc.Link(c, href=href), className=cls, **{"data-column": col})
                             for c, cls, col in zip(cells, ("num-cell", "", "num-cell", "num-cell"),
                                                    ("rank", "site", "mean", "ci"))],
                            **{"data-site": r["site"]}))
    more = (f"showing the {min(len(rows), TABLE_ROWS)} highest-ranked of {len(rows)} matching sites" if len(rows) > TABLE_ROWS
            else f"{len(rows)} of {total} sites")
    return html.Div([html.Table([html.Thead(head), html.Tbody(body)], className="rank-table"),
                     html.P(more if rows else "no site matches the search", className="hint")], id=E.table)


def _multiples(sd: data.SweepData, alpha: float, task: str, sites) -> dcc.Graph | html.P:
    panels, zrange = view.small_multiples(sd, alpha, task)
    if not panels:
        return html.Div([html.P(f"The {view.task_phrase(task)} have no spatial relation, so there is one matrix only (above).",
                                className="hint"), dcc.Graph(id=E.multiples, figure=empty_figure(""), style={"display": "none"})])
    mlp, metric, kind, fam = view.is_mlp(sd), sd.manifest["spec"]["metric"], sd.kind, sd.family
    n_layers, n_heads = sd.shape
    cols = min(len(panels), 4 if n_heads > 1 else 8)
    nrows = -(-len(panels) // cols)
    gap = 0.04
    width = (1 - gap * (cols - 1)) / cols
    height = (1 - 0.12 * (nrows - 1)) / nrows
    traces, layout, shapes, notes = [], {}, [], []
    diverging = view.diverging(metric, fam.name)
    for i, p in enumerate(panels):
        r, c = divmod(i, cols)
        ax = "" if i == 0 else str(i + 1)
        x0 = c * (width + gap)
        y0 = 1 - (r + 1) * height - r * 0.12
        layout[f"xaxis{ax}"] = {"domain": [x0, x0 + width], "anchor": f"y{ax}", "showgrid": False,
                                **({"tickvals": [0], "ticktext": ["MLP"]} if mlp else {"title": {"text": "head"}}),
                                **({"dtick": 1 if n_heads <= 16 else 4} if not mlp else {})}
        layout[f"yaxis{ax}"] = {"domain": [y0, y0 + height], "anchor": f"x{ax}", "showgrid": False,
                                "dtick": 1 if n_layers <= 16 else 4, **({"title": {"text": "layer"}} if c == 0 else {})}
        traces.append({"type": "heatmap", "z": p["mean"].tolist(), "x": list(range(n_heads)), "y": list(range(n_layers)),
                       "xaxis": f"x{ax}", "yaxis": f"y{ax}", "coloraxis": "coloraxis", "xgap": 1, "ygap": 1,
                       "hovertemplate": f"{p['relation']}: " + kind.label_format.format(layer="%{y}", head="%{x}")
                       + ": %{z:.4f}<extra></extra>"})
        notes.append({"text": f"{p['relation']} (n = {p['n']})", "xref": "paper", "yref": "paper", "x": x0 + width / 2,
                      "y": y0 + height, "yanchor": "bottom", "showarrow": False, "font": {"size": 12}})
        if not mlp:
            shapes += _frames(sites, f"x{ax}", f"y{ax}")
    label = data.value_unit(sd.manifest["spec"])
    scale = [list(c) for c in go.Heatmap(colorscale="RdBu" if diverging else "Viridis").colorscale]  # as the main heatmap's
    layout.update({"coloraxis": {"colorscale": scale, "cmin": zrange[0], "cmax": zrange[1],
                                 "colorbar": {"title": {"text": label}}},
                   "annotations": notes, "shapes": shapes, "plot_bgcolor": "white",
                   "height": nrows * max(200, min(420, 40 + 12 * n_layers)) + 80, "margin": {"l": 50, "r": 10, "t": 60, "b": 40},
                   "title": {"text": f"per relation, {_at(fam, alpha)}{view.task_phrase(task)}: one colour scale for every panel "
                                     f"({zrange[0]:.3g} … {zrange[1]:.3g})", "x": 0.01, "font": {"size": 14}}})
    return dcc.Graph(id=E.multiples, figure={"data": traces, "layout": layout},
                     config={"displaylogo": False, "toImageButtonOptions": {"format": "svg", "filename": "per_relation"}})


def _at(fam, alpha: float) -> str:
    """"α = 0, " / "temperature = 0.5, " before a title's probe phrase; nothing for a family without α (patching)."""
    return f"{fam.alpha_name} = {alpha:g}, " if fam.has_alpha else ""


def _family(chosen: dict, rows: list[dict]):
    """The intervention family of the sweep shown (scale when none is)."""
    row = next((r for r in rows if r["key"] == chosen.get("key")), None)
    return axis.family(row.get("intervention", "scale") if row else "scale")


INTERVENTION_HINTS = {axis.SCALE.name: "scale one site at a time; α = 0 ablates",  # the picker's hint, per family
                      axis.PATCH.name: "patch one site at a time from the paired run: no α (the site is fully patched)",
                      axis.TEMPERATURE.name: "divide one site's image-key attention logits by the temperature"}


def _controls(options: dict, chosen: dict, rows: list[dict], task_opts, task, rel_opts, relation, search):
    sweep_opts = [{"label": r["label"], "value": r["key"]} for r in rows]
    fam = _family(chosen, rows)
    # a family without α (patching) has the one α 1.0: kept as the dropdown's value (the URL's), the field hidden
    alpha_field = field(fam.alpha_name or "α", dcc.Dropdown(id=E.alpha, options=[{"label": f"{a:g}", "value": a}
                                                                                 for a in options["alpha"]],
                                                            value=chosen["alpha"], clearable=False))
    if not fam.has_alpha:
        alpha_field.style = {"display": "none"}
    return html.Div([
        html.Div([field("Sweep", dcc.Dropdown(id=E.sweep, options=sweep_opts, value=chosen["key"], clearable=False),
                        hint="every finished sweep in the store, newest first")], className="sweep-picker"),
        html.Div([
            field("Model", dcc.Dropdown(id=E.model, options=options["model"], value=chosen["model"], clearable=False)),
            field("Probe set", dcc.Dropdown(id=E.probes, options=options["probes"], value=chosen["probes"], clearable=False)),
            field("Intervention", dcc.Dropdown(id=E.intervention, options=options["intervention"], value=chosen["intervention"],
                                               clearable=False), hint=INTERVENTION_HINTS[fam.name]),
            field("Metric", dcc.Dropdown(id=E.metric, options=options["metric"], value=chosen["metric"], clearable=False)),
            alpha_field,
            field("Task", dcc.Dropdown(id=E.task, options=task_opts, value=task, clearable=False),
                  hint="spatial and control probes are not averaged together unless you choose all tasks"),
            field("Relation", dcc.Dropdown(id=E.relation, options=rel_opts, value=relation, clearable=False)),
        ], className="controls"),
    ])


def _page(*children, state: dict | None = None):
    """The page around its body: the URL it writes, its state for the callbacks, the catalog poll, the download."""
    return html.Div([
        html.H2("Which heads carry spatial relations?"),
        store_notice(E),
        *children,
        dcc.Location(id=E.url, refresh="callback-nav"),
        dcc.Store(id=E.state, data=state or {}),
        dcc.Download(id=E.download),
        html.Div(id=E.saved, style={"display": "none"}),
        dcc.Interval(id=E.tick, interval=max(2 * current().poll_ms, 1000)),
    ])


def _inputs_placeholder():
    """Hidden stand-ins for the inputs of the page's callbacks, where the page shows no sweep (every input exists)."""
    return html.Div([dcc.Input(id=E.search, value=""), dcc.Graph(id=E.multiples, figure=empty_figure("")),
                     *[html.Button(id=i, n_clicks=0) for i in (E.png, E.svg, E.csv)]], style={"display": "none"})


def layout(**query):
    root = current().store
    every = data.catalog(root)
    rows = [r for r in every if r["complete"]]
    q = view.parse_query(query)
    options, chosen = view.resolve(rows, q)
    key = chosen["key"]
    asked = q.get("key", "")
    held = [r for r in every if asked and not r["complete"]
            and (r["key"] == asked or (len(asked) >= 6 and r["key"].startswith(asked)))]
    if len(held) == 1 and not (key or "").startswith(asked):  # a sweep the store holds but cannot show whole: say why
        r = held[0]
        why = (f"sweep {r['key'][:12]} is incomplete ({r['done']} of {r['expected']} chunks; "
               "run the same sweep again to finish it)")
        try:
            data.sweep_data(root, r["key"], fresh=True)
        except WorkbenchError as e:  # a chunk that cannot be read: its one line
            why = str(e)
        return _page(html.Div(id=E.empty, className="notice"),
                     _controls(options, chosen, rows, [], None, relation_options(()), data.ALL, ""),
                     html.Div(html.Span(why, className="field-error", role="alert"), id=E.info, className="info"),
                     dcc.Graph(id=E.heatmap,
                               figure=empty_figure("this sweep cannot be shown (see the message above the heatmap)")),
                     _inputs_placeholder(), state={"key": None, "query": "unreadable"})
    if not rows or key is None:
        empty = ("No finished sweep in this store yet. The default sweep starts with the app (progress in the bar above); "
                 "or launch one on the Sweeps page.") if not rows else "No sweep matches these choices."
        return _page(html.Div(empty, id=E.empty, className="notice"),
                     _controls(options, chosen, rows, [], None, relation_options(()), data.ALL, ""),
                     html.Div(id=E.info, className="info"), dcc.Graph(id=E.heatmap, figure=empty_figure("no sweep selected")),
                     _inputs_placeholder(), state={"key": None, "query": view.to_query(q)})
    try:
        sd = data.sweep_data(root, key)
    except WorkbenchError as e:  # a chunk that fails its checks, a manifest broken since the catalog was read
        return _page(html.Div(id=E.empty, className="notice"),
                     _controls(options, chosen, rows, [], None, relation_options(()), data.ALL, ""),
                     html.Div(html.Span(str(e), className="field-error", role="alert"), id=E.info, className="info"),
                     dcc.Graph(id=E.heatmap,
                               figure=empty_figure("this sweep cannot be shown (see the message above the heatmap)")),
                     _inputs_placeholder(), state={"key": None, "query": "unreadable"})
    alpha = chosen["alpha"]
    task_opts = view.task_options(sd.tasks)
    task = q.get("task") if q.get("task") in {o["value"] for o in task_opts} else view.default_task(sd.tasks)
    rel_opts = [{"label": "all relations", "value": data.ALL}] + relation_options(view.relations_of(sd, task))[1:]
    relation = q.get("relation") if q.get("relation") in {o["value"] for o in rel_opts} else data.ALL
    search = q.get("search", "")
    m = data.matrix(root, key, alpha, relation, task)
    mlp, metric, kind, fam, spec = view.is_mlp(sd), m.metric, sd.kind, sd.family, sd.manifest["spec"]
    sites, planted_note = _planted(sd)
    rel = "" if relation == data.ALL else f", relation {relation}"
    used = int(m.n_used.max(initial=0)) if m.n_used is not None else m.n_probes
    n_text = f"n = {m.n_probes}" if not m.dropped else f"n = {used} of {m.n_probes}, {m.dropped} dropped"
    if fam.needs_pairs:
        title = f"mean normalized patching effect, {spec.get('direction', '')} ({view.task_phrase(task)}{rel}, {n_text})"
    elif fam is axis.SCALE:
        what = "one layer's MLP is scaled" if mlp else f"one {'edge' if kind.name == 'edges' else 'head'} is scaled"
        quantity = f"mean Δ {metric}" if metric != "kl" else "mean KL(clean ‖ intervened)"
        title = f"{quantity} when {what} to α = {alpha:g} ({view.task_phrase(task)}{rel}, {n_text})"
    else:
        quantity = f"mean Δ {metric}" if metric != "kl" else "mean KL(clean ‖ intervened)"
        title = f"{quantity}, {hv.intervention_phrase(spec)} = {alpha:g} ({view.task_phrase(task)}{rel}, {n_text})"
    fig = heatmap(m.mean, title, m.low, m.high, colorbar=data.value_unit(spec), kind=kind,
                  zmid=0.0 if view.diverging(metric, fam.name) else None,
                  colorscale="RdBu" if view.diverging(metric, fam.name) else "Viridis")
    if sites and not mlp:
        fig.update_layout(shapes=_frames(sites))
    stem = view.file_stem(sd, alpha, task, relation)
    table_rows = view.search_rows(view.ranked(m, kind=kind), search)
    warn = clean.warning(sd.manifest.get("clean"))
    info = [html.Span(f"sweep {key[:12]}", className="mono"), " · ", sd.manifest["model"], " · ", f"{sd.manifest['probes']}",
            " · ", html.Span(view.intervention_label(spec), id=E.what),
            " · ", (f"{len(sd.alphas)} {fam.alpha_name} × " if fam.has_alpha else "")
            + f"{sd.shape[0]} layers × " + ("1 MLP each" if mlp else f"{sd.shape[1]} heads"),
            " · ", html.Span(f"n = {m.n_probes} probes" if not m.dropped else
                             f"n = {used} of {m.n_probes} probes ({m.dropped} dropped: base and source logit differences "
                             "too close to normalise)", id=E.n)]
    state = {"key": key, "alpha": alpha, "task": task, "relation": relation, "mlp": mlp, "stem": stem, "query": view.to_query(q)}
    data.prefetch_head_pages(root, sd.manifest)  # the next click is on the timed path
    return _page(
        html.Div(warn or "", id=E.warning, className="notice warning" if warn else "", role="alert" if warn else None),
        html.Div(id=E.empty, className="notice"),
        _controls(options, chosen, rows, task_opts, task, rel_opts, relation, search),
        html.Div(info, id=E.info, className="info"),
        html.Div([
            html.Div([
                dcc.Graph(id=E.heatmap, figure=fig, clear_on_unhover=True,
                          config={"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": stem, "scale": 2}}),
                html.P(view.metric_definition(metric, fam.name), className="definition", id=E.definition),
                html.P(planted_note, className="hint", id=E.planted) if planted_note else None,
                html.P("Hover a cell for its mean effect and 95% bootstrap interval (probes resampled); click it to open the "
                       + ("layer's MLP page." if mlp else "head's page."), className="hint"),
                html.Div([html.Span("download: ", className="hint"),
                          html.Button("PNG", id=E.png, className="button-small", n_clicks=0),
                          html.Button("SVG", id=E.svg, className="button-small", n_clicks=0),
                          html.Button("matrix CSV", id=E.csv, className="button-small", n_clicks=0)], className="downloads"),
            ], className="explorer-main"),
            html.Div([
                _clean_panel(sd, task),
                html.Div([html.H4("Ranked sites"),
                          html.P("rank 1 = " + ("the largest normalized effect (the site carrying most of the logit "
                                                "difference)" if fam.needs_pairs else "the largest change" if metric == "kl"
                                                else "the largest harm (most negative)")
                                 + "; click a row to open it", className="hint"),
                          dcc.Input(id=E.search, type="search", value=search, debounce=True, placeholder="search: L3, H5, L3H5 …",
                                    className="text"),
                          _table(table_rows, data.value_unit(spec), m.mean.size, state)], className="side-box"),
            ], className="explorer-side"),
        ], className="explorer-grid"),
        html.H3("Per relation"),
        _multiples(sd, alpha, task, sites),
        state=state)


# The controls write the address; the page is rebuilt from it (one round trip), and Back returns to the last one.
# A filter (model … metric) drops the key, so the newest sweep matching the filters is shown; the picker sets it.
clientside_callback(
    """function(sweep, model, probes, intervention, metric, alpha, task, relation, search, state) {
        const ctx = window.dash_clientside.callback_context;
        if (!ctx.triggered.length) { return window.dash_clientside.no_update; }
        const which = ctx.triggered[0].prop_id.split(".")[0];
        const p = new URLSearchParams();
        const filters = {"explorer-model": model, "explorer-probes": probes, "explorer-intervention": intervention,
                         "explorer-metric": metric};
        if (which in filters) {
            for (const [k, v] of [["model", model], ["probes", probes], ["intervention", intervention], ["metric", metric]]) {
                if (v !== null && v !== undefined) { p.set(k, v); }
            }
        } else if (sweep) { p.set("key", sweep); }
        if (alpha !== null && alpha !== undefined) { p.set("alpha", String(alpha)); }
        if (task) { p.set("task", task); }
        if (relation && relation !== "all") { p.set("relation", relation); }
        if (search) { p.set("search", search); }
        const q = "?" + p.toString();
        return q === window.location.search ? window.dash_clientside.no_update : q;
    }""",
    Output(E.url, "search"), [Input(getattr(E, n), "value") for n in CONTROLS] + [Input(E.search, "value")],
    State(E.state, "data"),
    prevent_initial_call=True)


@callback(Output(E.sweep, "options"), Output(E.url, "search", allow_duplicate=True), Input(E.tick, "n_intervals"),
          State(E.sweep, "options"), State(E.state, "data"), prevent_initial_call=True)
def refresh_catalog(_, previous, state):
    """Re-read the sweep list: new sweeps appear in the picker; a page that showed none opens the newest."""
    rows = [r for r in data.catalog(current().store) if r["complete"]]
    options = [{"label": r["label"], "value": r["key"]} for r in rows]
    jump = "?key=" + rows[0]["key"] if rows and not (state or {}).get("key") and not (state or {}).get("query") else no_update
    return (no_update if options == previous else options), jump


@callback(Output(E.download, "data"), Input(E.csv, "n_clicks"), State(E.state, "data"), prevent_initial_call=True)
def download_csv(n, state):
    if not n or not state or not state.get("key"):
        return no_update
    root = current().store
    sd = data.sweep_data(root, state["key"])
    m = data.matrix(root, state["key"], state["alpha"], state["relation"], state["task"])
    return {"content": view.matrix_csv(m, sd, state["task"]), "filename": f"{state['stem']}.csv", "type": "text/csv"}


# PNG / SVG of the heatmap, drawn by plotly in the browser (no server-side renderer needed).
clientside_callback(
    """function(png, svg, state) {
        const ctx = window.dash_clientside.callback_context;
        if (!ctx.triggered.length || !state || !state.key) { return window.dash_clientside.no_update; }
        const format = ctx.triggered[0].prop_id.startsWith("explorer-svg") ? "svg" : "png";
        const gd = document.querySelector("#explorer-heatmap .js-plotly-plot");
        if (!gd) { return window.dash_clientside.no_update; }
        window.Plotly.downloadImage(gd, {format: format, filename: state.stem, width: gd.clientWidth, height: gd.clientHeight});
        return format;
    }""",
    Output(E.saved, "children"), Input(E.png, "n_clicks"), Input(E.svg, "n_clicks"), State(E.state, "data"),
    prevent_initial_call=True)


# Runs in the browser: a click on the heatmap or a per-relation panel becomes a navigation to that site's page, with
# no server round trip before the head page's own. head = -1 is a layer's MLP. (The ranked table's cells are links.)
clientside_callback(
    """function(click, multiClick, state) {
        if (!state || !state.key) { return window.dash_clientside.no_update; }
        const ctx = window.dash_clientside.callback_context;
        if (!ctx.triggered.length) { return window.dash_clientside.no_update; }
        const c = ctx.triggered[0].prop_id.startsWith("explorer-multiples") ? multiClick : click;
        if (!c || !c.points || !c.points.length) { return window.dash_clientside.no_update; }
        const p = c.points[0];  // the axes are the indices: x = head, y = layer
        const head = state.mlp ? -1 : p.x;
        return "/head?" + new URLSearchParams({key: state.key, layer: p.y, head: head, alpha: \
JSON.stringify(state.alpha)}).toString();
    }""",
    Output(ids.shell.url, "href"), Input(E.heatmap, "clickData"), Input(E.multiples, "clickData"), State(E.state, "data"),
    prevent_initial_call=True)
