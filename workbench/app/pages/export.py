"""Export: discovered head sets (JSON, CSV) and scale vectors (safetensors, ScAle .npy) as downloads.

Files come from :mod:`workbench.app.exports`, byte-for-byte what the CLI writes. A head set can also
be kept in the store under a name, which the Train page then offers. Heads are never ranked on α = 1, the
identity (every effect 0 by construction, so a ranking would be noise): a sweep of α = 1 alone is listed
disabled with that reason and never preselected, and α = 1 is disabled under "Rank by α". A patching sweep
ranks by normalized effect, largest first (its single α 1.0 is the fully patched site, not an identity); the
rule in force is said under the sweep field and recorded in the file's ``method`` (``patch:noising@last:…``).
"""

from __future__ import annotations

import dash
from dash import Input, Output, State, callback, dcc, html, no_update

from workbench.app import data, exports, ids
from workbench.app.components import field, relation_options, store_notice
from workbench.app.jobs_view import IDENTITY_ONLY, alpha_options, export_sweeps, rankable_alphas, ranking_rule
from workbench.app.settings import current
from workbench.errors import WorkbenchError
from workbench.jobs.params import NAME_PATTERN

dash.register_page(__name__, path="/export", name="Export", order=4)
X = ids.export


def layout(**_):
    root = current().store
    sweeps, first = export_sweeps(data.catalog(root))
    vecs = [{"label": f"{v['name']} ({v['model']}, {v['mode']})", "value": v["name"]} for v in data.vectors(root)]
    return html.Div([
        html.H2("Export"),
        store_notice(X),
        html.H3("Head set from a sweep"),
        html.Div([
            field("Sweep", dcc.Dropdown(id=X.sweep, options=sweeps, value=first, clearable=False,
                                        placeholder="no head sweep with an α other than 1" if sweeps else "no head sweep yet"),
                  X.sweep_error),
            field("Rank by α", dcc.Dropdown(id=X.alpha, clearable=False)),
            field("Relation", dcc.Dropdown(id=X.relation, options=relation_options(), clearable=False, value=data.ALL)),
            field("Top k", dcc.Input(id=X.k, type="number", value=5, min=1, className="num"), X.k_error),
            field("Format", dcc.RadioItems(id=X.hs_format, options=list(exports.HEADSET_FORMATS), value="json", inline=True)),
        ], className="controls"),
        html.P(ranking_rule(), id=X.rule, className="hint"),
        html.Button("Download head set", id=X.hs_download_button, className="button", n_clicks=0),
        html.Div([dcc.Input(id=X.hs_name, type="text", placeholder="name to keep it in the store", className="text"),
                  html.Button("Save to store", id=X.hs_save, className="button-small", n_clicks=0)], className="inline"),
        html.Div(id=X.hs_message, className="message"),
        html.Div(id=X.hs_preview, className="mono"),
        html.H3("Scale vector"),
        html.Div([
            field("Vector", dcc.Dropdown(id=X.vector, options=vecs, value=vecs[0]["value"] if vecs else None, clearable=False),
                  X.vector_error),
            field("Format", dcc.RadioItems(id=X.vec_format, options=[{"label": "safetensors + json (zip)",
                                                                      "value": "safetensors"},
                                                                     {"label": "ScAle .npy (zip)", "value": "npy"}],
                                           value="safetensors", inline=True)),
        ], className="controls"),
        html.Button("Download vector", id=X.vec_download_button, className="button", n_clicks=0),
        dcc.Download(id=X.hs_download),
        dcc.Download(id=X.vec_download),
    ])


@callback(Output(X.alpha, "options"), Output(X.alpha, "value"), Output(X.relation, "options"), Output(X.sweep_error, "children"),
          Output(X.relation, "value"), Input(X.sweep, "value"))
def sweep_choices(key):
    """α options, the α preselected, relation options, the line under the sweep field, and the relation value: every
    probe, sent with its options so the menu shows it."""
    if not key:
        identity = export_sweeps(data.catalog(current().store))[0]
        why = f"the head sweeps here have {IDENTITY_ONLY}: run one with e.g. α = 0, 0.5, 2 on the Sweeps page"
        return [], None, relation_options(), why if identity else "", data.ALL
    try:
        sd = data.sweep_data(current().store, key)
    except WorkbenchError as e:  # a sweep whose chunks fail their checks: its one line under the field, not a 500
        return [], None, relation_options(), str(e), data.ALL
    options, alpha = alpha_options(sd.alphas, sd.family.name)
    why = "" if alpha is not None else f"this sweep has {IDENTITY_ONLY}"
    return options, alpha, relation_options(sd.relations), why, data.ALL


@callback(Output(X.rule, "children"), Input(X.sweep, "value"))
def rule(key):
    """How the chosen sweep ranks heads (its family's rule; the exported file's ``method`` names it too)."""
    try:
        return ranking_rule(data.sweep_data(current().store, key).family.name) if key else ranking_rule()
    except WorkbenchError:
        return ""


def _headset(key, alpha, relation, k):
    if not key:
        raise WorkbenchError("no head sweep to rank on in the store yet", "run one on the Sweeps page (with an α other than 1)")
    fam = data.sweep_data(current().store, key).family
    if alpha is None or not rankable_alphas([alpha], fam.name):
        raise WorkbenchError("α = 1 is the identity: every effect is 0 there, so a ranking would be noise",
                             "rank by another α of the sweep (e.g. 0, which ablates)")
    try:
        k = int(k)
    except (TypeError, ValueError):
        k = 0
    if k < 1:
        raise WorkbenchError("k must be a whole number ≥ 1", "type how many heads to keep")
    return exports.headset(current().store, key, alpha, k, relation or data.ALL)


@callback(Output(X.hs_download, "data"), Output(X.k_error, "children"), Output(X.hs_preview, "children"),
          Input(X.hs_download_button, "n_clicks"), State(X.sweep, "value"), State(X.alpha, "value"), State(X.relation, "value"),
          State(X.k, "value"), State(X.hs_format, "value"), prevent_initial_call=True)
def download_headset(_, key, alpha, relation, k, fmt):
    try:
        hs = _headset(key, alpha, relation, k)
    except WorkbenchError as e:
        return no_update, str(e), ""
    name, blob = exports.headset_file(hs, fmt)
    listed = ", ".join(f"{data.site_label(a, b)} ({s:+.3f})" for (a, b), s in zip(hs.heads, hs.scores))
    preview = f"{hs.method} · heads: {listed}"
    return dcc.send_bytes(blob, name), "", preview


@callback(Output(X.hs_message, "children"), Input(X.hs_save, "n_clicks"), State(X.sweep, "value"), State(X.alpha, "value"),
          State(X.relation, "value"), State(X.k, "value"), State(X.hs_name, "value"), prevent_initial_call=True)
def save_headset(_, key, alpha, relation, k, name):
    name = (name or "").strip()
    if not NAME_PATTERN.match(name):
        return html.Span("give the head set a name (letters, digits, '-', '_', '.')", className="field-error")
    try:
        path = exports.save_headset(current().store, _headset(key, alpha, relation, k), name)
    except WorkbenchError as e:
        return html.Span(str(e), className="field-error")
    return f"saved {path}"


@callback(Output(X.vec_download, "data"), Output(X.vector_error, "children"), Input(X.vec_download_button, "n_clicks"),
          State(X.vector, "value"), State(X.vec_format, "value"), prevent_initial_call=True)
def download_vector(_, name, fmt):
    if not name:
        return no_update, "no saved vector yet: train one on the Train page"
    try:
        filename, blob = exports.vector_file(current().store, name, fmt)
    except WorkbenchError as e:
        return no_update, str(e)
    return dcc.send_bytes(blob, filename), ""
