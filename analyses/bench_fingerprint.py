"""What the full model fingerprint costs at 7B size, on the CPU: time, GB/s and memory.

``workbench.models.load.fingerprint`` hashes every weight byte (issue 21); the fingerprint before it
hashed 4,096 strided values per tensor (``migrate_fingerprints.sampled_fingerprint``), which missed
edits between the samples. This measures both on the language model of LLaVA-1.5-7B (Vicuna-7B:
32 layers, hidden 4096, intermediate 11008, vocab 32000; 6.74B parameters, 13.5 GB in bf16), built
as a transformers ``LlamaForCausalLM`` on the meta device and materialised in host memory with
``to_empty`` (names, shapes, dtype and config as the real model's; values are filled per tensor,
since hashing speed does not depend on them, and untouched pages would all read as one cached
zero page). One process; peak resident memory from ``/proc/self/status`` (VmHWM, reset before each
measurement where the kernel allows it).

    python analyses/bench_fingerprint.py     # writes analyses/results/bench_fingerprint.txt (needs ~15 GB free)
"""

from __future__ import annotations

import os
import platform
import ssl
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "results" / "bench_fingerprint.txt"
SHAPE = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
             num_key_value_heads=32, max_position_embeddings=4096)


def status(field: str) -> float:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (``clear_refs`` 5); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def build_7b() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SHAPE, torch_dtype="bfloat16")
    with torch.device("meta"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.to_empty(device="cpu")
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.fill_(0.001 * (i % 97 + 1))  # every page written: real memory, as a loaded model's
    return model


def measure(label: str, fn) -> dict:
    peak_resettable = reset_peak()
    rss0 = status("VmRSS")
    t0 = time.perf_counter()
    digest = fn()
    seconds = time.perf_counter() - t0
    return {"label": label, "seconds": seconds, "peak": status("VmHWM") if peak_resettable else float("nan"),
            "extra": (status("VmHWM") - rss0) if peak_resettable else float("nan"), "digest": digest}


def main() -> int:
    from migrate_fingerprints import sampled_fingerprint

    from workbench.models.load import fingerprint

    free = next(int(line.split()[1]) * 1024 / 1e9 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemAvailable:"))
    if free < 16:
        raise SystemExit(f"only {free:.1f} GB of memory available; the 7B model needs ~14.5 GB (stop other work first)")
    load = os.getloadavg()
    t0 = time.perf_counter()
    model = build_7b()
    built = time.perf_counter() - t0
    n = sum(p.numel() for p in model.parameters())
    gb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e9
    after_build = status("VmRSS")
    cores = os.cpu_count() or 1
    runs = [measure("full, 1 thread", lambda: fingerprint(model, threads=1))]
    if cores > 1:
        runs.append(measure(f"full, {cores} threads", lambda: fingerprint(model, threads=cores)))
    runs.append(measure(f"full, default ({min(8, cores)} threads), again", lambda: fingerprint(model)))
    runs.append(measure("old: 4,096 sampled values per tensor", lambda: sampled_fingerprint(model)))
    full = {r["digest"] for r in runs if r["label"].startswith("full")}
    assert len(full) == 1, "the full fingerprint must not depend on the thread count"

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    sha_ni = "sha_ni" in Path("/proc/cpuinfo").read_text()
    import numpy
    import transformers

    lines = [
        "# model fingerprint at 7B size (CPU)",
        "",
        "command:  python analyses/bench_fingerprint.py",
        f"date:     {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"machine:  {cores} cores ({cpu}{', SHA extensions' if sha_ni else ''}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB memory; "
        f"load average before the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        "(1 / 5 / 15 min; other work shares the machine)",
        f"versions: python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}, "
        f"transformers {transformers.__version__}, {ssl.OPENSSL_VERSION} (hashlib's sha256)",
        f"model:    LlamaForCausalLM, LLaVA-1.5-7B language-model shape ({SHAPE['num_hidden_layers']} layers, "
        f"hidden {SHAPE['hidden_size']}, "
        f"intermediate {SHAPE['intermediate_size']}, vocab {SHAPE['vocab_size']}), "
        f"bf16, {n / 1e9:.2f}B parameters, {gb:.2f} GB, {len(model.state_dict())} tensors",
        f"          built and filled in {built:.1f} s; resident after building {after_build:.2f} GB",
        "",
        f"| {'fingerprint':<38} | {'time (s)':>8} | {'GB/s':>6} | {'peak RSS (GB)':>13} | {'above the model (GB)':>20} |",
        f"| {'-' * 38} | {'-' * 7}: | {'-' * 5}: | {'-' * 12}: | {'-' * 19}: |",
    ]
    for r in runs:
        lines.append(f"| {r['label']:<38} | {r['seconds']:8.2f} | {gb / r['seconds']:6.2f} | {r['peak']:13.2f} "
                     f"| {r['extra']:20.3f} |")
    lines += [
        "",
        "GB/s: the model's bytes over the time (for the old one: what it would cover, it reads only 4,096 values a tensor).",
        "above the model: the peak resident memory during the call minus the resident memory just before it.",
        "Runs at the same thread count differ by what else the shared machine was doing at that moment (see the load).",
        f"full fingerprint {runs[0]['digest'][:16]}… the same for every thread count.",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
