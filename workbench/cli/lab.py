"""``workbench lab``: make organisms. Train (in stages and installments), build a data pool, export a checkpoint
as a stage's folder, plant the spatial deficit; each trained or planted folder gets its model card.

The commands that *use* the shipped organism stay under ``workbench organism`` (``eval``). The library work
lives in :mod:`workbench.lab`; like every CLI module, this one imports it (and torch) only inside commands.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from workbench.cli._common import console, err_console, friendly
from workbench.errors import WorkbenchError
from workbench.organism import DEFAULT_MODEL, DEFICIT_MODEL

app = typer.Typer(help="Make organisms: train (staged, resumable), build a data pool, export a checkpoint, plant the "
                       "spatial deficit, with their model cards.", no_args_is_help=True)


@app.command("train")
@friendly
def train_cmd(
    out: Path = typer.Option(DEFAULT_MODEL, "--out", help="Model folder to write."),
    steps: int = typer.Option(None, "--steps", help="Optimizer steps (default: the shipped recipe's)."),
    batch: int = typer.Option(None, "--batch", help="Batch size (default: the shipped recipe's)."),
    n_train: int = typer.Option(None, "--n-train", help="Training probes (default: the shipped recipe's)."),
    lr: float = typer.Option(None, "--lr", help="AdamW learning rate (default: the shipped recipe's)."),
    warmup: int = typer.Option(None, "--warmup", help="Learning-rate warm-up steps (default: the shipped recipe's)."),
    patch_loss: float = typer.Option(None, "--patch-loss",
                                     help="Weight of the auxiliary patch loss (color, shape, row and column read from each image "
                                          "token); 0: off."),
    where_loss: float = typer.Option(None, "--where-loss",
                                     help="Weight of the language model's auxiliary read-out (the rows and columns of the two "
                                          "objects a spatial question names); 0: off."),
    label_smoothing: float = typer.Option(None, "--label-smoothing",
                                          help="Label smoothing of the answer loss (e.g. 0.1); 0: off."),
    confidence: float = typer.Option(None, "--confidence",
                                     help="After training, scale the logits so that the right answer's mean probability on fresh "
                                          "scenes is this (e.g. 0.999; undoes label smoothing's under-confidence, changes no "
                                          "prediction); 0: off."),
    data: str = typer.Option(None, "--data", help="set: one generated probe set; pool: chunked streams rendered by every CPU."),
    init: Path = typer.Option(None, "--init",
                              help="Start from this organism folder's weights (a staged recipe's earlier stage) "
                                   "instead of fresh ones."),
    pool: Path = typer.Option(None, "--pool", help="With --data pool: load the pool from this folder, or save it there."),
    seed: int = typer.Option(0, "--seed", help="Seed for data, initialisation and batch order."),
    device: str = typer.Option("auto", "--device", help="auto (GPU if present), cpu, cuda, cuda:1, …"),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    checkpoint: Path = typer.Option(None, "--checkpoint",
                                    help="Save the training state here at every evaluation; resume from it if present."),
    stop_after: int = typer.Option(None, "--stop-after",
                                   help="Stop (after checkpointing) at this step, to train in installments."),
) -> None:
    """Train the organism from scratch on the probe generator and write its folder and model card.

    Every option left out takes the shipped recipe's value (``OrganismConfig``'s defaults). Long CPU
    runs can be done in installments: pass --checkpoint (and --stop-after), then run the same command
    again to continue; the result equals an uninterrupted run."""
    from dataclasses import replace

    from workbench.cli._common import progress_bar
    from workbench.lab.config import OrganismConfig
    from workbench.lab.model import pick_device
    from workbench.lab.train import train
    from workbench.models.devices import check_device

    values = locals()
    given = {**{k: values[k] for k in train_fields()}, "init": str(init) if init is not None else None}
    cfg = replace(OrganismConfig(seed=seed), **{k: v for k, v in given.items() if v is not None})
    if cfg.steps <= 0 or cfg.batch <= 0 or cfg.n_train < cfg.batch:
        raise WorkbenchError("--steps and --batch must be positive and --n-train at least --batch",
                             "e.g. --steps 4000 --batch 256")
    pick_device(device if device == "auto" else check_device(device))
    if out.exists() and not force:
        raise WorkbenchError(f"{out} already exists", "choose another --out or pass --force to replace it")
    tmp = out.with_name(f".{out.name}.training")
    with progress_bar("training", cfg.steps) as advance:
        last = [0]

        def progress(step: int, point: dict) -> None:
            advance(step - last[0])
            last[0] = step

        summary = train(cfg, tmp, device=device, log=lambda m: err_console.print(m), progress=progress, checkpoint=checkpoint,
                        stop_after=stop_after, pool_dir=pool)
    if summary is None:
        console.print(f"stopped at step {stop_after or 0}+; run the same command again to continue from [green]{checkpoint}[/]")
        return
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in given.items() if v is not None]
    command = " ".join(["workbench lab train", f"--out {out}", f"--seed {seed}", *flags, "--force"])
    finish(tmp, out, summary, command)


def train_fields() -> tuple[str, ...]:
    """The recipe fields (``OrganismConfig``) that ``workbench lab train`` takes as options, in its order, without
    ``seed`` and ``init`` (given to every stage): read from the command's own signature, so a model card's
    retrain commands (:func:`workbench.lab.card.recipe_commands`) use exactly the options that exist."""
    from dataclasses import fields

    from workbench.lab.config import OrganismConfig

    recipe = {f.name for f in fields(OrganismConfig)} - {"seed", "init"}
    return tuple(p for p in inspect.signature(train_cmd).parameters if p in recipe)


def finish(trained: Path, out: Path, summary: dict, command: str) -> None:
    """Score a freshly trained folder, write its model card, and move it into place at ``out``."""
    from workbench.evaluation import score
    from workbench.lab.card import intact_card
    from workbench.lab.config import OrganismConfig
    from workbench.models.load import load_vlm
    from workbench.organism.probesets import eval_probes, fresh_probes

    cfg = OrganismConfig(**summary["config"])
    vlm = load_vlm(trained, attn_implementation="eager")
    scores, fresh = score(vlm, eval_probes(cfg.seed, cfg)), score(vlm, fresh_probes(cfg.seed, cfg))
    (trained / "README.md").write_text(intact_card(summary, scores, command, fresh, out=str(out)))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    trained.rename(out)
    print_scores({"held-out": scores.by_task(), "fresh scenes": fresh.by_task()})
    console.print(f"wrote [green]{out}[/]")


@app.command("pool")
@friendly
def pool_cmd(
    folder: Path = typer.Option(..., "--dir", help="Folder to write the pool to (pixels.npy, meta.pt)."),
    n_train: int = typer.Option(None, "--n-train", help="Training items (default: the shipped recipe's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the recipe the pool is for."),
    workers: int = typer.Option(0, "--workers", help="Rendering processes; 0: one per CPU (the pool is the same for any)."),
) -> None:
    """Render a recipe's training pool once, for runs to share: workbench lab train --data pool --pool DIR."""
    import time

    from workbench.lab.config import OrganismConfig
    from workbench.lab.train import build_pool

    cfg = OrganismConfig(seed=seed, **({"n_train": n_train} if n_train is not None else {}))
    if cfg.n_train <= 0 or workers < 0:
        raise WorkbenchError("--n-train must be positive and --workers at least 0", "e.g. --n-train 500000 --workers 0")
    t = time.time()
    build_pool(cfg, folder, workers=workers, log=lambda m: err_console.print(m))
    console.print(f"pool of {cfg.n_train:,} items in [green]{folder}[/]: {time.time() - t:.0f}s")


@app.command("export")
@friendly
def export_cmd(
    ckpt: Path = typer.Argument(..., help="A training checkpoint (--checkpoint of `lab train`)."),
    folder: Path = typer.Argument(..., help="The organism folder to write (a later stage's --init)."),
) -> None:
    """Write a checkpoint's model as an organism folder, with its config and curve so far in training.json."""
    from workbench.lab.stages import export

    state = export(ckpt, folder)
    console.print(f"{ckpt} (step {state['step']}) written to [green]{folder}[/]")


@app.command("plant")
@friendly
def plant_cmd(
    intact: Path = typer.Option(DEFAULT_MODEL, "--intact", help="The intact organism folder."),
    out: Path = typer.Option(DEFICIT_MODEL, "--out", help="Deficit model folder to write (replaced if present)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the selection probes."),
    min_drop: float = typer.Option(0.30, "--min-drop", help="Spatial accuracy drop the heads must cause on the selection set."),
    control_budget: float = typer.Option(0.02, "--control-budget",
                                         help="Largest allowed drop of any control task there (the held-out target is 3 points: "
                                              "keep a margin)."),
    factors: str = typer.Option("0.1,0.2,0.3", "--factors", help="Factors to try, strongest first."),
) -> None:
    """Choose spatial heads by ablation, turn them down, write the deficit model, planted.json and card."""
    from workbench.cli._common import parse_list
    from workbench.evaluation import score
    from workbench.lab.card import deficit_card
    from workbench.lab.deficit import plant
    from workbench.models.load import load_vlm
    from workbench.organism.probesets import eval_probes

    if not (intact / "config.json").is_file():
        raise WorkbenchError(f"{intact} is not a model folder", "train one with `workbench lab train`")
    ev = eval_probes()  # the fixed held-out set, whatever the selection seed
    try:
        fs = tuple(float(f) for f in parse_list(factors, "factors"))
    except ValueError:
        raise WorkbenchError(f"--factors must be numbers, got {factors!r}", "e.g. --factors 0.1,0.2") from None
    if not all(0.1 <= f <= 0.3 for f in fs):
        raise WorkbenchError(f"factors must lie in [0.1, 0.3], got {factors!r}", "e.g. --factors 0.1,0.2")
    record = plant(intact, out, seed, log=lambda m: err_console.print(m), factors=fs, control_budget=control_budget,
                   min_drop=min_drop)
    a = score(load_vlm(intact, attn_implementation="eager"), ev)
    d = score(load_vlm(out, attn_implementation="eager"), ev)
    (out / "README.md").write_text(deficit_card(a, d, record))
    print_scores({"intact": a.by_task(), "deficit": d.by_task()})
    console.print(f"wrote [green]{out}[/] (ground truth in planted.json)")


def print_scores(columns: dict[str, dict[str, float]]) -> None:
    """One table of held-out accuracies, a column per model (task → fraction)."""
    from rich.table import Table

    t = Table("task", *columns, title="held-out accuracy (500 probes)")
    for k in next(iter(columns.values())):
        t.add_row(k, *(f"{100 * c[k]:.1f}%" for c in columns.values()))
    console.print(t)


# `workbench organism train|plant`, the names before this group existed: the shipped model cards and the training
# records in analyses/results/ print them, so they keep working (hidden from --help)
ALIASES = {"train": train_cmd, "plant": plant_cmd}
