"""How fast the CLI answers what needs no model: ``workbench --help``, ``workbench store ls``, and a sweep the
store already holds (answered from the store, the model not loaded), each as a fresh process on the organism.

Setup (not timed): a 60-probe set made ``--like organism`` and one MLP sweep of it at α = 0 (so the store holds a
complete sweep and the organism folder's identity). Then each command runs ``REPEATS`` times as its own
``python -m workbench`` process; the table gives the median and the slowest wall-clock time, and whether the
process imported torch (``-X importtime``), and the median CPU time (user + system) of the process: on a
shared machine a process waits for a core, so its CPU time is closer than its wall time to what an idle machine
shows. Targets (issue 22, item 7): ``--help`` and ``store ls`` ≤ 1 s
without torch, the stored sweep ≤ 3 s. The machine's load average is printed with the figures: wall-clock times
on a shared machine are longer than on an idle one.

    python analyses/bench_cli.py     # writes analyses/results/bench_cli.txt
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "results" / "bench_cli.txt"
REPEATS = 5
TARGETS = {"--help": 1.0, "store ls": 1.0, "sweep (stored)": 3.0}


def run(args: list[str], importtime: bool = False) -> tuple[float, bool, subprocess.CompletedProcess, float]:
    """Wall-clock seconds of ``python -m workbench ARGS``, whether it imported torch, the process, and its CPU seconds."""
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "workbench", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    torch = any(line.split("|")[-1].strip() == "torch" for line in proc.stderr.splitlines() if line.startswith("import time:"))
    return wall, torch, proc, cpu


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        probes, store = Path(tmp) / "probes", Path(tmp) / "store"
        run(["probes", "make", "--like", "organism", "--out", str(probes), "--n", "60", "--seed", "1"])
        t0 = time.perf_counter()
        run(["sweep", "--probes", str(probes), "--target", "mlp", "--store", str(store)])
        first = time.perf_counter() - t0
        commands = {"--help": ["--help"], "store ls": ["store", "ls", "--store", str(store)],
                    "sweep (stored)": ["sweep", "--probes", str(probes), "--target", "mlp", "--store", str(store)]}
        rows = []
        for name, args in commands.items():
            _, torch, proc, _ = run(args, importtime=True)
            if name == "sweep (stored)" and "model was not loaded" not in proc.stdout:
                raise SystemExit(f"the stored sweep loaded the model:\n{proc.stdout}")
            runs = [run(args) for _ in range(REPEATS)]
            times, cpus = [r[0] for r in runs], [r[3] for r in runs]
            rows.append((name, statistics.median(times), max(times), statistics.median(cpus), torch, TARGETS[name]))
    load = os.getloadavg()
    lines = [f"# python analyses/bench_cli.py  ({platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})",
             f"# each command a fresh `python -m workbench` process, {REPEATS} runs; setup sweep (model loaded, computed): "
             f"{first:.1f} s",
             f"{'command':<16} {'median s':>9} {'max s':>7} {'CPU s':>7} {'target s':>9} {'imports torch':>14}"]
    lines += [f"{n:<16} {med:>9.2f} {mx:>7.2f} {cpu:>7.2f} {tgt:>9.1f} {'yes' if t else 'no':>14}"
              for n, med, mx, cpu, t, tgt in rows]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
