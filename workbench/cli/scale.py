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


def _probes(path: Path, split: str | None, paper_seed: int | None = None, part: str = "train", paper_task: str | None = None):
    """The probe set, one split of it, or one side of the ScAle reference's per-task 20/80 split (``paper_seed``;
    ``paper_task``: that task's side only, else every drawn task's pooled; see :mod:`workbench.scale.split`)."""
    from workbench.probes.probeset import ProbeSet
    from workbench.scale.split import reference_split

    if paper_task and paper_seed is None:
        raise WorkbenchError("--paper-task picks one task of the paper split", "add --paper-split SEED")
    ps = ProbeSet.load(path)
    if paper_seed is not None:
        return reference_split(ps, paper_seed, paper_task or None)[0 if part == "train" else 1]
    return ps.split(split) if split else ps


def _task_target(out: str, task: str) -> str:
    """``NAME`` → ``NAME-task``; ``dir/NAME.safetensors`` → ``dir/NAME-task.safetensors``."""
    p = Path(out)
    if p.suffix in (".safetensors", ".json"):
        return str(p.with_name(f"{p.stem}-{task}.safetensors"))
    return f"{out}-{task}"


def _train_per_task(train, args: dict) -> None:
    """``train --per-task``: one ``train`` run (and vector ``NAME-<task>``) per task of the paper split, as the
    reference trains them; every task's split is checked before the first is trained."""
    from workbench.probes.probeset import ProbeSet
    from workbench.scale.split import per_task_splits

    if args["paper_seed"] is None:
        raise WorkbenchError("--per-task trains one vector per task of the paper split", "add --paper-split SEED")
    if args["paper_task"]:
        raise WorkbenchError("--per-task trains every task, --paper-task one", "pass one of them")
    for task in per_task_splits(ProbeSet.load(args["probes"]), args["paper_seed"]):
        train(**{**args, "out": _task_target(args["out"], task), "per_task": False, "paper_task": task})


PAPER = typer.Option(None, "--paper-split", help="Seed of the ScAle reference's split (0, 1, 2): per task, a seeded 20% to "
                     "train on and the other 80% to test, exactly the reference's indices for SpatialEval (overrides --split).")
PAPER_TASK = typer.Option(None, "--paper-task", help="With --paper-split: that task's 20% / 80% only (e.g. spatialmap); "
                          "default: every task's pooled.")


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
    schedule: str = typer.Option("constant", "--schedule",
                                 help="Learning rate: constant, or cosine (decays to 0 by the last epoch)."),
    s_max: float = typer.Option(10.0, "--s-max", help="Bound: effective scale in [1 − s_max, 1 + s_max]."),
    l2: float = typer.Option(1e-4, "--l2", help="L2 penalty on the raw parameters u."),
    patience: int = typer.Option(3, "--patience", help="Early stopping: epochs without a better validation loss."),
    seed: int = typer.Option(0, "--seed"),
    store: Path = typer.Option(DEFAULT_STORE, "--store", help="Store folder (env WORKBENCH_STORE)."),
    device: str = typer.Option("cpu", "--device"),
    paper_seed: int = PAPER,
    paper_task: str = PAPER_TASK,
    per_task: bool = typer.Option(False, "--per-task", help="With --paper-split: one vector per task, NAME-<task>, each "
                                  "trained on its task's 20% (the reference's runs)."),
) -> None:
    """Train a scale vector on a frozen model and save it (safetensors + JSON metadata)."""
    if per_task:
        return _train_per_task(train_cmd, dict(locals()))
    from workbench.discovery.headsets import HeadSet
    from workbench.models.devices import check_device
    from workbench.models.load import load_vlm
    from workbench.scale.train import TrainConfig, train_scales

    device = check_device(device)
    cfg = TrainConfig(mode=mode, positions=positions, s_max=s_max, lr=lr, epochs=epochs, batch=batch, accum=accum, l2=l2,
                      patience=patience, seed=seed, schedule=schedule)
    target = vector_path(out, store)
    ps = _probes(probes, split or None, paper_seed, "train", paper_task)
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
                err_console.print(f"epoch {p['epoch']}: " + ", ".join(f"{k} {v:.3f}" for k, v in p.items()
                                                                      if k not in ("kind", "epoch")))

        vec = train_scales(vlm, ps, cfg, heads=head_list, progress=progress)
    if paper_seed is not None:
        vec.extra["paper_split"] = {"seed": paper_seed, "task": paper_task or "all", "train_probes": ps.name, "n_train": len(ps)}
    test = _test_probes(probes, split or None, paper_seed, paper_task)
    if test is not None:  # before / after on the held-out side, spatial and control (the app's vector list and Compare show it)
        from workbench.scale.train import evaluate_vector

        vec.metrics["eval"] = evaluate_vector(vlm, vec, test)
    vec.save(target)
    m = vec.metrics
    console.print(f"{m['n_params']} trainable scales; best epoch {m['best_epoch']} ({m['stopped']}); wrote [green]{target}[/]")
    console.print(_eval_line(m.get("eval")))


def _test_probes(path: Path, split: str | None, paper_seed: int | None, paper_task: str | None):
    """What a trained vector is scored on: the paper split's test side, else the set's test split when training read
    another split; None when there is no held-out side (training on all probes, or a set without a test split)."""
    from workbench.probes.probeset import ProbeSet

    if paper_seed is not None:
        return _probes(path, None, paper_seed, "test", paper_task)
    if split is None or split == "test":
        return None
    ps = ProbeSet.load(path)
    return ps.split("test") if any(it.split == "test" for it in ps.items) else None


def _eval_line(ev: dict | None) -> str:
    """"test probes NAME (N): spatial 54.4% → 100.0%, control 99.6% → 100.0%" or why nothing was measured."""
    if not ev:
        return "accuracy not measured (no test split held out); score it with `workbench scale eval`"
    pct = lambda x: "not measured" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    return (f"test probes {ev['probes']} ({ev['n']}): " + ", ".join(
        f"{f} {pct(ev['before'].get(f))} → {pct(ev['after'].get(f))}" for f in ("spatial", "control")))


@app.command("eval")
@friendly
def eval_cmd(vectors: list[str] = typer.Argument(None, help="Vector names or paths (none: the model alone)."),
             model: str = typer.Option(str(DEFAULT_MODEL), "--model"),
             probes: Path = typer.Option(..., "--probes", help="Probe set folder to evaluate on."),
             split: str = typer.Option("test", "--split", help="Split to evaluate ('' for all)."),
             store: Path = typer.Option(DEFAULT_STORE, "--store"),
             paper_seed: int = PAPER,
             paper_task: str = PAPER_TASK) -> None:
    """Accuracy per task and relation with each vector applied (and without any)."""
    compare_cmd(vectors or [], model, probes, split, store, None, paper_seed, paper_task)


@app.command("compare")
@friendly
def compare_cmd(vectors: list[str] = typer.Argument(..., help="Vector names or paths."),
                model: str = typer.Option(str(DEFAULT_MODEL), "--model"),
                probes: Path = typer.Option(..., "--probes", help="Probe set folder to evaluate on."),
                split: str = typer.Option("test", "--split", help="Split to evaluate ('' for all)."),
                store: Path = typer.Option(DEFAULT_STORE, "--store"),
                heatmap: Path = typer.Option(None, "--heatmap", help="PNG of the attention-scale difference (second − first)."),
                paper_seed: int = PAPER,
                paper_task: str = PAPER_TASK) -> None:
    """A table (trainable scales, spatial and control accuracy, per relation) and a difference heatmap."""
    from workbench.evaluation import score
    from workbench.figures import heatmap_png
    from workbench.models.load import load_vlm
    from workbench.scale.vector import ScaleVector

    vecs = {v: ScaleVector.load(vector_path(v, store)) for v in vectors}
    vlm = load_vlm(model, attn_implementation="eager")
    for vec in vecs.values():
        vec.check_model(vlm.fingerprint, vlm.site.shape, vlm.name)
    ps = _probes(probes, split or None, paper_seed, "test", paper_task)
    columns = {"none": (0, score(vlm, ps, backend="torch"))}
    for name, vec in vecs.items():
        columns[name] = (vec.metrics.get("n_params", "?"), score(vlm, ps, vec.interventions(), backend="torch"))
    rels = sorted({r for _, s in columns.values() for r in s.by_relation()})
    t = Table("vector", "scales", "spatial", "spatial 95% CI", "control", *rels,
              title=f"accuracy on {ps.name} ({len(ps)} probes)")
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
               npy: Path = typer.Option(..., "--npy",
                                        help="Folder for eff_attn{suffix}.npy / eff_mlp{suffix}.npy (ScAle reference format)."),
               suffix: str = typer.Option("", "--suffix",
                                          help="File name suffix: _final gives the reference's final names; e.g. _seed0."),
               allow_all_positions: bool = typer.Option(False, "--allow-all-positions",
                                                        help="Write an all-positions vector anyway "
                                                             "(the reference applies the arrays at the last token only); a "
                                                             "workbench_export{suffix}.json beside them records positions=all."),
               store: Path = typer.Option(DEFAULT_STORE, "--store"),
               force: bool = FORCE) -> None:
    """Write a vector as the ScAle reference code's .npy arrays: one per trained part (mode attn: no eff_mlp file),
    applied by the reference at the last token (an all-positions vector is refused unless --allow-all-positions)."""
    from workbench.scale.vector import ScaleVector

    vec = ScaleVector.load(vector_path(vector, store))
    vec.check_reference(suffix, allow_all_positions)
    refuse_overwrite(vec.npy_files(npy, suffix), force)
    paths = vec.to_npy(npy, suffix, allow_all_positions=allow_all_positions)
    console.print("wrote " + ", ".join(f"[green]{p}[/]" for p in paths))
    if vec.positions != "last":
        err_console.print(f"[yellow]warning:[/] {vector} scales every token; the ScAle reference applies these "
                          "arrays at the last token only", highlight=False)


@app.command("import")
@friendly
def import_cmd(out: str = typer.Option(..., "--out", help="Vector name (kept in the store) or path."),
               run_dir: Path = typer.Option(None, "--from", help="A ScAle run folder (eff_attn_final.npy, eff_mlp_final.npy, "
                                                                 "epoch_scales/) or a `scale export` folder."),
               epoch: int = typer.Option(None, "--epoch", help="With --from: the scales saved after epoch N "
                                                               "(epoch_scales/eff_*_epochN.npy); default: the final ones."),
               attn: Path = typer.Option(None, "--attn", help="eff_attn*.npy [layers, heads]."),
               mlp: Path = typer.Option(None, "--mlp", help="eff_mlp*.npy [layers]."),
               model: str = typer.Option(str(DEFAULT_MODEL), "--model", help="The model the arrays were trained on."),
               store: Path = typer.Option(DEFAULT_STORE, "--store"),
               force: bool = FORCE) -> None:
    """Read the ScAle reference code's .npy arrays into a vector bound to --model.

    Mode: what the files present say (attn only: mode attn, the MLP at 1). Positions: last, where the reference
    applies them, unless a workbench_export*.json beside them (an --allow-all-positions export) records all."""
    from workbench.models.load import load_vlm
    from workbench.scale.vector import ScaleVector, export_meta, read_npy, reference_files, vector_files

    if run_dir is not None and (attn is not None or mlp is not None):
        raise WorkbenchError("--from names the files itself", "pass --from DIR, or --attn / --mlp files, not both")
    if epoch is not None and run_dir is None:
        raise WorkbenchError("--epoch picks files inside a run folder", "add --from DIR")
    if run_dir is not None:
        attn, mlp = reference_files(run_dir, epoch)
    if attn is None and mlp is None:
        raise WorkbenchError("nothing to import", "pass --from DIR, or --attn and/or --mlp")
    target = vector_path(out, store)
    refuse_overwrite(vector_files(target), force)
    for p in filter(None, (attn, mlp)):
        read_npy(p)  # dtype and format need no model: refuse before loading one (the shape is checked against it)
    export_meta(attn or mlp)
    vlm = load_vlm(model, attn_implementation="eager")
    vec = ScaleVector.from_npy(attn, mlp, model=vlm.name, model_fingerprint=vlm.fingerprint, shape=vlm.site.shape)
    vec.save(target)
    console.print(f"wrote [green]{target}[/] (mode {vec.mode}, positions {vec.positions}"
                  f"{f', epoch {epoch}' if epoch is not None else ''})")
