"""Head page: one site's α-curve, its effect per relation, where it looks, and the probes it moves most.

Built in the page's layout function straight from the store (:func:`workbench.app.data.head_detail`),
so a click on the explorer's heatmap shows it in one round trip (``analyses/bench_app.py`` times it).
Every choice is in the URL (``/head?key=K&layer=L&head=H&alpha=A&task=T&probe=ID&scale=S``; ``head=-1`` is the
layer's MLP), so a view can be shared: a change of a chooser rewrites the URL and the page is rebuilt from it.
Attention maps of one page share one absolute colour scale, stated by the colour bar under each map.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import dash
from dash import Input, Output, State, dcc, html

from workbench.app import data, ids
from workbench.app.head_visuals import ATTENTION_UNIT, percent
from workbench.app.settings import current
from workbench.errors import WorkbenchError

dash.register_page(__name__, path="/head", name="Head", nav=False)
H = ids.head


# The two figures are plain plotly dicts, not ``go.Figure``s: building and validating those took as long as
# reading the head's data from the store, and this page is on the click → page path that is timed.
_LAYOUT = {"height": 320, "margin": {"l": 60, "r": 10, "t": 50, "b": 40}, "plot_bgcolor": "white"}


def _title(text: str, sub: str) -> dict:
    return {"text": f"{text}<br><span style='font-size:11px;color:#667085'>{sub}</span>", "font": {"size": 14}}


def _which(d: dict) -> str:
    return next(c["label"] for c in d["tasks"] if c["value"] == d["task"])


def _patch_bar(d: dict) -> dict:
    """A patching sweep has no α: its one value per site, the mean normalized effect with its 95% interval, per probe
    filter choice (the one chosen), as a single bar on the fraction-of-the-logit-difference axis."""
    p = d["curve"][0]
    n_all = d["n_curve"]
    trace = {"type": "bar", "x": [f"{d['direction']} (n = {p['n']} of {n_all})"], "y": [p["mean"]], "name": "mean",
             "error_y": {"type": "data", "symmetric": False, "array": [p["high"] - p["mean"]],
                         "arrayminus": [p["mean"] - p["low"]]},
             "hovertemplate": "%{y:.4f}<extra></extra>"}
    lines = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": y, "y1": y, "line": {"color": c, "width": 1, "dash": dash}}
             for y, c, dash in ((0, "#999", "solid"), (1, "#2166ac", "dot"))]
    return {"data": [trace], "layout": {**_LAYOUT, "title": _title(f"normalized patching effect of {d['site']} (95% CI)",
                                                                   f"mean over {_which(d)}; 1 = the whole logit difference"),
                                        "yaxis": {"title": {"text": d["metric_axis"]}}, "shapes": lines}}


def _curve(d: dict) -> dict:
    if d["needs_pairs"]:
        return _patch_bar(d)
    pts = d["curve"]
    trace = {"type": "scatter", "x": [p["alpha"] for p in pts], "y": [p["mean"] for p in pts], "mode": "lines+markers",
             "name": "mean",
             "error_y": {"type": "data", "symmetric": False, "array": [p["high"] - p["mean"] for p in pts],
                         "arrayminus": [p["mean"] - p["low"] for p in pts]},
             "hovertemplate": f"{d['alpha_name']} = %{{x:g}}: %{{y:.4f}}<extra></extra>"}
    zero = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 0, "y1": 0, "line": {"color": "#999", "width": 1}}
    what = d["intervention_phrase"].removesuffix(" by α")
    return {"data": [trace], "layout": {**_LAYOUT, "title": _title(f"{d['alpha_name']}-curve of {d['site']} ({what}; 95% CI)",
                                                                   f"mean over {_which(d)}"),
                                        "xaxis": {"title": {"text": f"{d['alpha_name']} (1 = the unchanged model)"}},
                                        "yaxis": {"title": {"text": d["metric_axis"]}}, "shapes": [zero]}}


def _relations(d: dict) -> dict:
    names = [f"{r} (n = {d['relation_n'][r]})" for r in d["per_relation"]]
    bars = [{"type": "bar", "x": names, "y": [v[i] for v in d["per_relation"].values()],
             "name": f"{d['alpha_name']} = {a:g}" if d["alpha_name"] else d["direction"]}
            for i, a in enumerate(d["alphas"])]
    return {"data": bars, "layout": {**_LAYOUT, "title": _title(f"effect per relation of {d['site']}",
                                                                "mean over the spatial probes of each true relation (n per bar)"),
                                     "barmode": "group", "showlegend": True, "yaxis": {"title": {"text": d["metric_axis"]}}}}


def _probe_card(p: dict, *extra) -> html.Div:
    return html.Div([html.Img(src=p["image"], className="thumb", alt=p["probe_id"]) if p["image"] else None, *extra,
                     html.Div(p["question"] or p["probe_id"], className="probe-q"),
                     html.Div([html.Span(f"answer: {p['answer']}")] + [html.Span(x, className="mono")
                                                                       for x in p.get("lines", [])],
                              className="probe-meta")],
                    className="probe-card", **({"data-probe": p["probe_id"]} if p.get("probe_id") else {}))


def _colour_bar(scale_max: float) -> html.Div:
    """The attention maps' shared scale: frame opacity 0 … 1 over 0 … ``scale_max`` (exact value in ``data-max``)."""
    return html.Div([html.Div(className="att-bar-ramp"),
                     html.Div([html.Span("0%"), html.Span(percent(scale_max), className="att-bar-max")],
                              className="att-bar-ends"),
                     html.Div(ATTENTION_UNIT, className="att-bar-unit")],
                    className="att-bar", **{"data-max": repr(float(scale_max))})


def _attention(d: dict) -> list:
    if d["is_mlp"]:
        return [html.H3("No attention maps"),
                html.P(f"{d['site']} is a layer's MLP: it transforms each position on its own and attends to nothing, so it has "
                       "no attention pattern to draw (only attention heads do).", className="hint", id=H.attention)]
    head = [html.H3("Where it looks: the last token's attention over the image patches")]
    if not d["attention"]:
        return head + [html.P("No attention maps in the store for this model and probe set (they are computed by sweeps run "
                              "from the app or `workbench app`), or the model's image tokens are not one square grid.",
                              className="hint", id=H.attention)]
    scope = ("the largest share that any head of the model puts on one patch of these probes (the same scale on every "
             "head's page for these probes)" if d["scale"] == "model" else "the largest share this head puts on one patch of "
             "these probes (compare heads by the colour bar's value, not by brightness)")
    controls = html.Div([
        html.Div([html.Label("first probe shown", className="field-label", htmlFor=H.probe),
                  dcc.Dropdown(id=H.probe, options=d["attention_choices"], value=d["probe"], clearable=False)]),
        html.Div([html.Label("colour scale", className="field-label"),
                  dcc.RadioItems(id=H.scale, value=d["scale"], inline=True, className="radio",
                                 options=[{"label": " all heads (absolute)", "value": "model"},
                                          {"label": " this head", "value": "head"}])]),
    ], className="controls head-controls")
    note = html.P(["Each patch is framed in white with opacity = its share / the scale's maximum, plus a light wash of "
                   "30% of that inside; the scene's own colours stay visible. One scale for every map here: 0 … ",
                   html.B(percent(d["attention_scale"])), f", {scope}. The caption gives the share of the head's attention "
                   "that goes to image patches at all (the rest is on text tokens)."], className="hint")
    cards = [_probe_card({**a, "lines": [f"{percent(a['mass'])} of its attention on the image",
                                         f"peak patch: {percent(a['peak'])}"]}, _colour_bar(d["attention_scale"]))
             for a in d["attention"]]
    return head + [controls, note, html.Div(cards, className="cards", id=H.attention)]


def _alpha(text: str) -> float:
    """The explorer's α from the URL (JSON-encoded); NaN for text that is not a number (head_detail then says so)."""
    try:
        return float(json.loads(text))
    except (ValueError, TypeError):
        return float("nan")


def layout(key: str | None = None, layer: str | None = None, head: str | None = None, alpha: str | None = None,
           task: str | None = None, probe: str | None = None, scale: str | None = None, **_):
    if key is None or layer is None or head is None:
        return html.Div([html.H2("Head"), html.P("Open a head by clicking it on the Explorer's heatmap."),
                         dcc.Link("← Explorer", href="/")], id=H.page)
    try:
        ranked_alpha = None if alpha in (None, "", "null") else _alpha(alpha)
        d = data.head_detail(current().store, key, int(layer), int(head), task=task, probe=probe, scale=scale or "model",
                             alpha=ranked_alpha)
    except (WorkbenchError, ValueError) as e:
        return html.Div([html.H2("Head"), html.Div(str(e), className="field-error"), dcc.Link("← Explorer", href="/")], id=H.page)
    patch = d["needs_pairs"]
    sym = "effect" if patch else "Δ"
    affected = [_probe_card({**p, "lines": [f"{sym} = {p['effect']:+.3f} · {p['relation'] or p['task']}"]})
                for p in d["affected"]]
    if patch:
        ranked_title = f"Probes ranked by normalized effect, largest first ({_which(d)}; {d['n_ranked']} used)"
    else:
        ranked_title = f"Most affected probes at {d['alpha_name']} = {d['ablation_alpha']:g} ({_which(d)})"
    dropped = d["dropped"]
    dropped_block = html.Div([
        html.H3(f"Dropped probes: {len(dropped)}"),
        html.P("Their base and source logit differences are too close to normalise (|source − base| below the sweep's "
               "min_gap), so the sweep stored NaN and every mean on this page leaves them out.", className="hint"),
        html.Ul([html.Li(f"{p['probe_id']} · {p['relation'] or p['task']}" + (f" · {p['question']}" if p["question"] else ""),
                         className="mono") for p in dropped[:50]]
                + ([html.Li(f"… and {len(dropped) - 50} more", className="hint")] if len(dropped) > 50 else [])),
    ], id=H.dropped) if dropped else html.Div(id=H.dropped)
    return html.Div([
        dcc.Location(id=H.url, refresh="callback-nav"),
        dcc.Link("← Explorer", href=f"/?key={d['key']}", className="back"),
        html.H2([d["site"], html.Span(f" · {d['model']} · {d['probes']} · sweep {d['key'][:12]}", className="subtitle")],
                id=H.title),
        html.P(f"{d['kind_title']} · {d['intervention_phrase']}", className="hint", id=H.what),
        html.Div([html.Div([html.Label(f"probes in the {d['alpha_name'] + '-curve' if d['alpha_name'] else 'effect'} and the "
                                       "ranking", className="field-label", htmlFor=H.task),
                            dcc.Dropdown(id=H.task, options=[{"value": c["value"], "label": c["label"]} for c in d["tasks"]],
                                         value=d["task"], clearable=False)])], className="controls head-controls"),
        html.Div([html.Div(p) for p in d["problems"]], className="field-error", id=H.problems),
        html.P(d["metric_note"], className="hint", id=H.metric_note),
        html.Div([dcc.Graph(id=H.curve, figure=_curve(d), config={"displaylogo": False}),
                  dcc.Graph(id=H.relations, figure=_relations(d), config={"displaylogo": False})], className="two-col"),
        *_attention(d),
        html.H3(ranked_title, id=H.ranked_title),
        html.Div(affected, className="cards", id=H.affected),
        dropped_block,
        dcc.Store(id=H.data, data=json.dumps({"key": d["key"], "layer": d["layer"], "head": d["head"], "alpha": alpha,
                                              "task": d["task"], "probe": d["probe"], "scale": d["scale"]})),
    ], id=H.page)


def href(state: dict) -> str:
    """The page's URL for ``state`` (the ``H.data`` store's fields); empty fields are left out."""
    keys = ("key", "layer", "head", "alpha", "task", "probe", "scale")
    return "/head?" + urlencode({k: state[k] for k in keys if state.get(k) not in (None, "")})


def _choose(field: str):
    def update(value, blob):
        state = json.loads(blob)
        if value is None or value == state.get(field):
            return dash.no_update
        return href({**state, field: value})
    return update


for _field, _id in (("task", H.task), ("probe", H.probe), ("scale", H.scale)):
    dash.callback(Output(H.url, "href", allow_duplicate=True), Input(_id, "value"), State(H.data, "data"),
                  prevent_initial_call=True)(_choose(_field))
