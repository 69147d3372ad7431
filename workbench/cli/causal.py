"""``workbench causal``: direct logit attribution and path patching per head, written to CSV or JSON.

Torch-free at import like every CLI module: each command imports the model code when it runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Table

from workbench.cli._common import console, friendly
from workbench.errors import WorkbenchError
from workbench.organism import DEFAULT_MODEL

app = typer.Typer(help="Causal methods per head: direct logit attribution (dla) and path patching (path).",
                  no_args_is_help=True)
OUT_SUFFIXES = (".csv", ".json")


def _check_out(out: Path | None, force: bool) -> None:
    if out is None:
        return
    if out.suffix.lower() not in OUT_SUFFIXES:
        raise WorkbenchError(f"--out {out} is neither .csv nor .json", "name the file e.g. dla.csv or dla.json")
    if out.exists() and not force:
        raise WorkbenchError(f"{out} already exists", "choose another --out or pass --force to replace it")
    if not out.parent.is_dir():
        raise WorkbenchError(f"the folder of --out {out} does not exist", "create it first or choose another --out")


def _load(model: str, probes: Path, split: str | None, device: str, dtype: str, limit: int | None, pairs_only: bool):
    """(vlm, probe set, items): everything that needs no model is checked before the load."""
    from workbench.models.devices import check_device
    from workbench.models.load import load_vlm, resolve_dtype
    from workbench.probes.probeset import ProbeSet

    if limit is not None and limit <= 0:
        raise WorkbenchError(f"--limit must be positive, got {limit}", "pass --limit 1 or more, or leave it out")
    device = check_device(device)
    resolve_dtype(dtype)
    ps = ProbeSet.load(probes)
    if split:
        ps = ps.split(split)
    items = list(ps.items)
    if pairs_only:
        items = [it for it in items if it.has_counterfactual]
        if not items:
            raise WorkbenchError(f"no probe of {ps.name!r} has a counterfactual partner, so none can be path-patched",
                                 "use spatial probes of a generated probe set (workbench probes make)")
    items = items[:limit] if limit else items
    with console.status(f"loading {model}"):
        vlm = load_vlm(model, device=device, dtype=dtype)
    return vlm, ps, items


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def _write(out: Path, rows: list[dict], summary: dict) -> None:
    import csv

    from workbench.fileio import atomic_write

    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["probe_id"])
            w.writeheader()
            w.writerows(rows)

    def write_json(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump({**summary, "rows": rows}, f, allow_nan=False,
                      default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o))

    if out.suffix.lower() == ".csv":
        atomic_write(out, write_csv)
    else:
        for r in rows:  # JSON has no NaN: a dropped probe is null
            for k, v in r.items():
                if isinstance(v, float) and math.isnan(v):
                    r[k] = None
        atomic_write(out, write_json)
    console.print(f"wrote {len(rows)} rows to {out}", highlight=False, markup=False)


def _top(mean, title: str, n: int, label: str) -> Table:
    """The n heads with the largest |mean| (``mean [layer, head]``, NaN skipped)."""
    console.print(title, highlight=False, markup=False, soft_wrap=True)
    t = Table("head", label)
    cells = [(float(mean[layer, head]), layer, head) for layer in range(mean.shape[0]) for head in range(mean.shape[1])
             if not math.isnan(float(mean[layer, head]))]
    for value, layer, head in sorted(cells, key=lambda c: -abs(c[0]))[:n]:
        t.add_row(f"L{layer}H{head}", f"{value:+.4f}")
    return t


COMMON = dict(
    model=typer.Option(str(DEFAULT_MODEL), "--model", help="Model folder or hub id (default: the organism)."),
    probes=typer.Option(..., "--probes", help="A probe set folder (workbench probes make)."),
    split=typer.Option(None, "--split", help="Only this split of the probe set (train or test)."),
    limit=typer.Option(None, "--limit", help="Only the first N probes (after --split)."),
    out=typer.Option(None, "--out", help="Write per-probe scores here: .csv (long form) or .json."),
    force=typer.Option(False, "--force", help="Replace --out if it exists."),
    top=typer.Option(10, "--top", help="How many heads to print."),
    batch_size=typer.Option(16, "--batch-size", help="Probes per forward pass."),
    device=typer.Option("cpu", "--device", help="cpu, cuda, …"),
    dtype=typer.Option("float32", "--dtype", help="float32, bfloat16 or float16 (DLA is exact to ~1e-6 in float32)."),
)


@app.command("dla")
@friendly
def dla_cmd(model: str = COMMON["model"], probes: Path = COMMON["probes"], split: str = COMMON["split"],
            limit: int = COMMON["limit"], out: Path = COMMON["out"], force: bool = COMMON["force"], top: int = COMMON["top"],
            batch_size: int = COMMON["batch_size"], device: str = COMMON["device"], dtype: str = COMMON["dtype"]) -> None:
    """Direct logit attribution: each head's, MLP's and the embeddings' share of logit[answer] − logit[foil] at the last
    token (final norm's scale frozen from the clean run; the terms sum to the logit difference). The foil is the
    counterfactual's answer for probes that have one, else the best wrong option on the clean run."""
    _check_out(out, force)
    from workbench.causal.dla import direct_logit_attribution

    vlm, ps, items = _load(model, probes, split, device, dtype, limit, pairs_only=False)
    r = direct_logit_attribution(vlm, ps, items, batch_size=batch_size)
    console.print(f"{len(r)} probes · mean LD {float(r.logit_diff.mean()):+.4f} · decomposition error {r.error:.2e} "
                  f"(norms frozen: {', '.join(r.frozen_norms)})", highlight=False, markup=False, soft_wrap=True)
    mean_mlp = r.mlp.mean(0)
    console.print("mean MLP terms: " + ", ".join(f"L{i} {float(v):+.3f}" for i, v in enumerate(mean_mlp))
                  + f"; embeddings {float(r.embed.mean()):+.3f}", highlight=False, markup=False, soft_wrap=True)
    console.print(_top(r.heads.mean(0), f"{vlm.name} · {ps.name} · direct logit attribution (mean over probes)", top,
                       "mean DLA"))
    if out is not None:
        summary = dict(kind="dla", model=vlm.name, probes=ps.name, n_probes=len(r), error=r.error,
                       frozen_norms=list(r.frozen_norms), mean=r.heads.mean(0).tolist(), mean_mlp=mean_mlp.tolist(),
                       mean_embed=float(r.embed.mean()))
        _write(out, r.rows(), summary)


@app.command("path")
@friendly
def path_cmd(model: str = COMMON["model"], probes: Path = COMMON["probes"], split: str = COMMON["split"],
             limit: int = COMMON["limit"], out: Path = COMMON["out"], force: bool = COMMON["force"], top: int = COMMON["top"],
             batch_size: int = COMMON["batch_size"], device: str = COMMON["device"], dtype: str = COMMON["dtype"],
             receivers: str = typer.Option("logits", "--receivers", help="logits, or receiver heads e.g. L4H1,L5H0."),
             senders: str = typer.Option(None, "--senders", help="Sender heads e.g. L0H3,L1H2 (default: every head)."),
             direction: str = typer.Option("noising", "--direction", help="noising (base = clean) or denoising."),
             freeze_mlps: bool = typer.Option(False, "--freeze-mlps", help="Freeze the MLPs too (direct paths only)."),
             min_gap: float = typer.Option(0.0, "--min-gap", help="Drop probes whose two runs' LDs differ by less."),
             engine: str = typer.Option("auto", "--engine", help="auto, packed (senders as packed last-token copies) "
                                        "or naive (one forward per sender); the same numbers.")) -> None:
    """Path patching at the last token: each sender head's effect through the receivers alone (every other head frozen
    to the base run), as the normalized effect (LD_patched − LD_base) / (LD_source − LD_base). Probes without a
    counterfactual partner are skipped."""
    _check_out(out, force)
    from workbench.causal.pairs import check_direction
    from workbench.jobs.params import parse_heads

    check_direction(direction)
    if engine not in ("auto", "packed", "naive"):
        raise WorkbenchError(f"unknown engine {engine!r}", "choose from: auto, packed, naive")
    recv = "logits" if receivers.strip().lower() == "logits" else [tuple(h) for h in parse_heads(receivers)]
    send = None if senders is None else [tuple(h) for h in parse_heads(senders)]
    from workbench.causal.path import path_patch

    vlm, ps, items = _load(model, probes, split, device, dtype, limit, pairs_only=True)
    r = path_patch(vlm, ps, recv, items, direction=direction, senders=send, freeze_mlps=freeze_mlps, batch_size=batch_size,
                   min_gap=min_gap, engine=engine)
    kept = int((~r.effect.isnan().all(2).all(1)).sum())
    to = "logits" if recv == "logits" else ", ".join(f"L{a}H{b}" for a, b in recv)
    console.print(f"{len(r)} pairs ({direction}), {kept} kept · receivers {to} · MLPs "
                  f"{'frozen' if freeze_mlps else 'recomputed'}", highlight=False, markup=False, soft_wrap=True)
    console.print(_top(r.mean(), f"{vlm.name} · {ps.name} · path patching → {to} (mean normalized effect)", top,
                       "mean effect"))
    if out is not None:
        summary = dict(kind="path", model=vlm.name, probes=ps.name, n_probes=len(r), direction=direction,
                       receivers="logits" if recv == "logits" else [list(h) for h in recv], freeze_mlps=freeze_mlps,
                       mean=[[_finite(float(v)) for v in row] for row in r.mean()])
        _write(out, r.rows(), summary)
