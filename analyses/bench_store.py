"""What the store's checks cost: ``store ls`` (chunk footers only) and ``store fsck`` (every chunk read in full).

A hand-built store of 50 sweeps at a 7B-sized grid (32 layers × 32 heads, 3 α, 256 probes; chunks of 8 layers × 64
probes: 16 chunks of 49,152 rows each) is listed twice (the second time the footers come from the per-process cache)
and then checked in full. Prints one table to stdout and to ``analyses/results/bench_store.txt``.

    .venv/bin/python analyses/bench_store.py
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.store.effects import EffectStore, sweep_key
from workbench.store.fsck import fsck
from workbench.sweeps.engine import SweepSpec, plan_chunks

SWEEPS, LAYERS, HEADS, PROBES, LPC, PPC = 50, 32, 32, 256, 8, 64


def build(root: Path) -> EffectStore:
    store = EffectStore(root)
    spec = SweepSpec(alphas=(0.0, 0.5, 2.0)).to_json()
    rng = np.random.default_rng(0)
    for s in range(SWEEPS):
        fp = f"{s:064d}"
        key = sweep_key(fp, "h" * 64, spec)
        chunks = plan_chunks(LAYERS, PROBES, LPC, PPC)
        store.ensure(key, {"model": "m", "model_fingerprint": fp, "probes": "p", "probeset_hash": "h" * 64, "n_probes": PROBES,
                           "shape": [LAYERS, HEADS], "spec": spec, "layers_per_chunk": LPC, "probes_per_chunk": PPC,
                           "chunks": [c.name for c in chunks]})
        for c in chunks:
            layer, head, alpha, probe = np.meshgrid(np.arange(c.layer_start, c.layer_stop), np.arange(HEADS), spec["alphas"],
                                                    np.arange(c.probe_start, c.probe_stop), indexing="ij")
            n = layer.size
            store.write_chunk(key, c.name, pd.DataFrame({
                "layer": layer.ravel().astype(np.int32), "head": head.ravel().astype(np.int32), "alpha": alpha.ravel(),
                "probe_id": np.char.add("p", probe.ravel().astype(str)), "task": np.full(n, "relation"),
                "relation": np.full(n, "left"), "value": rng.standard_normal(n)}))
    return store


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        store = build(Path(tmp))
        built = time.perf_counter() - t
        t = time.perf_counter()
        entries = store.ls()
        first = time.perf_counter() - t
        t = time.perf_counter()
        store.ls()
        second = time.perf_counter() - t
        t = time.perf_counter()
        problems = fsck(tmp)
        full = time.perf_counter() - t
    chunks = SWEEPS * len(plan_chunks(LAYERS, PROBES, LPC, PPC))
    lines = [
        "# effect store: the cost of its checks (CPU)", "",
        "command:  .venv/bin/python analyses/bench_store.py",
        f"date:     {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"machine:  {os.cpu_count()} cores, python {platform.python_version()}; load average before the run "
        f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machine)",
        f"store:    {SWEEPS} sweeps × {chunks // SWEEPS} chunks ({chunks} chunks of {LPC * HEADS * 3 * PPC:,} rows), "
        f"built in {built:.0f} s",
        "",
        "| operation | reads | time |", "| --- | --- | ---: |",
        f"| `store ls`, first call | every chunk's footer (identity) | {first * 1000:.0f} ms |",
        f"| `store ls`, again | footers from the per-process cache | {second * 1000:.0f} ms |",
        f"| `store fsck` | every chunk in full (checksum, identity, ranges) | {full:.1f} s |",
        "", f"sweeps listed: {len(entries)}; problems found: {len(problems)}",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    out = Path(__file__).resolve().parent / "results" / "bench_store.txt"
    out.write_text(text)


if __name__ == "__main__":
    main()
