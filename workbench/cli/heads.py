"""``workbench heads``: export discovered head sets from stored sweeps, and check imported ones."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from workbench.cli._common import console, friendly
from workbench.cli.sweeps import DEFAULT_STORE
from workbench.errors import WorkbenchError
from workbench.organism import DEFAULT_MODEL

app = typer.Typer(help="Export and import discovered head sets (JSON or CSV).", no_args_is_help=True)


@app.command("export")
@friendly
def export(sweep: str = typer.Option(..., "--sweep", help="Key (or unique prefix) of a stored head sweep."),
           out: Path = typer.Option(..., "--out", help="File to write: .json or .csv."),
           k: int = typer.Option(8, "--k", help="How many heads."),
           alpha: float = typer.Option(0.0, "--alpha", help="Which α of the sweep ranks the heads."),
           store: Path = typer.Option(DEFAULT_STORE, "--store", help="Effect store folder."),
           force: bool = typer.Option(False, "--force", help="Replace --out if it exists.")) -> None:
    """Rank heads by how much scaling them to α lowers the metric (mean over the sweep's probes) and save the top k."""
    import torch

    from workbench.discovery.headsets import top_heads
    from workbench.store.effects import EffectStore

    if out.exists() and not force:
        raise WorkbenchError(f"{out} already exists", "choose another --out or pass --force to replace it")
    st = EffectStore.existing(store)
    key = st.resolve(sweep)
    m = st.manifest(key)
    if m["spec"]["target"] != "heads":
        raise WorkbenchError(f"sweep {key[:12]} scaled MLPs, not heads", "export from a head sweep")
    frame = st.read(key)
    frame = frame[frame["alpha"] == alpha]
    if frame.empty:
        raise WorkbenchError(f"sweep {key[:12]} has no α = {alpha:g}", f"choose one of {m['spec']['alphas']}")
    means = frame.groupby(["layer", "head"])["value"].mean()
    layers, heads = m["shape"]
    scores = torch.zeros(layers, heads)
    for (layer, head), v in means.items():
        scores[layer, head] = -float(v)
    hs = top_heads(scores, k, m["model"], m["model_fingerprint"], f"sweep:{m['spec']['metric']}@alpha={alpha:g}:{key[:12]}")
    hs.save(out)
    _show(hs)
    console.print(f"wrote [green]{out}[/]")


@app.command("import")
@friendly
def import_(path: Path = typer.Argument(..., help="A head set (.json or .csv)."),
            model: str = typer.Option(str(DEFAULT_MODEL), "--model",
                                      help="The model it must belong to (default: the organism).")) -> None:
    """Validate a head set against a model and show it (a set for another model is refused)."""
    from workbench.discovery.headsets import HeadSet
    from workbench.models.load import load_vlm

    hs = HeadSet.load(path)
    vlm = load_vlm(model)
    hs.check_model(vlm.fingerprint, vlm.name)
    for layer, head in hs.heads:
        vlm.site.check_head(layer, head)
    _show(hs)


def _show(hs) -> None:
    t = Table("head", "score", title=f"{hs.method} · {hs.model}")
    for (layer, head), s in zip(hs.heads, hs.scores):
        t.add_row(f"L{layer}H{head}", f"{s:+.4f}")
    console.print(t)
