"""``workbench app``: serve the Dash app (explorer, head pages, sweeps, training, compare, export)."""

from __future__ import annotations

from pathlib import Path

import typer

from workbench.cli._common import console, friendly
from workbench.cli.sweeps import DEFAULT_STORE
from workbench.errors import WorkbenchError
from workbench.organism import DEFAULT_MODEL


def ensure_default_sweep(store: Path, model: str, device: str = "cpu"):
    """Start the default sweep (held-out spatial probes, α ∈ {0, 0.5, 2}, last token) as a job unless the store
    already has a finished sweep of this model or one is under way; returns the job or None."""
    from workbench.app.data import catalog
    from workbench.jobs import JobRegistry, sweep_params

    name = Path(model).name if Path(model).is_dir() else model
    if any(r["complete"] and r["model"] == name for r in catalog(store)):
        return None
    registry = JobRegistry(store)
    if any(not j.final and j.kind == "sweep" and j.params.get("model") == model for j in registry.list()):
        return None
    return registry.submit("sweep", sweep_params(store, model, device=device, label=f"default sweep of {name}"))


@friendly
def app_cmd(
    store: Path = typer.Option(DEFAULT_STORE, "--store", help="Effect store folder (env WORKBENCH_STORE)."),
    model: str = typer.Option(str(DEFAULT_MODEL), "--model", help="Default model of the forms (default: the organism)."),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Interface to bind; loopback unless you say otherwise. The server answers "
                                  "only requests for localhost, 127.0.0.1 or [::1] (HTTP 400 otherwise: a DNS-rebinding "
                                  "guard) and for --host itself when it is another name; 0.0.0.0 or :: serve every name."),
    port: int = typer.Option(8050, "--port"),
    device: str = typer.Option("cpu", "--device", help="Where job workers run models (cpu, cuda …); the server never loads one."),
    default_sweep: bool = typer.Option(True, "--default-sweep/--no-default-sweep",
                                       help="Compute the default sweep of --model when the store has none."),
    debug: bool = typer.Option(False, "--debug", help="Dash debug mode (reloader, error overlay)."),
) -> None:
    """Serve the workbench in the browser at http://HOST:PORT."""
    from workbench.app import create_app
    from workbench.models.devices import check_device

    if not 0 < port < 65536:
        raise WorkbenchError(f"port {port} is out of range", "pass --port between 1 and 65535")
    if model.startswith((".", "/", "~")) and not Path(model).expanduser().is_dir():
        raise WorkbenchError(f"model folder {model} does not exist", "check --model")
    device = check_device(device)  # the jobs run there: a device this machine lacks is one line now, not a failed job later
    store.mkdir(parents=True, exist_ok=True)
    if default_sweep and (job := ensure_default_sweep(store, model, device)) is not None:
        console.print(f"no sweep of {Path(model).name} in {store} yet: computing the default one (job {job.id}; "
                      "progress in the app)")
    app = create_app(store, model, device=device, host=host)
    console.print(f"serving the workbench at [bold]http://{host}:{port}[/] (store {store}); Ctrl-C stops it")
    try:
        app.run(host=host, port=port, debug=debug)
    except OSError as e:
        raise WorkbenchError(f"cannot serve on {host}:{port} ({e.strerror or e})", "pick another --port") from None
