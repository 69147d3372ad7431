"""The one error type users see.

Every failure caused by input the user controls (a path, a model id, a head index, a file format)
raises :class:`WorkbenchError` with a single line that names the problem *and* the fix. The CLI
prints that line and exits non-zero; library callers can catch it. Anything else that escapes is a
bug in the workbench, and keeps its traceback.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """A user-facing error: one line, naming what is wrong and how to fix it."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem} ({fix})")


class Cancelled(Exception):
    """Raised between units of work (a sweep chunk, an optimizer step) when a job was asked to stop.

    Everything written before it is whole (atomic writes), so a cancelled sweep is an ordinary
    resumable one: the next run computes only the chunks it had not reached."""
