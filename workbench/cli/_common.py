"""What every sub-command shares: one-line errors, rich consoles, progress bars, quiet libraries.

Nothing here (nor in any CLI module's top level) imports torch, transformers or pandas: ``workbench --help``
and the store commands start in well under a second; each command imports what it needs when it runs.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
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
QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
_QUIET_MODULES = r"(transformers|huggingface_hub|nnsight|accelerate|torch)(\.|$)"
_set_by_us: set[str] = set()


def set_verbosity(verbose: bool) -> None:
    """Quiet (default): transformers' warnings and "Loading weights" bars, huggingface_hub's download bars and
    those libraries' Python warnings are silenced, through their environment variables (so job workers started
    from here inherit it) and, where a library is already imported, its own switches. ``verbose``: all shown.
    Our own progress bars (rich, on stderr) are not affected."""
    if verbose:
        for k in list(_set_by_us):
            os.environ.pop(k, None)
            _set_by_us.discard(k)
        warnings.filterwarnings("default", module=_QUIET_MODULES)
    else:
        for k, v in QUIET_ENV.items():
            if os.environ.get(k) != v:
                os.environ[k] = v
                _set_by_us.add(k)
        warnings.filterwarnings("ignore", module=_QUIET_MODULES)
    with warnings.catch_warnings():  # huggingface_hub: "the environment variable has priority" (the one set above)
        warnings.simplefilter("ignore")
        if "transformers" in sys.modules:  # imported before the option was read (in-process callers, tests)
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_warning() if verbose else hf_logging.set_verbosity_error()
            hf_logging.enable_progress_bar() if verbose else hf_logging.disable_progress_bar()
        if "huggingface_hub" in sys.modules:
            from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

            enable_progress_bars() if verbose else disable_progress_bars()


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
