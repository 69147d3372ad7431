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
    """Rank heads by the sweep's family (mean over the sweep's probes; a probe a patching sweep dropped is left out) and
    save the top k: a scale sweep by how much scaling them to α lowers the metric, a patching sweep by normalized
    effect, largest first (its one α needs no --alpha). The file's ``method`` names the rule."""
    from workbench import axis
    from workbench.discovery.headsets import sweep_ranking, top_heads
    from workbench.store.effects import EffectStore
    from workbench.sweeps import aggregate

    if out.exists() and not force:
        raise WorkbenchError(f"{out} already exists", "choose another --out or pass --force to replace it")
    st = EffectStore.existing(store)
    key = st.resolve(sweep)
    m = st.manifest(key)
    fam = axis.family(m["spec"].get("intervention", "scale"))
    alphas = [float(a) for a in m["spec"]["alphas"]]
    if not fam.has_alpha:
        alpha = alphas[0]  # patching: the one α (fully patched)
    sign, method = sweep_ranking(m["spec"], alpha, key)  # refuses a per-layer kind (MLPs): a head set holds heads
    if alpha not in alphas:
        raise WorkbenchError(f"sweep {key[:12]} has no α = {alpha:g}", f"choose one of {m['spec']['alphas']}")
    dense = st.read_dense(key)  # [probe, alpha, layer, head]
    hs = top_heads(sign * aggregate.mean(dense.values[:, alphas.index(alpha)]), k, m["model"], m["model_fingerprint"],
                   method)
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
    from workbench import axis

    t = Table("head", "score", title=f"{hs.method} · {hs.model}")
    for (layer, head), s in zip(hs.heads, hs.scores):
        t.add_row(axis.HEADS.label(layer, head), f"{s:+.4f}")
    console.print(t)
