"""Background jobs as folders: submit, watch, cancel — with the model always in another process.

A job is a folder ``<store>/jobs/<id>/``::

    params.json    what to run (kind + parameters), written once at submission
    status.json    state, progress, curve points, result or error: rewritten atomically by the worker
    cancel         present once someone asked the job to stop
    worker.log     the worker's stdout and stderr

:meth:`JobRegistry.submit` starts ``python -m workbench.jobs.worker <folder>`` in its own session and
returns at once; the caller (the Dash server, a notebook, a test) only ever reads ``status.json``. So
no model code runs in the process that serves the app, a job outlives the page (or the server) that
started it, and any number of readers can watch it. Cancelling writes ``cancel``; the worker checks
it between units of work (a sweep's forward passes, optimizer steps), so it stops where everything
written is whole (a sweep keeps its finished chunks and drops the one under way). A worker that dies
without saying so (killed, out of memory) is reported as ``failed``.

This module knows nothing of Dash, models or torch, and importing it (through ``workbench.jobs``, whose
forms check names from the torch-free :mod:`workbench.names`) loads none of them: tests/unit/test_names.py.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.fileio import atomic_write

KINDS = ("sweep", "train")
STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    params: dict
    state: str
    created: float
    progress: dict = field(default_factory=dict)  # done, total, message; since, since_done, at (for the ETA); a task's extras
    points: tuple[dict, ...] = ()  # curve points (training: step/epoch metrics)
    result: dict = field(default_factory=dict)
    error: str = ""
    cancel_requested: bool = False

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        total = self.progress.get("total") or 0
        return min(1.0, self.progress.get("done", 0) / total) if total else 0.0

    @property
    def label(self) -> str:
        return self.params.get("label") or self.id

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left, from the rate measured so far: the units done since the measurement began
        (``progress["since"]``, ``["since_done"]``: the worker starts it at the first unit finished under the
        current total) over the time they took, extrapolated to what remains and counted from the last update
        (``["at"]``, wall-clock seconds). None until a rate is measurable (fewer than two updates with work done
        under this total) and for finished jobs."""
        p = self.progress
        total, done = p.get("total") or 0, p.get("done", 0)
        since, since_done, at = p.get("since"), p.get("since_done"), p.get("at")
        if self.final or not total or since is None or since_done is None or at is None or done <= since_done or at <= since:
            return None
        rate = (done - since_done) / (at - since)  # units per second
        left = (total - done) / rate - ((time.time() if now is None else now) - at)
        return max(0.0, left)


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1, sort_keys=True)))


class JobRegistry:
    """The jobs of one store. Cheap to construct; every method reads the disk afresh."""

    _children: dict[int, subprocess.Popen] = {}  # workers started by this process: every read reaps the finished ones

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root) / "jobs"

    def folder(self, job_id: str) -> Path:
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise WorkbenchError(f"bad job id {job_id!r}", "pick a job from the list")
        return self.root / job_id

    # ------------------------------------------------------------ submit / cancel
    def submit(self, kind: str, params: dict, start: bool = True) -> Job:
        if kind not in KINDS:
            raise WorkbenchError(f"unknown job kind {kind!r}", f"choose from: {', '.join(KINDS)}")
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(3)}"
        folder = self.folder(job_id)
        folder.mkdir(parents=True)
        now = time.time()
        write_json(folder / "params.json", {"id": job_id, "kind": kind, "params": params, "created": now})
        write_json(folder / "status.json", {"state": "queued", "progress": {"done": 0, "total": 0, "message": "starting"}})
        if start:
            self.start(job_id)
        return self.get(job_id)

    def start(self, job_id: str) -> None:
        folder = self.folder(job_id)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(folder / "worker.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "workbench.jobs.worker", str(folder)], stdout=log,
                                    stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        (folder / "pid").write_text(str(proc.pid))
        self._children[proc.pid] = proc

    def cancel(self, job_id: str) -> Job:
        """Ask the job to stop at its next checkpoint (idempotent; a finished job is left as it is)."""
        job = self.get(job_id)
        if not job.final:
            (self.folder(job_id) / "cancel").touch()
        return self.get(job_id)

    def kill(self, job_id: str) -> None:
        """Hard stop (SIGTERM to the worker's session); the worker records itself as cancelled."""
        pid = self._pid(job_id)
        if pid:
            (self.folder(job_id) / "cancel").touch()
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    # ------------------------------------------------------------ read
    def get(self, job_id: str) -> Job:
        reap()
        folder = self.folder(job_id)
        try:
            head = json.loads((folder / "params.json").read_text())
            status = json.loads((folder / "status.json").read_text())
        except FileNotFoundError:
            raise WorkbenchError(f"no job {job_id!r} in {self.root}", "pick a job from the list") from None
        except json.JSONDecodeError as e:
            raise WorkbenchError(f"job {job_id} has a corrupt record ({e.msg})", f"remove {folder}") from e
        state, error = status.get("state", "queued"), status.get("error", "")
        if state in ("queued", "running") and not self._alive(job_id):
            time.sleep(0.05)  # the worker may have just written its final status
            status = json.loads((folder / "status.json").read_text())
            state, error = status.get("state", "queued"), status.get("error", "")
            if state in ("queued", "running"):
                state, error = "failed", f"the worker stopped without a result (see {folder / 'worker.log'})"
        return Job(id=head["id"], kind=head["kind"], params=head["params"], state=state, created=head["created"],
                   progress=status.get("progress", {}), points=tuple(status.get("points", ())), result=status.get("result", {}),
                   error=error, cancel_requested=(folder / "cancel").exists())

    def list(self, kind: str | None = None) -> list[Job]:
        """Newest first."""
        reap()
        if not self.root.is_dir():
            return []
        jobs = []
        for folder in sorted(self.root.iterdir(), reverse=True):
            if (folder / "params.json").is_file() and (folder / "status.json").is_file():
                job = self.get(folder.name)
                if kind is None or job.kind == kind:
                    jobs.append(job)
        return jobs

    def wait(self, job_id: str, timeout: float = 600.0, poll: float = 0.2) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.final:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout:.0f}s")
            time.sleep(poll)

    def _pid(self, job_id: str) -> int | None:
        try:
            return int((self.folder(job_id) / "pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _alive(self, job_id: str) -> bool:
        pid = self._pid(job_id)
        if pid is None:
            return True  # submitted but not started yet (or start in progress)
        proc = self._children.get(pid)
        if proc is not None:
            return proc.poll() is None  # also reaps the child
        return pid_alive(pid)


def reap() -> None:
    """Collect the exit status of every worker of this process that has finished, so none stays a zombie.

    A zombie keeps its process-table slot until its parent waits on it; the app's server starts a worker
    per job and may run for weeks, so each read (:meth:`JobRegistry.get`, hence ``list``) polls them all —
    not only the job being read, whose worker may have been reaped long ago or never be read again.
    ``poll`` never blocks, and on a reaped child it just returns the kept exit code."""
    for proc in list(JobRegistry._children.values()):
        proc.poll()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie — exited, not yet reaped by its parent — does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
