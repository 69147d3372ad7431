"""Entry point: ``workbench --help``."""

from __future__ import annotations

import typer

from workbench import __version__
from workbench.cli.app import app_cmd
from workbench.cli.heads import app as heads_app
from workbench.cli.models import app as models_app
from workbench.cli.organism import app as organism_app
from workbench.cli.probes import app as probes_app
from workbench.cli.scale import app as scale_app
from workbench.cli.sweeps import store_app, sweep_cmd

app = typer.Typer(name="workbench", help="Spatial Head Workbench: find spatial attention heads in VLMs and repair them with ScAle.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(probes_app, name="probes")
app.add_typer(models_app, name="model")
app.add_typer(organism_app, name="organism")
app.add_typer(store_app, name="store")
app.add_typer(heads_app, name="heads")
app.add_typer(scale_app, name="scale")
app.command("sweep")(sweep_cmd)
app.command("app")(app_cmd)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"workbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    """Spatial Head Workbench."""


def main() -> None:
    app()
