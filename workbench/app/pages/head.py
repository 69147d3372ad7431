"""Head page: one head's α-curve, its effect per relation, where it looks, and the probes it moves most.

Built in the page's layout function straight from the store (:func:`workbench.app.data.head_detail`),
so a click on the explorer's heatmap shows it in one round trip (``analyses/bench_app.py`` times it).
"""

from __future__ import annotations

import json

import dash
import plotly.graph_objects as go
from dash import dcc, html

from workbench.app import data, ids
from workbench.app.settings import current
from workbench.errors import WorkbenchError

dash.register_page(__name__, path="/head", name="Head", nav=False)
H = ids.head


def _curve(d: dict) -> go.Figure:
    pts = d["curve"]
    fig = go.Figure(go.Scatter(x=[p["alpha"] for p in pts], y=[p["mean"] for p in pts], mode="lines+markers", name="mean",
                               error_y={"type": "data", "symmetric": False, "array": [p["high"] - p["mean"] for p in pts],
                                        "arrayminus": [p["mean"] - p["low"] for p in pts]},
                               hovertemplate="α = %{x:g}: %{y:.4f}<extra></extra>"))
    fig.add_hline(y=0, line={"color": "#999", "width": 1})
    fig.update_layout(title={"text": f"α-curve of {d['site']} (95% CI; α = 1 is the unchanged model)", "font": {"size": 14}},
                      xaxis_title="α", yaxis_title=f"Δ {d['metric']}", height=300, margin={"l": 50, "r": 10, "t": 40, "b": 40},
                      plot_bgcolor="white")
    return fig


def _relations(d: dict) -> go.Figure:
    fig = go.Figure([go.Bar(x=list(d["per_relation"]), y=[v[i] for v in d["per_relation"].values()], name=f"α = {a:g}")
                     for i, a in enumerate(d["alphas"])])
    fig.update_layout(title={"text": f"effect per relation of {d['site']}", "font": {"size": 14}}, barmode="group", height=300,
                      yaxis_title=f"Δ {d['metric']}", margin={"l": 50, "r": 10, "t": 40, "b": 40}, plot_bgcolor="white")
    return fig


def _probe_card(p: dict, value: str) -> html.Div:
    return html.Div([html.Img(src=p["image"], className="thumb", alt=p["probe_id"]) if p["image"] else None,
                     html.Div(p["question"] or p["probe_id"], className="probe-q"),
                     html.Div([html.Span(f"answer: {p['answer']}"), html.Span(value, className="mono")], className="probe-meta")],
                    className="probe-card")


def layout(key: str | None = None, layer: str | None = None, head: str | None = None, alpha: str | None = None, **_):
    if key is None or layer is None or head is None:
        return html.Div([html.H2("Head"), html.P("Open a head by clicking it on the Explorer's heatmap."),
                         dcc.Link("← Explorer", href="/")], id=H.page)
    try:
        d = data.head_detail(current().store, key, int(layer), int(head))
    except (WorkbenchError, ValueError) as e:
        return html.Div([html.H2("Head"), html.Div(str(e), className="field-error"), dcc.Link("← Explorer", href="/")], id=H.page)
    attention = [_probe_card(a, f"{a['mass']:.0%} of its attention on the image") for a in d["attention"]]
    affected = [_probe_card(p, f"Δ = {p['effect']:+.3f} · {p['relation'] or p['task']}") for p in d["affected"]]
    return html.Div([
        dcc.Link("← Explorer", href="/", className="back"),
        html.H2([d["site"], html.Span(f" · {d['model']} · {d['probes']} · sweep {d['key'][:12]}", className="subtitle")], id=H.title),
        html.Div([dcc.Graph(id=H.curve, figure=_curve(d), config={"displaylogo": False}),
                  dcc.Graph(id=H.relations, figure=_relations(d), config={"displaylogo": False})], className="two-col"),
        html.H3("Where it looks: the last token's attention over the image patches"),
        html.Div(attention or html.P("No attention maps in the store for this model and probe set (they are computed by sweeps run "
                                     "from the app or `workbench app`), or the model's image tokens are not one square grid.",
                                     className="hint"), className="cards", id=H.attention),
        html.H3(f"Most affected probes at α = {d['ablation_alpha']:g}"),
        html.Div(affected, className="cards", id=H.affected),
        dcc.Store(id=H.data, data=json.dumps({"key": d["key"], "layer": d["layer"], "head": d["head"]})),
    ], id=H.page)
