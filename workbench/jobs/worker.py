"""The worker process: ``python -m workbench.jobs.worker <job folder>``.

Runs one job's task (:mod:`workbench.jobs.tasks`) and keeps ``status.json`` current: state, progress,
curve points, and at the end the result or a one-line error. Status writes are atomic and throttled
(at most every 0.25 s, except state changes), so readers never see half a file and a fast loop does
not spend its time writing JSON. SIGTERM is turned into a cancellation at the next poll (a sweep's
next forward pass, a training run's next step).
"""

from __future__ import annotations

import json
import signal
import sys
import time
import traceback
from pathlib import Path

from workbench.errors import Cancelled, WorkbenchError
from workbench.jobs.registry import write_json


class FileReporter:
    def __init__(self, folder: Path, min_interval: float = 0.25):
        self.folder = folder
        self.min_interval = min_interval
        self.status: dict = json.loads((folder / "status.json").read_text())
        self.status.setdefault("points", [])
        self._last = 0.0
        self._terminated = False

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.min_interval:
            write_json(self.folder / "status.json", self.status)
            self._last = now

    def set_state(self, state: str, **extra) -> None:
        self.status.update(state=state, **extra)
        self.status[f"{state}_at"] = time.time()
        self._write(force=True)

    def progress(self, done: int, total: int, message: str = "", **extra) -> None:
        """``done`` of ``total`` units (``total = 0``: only the message changes). A new total starts a new rate
        measurement, from its first finished unit on (``since``: wall-clock time, ``since_done``: units then), so the
        start-up before it — a sweep's first probe batch being built — does not count as the pace of the work; ``at``
        is the time of each update. A reader extrapolates the ETA from them (:meth:`~workbench.jobs.registry.Job.eta`).
        ``extra`` keys (e.g. a sweep's chunk counts) are kept until overwritten."""
        prev = self.status.get("progress", {})
        now = time.time()
        new = {**prev, **extra, "done": done if total else prev.get("done", 0), "total": total or prev.get("total", 0),
               "message": message or prev.get("message", "")}
        if total and total != prev.get("total"):
            new.update(base_done=done, since=None, since_done=None)
        if total and new.get("since") is None and done > new.get("base_done", 0):
            new.update(since=now, since_done=done)
        if total:
            new["at"] = now
        self.status["progress"] = new
        self._write(force=total > 0 and done == total)

    def point(self, point: dict) -> None:
        self.status["points"].append(point)
        self._write(force=point.get("kind") == "epoch")

    def should_stop(self) -> bool:
        return self._terminated or (self.folder / "cancel").exists()

    def terminate(self, *_) -> None:
        self._terminated = True


def run(folder: Path) -> int:
    from workbench.jobs.tasks import TASKS

    head = json.loads((folder / "params.json").read_text())
    report = FileReporter(folder)
    signal.signal(signal.SIGTERM, report.terminate)
    report.set_state("running")
    try:
        if report.should_stop():
            raise Cancelled("cancelled before it started: nothing stored")
        result = TASKS[head["kind"]](head["params"], report)
    except Cancelled as e:
        report.set_state("cancelled", error=str(e))
        return 0
    except WorkbenchError as e:
        report.set_state("failed", error=str(e))
        return 2
    except Exception as e:  # a bug: keep the traceback in the log, one line in the status
        traceback.print_exc()
        report.set_state("failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        return 1
    report.status["progress"]["done"] = report.status["progress"].get("total", 0)
    report.set_state("done", result=result)
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
