"""Benchmark: how long `workbench probes make` takes, by stage, for a few sizes.

Prints one table (one run, no repetition): generation (sampling + rendering + PNG encoding),
saving (atomic folder write), loading (with hash verification) and the contact sheet, with the
per-item cost side by side. The issue's target is n = 2000 in under 30 s on 2 cores.

    .venv/bin/python analyses/bench_probes.py            # n = 500, 2000, 8000
    .venv/bin/python analyses/bench_probes.py 2000
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from workbench.probes.contact import contact_sheet
from workbench.probes.generate import ProbeConfig, generate
from workbench.probes.probeset import ProbeSet


def stage_times(n: int, seed: int = 0) -> dict[str, float]:
    t = {}
    t0 = time.perf_counter()
    ps = generate(ProbeConfig(n=n, seed=seed))
    t["generate"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        ps.save(Path(d) / "ps")
        t["save"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = ProbeSet.load(Path(d) / "ps")
        assert back.hash == ps.hash
        t["load+verify"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    contact_sheet(ps)
    t["contact sheet"] = time.perf_counter() - t0
    t["total"] = sum(t.values())
    return t


def main(sizes: list[int]) -> None:
    table = Table(title="probe suite timings (one run, seconds)")
    table.add_column("n", justify="right")
    stages = ["generate", "save", "load+verify", "contact sheet", "total"]
    for s in stages:
        table.add_column(s, justify="right")
    table.add_column("ms / item", justify="right")
    table.add_column("total / 30 s target", justify="right")
    for n in sizes:
        t = stage_times(n)
        table.add_row(str(n), *(f"{t[s]:.2f}" for s in stages), f"{1000 * t['total'] / n:.2f}", f"{t['total'] / 30:.3f}x")
    Console(width=160).print(table)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [500, 2000, 8000])
