"""The Dash app: explore stored effect matrices, run sweeps and ScAle training as jobs, compare, export.

    data, exports   what pages show and offer for download, computed from the store (no Dash, no model)
    ids             namespaced component ids
    components      heatmaps, form fields with their error line, job cards
    pages/          one file per page (explorer, head, sweeps, train, compare, export), thin over the above
    settings        the store, default model and device of this server

The server process only reads the store and the job folders; sweeps and training run in worker
processes started through :class:`workbench.jobs.JobRegistry`, so a job survives a page change (or
a server restart), and a page that comes back shows it where it is. ``workbench app`` serves it.

The server answers only requests addressed to it by name (:func:`host_guard`): bound to loopback
(the default), a page a browser loaded from another site could still reach ``127.0.0.1`` by DNS
rebinding (``evil.example`` re-pointed at 127.0.0.1), and that request carries ``Host: evil.example``,
so any ``Host`` other than localhost, 127.0.0.1 or [::1] (and the ``--host`` name, when another was
given) gets HTTP 400 with one line. Bound to every interface (``0.0.0.0``, ``::``) the check is off:
the user chose to serve any name.
"""

from __future__ import annotations

from pathlib import Path

from workbench.app.settings import Settings, configure

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def host_name(header: str) -> str:
    """The name of a ``Host`` header, without port, brackets or a trailing dot, lower case:
    ``LocalHost:8050`` → ``localhost``, ``[::1]:8050`` → ``::1``."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:].split("]", 1)[0]
    return h.rsplit(":", 1)[0].rstrip(".") if h.count(":") == 1 else h.rstrip(".")


def allowed_hosts(bind: str) -> frozenset[str] | None:
    """The ``Host`` names a server bound to ``bind`` answers: the loopback names, plus ``bind`` itself when it
    is another name or address; None (every name) when it is bound to every interface."""
    if bind in WILDCARD_BINDS:
        return None
    return frozenset(LOOPBACK_NAMES) | {host_name(bind)}


def host_guard(server, bind: str) -> None:
    """Refuse (HTTP 400, one line) every request whose ``Host`` is not one of :func:`allowed_hosts`."""
    allowed = allowed_hosts(bind)
    if allowed is None:
        return
    names = ", ".join(f"[{n}]" if ":" in n else n for n in sorted(allowed, key=lambda n: (n not in LOOPBACK_NAMES, n)))

    def check_host():
        from flask import request

        name = host_name(request.headers.get("Host", ""))
        if name not in allowed:
            return (f"refused: this workbench answers only to {names}, not {name!r} "
                    "(a guard against DNS rebinding; serve it with --host NAME to answer to NAME)\n", 400,
                    {"Content-Type": "text/plain"})
        return None

    server.before_request(check_host)


def create_app(store: str | Path, model: str, device: str = "cpu", poll_ms: int = 500, host: str = "127.0.0.1"):
    """The Dash app over ``store``; ``host``: the address it will be bound to, which decides the ``Host`` names
    it answers (see :func:`host_guard`)."""
    import dash
    from dash import Dash, Input, Output, dcc, html

    from workbench.app import ids
    from workbench.jobs.registry import JobRegistry

    configure(Settings(store=Path(store), model=str(model), device=device, poll_ms=poll_ms))
    here = Path(__file__).parent
    app = Dash(__name__, use_pages=True, pages_folder=str(here / "pages"), assets_folder=str(here / "assets"),
               title="Spatial Head Workbench", suppress_callback_exceptions=True, update_title=None)
    host_guard(app.server, host)
    nav = [dcc.Link(page["name"], href=page["relative_path"], className="nav-link",
                    id=f"shell-nav-{page['module'].split('.')[-1]}")
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
