"""What every sub-command shares: one-line errors, rich consoles, progress bars."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from workbench.errors import WorkbenchError

console = Console(width=None if sys.stdout.isatty() else 150)  # wide tables when piped to a file
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable)


def friendly(fn: F) -> F:
    """Turn a WorkbenchError into one red line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except WorkbenchError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def progress_bar(description: str, total: int):
    """A rich progress bar with count, elapsed time and ETA; yields ``advance(k=1, total=None, status=None)``
    (``status`` replaces the text after the description, e.g. the running loss)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=err_console, transient=False) as prog:
        task = prog.add_task(description, total=total)

        def advance(k: int = 1, total: int | None = None, status: str | None = None) -> None:
            if total is not None:
                prog.update(task, total=total)
            if status is not None:
                prog.update(task, description=f"{description} {status}")
            prog.advance(task, k)

        yield advance


def parse_list(value: str | None, what: str) -> tuple[str, ...] | None:
    """"a, b,c" → ("a", "b", "c"); None stays None; an empty list is an error."""
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise WorkbenchError(f"--{what} is empty", f"give a comma-separated list of {what}")
    return items
