"""Run ``workbench app`` in a child process and wait until it answers: for browser tests, benchmarks and notebooks.

The server runs in its own process session (as a user's ``workbench app`` would), so stopping it never
touches the caller; on exit the job workers still running in its store are stopped too (each lives in its own session).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.jobs import JobRegistry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def running_app(store: str | os.PathLike, *args: str, port: int | None = None, timeout: float = 90.0,
                log: str | os.PathLike | None = None) -> Iterator[str]:
    """Serve ``python -m workbench app --store STORE --port PORT *args``; yields ``http://127.0.0.1:PORT`` once
    the page answers. The server's output goes to ``log`` (default: discarded)."""
    port = port or free_port()
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "app", "--store", str(store), "--port", str(port), *args],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = Path(log).read_text(errors="replace")[-2000:] if log else "(pass log= to keep its output)"
                    raise WorkbenchError(f"the app did not start on port {port}: {tail}",
                                         "run `workbench app` by hand to see why") from None
                time.sleep(0.3)
        yield url
    finally:
        _stop_group(proc.pid)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        registry = JobRegistry(store)
        for job in registry.list():
            if not job.final:  # only live workers: a finished job's pid may belong to someone else by now
                registry.kill(job.id)
        if log:
            out.close()
