"""Entry point: ``workbench --help``.

Every sub-command module keeps its heavy imports (torch, transformers, pandas) inside its commands, so
building this app, ``--help`` and the store commands import none of them
(tests/integration/test_cli_fast.py checks it)."""

from __future__ import annotations

import typer

from workbench import __version__
from workbench.cli._common import set_verbosity
from workbench.cli.app import app_cmd
from workbench.cli.causal import app as causal_app
from workbench.cli.heads import app as heads_app
from workbench.cli.lab import app as lab_app
from workbench.cli.models import app as models_app
from workbench.cli.organism import app as organism_app
from workbench.cli.probes import app as probes_app
from workbench.cli.scale import app as scale_app
from workbench.cli.sweeps import store_app, sweep_cmd

app = typer.Typer(name="workbench",
                  help="Spatial Head Workbench: find spatial attention heads in VLMs and repair them with ScAle.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(probes_app, name="probes")
app.add_typer(models_app, name="model")
app.add_typer(organism_app, name="organism")
app.add_typer(lab_app, name="lab")
app.add_typer(store_app, name="store")
app.add_typer(heads_app, name="heads")
app.add_typer(scale_app, name="scale")
app.add_typer(causal_app, name="causal")
app.command("sweep")(sweep_cmd)
app.command("app")(app_cmd)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"workbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the libraries' warnings and load bars "
                                       "(transformers, huggingface_hub), silenced by default.")) -> None:
    """Spatial Head Workbench."""
    set_verbosity(verbose)


def main() -> None:
    app()
