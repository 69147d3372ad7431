"""``workbench store fsck``: every problem in a store, what fixing it means, and the fix; and ``store gc``.

:func:`fsck` reads the whole store — every manifest, every chunk in full (values checksummed, identity
checked against its place), every probe-set header, scale vector, head set and attention cache — and
returns a :class:`~workbench.store.problems.Problem` for each thing that is wrong, without changing
anything. :func:`repair` does what each problem's ``fix`` says (remove, restore, quarantine; see
:mod:`workbench.store.problems`). The CLI is a thin layer over the two.

:func:`collect` is ``store gc``: the same check of ``sweeps/``, but it only *removes* what no run can use
(stale temporary files, empty folders, corrupt or unverifiable chunks, orphan chunks), each once older than
a threshold, so that nothing a live sweep is writing is touched. It never deletes a chunk a rerun could
use: a sweep folder whose manifest is lost or broken is kept whole, and gc says so.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.store.effects import EffectStore, GcReport, check_chunk
from workbench.store.library import Library
from workbench.store.problems import Problem, quarantine

STALE_S = 3600.0
RECOMPUTE = "remove it; the next run recomputes it"


def _older(path: Path, now: float, older_than_s: float) -> bool:
    try:
        return now - path.stat().st_mtime > older_than_s
    except FileNotFoundError:
        return False


def _stale_tmp(folder: Path, now: float, older_than_s: float) -> list[Problem]:
    return [Problem(p, "is a stale temporary file (left by a killed writer)", "remove it", "remove")
            for p in sorted(folder.glob(".*.tmp")) if _older(p, now, older_than_s)]


def sweep_folder_problems(store: EffectStore, folder: Path, now: float, older_than_s: float) -> list[Problem]:
    """Everything wrong in one ``sweeps/<key>/`` folder, every chunk read in full."""
    key = folder.name
    out = _stale_tmp(folder, now, older_than_s)
    live = [p for p in folder.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))]
    if not live:
        if _older(folder, now, older_than_s) and len(out) == len(list(folder.iterdir())):
            out.append(Problem(folder, "is an empty folder", "remove it", "remove"))
        return out
    chunks = sorted(folder.glob("*.parquet"))
    path = folder / "manifest.json"
    try:
        manifest = store.manifest(key) if path.is_file() else None
        broken = None if manifest is not None else f"{len(chunks)} chunks but no manifest"
    except WorkbenchError as e:  # the manifest's own one-line problem
        manifest, broken = None, e.problem.removeprefix(f"{path} ")
    if manifest is None:
        found = store.restorable_manifest(key)
        where = folder if not path.is_file() else path
        if found is None:
            why = f"none of its {len(chunks)} chunks carries a copy that restores it" if chunks else "the folder holds no chunk"
            return out + [Problem(where, f"{broken}, and {why}", "move the folder to quarantine/ (a rerun recomputes the sweep)",
                                  "quarantine", targets=(folder,))]
        manifest, source = found
        out.append(Problem(where, broken, f"restore the manifest from chunk {source.stem}", "restore", source=source))
    plan = set(manifest["chunks"])
    for chunk in chunks:
        if chunk.stem not in plan:
            out.append(Problem(chunk, "is not in its manifest's plan", "remove it (an orphan)", "remove"))
            continue
        problem = check_chunk(chunk, key, chunk.stem, manifest)[1]
        if problem:
            out.append(Problem(chunk, problem, RECOMPUTE, "remove"))
    return out


def sweep_problems(root: str | Path, older_than_s: float = STALE_S) -> list[Problem]:
    store, now = EffectStore(root), time.time()
    out = []
    for entry in sorted((store.root / "sweeps").iterdir()):
        if entry.is_dir():
            out += sweep_folder_problems(store, entry, now, older_than_s)
        else:
            out.append(Problem(entry, "is not a sweep folder", "move it to quarantine/", "quarantine"))
    return out


def fsck(root: str | Path, older_than_s: float = STALE_S) -> list[Problem]:
    """Every problem in the store at ``root``; changes nothing. Temporary files count only once older than
    ``older_than_s`` (younger ones belong to writers at work)."""
    return sweep_problems(root, older_than_s) + Library(root).problems(full=True, older_than_s=older_than_s)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _restore(root: Path, problem: Problem) -> None:
    store = EffectStore(root)
    folder = problem.path if problem.path.is_dir() else problem.path.parent
    found = store.restorable_manifest(folder.name)
    if found is None:
        raise RuntimeError(f"no chunk of {folder} carries a manifest any more")
    manifest = folder / "manifest.json"
    if manifest.is_file():
        quarantine(root, manifest)  # the broken one, kept for a person to look at
    store.ensure(folder.name, found[0])


def repair(root: str | Path, problems: list[Problem]) -> list[str]:
    """Do each problem's fix (restores first, so the chunks they vouch for are not removed); returns one line per fix."""
    root = Path(root)
    done = []
    for p in sorted(problems, key=lambda p: p.fix != "restore"):
        if p.fix == "restore":
            _restore(root, p)
        elif p.fix == "quarantine":
            for path in p.acts_on:
                if path.exists():
                    quarantine(root, path)
        else:
            for path in p.acts_on:
                if path.exists():
                    _remove(path)
        done.append(f"{p.relative(root)}: {p.action.split(' (')[0]}: done")
    return done


def _kept(root: Path, p: Problem) -> str:
    rel = p.relative(root)
    if p.fix == "restore":
        folder = p.path if p.path.is_dir() else p.path.parent
        n = len(list(folder.glob("*.parquet")))
        why = "without a manifest" if p.path.is_dir() else "whose manifest is broken"
        return (f"kept sweeps/{folder.name[:12]}…: {n} chunks {why} (a rerun of the same sweep reuses them; "
                f"`workbench store fsck --fix` restores the manifest)")
    return f"kept {rel}: {p.what} (`workbench store fsck --fix` would {p.action.split(' (')[0]})"


def collect(root: str | Path, older_than_s: float = STALE_S) -> GcReport:
    """``store gc``: remove the ``sweeps/`` problems whose fix is removal and whose file is older than ``older_than_s``;
    keep the rest (a lost manifest, something to quarantine) and say why."""
    root, now = Path(root), time.time()
    removed, reasons, kept = [], [], []
    for p in sweep_problems(root, older_than_s):
        if p.fix != "remove":
            kept.append(_kept(root, p))
        elif _older(p.path, now, older_than_s):
            _remove(p.path)
            removed.append(str(p.path))
            reasons.append(f"{p.relative(root)}: {p.what}")
    return GcReport(tuple(removed), tuple(reasons), tuple(kept))
