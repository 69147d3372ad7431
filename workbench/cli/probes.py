"""``workbench probes``: make, inspect and import probe sets.

A model folder may record the probes it reads in ``probes.json`` (:data:`PROBE_CONFIG`): ProbeConfig fields
such as ``canvas``, ``object_size`` and ``grid`` (the organism: 64 px scenes, 14 px objects centred on a 16 px
grid, one object a vision patch); an organism folder's ``training.json`` records the same geometry and is read
when there is no probes.json. ``probes make --like MODEL`` starts from that record; options given on the
command line still win. Imports stay inside the commands (``--help`` needs none of them).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer
from rich.table import Table

from workbench.cli._common import console, friendly, parse_list, progress_bar
from workbench.errors import WorkbenchError
from workbench.fileio import atomic_write
from workbench.names import FORMATS, MAX_CANVAS, MAX_PROBES, TASKS  # torch-, numpy- and pandas-free: the help needs them

app = typer.Typer(help="Make, inspect and import spatial probe sets.", no_args_is_help=True)
SHEET = "contact_sheet.png"
PROBE_CONFIG = "probes.json"
# what a model folder's probes.json may set (ProbeConfig fields; n and seed stay the command's)
LIKE_FIELDS = ("canvas", "object_size", "gap", "grid", "colors", "shapes", "relations", "tasks", "max_objects")


def recorded_probe_config(model: str | Path) -> tuple[dict, Path]:
    """(the ProbeConfig fields a model folder records in ``probes.json``, that file); for an organism folder without
    one, the scene geometry its ``training.json`` records. One error when the folder does not exist or records
    neither. ``model`` is a folder, or the name of a shipped one (``organism``, ``organism-deficit``)."""
    from workbench.organism import ASSETS

    folder = Path(model).expanduser()
    if not folder.is_dir() and not str(model).startswith((".", "/", "~")) and (ASSETS / str(model)).is_dir():
        folder = ASSETS / str(model)
    if not folder.is_dir():
        raise WorkbenchError(f"--like {model}: no such model folder", "pass a model folder (e.g. assets/models/organism)")
    path = folder / PROBE_CONFIG
    if not path.is_file() and (scene := _trained_scene(folder)) is not None:
        return scene, folder / "training.json"
    if not path.is_file():
        raise WorkbenchError(f"model folder {folder} records no probe configuration ({PROBE_CONFIG})",
                             "pass --canvas/--object-size/--grid yourself, or add a probes.json with the fields the model reads")
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise WorkbenchError(f"{path} is not valid JSON ({e})", "fix or remove the file") from None
    if not isinstance(rec, dict):
        raise WorkbenchError(f"{path} is not a JSON object", f"write an object of ProbeConfig fields ({', '.join(LIKE_FIELDS)})")
    fields = {k: v for k, v in rec.items() if not k.startswith("_")}  # "_about": a note for people
    unknown = sorted(set(fields) - set(LIKE_FIELDS))
    if unknown:
        raise WorkbenchError(f"{path} sets {unknown[0]!r}, which --like does not take", f"it may set: {', '.join(LIKE_FIELDS)}")
    for k, v in fields.items():
        number = k in ("canvas", "object_size", "gap", "grid", "max_objects")
        ok = (isinstance(v, int) and not isinstance(v, bool) if number
              else isinstance(v, list) and all(isinstance(x, str) for x in v))
        if not ok:
            raise WorkbenchError(f"{path}: {k} is {v!r}", f"{k} must be {'a whole number' if number else 'a list of names'}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}, path


def _trained_scene(folder: Path) -> dict | None:
    """The scene geometry an organism folder's ``training.json`` records (``config``: canvas, object_size, grid), for
    a folder written by ``workbench lab train`` without a probes.json; None when it records none."""
    try:
        config = json.loads((folder / "training.json").read_text()).get("config", {})
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return None
    scene = {k: config.get(k) for k in ("canvas", "object_size", "grid")} if isinstance(config, dict) else {}
    ok = scene and all(isinstance(v, int) and not isinstance(v, bool) for v in scene.values())
    return scene if ok else None


def _write_sheet(ps, path: Path) -> Path:
    """Write the contact sheet atomically."""
    from workbench.probes.contact import contact_sheet

    return atomic_write(path, lambda tmp: contact_sheet(ps).save(tmp, format="PNG"))


def _summary(ps) -> None:
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
    like: str = typer.Option(None, "--like", help=f"A model folder (or 'organism'): start from the probe configuration it "
                             f"records in {PROBE_CONFIG} or an organism's training.json (canvas, object size, grid …); "
                             "options given here still win."),
    n: int = typer.Option(2000, "--n", help=f"Number of probes (train + test), at most {MAX_PROBES:,}."),
    seed: int = typer.Option(0, "--seed", help="Random seed (0 or more); the same seed gives byte-identical files."),
    canvas: int = typer.Option(None, "--canvas", help=f"Image side in pixels (16 or more, at most {MAX_CANVAS:,}; default 64).",
                               show_default=False),
    object_size: int = typer.Option(None, "--object-size", help="Object side in pixels (default 0: 22% of the canvas).",
                                    show_default=False),
    grid: int = typer.Option(None, "--grid", help="Snap object centers to cells of this many pixels, one object a cell "
                             "(default 0: free placement).", show_default=False),
    tasks: str = typer.Option(None, "--tasks",
                              help=f"Comma-separated tasks (default all): {', '.join(TASKS)}."),
    relations: str = typer.Option(None, "--relations",
                                  help="Comma-separated relations (default all): left, right, above, below."),
    colors: str = typer.Option(None, "--colors", help="Comma-separated colors (default all six)."),
    shapes: str = typer.Option(None, "--shapes", help="Comma-separated shapes (default all five)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of test items."),
    split_by: str = typer.Option("combo", "--split-by",
                                 help="combo: held-out color-shape pairs only in test; seed: independent streams."),
    heldout: int = typer.Option(5, "--heldout", help="Number of held-out color-shape pairs (with --split-by combo)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    """Generate a seeded spatial probe set (scenes, questions, counterfactuals, splits) and its contact sheet."""
    from dataclasses import replace

    from workbench.probes.generate import ProbeConfig, generate

    recorded, source = recorded_probe_config(like) if like is not None else ({}, None)
    given = {"canvas": canvas, "object_size": object_size, "grid": grid, "tasks": parse_list(tasks, "tasks"),
             "relations": parse_list(relations, "relations"), "colors": parse_list(colors, "colors"),
             "shapes": parse_list(shapes, "shapes")}
    fields = {**recorded, **{k: v for k, v in given.items() if v is not None}}  # the command line wins over the record
    cfg = replace(ProbeConfig(n=n, seed=seed, test_fraction=test_fraction, split_by=split_by, heldout=heldout), **fields)
    cfg.validate()  # sizes, names and geometry: fail before any work or any file
    if out.exists() and not force:
        raise WorkbenchError(f"{out} already exists", "choose another --out or pass --force to replace it")
    if source is not None:
        shown = ", ".join(f"{k} {getattr(cfg, k)}" for k in ("canvas", "object_size", "grid"))
        console.print(f"probe configuration from {source} ({shown})", highlight=False)
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
    from workbench.probes.probeset import ProbeSet

    ps = ProbeSet.load(folder)
    _summary(ps)
    path = _write_sheet(ps, sheet or folder / SHEET)
    console.print(f"contact sheet: [green]{path}[/]")


@app.command("import")
@friendly
def import_(
    fmt: str = typer.Argument(..., help=f"Benchmark format: {', '.join(FORMATS)}."),
    source: Path = typer.Argument(..., help="The benchmark file (.parquet, .jsonl or What'sUp's .json) or a folder of them."),
    out: Path = typer.Option(..., "--out", help="Folder to write the probe set to."),
    images: Path = typer.Option(None, "--images", help="Image folder. VSR: the COCO folder (required); What'sUp QA jsonl: "
                                "required; What'sUp JSON / AdaptVis prompt file: the What'sUp data folder (default the file's "
                                "folder); CV-Bench and SpatialEval jsonl: default the file's folder."),
    name: str = typer.Option(None, "--name", help="Name of the probe set (default from the file name)."),
    letters: bool = typer.Option(False, "--letters", help="CV-Bench: ask its `prompt` (choices listed as (A), (B), ...) and "
                                 "score the option letter, as lmms-eval does (default: the choice texts)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    """Convert a local benchmark file into a probe set folder (no download)."""
    from workbench.probes.loaders import LOADERS

    if fmt not in LOADERS:
        raise WorkbenchError(f"unknown benchmark format {fmt!r}", f"choose from: {', '.join(LOADERS)}")
    loader, needs_images = LOADERS[fmt]
    if out.exists() and not force:
        raise WorkbenchError(f"{out} already exists", "choose another --out or pass --force to replace it")
    if needs_images and images is None:
        raise WorkbenchError(f"the {fmt} format needs its image folder", "pass --images DIR")
    if letters and fmt != "cvbench":
        raise WorkbenchError(f"--letters applies to the cvbench format, not {fmt}", "drop --letters")
    kwargs = {"name": name, **({"images": images} if images is not None else {}), **({"letters": True} if letters else {})}
    ps = loader(source, **kwargs)
    ps.save(out, overwrite=force)
    _summary(ps)
    for note in ps.info.get("notes", []):
        console.print(f"note: {note}", highlight=False)
    console.print(f"wrote [green]{out}[/]")
