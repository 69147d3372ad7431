"""``workbench scale``: train, evaluate, compare, export and import ScAle scale vectors.

A vector named without a folder or suffix (``--out spatial-fix``) lives in the store,
``<store>/scales/NAME.safetensors`` + ``.json`` (its training history is in the .json); any other
value is a path.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from workbench.cli._common import console, err_console, friendly, progress_bar
from workbench.cli.sweeps import DEFAULT_STORE
from workbench.errors import WorkbenchError
from workbench.organism import DEFAULT_MODEL

app = typer.Typer(help="Train, evaluate, compare, export and import ScAle scale vectors.", no_args_is_help=True)


def vector_path(name: str, store: Path) -> Path:
    p = Path(name)
    if p.suffix in (".safetensors", ".json") or len(p.parts) > 1:
        return p
    return store / "scales" / f"{name}.safetensors"


def _probes(path: Path, split: str | None, paper_seed: int | None = None, part: str = "train"):
    """The probe set, one split of it, or one side of the paper's seeded 20/80 split (``paper_seed``)."""
    from workbench.probes.probeset import ProbeSet
    from workbench.scale.train import paper_split

    ps = ProbeSet.load(path)
    if paper_seed is not None:
        return paper_split(ps, paper_seed)[0 if part == "train" else 1]
    return ps.split(split) if split else ps


PAPER = typer.Option(None, "--paper-split", help="Seed of the paper's protocol: train on a seeded 20%, test on the other 80% "
                     "(overrides --split).")


@app.command("train")
@friendly
def train_cmd(
    model: str = typer.Option(str(DEFAULT_MODEL), "--model", help="Model folder or hub id (default: the organism)."),
    probes: Path = typer.Option(..., "--probes", help="Probe set folder to train on."),
    split: str = typer.Option("train", "--split", help="Split of the probe set to train on ('' for all)."),
    out: str = typer.Option(..., "--out", help="Vector name (kept in the store) or path."),
    mode: str = typer.Option("both", "--mode", help="attn, mlp or both."),
    positions: str = typer.Option("last", "--positions", help="last (ScAle reference) or all."),
    heads: Path = typer.Option(None, "--heads", help="Head set file (.json/.csv): train only these heads, the others stay at 1."),
    epochs: int = typer.Option(10, "--epochs"),
    batch: int = typer.Option(16, "--batch"),
    accum: int = typer.Option(1, "--accum", help="Batches per optimizer step."),
    lr: float = typer.Option(1e-3, "--lr"),
    schedule: str = typer.Option("constant", "--schedule", help="Learning rate: constant, or cosine (decays to 0 by the last epoch)."),
    s_max: float = typer.Option(10.0, "--s-max", help="Bound: effective scale in [1 − s_max, 1 + s_max]."),
    l2: float = typer.Option(1e-4, "--l2", help="L2 penalty on the raw parameters u."),
    patience: int = typer.Option(3, "--patience", help="Early stopping: epochs without a better validation loss."),
    seed: int = typer.Option(0, "--seed"),
    store: Path = typer.Option(DEFAULT_STORE, "--store", help="Store folder (env WORKBENCH_STORE)."),
    device: str = typer.Option("cpu", "--device"),
    paper_seed: int = PAPER,
) -> None:
    """Train a scale vector on a frozen model and save it (safetensors + JSON metadata)."""
    from workbench.discovery.headsets import HeadSet
    from workbench.models.devices import check_device
    from workbench.models.load import load_vlm
    from workbench.scale.train import TrainConfig, train_scales

    device = check_device(device)
    cfg = TrainConfig(mode=mode, positions=positions, s_max=s_max, lr=lr, epochs=epochs, batch=batch, accum=accum, l2=l2,
                      patience=patience, seed=seed, schedule=schedule)
    target = vector_path(out, store)
    ps = _probes(probes, split or None, paper_seed, "train")
    vlm = load_vlm(model, device=device, attn_implementation="eager")
    head_list = None
    if heads is not None:
        hs = HeadSet.load(heads)
        hs.check_model(vlm.fingerprint, vlm.name)
        head_list = list(hs.heads)
    with progress_bar(f"training ({mode}, {positions})", 1) as advance:
        def progress(p: dict) -> None:
            if p["kind"] == "step":
                advance(1, p["steps"] * epochs, f"epoch {p['epoch']}  loss {p['loss']:.3f}  acc {100 * p['accuracy']:.1f}%")
            else:
                err_console.print(f"epoch {p['epoch']}: " + ", ".join(f"{k} {v:.3f}" for k, v in p.items() if k not in ("kind", "epoch")))

        vec = train_scales(vlm, ps, cfg, heads=head_list, progress=progress)
    vec.save(target)
    m = vec.metrics
    console.print(f"{m['n_params']} trainable scales; best epoch {m['best_epoch']} ({m['stopped']}); wrote [green]{target}[/]")


@app.command("eval")
@friendly
def eval_cmd(vectors: list[str] = typer.Argument(None, help="Vector names or paths (none: the model alone)."),
             model: str = typer.Option(str(DEFAULT_MODEL), "--model"),
             probes: Path = typer.Option(..., "--probes", help="Probe set folder to evaluate on."),
             split: str = typer.Option("test", "--split", help="Split to evaluate ('' for all)."),
             store: Path = typer.Option(DEFAULT_STORE, "--store"),
             paper_seed: int = PAPER) -> None:
    """Accuracy per task and relation with each vector applied (and without any)."""
    compare_cmd(vectors or [], model, probes, split, store, None, paper_seed)


@app.command("compare")
@friendly
def compare_cmd(vectors: list[str] = typer.Argument(..., help="Vector names or paths."),
                model: str = typer.Option(str(DEFAULT_MODEL), "--model"),
                probes: Path = typer.Option(..., "--probes", help="Probe set folder to evaluate on."),
                split: str = typer.Option("test", "--split", help="Split to evaluate ('' for all)."),
                store: Path = typer.Option(DEFAULT_STORE, "--store"),
                heatmap: Path = typer.Option(None, "--heatmap", help="PNG of the attention-scale difference (second − first)."),
                paper_seed: int = PAPER) -> None:
    """A table (trainable scales, spatial and control accuracy, per relation) and a difference heatmap."""
    from workbench.evaluation import score
    from workbench.figures import heatmap_png
    from workbench.models.load import load_vlm
    from workbench.scale.vector import ScaleVector

    vecs = {v: ScaleVector.load(vector_path(v, store)) for v in vectors}
    vlm = load_vlm(model, attn_implementation="eager")
    for vec in vecs.values():
        vec.check_model(vlm.fingerprint, vlm.site.shape, vlm.name)
    ps = _probes(probes, split or None, paper_seed, "test")
    columns = {"none": (0, score(vlm, ps, backend="torch"))}
    for name, vec in vecs.items():
        columns[name] = (vec.metrics.get("n_params", "?"), score(vlm, ps, vec.interventions(), backend="torch"))
    rels = sorted({r for _, s in columns.values() for r in s.by_relation()})
    t = Table("vector", "scales", "spatial", "spatial 95% CI", "control", *rels, title=f"accuracy on {ps.name} ({len(ps)} probes)")
    for name, (n, s) in columns.items():
        bt, br = s.by_task(), s.by_relation()
        t.add_row(name, str(n), f"{100 * bt['spatial']:.1f}%" if "spatial" in bt else "–", _spatial_ci(s),
                  f"{100 * bt['control']:.1f}%" if "control" in bt else "–", *(f"{100 * br[r]:.1f}%" for r in rels))
    console.print(t)
    if heatmap is not None:
        if len(vecs) < 2:
            raise WorkbenchError("a difference heatmap needs two vectors", "pass two vector names")
        (a, va), (b, vb) = list(vecs.items())[:2]
        heatmap_png(vb.attn - va.attn, heatmap, title=f"attention scale: {b} − {a}")
        console.print(f"wrote [green]{heatmap}[/]")


def _spatial_ci(scores) -> str:
    """Bootstrap 95% interval (1,000 resamples, seeded) of spatial accuracy over the probes."""
    import torch

    from workbench.sweeps.aggregate import bootstrap_ci

    mask = torch.tensor([f == "spatial" for f in scores.families])
    if not mask.any():
        return "–"
    low, high = bootstrap_ci(scores.accuracy[mask].float()[:, None])  # [probe, 1]: one statistic
    return f"{100 * float(low[0]):.1f}–{100 * float(high[0]):.1f}"


def refuse_overwrite(paths, force: bool) -> None:
    """``probes make``'s rule for every file a command writes: an existing file stays unless ``--force``."""
    for p in paths:
        if Path(p).exists() and not force:
            raise WorkbenchError(f"{p} already exists", "choose another name or pass --force to replace it")


FORCE = typer.Option(False, "--force", help="Replace files that already exist.")


@app.command("export")
@friendly
def export_cmd(vector: str = typer.Argument(..., help="Vector name or path."),
               npy: Path = typer.Option(..., "--npy", help="Folder for eff_attn.npy and eff_mlp.npy (ScAle reference format)."),
               suffix: str = typer.Option("", "--suffix", help="File name suffix, e.g. _seed0."),
               store: Path = typer.Option(DEFAULT_STORE, "--store"),
               force: bool = FORCE) -> None:
    """Write a vector as the ScAle reference code's .npy arrays."""
    from workbench.scale.vector import ScaleVector

    refuse_overwrite([npy / f"eff_attn{suffix}.npy", npy / f"eff_mlp{suffix}.npy"], force)
    paths = ScaleVector.load(vector_path(vector, store)).to_npy(npy, suffix)
    console.print("wrote " + ", ".join(f"[green]{p}[/]" for p in paths))


@app.command("import")
@friendly
def import_cmd(out: str = typer.Option(..., "--out", help="Vector name (kept in the store) or path."),
               attn: Path = typer.Option(None, "--attn", help="eff_attn*.npy [layers, heads]."),
               mlp: Path = typer.Option(None, "--mlp", help="eff_mlp*.npy [layers]."),
               model: str = typer.Option(str(DEFAULT_MODEL), "--model", help="The model the arrays were trained on."),
               positions: str = typer.Option("last", "--positions"),
               store: Path = typer.Option(DEFAULT_STORE, "--store"),
               force: bool = FORCE) -> None:
    """Read the ScAle reference code's .npy arrays into a vector bound to --model."""
    from workbench.models.load import load_vlm
    from workbench.scale.vector import ScaleVector, read_npy, vector_files

    if attn is None and mlp is None:
        raise WorkbenchError("nothing to import", "pass --attn and/or --mlp")
    target = vector_path(out, store)
    refuse_overwrite(vector_files(target), force)
    for p in filter(None, (attn, mlp)):
        read_npy(p)  # dtype and format need no model: refuse before loading one (the shape is checked against it)
    vlm = load_vlm(model, attn_implementation="eager")
    vec = ScaleVector.from_npy(attn, mlp, model=vlm.name, model_fingerprint=vlm.fingerprint, shape=vlm.site.shape, positions=positions)
    vec.save(target)
    console.print(f"wrote [green]{target}[/]")
