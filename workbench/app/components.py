"""Pieces every page uses: layer × head heatmaps, form fields with their error line, job cards, the store's notice."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from dash import html

from workbench import axis
from workbench.app.data import ALL, catalog_problems
from workbench.app.jobs_view import describe, progress_text
from workbench.app.settings import current
from workbench.jobs.registry import Job

DIVERGING = "RdBu"  # negative (the metric fell) red, positive blue, 0 white


KEEP = {"persistence": True, "persistence_type": "session"}
"""Form controls keep what the user typed for the browser session, so a page change loses nothing."""


def heatmap(values: np.ndarray, title: str, low: np.ndarray | None = None, high: np.ndarray | None = None,
            zmid: float | None = 0.0,
            colorscale: str = DIVERGING, colorbar: str = "", height: int = 0,
            zrange: tuple[float, float] | None = None, mlp: bool = False, kind: axis.SiteKind | None = None) -> go.Figure:
    """``values [layer, head]`` as a heatmap: heads on x, layers on y (layer 0 at the bottom).

    Hover shows the site, the value and, where given, the 95% interval; ``customdata`` carries
    ``[layer, head]`` so a click handler knows the site without parsing labels. Arrays go out as plain
    lists (not plotly's base64 typed arrays), so ``figure.data[0].z`` reads the same in Python and the browser.

    ``zrange=(zmin, zmax)`` fixes the colour scale (several heatmaps compared side by side pass the same
    range, so one colour means one value on all of them); None scales to this matrix (symmetric about ``zmid``).
    ``mlp=True``: ``values [layer, 1]`` of an MLP sweep, drawn as one column labelled "MLP" (no head axis).
    ``kind``: the sweep's site kind (:mod:`workbench.axis`), whose labels the hover shows (``L3H5→img`` for an edge);
    a per-layer kind is drawn as ``mlp=True``."""
    kind = kind or (axis.MLP if mlp else axis.HEADS)
    mlp = not kind.per_head
    values = np.asarray(values, dtype=float)
    n_layers, n_heads = values.shape
    layer_idx, head_idx = np.meshgrid(np.arange(n_layers), np.arange(n_heads), indexing="ij")
    parts = [layer_idx, head_idx]
    hover = kind.label_format.format(layer="%{customdata[0]}", head="%{customdata[1]}") + ": %{z:.4f}"
    if low is not None and high is not None:
        parts += [np.asarray(low, dtype=float), np.asarray(high, dtype=float)]
        hover += "<br>95% CI [%{customdata[2]:.4f}, %{customdata[3]:.4f}]"
    custom = np.stack(parts, axis=-1)
    span = float(np.nanmax(np.abs(values - (zmid or 0.0)))) if values.size else 1.0
    if zrange is not None:
        zmin, zmax = float(zrange[0]), float(zrange[1])
    else:
        zmin, zmax = (None, None) if zmid is None else (zmid - span, zmid + span)
    trace = {"type": "heatmap", "z": values.tolist(), "x": list(range(n_heads)), "y": list(range(n_layers)),
             "customdata": custom.tolist(),
             "colorscale": [list(c) for c in go.Heatmap(colorscale=colorscale).colorscale],
             "zmid": zmid if zrange is None else None, "zmin": zmin,
             "zmax": zmax, "hovertemplate": hover + "<extra></extra>", "xgap": 1, "ygap": 1,
             "colorbar": {"title": {"text": colorbar}}}
    # the arrays skip plotly's element-wise validation (a 32 × 32 map took 0.2 s to validate); the rest is validated
    fig = go.Figure(data=[{k: v for k, v in trace.items() if v is not None}], _validate=False)
    fig.update_layout(title={"text": title, "x": 0.01, "font": {"size": 14}}, margin={"l": 50, "r": 10, "t": 40, "b": 40},
                      xaxis={"title": {"text": "head"}, "dtick": 1 if n_heads <= 32 else 4, "constrain": "domain"} if not mlp else
                      {"title": {"text": ""}, "tickvals": [0], "ticktext": ["MLP"], "constrain": "domain"},
                      yaxis={"title": {"text": "layer"}, "dtick": 1 if n_layers <= 32 else 4}, plot_bgcolor="white",
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
    """One job: label, state, what it runs (:func:`workbench.app.jobs_view.describe`), a progress bar with its
    percentage of work units, the ETA while it runs and its message, and a cancel button while it runs."""
    pct, eta = progress_text(job)
    message = job.error if job.state in ("failed", "cancelled") else job.progress.get("message", "")
    return html.Div([
        html.Div([html.Span(job.label, className="job-label"), html.Span(job.state, className=f"job-state state-{job.state}"),
                  html.Button("Cancel", id=cancel_id, className="button-small", n_clicks=0,
                              disabled=job.final or job.cancel_requested, style={"display": "none" if job.final else None})],
                 className="job-head"),
        html.Div(describe(job.kind, job.params), className="job-what",
                 style={"fontSize": "13px", "color": "#555", "margin": "4px 0"}),
        html.Div(html.Div(style={"width": pct}, className="progress-fill"), className="progress", title=pct),
        html.Div([html.Span(pct, className="job-pct"), *([html.Span(eta, className="job-eta")] if eta else []),
                  html.Span(message, className="job-message")], className="job-foot"),
        *([extra] if extra is not None else []),
    ], className="job-card", id={"type": cancel_id["type"].replace("cancel", "card"), "id": job.id}, **{"data-state": job.state})


def relation_options(relations=()) -> list[dict]:
    """The relation filter's choices: every probe (``data.ALL``), then each relation the sweep's probes have."""
    return [{"label": "all probes", "value": ALL}] + [{"label": r, "value": r} for r in sorted(set(relations) - {""})]


def store_notice(page) -> html.Div:
    """One line per store entry the listings skip, each saying to run `workbench store fsck` (empty when none)."""
    lines = catalog_problems(current().store)
    return html.Div([html.P(f"{len(lines)} store entries cannot be read and are left out:")]
                    + [html.P(line, className="mono") for line in lines] if lines else [],
                    id=page.problems, className="notice" if lines else "")
