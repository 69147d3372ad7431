"""Compare: two or more scale vectors or sweeps side by side — heatmaps on one colour scale, their difference, a table.

A vector is drawn as its effective attention scales ``[layer, head]`` (1 = unchanged, the middle of the scale);
a sweep as its mean effect over its probes at the α chosen in the α list (0 = no change). Panels of one kind
share one colour range, symmetric about that middle and wide enough for the largest deviation on any of
them, so one colour is one value on every panel (a vector's scale and a sweep's Δ are different quantities:
when both kinds are chosen, each kind has its own shared range, said under the panels). Sweeps are grouped by
what their values are (:func:`workbench.app.data.value_unit`): a patching sweep's normalized effect (a fraction of
the logit difference) never shares a range with a Δ-metric sweep, and it has no α, so it is drawn whatever α the
α list shows (the list holds the α of the sweeps that have one). The difference map
is the second item minus the first, on its own range symmetric about 0, when both are of one kind and shape.
The table gives each vector's accuracy on its test probes before and after, spatial and control ("not
measured" where nothing measured it), and each sweep's strongest head and the clean model's accuracy.
"""

from __future__ import annotations

import dash
import numpy as np
from dash import Input, Output, callback, dash_table, dcc, html, no_update

from workbench.app import data, ids
from workbench.app.components import field, heatmap, store_notice
from workbench.app.settings import current
from workbench.app.train_views import alpha_choices, eval_cells, pct, shared_range, symmetric_range
from workbench.errors import WorkbenchError

dash.register_page(__name__, path="/compare", name="Compare", order=3)
C = ids.compare
NA = "–"  # a column that does not apply to this kind of item
CENTER = {"vector": 1.0, "sweep": 0.0}


def items() -> list[dict]:
    out = [{"label": f"vector {v['name']} ({v['model']}, {v['mode']})", "value": f"vector:{v['name']}"}
           for v in data.vectors(current().store)]
    out += [{"label": f"sweep {r['label']}", "value": f"sweep:{r['key']}"} for r in data.catalog(current().store)
            if r["complete"]]
    return out


def layout(**_):
    options = items()
    by_kind = [[o["value"] for o in options if o["value"].startswith(k)] for k in ("vector:", "sweep:")]
    first = next((v[:2] for v in by_kind if len(v) >= 2), [o["value"] for o in options[:2]])  # two of one kind: a difference map
    return html.Div([
        html.H2("Compare scale vectors and sweeps"),
        store_notice(C),
        html.Div([
            field("Items (two or more)", dcc.Dropdown(id=C.items, options=options, value=first, multi=True)),
            field("Sweep α", dcc.Dropdown(id=C.alpha, options=[], value=None, clearable=False, placeholder="no sweep chosen"),
                  hint="the factor whose effect the sweep panels show (α = 0 removes a head's output, 1 leaves it)"),
        ], className="controls"),
        html.Div(id=C.message, className="field-error", role="alert"),
        html.Div(id=C.heatmaps, className="grid"),
        html.Div(id=C.scale_note, className="hint"),
        html.Div(id=C.diff),
        html.H3("Accuracy and summary"),
        html.Div(id=C.table),
    ])


def _label(a: float) -> str:
    return f"α = {a:g}"


def _vector(name: str, v: dict) -> dict:
    attn, mlp = data.vector_matrix(current().store, name)
    n = f" ({v['eval_n']})" if v.get("eval_n") else ""
    row = {"item": f"vector {name}", "model": v["model"], **eval_cells(v["before"], v["after"]),
           "test probes": f"{v['eval_probes']}{n}" if v["eval_probes"] else "not measured",
           "scales ≠ 1": int((np.abs(attn - 1) > 1e-6).sum()), "largest |scale − 1|": f"{np.abs(attn - 1).max():.3f}",
           "MLP scales": ", ".join(f"{m:.2f}" for m in mlp)}
    return {"values": attn, "title": f"vector {name}: effective head scales", "kind": "vector", "group": "vector",
            "unit": "effective scale (1 = unchanged)", "quantity": "effective scale", "short": f"vector {name}", "row": row}


def _sweep(key: str, alpha: float | None) -> dict:
    root = current().store
    sd = data.sweep_data(root, key)
    clean = (sd.manifest.get("clean") or {}).get("accuracy") if isinstance(sd.manifest.get("clean"), dict) else None
    clean = clean if isinstance(clean, dict) else {}
    base = {"item": f"sweep {key[:12]}", "model": sd.manifest["model"], "clean spatial": pct(clean.get("spatial")),
            "clean control": pct(clean.get("control"))}
    metric, fam, spec = sd.manifest["spec"]["metric"], sd.family, sd.manifest["spec"]
    unit = data.value_unit(spec)
    if not fam.has_alpha:  # patching: its one α (1.0, the site fully patched), whatever the α list shows
        m = data.matrix(root, key, sd.alphas[0])
        flat = np.where(np.isnan(m.mean), -np.inf, m.mean)
        layer, head = np.unravel_index(np.argmax(flat), m.mean.shape)
        what = f"{fam.name} · {spec.get('direction', '')}"
        row = {**base, "probes": f"{sd.manifest['probes']} ({m.n_probes}" + (f", {m.dropped} dropped)" if m.dropped else ")"),
               "strongest head": f"{sd.label(int(layer), int(head))}: {m.mean[layer, head]:+.3f}",
               "metric": f"normalized effect ({what}), mean over the probes used"}
        return {"values": m.mean, "title": f"sweep {key[:8]}: {what} normalized effect", "kind": "sweep", "site_kind": sd.kind,
                "group": f"sweep:{unit}", "unit": unit, "quantity": "normalized effect", "short": f"sweep {key[:8]}",
                "row": row}
    if alpha is None or all(abs(a - alpha) > 1e-12 for a in sd.alphas):
        shown = ", ".join(_label(a) for a in sd.alphas)
        return {"values": None,
                "title": f"sweep {key[:8]}: not swept at {_label(alpha) if alpha is not None else 'this α'} ({shown})",
                "kind": "sweep", "group": f"sweep:{unit}", "unit": unit, "quantity": unit,
                "short": f"sweep {key[:8]}",
                "row": {**base, "metric": f"Δ {metric}: no {_label(alpha) if alpha is not None else 'α'} in this sweep"}}
    m = data.matrix(root, key, alpha)
    layer, head = np.unravel_index(np.argmin(m.mean), m.mean.shape)
    row = {**base, "probes": f"{sd.manifest['probes']} ({m.n_probes})",
           "strongest head": f"{sd.label(int(layer), int(head))}: {m.mean[layer, head]:+.3f}",
           "metric": f"Δ {m.metric} at {_label(m.alpha)} (intervened − clean, mean over all probes)"}
    return {"values": m.mean, "title": f"sweep {key[:8]}: {unit} at {_label(m.alpha)}", "kind": "sweep", "site_kind": sd.kind,
            "group": f"sweep:{unit}",
            "unit": f"{unit} ({_label(m.alpha)})", "quantity": unit, "short": f"sweep {key[:8]}", "row": row}


def panels(selected: list[str], alpha: float | None) -> list[dict]:
    """One dict per selected item: ``values [layer, head]`` (None: a sweep without that α), title, kind, colour group
    (panels of one group share a range), unit (the colour bar's title) and its table row."""
    saved = {v["name"]: v for v in data.vectors(current().store)}
    out = []
    for item in selected:
        kind, name = item.split(":", 1)
        if kind == "vector":
            if name not in saved:
                raise WorkbenchError(f"no saved vector named {name!r}", "choose one from the list")
            out.append(_vector(name, saved[name]))
        else:
            out.append(_sweep(name, alpha))
    return out


def ranges(mats: list[dict]) -> dict[str, tuple[float, float]]:
    """The shared colour range of each group: symmetric about the kind's middle, over every drawn panel of the group."""
    groups: dict[str, list[np.ndarray]] = {}
    for m in mats:
        if m["values"] is not None:
            groups.setdefault(m["group"], []).append(m["values"])
    kind = {m["group"]: m["kind"] for m in mats}
    return {g: shared_range(vs, CENTER[kind[g]]) for g, vs in groups.items()}


def _figure(m: dict, zrange: tuple[float, float]):
    return heatmap(m["values"], m["title"], zmid=CENTER[m["kind"]], zrange=zrange, colorbar=m["unit"], kind=m.get("site_kind"))


def _alphas(selected: list[str], current_alpha: float | None) -> tuple[list[dict], float | None]:
    root = current().store
    lists = []
    for item in selected:
        kind, key = item.split(":", 1)
        if kind == "sweep":
            sd = data.sweep_data(root, key)
            if sd.family.has_alpha:  # a patching sweep has no α to choose
                lists.append(sd.alphas)
    values, first = alpha_choices(lists)
    chosen = current_alpha if current_alpha is not None and any(abs(current_alpha - a) < 1e-12 for a in values) else first
    return [{"label": _label(a), "value": a} for a in values], chosen


@callback(Output(C.alpha, "options"), Output(C.alpha, "value"), Output(C.heatmaps, "children"), Output(C.scale_note, "children"),
          Output(C.diff, "children"), Output(C.table, "children"), Output(C.message, "children"),
          Input(C.items, "value"), Input(C.alpha, "value"))
def draw(selected, alpha):
    selected = selected or []
    try:
        options, chosen = _alphas(selected, float(alpha) if alpha is not None else None)
        alpha_out = chosen if chosen != alpha else no_update
        if len(selected) < 2:
            return options, alpha_out, [], "", [], [], "Choose at least two items to compare."
        mats = panels(selected, chosen)
    except WorkbenchError as e:  # a sweep with a corrupt chunk, a vector broken since the page loaded: one line, not a 500
        return no_update, no_update, [], "", [], [], str(e)
    rng = ranges(mats)
    figs = []
    for i, m in enumerate(mats):
        if m["values"] is None:
            figs.append(html.Div(html.P(m["title"], className="hint"), id=f"{C.panel}-{i}"))
        else:
            figs.append(html.Div(dcc.Graph(figure=_figure(m, rng[m["group"]]), config={"displaylogo": False}),
                                 id=f"{C.panel}-{i}",
                                 className="compare-panel"))
    note = "; ".join(f"{'vectors' if g == 'vector' else 'sweeps (' + g.split(':', 1)[1] + ')'}: one colour scale, "
                     f"{lo:.3g} to {hi:.3g}" for g, (lo, hi) in rng.items())
    if len(rng) > 1:
        note += " — different quantities, so each kind has its own shared scale"
    if any(m["group"] == f"sweep:{data.PATCH_UNIT}" for m in mats) and any(m["kind"] == "sweep" and m["group"] !=
                                                                           f"sweep:{data.PATCH_UNIT}" for m in mats):
        note += (" (a patching sweep's normalized effect is a fraction of the logit difference, not a Δ of the metric: it "
                 "has its own scale and no α)")
    a, b = mats[0], mats[1]
    if (a["group"] == b["group"] and a["values"] is not None and b["values"] is not None
            and a["values"].shape == b["values"].shape):
        d = b["values"] - a["values"]
        title = f"difference (second − first):<br>{b['short']} − {a['short']}"
        fig = heatmap(d, title, zmid=0.0, zrange=symmetric_range(d), colorbar=f"{a['quantity']}: second − first")
        fig.update_layout(margin={"t": 60})  # the two-line title
        diff = html.Div(dcc.Graph(id=C.diff_graph, figure=fig, config={"displaylogo": False}),
                        className="grid")  # a panel's size: cells as on the panels
    else:
        diff = html.P("No difference map: the first two items are of different kinds or shapes, or one has no panel at this α.",
                      className="hint")
    rows = [m["row"] for m in mats]
    columns = list(dict.fromkeys(c for r in rows for c in r))
    rows = [{c: r.get(c, NA) for c in columns} for r in rows]
    table = dash_table.DataTable(rows, [{"name": c, "id": c} for c in columns], id=C.table_data, style_as_list_view=True,
                                 style_cell={"fontFamily": "inherit", "padding": "4px 8px", "textAlign": "left"})
    return options, alpha_out, figs, note, diff, table, ""
