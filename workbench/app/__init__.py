"""The Dash app: explore stored effect matrices, run sweeps and ScAle training as jobs, compare, export.

    data, exports   what pages show and offer for download, computed from the store (no Dash, no model)
    ids             namespaced component ids
    components      heatmaps, form fields with their error line, job cards
    pages/          one file per page (explorer, head, sweeps, train, compare, export), thin over the above
    settings        the store, default model and device of this server

The server process only reads the store and the job folders; sweeps and training run in worker
processes started through :class:`workbench.jobs.JobRegistry`, so a job survives a page change (or
a server restart), and a page that comes back shows it where it is. ``workbench app`` serves it.
"""

from __future__ import annotations

from pathlib import Path

from workbench.app.settings import Settings, configure


def create_app(store: str | Path, model: str, device: str = "cpu", poll_ms: int = 500):
    import dash
    from dash import Dash, Input, Output, dcc, html

    from workbench.app import ids
    from workbench.jobs.registry import JobRegistry

    configure(Settings(store=Path(store), model=str(model), device=device, poll_ms=poll_ms))
    here = Path(__file__).parent
    app = Dash(__name__, use_pages=True, pages_folder=str(here / "pages"), assets_folder=str(here / "assets"),
               title="Spatial Head Workbench", suppress_callback_exceptions=True, update_title=None)
    nav = [dcc.Link(page["name"], href=page["relative_path"], className="nav-link", id=f"shell-nav-{page['module'].split('.')[-1]}")
           for page in dash.page_registry.values() if page.get("nav", True)]
    app.layout = html.Div([
        dcc.Location(id=ids.shell.url, refresh="callback-nav"),
        html.Header([html.Span("Spatial Head Workbench", className="brand"), html.Nav(nav, className="nav"),
                     html.Span(str(Path(store)), className="store-path", title="effect store")], className="topbar"),
        html.Div(id=ids.shell.jobs, className="jobs-bar"),
        dcc.Interval(id=ids.shell.tick, interval=max(poll_ms * 2, 1000)),
        html.Main(dash.page_container, className="page"),
    ])

    @app.callback(Output(ids.shell.jobs, "children"), Input(ids.shell.tick, "n_intervals"))
    def running_jobs(_):
        """A one-line strip naming every running job with its progress, visible on every page."""
        live = [j for j in JobRegistry(store).list() if not j.final]
        if not live:
            return []
        return [html.Span(f"{j.label}: {round(100 * j.fraction)}% · {j.progress.get('message', '')}", className="jobs-bar-item")
                for j in live]

    return app
