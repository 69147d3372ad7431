"""``workbench probes``: make, inspect and import probe sets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.table import Table

from workbench.cli._common import console, friendly, parse_list, progress_bar
from workbench.errors import WorkbenchError
from workbench.fileio import atomic_write
from workbench.probes.contact import contact_sheet
from workbench.probes.generate import MAX_CANVAS, MAX_PROBES, ProbeConfig, generate
from workbench.probes.loaders import LOADERS
from workbench.probes.probeset import ProbeSet

app = typer.Typer(help="Make, inspect and import spatial probe sets.", no_args_is_help=True)
SHEET = "contact_sheet.png"


def _write_sheet(ps: ProbeSet, path: Path) -> Path:
    """Write the contact sheet atomically."""
    return atomic_write(path, lambda tmp: contact_sheet(ps).save(tmp, format="PNG"))


def _summary(ps: ProbeSet) -> None:
    console.print(f"[bold]{ps.name}[/]  {len(ps)} items  hash [cyan]{ps.hash[:16]}[/]")
    splits = sorted({it.split for it in ps})
    by_task = Counter((it.family, it.task, it.split) for it in ps)
    t = Table("family", "task", *splits, "total", title="items per task")
    for fam, task in sorted({(f, k) for f, k, _ in by_task}):
        row = [by_task[(fam, task, s)] for s in splits]
        t.add_row(fam, task, *map(str, row), str(sum(row)))
    console.print(t)
    spatial = [it for it in ps if it.family == "spatial" and it.relation]
    if spatial:
        by_rel = Counter((it.task, it.relation) for it in spatial)
        rels = sorted({r for _, r in by_rel})
        t = Table("task", *rels, title="spatial items per relation (of subject to reference)")
        for task in sorted({k for k, _ in by_rel}):
            t.add_row(task, *(str(by_rel[(task, r)]) for r in rels))
        console.print(t)


@app.command("make")
@friendly
def make(
    out: Path = typer.Option(..., "--out", help="Folder to write the probe set to (must not exist unless --force)."),
    n: int = typer.Option(2000, "--n", help=f"Number of probes (train + test), at most {MAX_PROBES:,}."),
    seed: int = typer.Option(0, "--seed", help="Random seed (0 or more); the same seed gives byte-identical files."),
    canvas: int = typer.Option(64, "--canvas", help=f"Image side in pixels (16 or more, at most {MAX_CANVAS:,})."),
    object_size: int = typer.Option(0, "--object-size", help="Object side in pixels (0: 22% of the canvas)."),
    grid: int = typer.Option(0, "--grid", help="Snap object centers to cells of this many pixels, one object a cell (0: free placement)."),
    tasks: str = typer.Option(None, "--tasks", help="Comma-separated tasks (default all): relation, verify, color, shape, count, exists."),
    relations: str = typer.Option(None, "--relations", help="Comma-separated relations (default all): left, right, above, below."),
    colors: str = typer.Option(None, "--colors", help="Comma-separated colors (default all six)."),
    shapes: str = typer.Option(None, "--shapes", help="Comma-separated shapes (default all five)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of test items."),
    split_by: str = typer.Option("combo", "--split-by", help="combo: held-out color-shape pairs only in test; seed: independent streams."),
    heldout: int = typer.Option(5, "--heldout", help="Number of held-out color-shape pairs (with --split-by combo)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    """Generate a seeded spatial probe set (scenes, questions, counterfactuals, splits) and its contact sheet."""
    base = ProbeConfig()
    cfg = ProbeConfig(n=n, seed=seed, canvas=canvas, object_size=object_size, grid=grid,
                      tasks=parse_list(tasks, "tasks") or base.tasks, relations=parse_list(relations, "relations") or base.relations,
                      colors=parse_list(colors, "colors") or base.colors, shapes=parse_list(shapes, "shapes") or base.shapes,
                      test_fraction=test_fraction, split_by=split_by, heldout=heldout)
    cfg.validate()  # sizes, names and geometry: fail before any work or any file
    if out.exists() and not force:
        raise WorkbenchError(f"{out} already exists", "choose another --out or pass --force to replace it")
    with progress_bar("rendering scenes", cfg.n) as advance:
        ps = generate(cfg, progress=advance)
    ps.save(out, overwrite=force)
    sheet = _write_sheet(ps, out / SHEET)
    _summary(ps)
    console.print(f"wrote [green]{out}[/] and contact sheet [green]{sheet}[/]")


@app.command("show")
@friendly
def show(
    folder: Path = typer.Argument(..., help="A probe set folder."),
    sheet: Path = typer.Option(None, "--sheet", help=f"Where to write the contact sheet (default FOLDER/{SHEET})."),
) -> None:
    """Counts per task, split and relation, and a contact-sheet PNG of sample scenes."""
    ps = ProbeSet.load(folder)
    _summary(ps)
    path = _write_sheet(ps, sheet or folder / SHEET)
    console.print(f"contact sheet: [green]{path}[/]")


@app.command("import")
@friendly
def import_(
    fmt: str = typer.Argument(..., help=f"Benchmark format: {', '.join(LOADERS)}."),
    source: Path = typer.Argument(..., help="The benchmark file (.parquet or .jsonl) or a folder of parquet files."),
    out: Path = typer.Option(..., "--out", help="Folder to write the probe set to."),
    images: Path = typer.Option(None, "--images", help="Image folder (What'sUp, VSR: required; CV-Bench jsonl: default the file's folder)."),
    name: str = typer.Option(None, "--name", help="Name of the probe set (default from the file name)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    """Convert a local benchmark file into a probe set folder (no download)."""
    if fmt not in LOADERS:
        raise WorkbenchError(f"unknown benchmark format {fmt!r}", f"choose from: {', '.join(LOADERS)}")
    loader, needs_images = LOADERS[fmt]
    if out.exists() and not force:
        raise WorkbenchError(f"{out} already exists", "choose another --out or pass --force to replace it")
    if needs_images and images is None:
        raise WorkbenchError(f"the {fmt} format needs its image folder", "pass --images DIR")
    kwargs = {"name": name}
    if images is not None:
        if fmt == "spatialeval":
            raise WorkbenchError("SpatialEval files embed their images", "drop --images")
        kwargs["images"] = images
    ps = loader(source, **kwargs)
    ps.save(out, overwrite=force)
    _summary(ps)
    console.print(f"wrote [green]{out}[/]")
