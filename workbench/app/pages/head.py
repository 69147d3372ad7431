"""Head page: one head's α-curve, its effect per relation, where it looks, and the probes it moves most.

Built in the page's layout function straight from the store (:func:`workbench.app.data.head_detail`),
so a click on the explorer's heatmap shows it in one round trip (``analyses/bench_app.py`` times it).
"""

from __future__ import annotations

import json

import dash
from dash import dcc, html

from workbench.app import data, ids
from workbench.app.settings import current
from workbench.errors import WorkbenchError

dash.register_page(__name__, path="/head", name="Head", nav=False)
H = ids.head


# The two figures are plain plotly dicts, not ``go.Figure``s: building and validating those took as long as
# reading the head's data from the store, and this page is on the click → page path that is timed.
_LAYOUT = {"height": 300, "margin": {"l": 50, "r": 10, "t": 40, "b": 40}, "plot_bgcolor": "white"}


def _curve(d: dict) -> dict:
    pts = d["curve"]
    trace = {"type": "scatter", "x": [p["alpha"] for p in pts], "y": [p["mean"] for p in pts], "mode": "lines+markers", "name": "mean",
             "error_y": {"type": "data", "symmetric": False, "array": [p["high"] - p["mean"] for p in pts],
                         "arrayminus": [p["mean"] - p["low"] for p in pts]},
             "hovertemplate": "α = %{x:g}: %{y:.4f}<extra></extra>"}
    zero = {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 0, "y1": 0, "line": {"color": "#999", "width": 1}}
    return {"data": [trace], "layout": {**_LAYOUT, "title": {"text": f"α-curve of {d['site']} (95% CI; α = 1 is the unchanged model)",
                                                             "font": {"size": 14}},
                                        "xaxis": {"title": {"text": "α"}}, "yaxis": {"title": {"text": f"Δ {d['metric']}"}}, "shapes": [zero]}}


def _relations(d: dict) -> dict:
    bars = [{"type": "bar", "x": list(d["per_relation"]), "y": [v[i] for v in d["per_relation"].values()], "name": f"α = {a:g}"}
            for i, a in enumerate(d["alphas"])]
    return {"data": bars, "layout": {**_LAYOUT, "title": {"text": f"effect per relation of {d['site']}", "font": {"size": 14}},
                                     "barmode": "group", "yaxis": {"title": {"text": f"Δ {d['metric']}"}}}}


def _probe_card(p: dict, value: str) -> html.Div:
    return html.Div([html.Img(src=p["image"], className="thumb", alt=p["probe_id"]) if p["image"] else None,
                     html.Div(p["question"] or p["probe_id"], className="probe-q"),
                     html.Div([html.Span(f"answer: {p['answer']}"), html.Span(value, className="mono")], className="probe-meta")],
                    className="probe-card")


def _share(mass: float) -> str:
    """A fraction as a percentage that does not round a small but real share to 0%."""
    if mass == 0 or mass >= 0.01:
        return f"{mass:.0%}"
    return f"{mass:.1%}" if mass >= 0.001 else f"{100 * mass:.0e}%"


def layout(key: str | None = None, layer: str | None = None, head: str | None = None, alpha: str | None = None, **_):
    if key is None or layer is None or head is None:
        return html.Div([html.H2("Head"), html.P("Open a head by clicking it on the Explorer's heatmap."),
                         dcc.Link("← Explorer", href="/")], id=H.page)
    try:
        d = data.head_detail(current().store, key, int(layer), int(head))
    except (WorkbenchError, ValueError) as e:
        return html.Div([html.H2("Head"), html.Div(str(e), className="field-error"), dcc.Link("← Explorer", href="/")], id=H.page)
    attention = [_probe_card(a, f"{_share(a['mass'])} of its attention on the image") for a in d["attention"]]
    affected = [_probe_card(p, f"Δ = {p['effect']:+.3f} · {p['relation'] or p['task']}") for p in d["affected"]]
    return html.Div([
        dcc.Link("← Explorer", href="/", className="back"),
        html.H2([d["site"], html.Span(f" · {d['model']} · {d['probes']} · sweep {d['key'][:12]}", className="subtitle")], id=H.title),
        html.Div([dcc.Graph(id=H.curve, figure=_curve(d), config={"displaylogo": False}),
                  dcc.Graph(id=H.relations, figure=_relations(d), config={"displaylogo": False})], className="two-col"),
        html.H3("Where it looks: the last token's attention over the image patches"),
        html.P("Each map's colours are scaled to its own maximum; the caption gives the share of the head's attention "
               "that goes to image patches at all.", className="hint"),
        html.Div(attention or html.P("No attention maps in the store for this model and probe set (they are computed by sweeps run "
                                     "from the app or `workbench app`), or the model's image tokens are not one square grid.",
                                     className="hint"), className="cards", id=H.attention),
        html.H3(f"Most affected probes at α = {d['ablation_alpha']:g}"),
        html.Div(affected, className="cards", id=H.affected),
        dcc.Store(id=H.data, data=json.dumps({"key": d["key"], "layer": d["layer"], "head": d["head"]})),
    ], id=H.page)
