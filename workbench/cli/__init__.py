"""The ``workbench`` command: one sub-command group per area of the data flow."""

from workbench.cli.main import app, main

__all__ = ["app", "main"]
