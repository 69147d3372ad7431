"""Pieces every page uses: layer × head heatmaps, form fields with their error line, job cards, the store's notice."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from dash import html

from workbench.app.data import ALL, catalog_problems
from workbench.app.settings import current
from workbench.jobs.registry import Job

DIVERGING = "RdBu"  # negative (the metric fell) red, positive blue, 0 white


KEEP = {"persistence": True, "persistence_type": "session"}
"""Form controls keep what the user typed for the browser session, so a page change loses nothing."""


def heatmap(values: np.ndarray, title: str, low: np.ndarray | None = None, high: np.ndarray | None = None, zmid: float | None = 0.0,
            colorscale: str = DIVERGING, colorbar: str = "", height: int = 0) -> go.Figure:
    """``values [layer, head]`` as a heatmap: heads on x, layers on y (layer 0 at the bottom).

    Hover shows the site, the value and, where given, the 95% interval; ``customdata`` carries
    ``[layer, head]`` so a click handler knows the site without parsing labels. Arrays go out as plain
    lists (not plotly's base64 typed arrays), so ``figure.data[0].z`` reads the same in Python and the browser."""
    values = np.asarray(values, dtype=float)
    n_layers, n_heads = values.shape
    layer_idx, head_idx = np.meshgrid(np.arange(n_layers), np.arange(n_heads), indexing="ij")
    parts = [layer_idx, head_idx]
    hover = "L%{customdata[0]}H%{customdata[1]}: %{z:.4f}"
    if low is not None and high is not None:
        parts += [np.asarray(low, dtype=float), np.asarray(high, dtype=float)]
        hover += "<br>95% CI [%{customdata[2]:.4f}, %{customdata[3]:.4f}]"
    custom = np.stack(parts, axis=-1)
    span = float(np.nanmax(np.abs(values - (zmid or 0.0)))) if values.size else 1.0
    fig = go.Figure(go.Heatmap(z=values.tolist(), x=list(range(n_heads)), y=list(range(n_layers)), customdata=custom.tolist(), colorscale=colorscale,
                               zmid=zmid, zmin=None if zmid is None else zmid - span, zmax=None if zmid is None else zmid + span,
                               hovertemplate=hover + "<extra></extra>", xgap=1, ygap=1, colorbar={"title": {"text": colorbar}}))
    fig.update_layout(title={"text": title, "x": 0.01, "font": {"size": 14}}, margin={"l": 50, "r": 10, "t": 40, "b": 40},
                      xaxis={"title": "head", "dtick": 1 if n_heads <= 32 else 4, "constrain": "domain"},
                      yaxis={"title": "layer", "dtick": 1 if n_layers <= 32 else 4}, plot_bgcolor="white",
                      height=height or max(260, min(720, 60 + 22 * n_layers)))
    return fig


def empty_figure(text: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(xaxis={"visible": False}, yaxis={"visible": False}, height=200, plot_bgcolor="white",
                      annotations=[{"text": text, "showarrow": False, "font": {"size": 14, "color": "#666"}}])
    return fig


def field(label: str, control, error_id: str | None = None, hint: str = "") -> html.Div:
    """A labelled form control with a line under it for its error (empty until validation fails)."""
    children = [html.Label(label, className="field-label"), control]
    if hint:
        children.append(html.Div(hint, className="field-hint"))
    if error_id:
        children.append(html.Div(id=error_id, className="field-error", role="alert"))
    return html.Div(children, className="field")


def job_card(job: Job, cancel_id: dict, extra=None) -> html.Div:
    """One job: label, state, a progress bar with its percentage and message, and a cancel button while it runs."""
    pct = round(100 * job.fraction)
    message = job.error if job.state in ("failed", "cancelled") else job.progress.get("message", "")
    return html.Div([
        html.Div([html.Span(job.label, className="job-label"), html.Span(job.state, className=f"job-state state-{job.state}"),
                  html.Button("Cancel", id=cancel_id, className="button-small", n_clicks=0,
                              disabled=job.final or job.cancel_requested, style={"display": "none" if job.final else None})],
                 className="job-head"),
        html.Div(html.Div(style={"width": f"{pct}%"}, className="progress-fill"), className="progress", title=f"{pct}%"),
        html.Div([html.Span(f"{pct}%", className="job-pct"), html.Span(message, className="job-message")], className="job-foot"),
        *([extra] if extra is not None else []),
    ], className="job-card", id={"type": cancel_id["type"].replace("cancel", "card"), "id": job.id}, **{"data-state": job.state})


def relation_options(relations=()) -> list[dict]:
    """The relation filter's choices: every probe (``data.ALL``), then each relation the sweep's probes have."""
    return [{"label": "all probes", "value": ALL}] + [{"label": r, "value": r} for r in sorted(set(relations) - {""})]


def store_notice(page) -> html.Div:
    """One line per store entry the listings skip, each saying to run `workbench store fsck` (empty when none)."""
    lines = catalog_problems(current().store)
    return html.Div([html.P(f"{len(lines)} store entries cannot be read and are left out:")] + [html.P(line, className="mono")
                                                                                                   for line in lines] if lines else [],
                    id=page.problems, className="notice" if lines else "")
