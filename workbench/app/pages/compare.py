"""Compare: two or more scale vectors or sweeps side by side — heatmaps, their difference, a table.

A vector is drawn as its effective attention scales ``[layer, head]`` (1 = unchanged, centred at 1);
a sweep as its mean effect at its ablation α (centred at 0). The difference heatmap is the second
item minus the first, when both are of one kind and shape. The table gives each vector's spatial
accuracy before and after on its test probes (as its training job measured it) and each sweep's
strongest head.
"""

from __future__ import annotations

import dash
import numpy as np
from dash import Input, Output, callback, dash_table, dcc, html

from workbench.app import data, ids
from workbench.app.components import field, heatmap, store_notice
from workbench.app.settings import current
from workbench.errors import WorkbenchError

dash.register_page(__name__, path="/compare", name="Compare", order=3)
C = ids.compare


def items() -> list[dict]:
    out = [{"label": f"vector {v['name']} ({v['model']}, {v['mode']})", "value": f"vector:{v['name']}"} for v in data.vectors(current().store)]
    out += [{"label": f"sweep {r['label']}", "value": f"sweep:{r['key']}"} for r in data.catalog(current().store) if r["complete"]]
    return out


def layout(**_):
    options = items()
    by_kind = [[o["value"] for o in options if o["value"].startswith(k)] for k in ("vector:", "sweep:")]
    first = next((v[:2] for v in by_kind if len(v) >= 2), [o["value"] for o in options[:2]])  # two of one kind: a difference map
    return html.Div([
        html.H2("Compare scale vectors and sweeps"),
        store_notice(C),
        field("Items (two or more)", dcc.Dropdown(id=C.items, options=options, value=first, multi=True)),
        html.Div(id=C.message, className="field-error", role="alert"),
        html.Div(id=C.heatmaps, className="grid"),
        html.Div(id=C.diff),
        html.H3("Accuracy and summary"),
        html.Div(id=C.table),
    ])


def _matrix(item: str, saved: dict[str, dict]) -> tuple[np.ndarray, str, str, dict]:
    """(values [layer, head], title, kind, table row) for one selected item; ``saved``: the store's vectors by name."""
    kind, name = item.split(":", 1)
    root = current().store
    if kind == "vector":
        if name not in saved:
            raise WorkbenchError(f"no saved vector named {name!r}", "choose one from the list")
        attn, mlp = data.vector_matrix(root, name)
        v = saved[name]
        pct = lambda x: "" if x is None else f"{100 * x:.1f}%"  # noqa: E731
        row = {"item": f"vector {name}", "model": v["model"], "spatial before": pct(v["before"].get("spatial")),
               "spatial after": pct(v["after"].get("spatial")), "scales ≠ 1": int((np.abs(attn - 1) > 1e-6).sum()),
               "largest |scale − 1|": f"{np.abs(attn - 1).max():.3f}", "MLP scales": ", ".join(f"{m:.2f}" for m in mlp)}
        return attn, f"vector {name}: effective head scales", "vector", row
    sd = data.sweep_data(root, name)
    m = data.matrix(root, name, sd.alphas[0])
    layer, head = np.unravel_index(np.argmin(m.mean), m.mean.shape)
    row = {"item": f"sweep {name[:12]}", "model": sd.manifest["model"], "probes": f"{sd.manifest['probes']} ({m.n_probes})",
           "strongest head": f"{data.site_label(int(layer), int(head))}: {m.mean[layer, head]:+.3f}",
           "metric": f"Δ {m.metric} at α = {m.alpha:g}"}
    return m.mean, f"sweep {name[:8]}: Δ {m.metric} at α = {m.alpha:g}", "sweep", row


@callback(Output(C.heatmaps, "children"), Output(C.diff, "children"), Output(C.table, "children"), Output(C.message, "children"),
          Input(C.items, "value"))
def draw(selected):
    selected = selected or []
    if len(selected) < 2:
        return [], [], [], "Choose at least two items to compare."
    saved = {v["name"]: v for v in data.vectors(current().store)}
    try:
        mats = [_matrix(s, saved) for s in selected]
    except WorkbenchError as e:  # a sweep with a corrupt chunk, a vector broken since the page loaded: one line, not a 500
        return [], [], [], str(e)
    figs = [dcc.Graph(figure=heatmap(v, title, zmid=1.0 if kind == "vector" else 0.0), config={"displaylogo": False})
            for v, title, kind, _ in mats]
    (a, ta, ka, _), (b, tb, kb, _) = mats[0], mats[1]
    if ka == kb and a.shape == b.shape:
        diff = dcc.Graph(id=C.diff_graph, figure=heatmap(b - a, f"difference: {tb.split(':')[0]} − {ta.split(':')[0]}"),
                         config={"displaylogo": False})
    else:
        diff = html.P("No difference map: the first two items are of different kinds or shapes.", className="hint")
    rows = [r for *_, r in mats]
    columns = list(dict.fromkeys(c for r in rows for c in r))
    table = dash_table.DataTable(rows, [{"name": c, "id": c} for c in columns], id=C.table_data, style_as_list_view=True,
                                 style_cell={"fontFamily": "inherit", "padding": "4px 8px", "textAlign": "left"})
    return figs, diff, table, ""

