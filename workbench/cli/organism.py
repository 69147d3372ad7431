"""``workbench organism``: train the organism, plant its deficit, evaluate either."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from workbench.cli._common import console, err_console, friendly
from workbench.errors import WorkbenchError
from workbench.organism import DEFAULT_MODEL, DEFICIT_MODEL

app = typer.Typer(help="Train the organism (a small LLaVA), plant its spatial deficit, evaluate them.", no_args_is_help=True)


@app.command("train")
@friendly
def train_cmd(
    out: Path = typer.Option(DEFAULT_MODEL, "--out", help="Model folder to write."),
    steps: int = typer.Option(None, "--steps", help="Optimizer steps (default: the shipped recipe's)."),
    batch: int = typer.Option(None, "--batch", help="Batch size (default: the shipped recipe's)."),
    n_train: int = typer.Option(None, "--n-train", help="Training probes (default: the shipped recipe's)."),
    lr: float = typer.Option(None, "--lr", help="AdamW learning rate (default: the shipped recipe's)."),
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
    warmup: int = typer.Option(None, "--warmup", help="Learning-rate warm-up steps (default: the shipped recipe's)."),
    init: Path = typer.Option(None, "--init",
                              help="Start from this organism folder's weights (a staged recipe's earlier stage) "
                                   "instead of fresh ones."),
    data: str = typer.Option(None, "--data", help="set: one generated probe set; pool: chunked streams rendered by every CPU."),
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
    from workbench.models.devices import check_device
    from workbench.organism.train import OrganismConfig, pick_device, train

    given = {"steps": steps, "batch": batch, "n_train": n_train, "lr": lr, "warmup": warmup, "patch_loss": patch_loss,
             "where_loss": where_loss,
             "label_smoothing": label_smoothing, "confidence": confidence, "data": data,
             "init": str(init) if init is not None else None}
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
    command = " ".join(["workbench organism train", f"--out {out}", f"--seed {seed}", *flags, "--force"])
    finish(tmp, out, summary, command)


def finish(trained: Path, out: Path, summary: dict, command: str) -> None:
    """Score a freshly trained folder, write its model card, and move it into place at ``out``."""
    from workbench.evaluation import score
    from workbench.models.load import load_vlm
    from workbench.organism.card import intact_card
    from workbench.organism.train import OrganismConfig, eval_probes, fresh_probes

    cfg = OrganismConfig(**summary["config"])
    vlm = load_vlm(trained, attn_implementation="eager")
    scores, fresh = score(vlm, eval_probes(cfg.seed, cfg)), score(vlm, fresh_probes(cfg.seed, cfg))
    (trained / "README.md").write_text(intact_card(summary, scores, command, fresh, out=str(out)))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    trained.rename(out)
    _print_scores({"held-out": scores.by_task(), "fresh scenes": fresh.by_task()})
    console.print(f"wrote [green]{out}[/]")


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
    from workbench.evaluation import score
    from workbench.models.load import load_vlm
    from workbench.organism.card import deficit_card
    from workbench.organism.deficit import plant
    from workbench.organism.train import eval_probes

    if not (intact / "config.json").is_file():
        raise WorkbenchError(f"{intact} is not a model folder", "train one with `workbench organism train`")
    ev = eval_probes()  # the fixed held-out set, whatever the selection seed
    from workbench.cli._common import parse_list

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
    _print_scores({"intact": a.by_task(), "deficit": d.by_task()})
    console.print(f"wrote [green]{out}[/] (ground truth in planted.json)")


@app.command("eval")
@friendly
def eval_cmd(model: str = typer.Option(str(DEFAULT_MODEL), "--model", help="Model folder or hub id (default: the organism)."),
             seed: int = typer.Option(0, "--seed", help="Seed of the evaluation set.")) -> None:
    """Accuracy per task and relation on the fixed 500-probe held-out evaluation set."""
    from workbench.evaluation import score
    from workbench.models.load import load_vlm
    from workbench.organism.train import eval_probes

    s = score(load_vlm(model, attn_implementation="eager"), eval_probes(seed))
    _print_scores({"accuracy": {**s.by_task(), **{f"spatial/{k}": v for k, v in s.by_relation().items()}}})


def _print_scores(columns: dict[str, dict[str, float]]) -> None:
    t = Table("task", *columns, title="held-out accuracy (500 probes)")
    for k in next(iter(columns.values())):
        t.add_row(k, *(f"{100 * c[k]:.1f}%" for c in columns.values()))
    console.print(t)
