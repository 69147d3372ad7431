"""CV-Bench (Tong et al., 2024), as the hub (``nyu-visionx/CV-Bench``) ships it.

Columns: ``idx``, ``type`` (2D / 3D), ``task`` (Count, Relation, Depth, Distance), ``question``, ``choices`` (list),
``answer`` ("(A)" style), ``prompt`` (the question with its choices listed as "(A) …", "(B) …") and ``image``
(parquet, embedded) or ``filename`` (jsonl, relative to the jsonl's folder, e.g. ``img/2D/relation/ade20k_10.png``).

Layouts read:

- ``test_2d.parquet`` / ``test_3d.parquet`` (current) or ``test.parquet`` (the older single file), a file or a
  folder. A folder holding both generations would list every item twice; the current pair is read, the old file
  is left out, and ``info["notes"]`` says so.
- ``test_2d.jsonl`` / ``test_3d.jsonl`` (or the older ``test.jsonl``) with the ``img/`` folder beside them. The
  hub no longer ships ``img/``; its ``build_img.py`` rebuilds it from the parquet files. A jsonl whose images
  should be under a missing ``img/`` is refused with one line naming the folder and that fix.

Scoring: by default the options are the choice texts and the answer is the text "(A)" points at. With
``letters=True`` the question is the file's ``prompt`` and the options are the letters A, B, … (as lmms-eval
scores CV-Bench: the letter after the prompt); the choice texts are kept in ``meta["option_texts"]``.

Ids are ``idx`` when unique; when the 2D and 3D files reuse an ``idx``, every id becomes ``<type>-<idx>``.
"""

from __future__ import annotations

import string
from collections import Counter
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.probes.items import ProbeItem
from workbench.probes.loaders._common import (
    check_image_file,
    image_bytes_from_cell,
    image_extension,
    inside,
    letter,
    read_table,
    require_columns,
    require_file,
    safe_name,
)
from workbench.probes.loaders.wrappers import check_question
from workbench.probes.probeset import ProbeSet

COLUMNS = ("idx", "task", "question", "choices", "answer")
SPATIAL = {"relation", "depth", "distance"}
NEW, OLD = ("test_2d", "test_3d"), "test"


def _files(path: Path) -> tuple[list[Path], list[str], dict[Path, set[str]]]:
    """The files to read, notes on what was left out, and per old file the types (2D / 3D) to drop from it."""
    if not path.is_dir():
        return [path], [], {}
    files = sorted(path.rglob("*.parquet")) or sorted(path.rglob("*.jsonl"))
    if not files:
        raise WorkbenchError(f"{path} holds no .parquet or .jsonl files", "point at a CV-Bench file or a folder of them")
    new = sorted(f.name for f in files if f.stem in NEW)
    old = [f for f in files if f.stem == OLD]
    if not (new and old):
        return files, [], {}
    covered = {n.split(".")[0][-2:].upper() for n in new}  # test_2d → 2D
    if covered == {"2D", "3D"}:
        note = (f"{path}: read {', '.join(new)} and left out {', '.join(f.name for f in old)} "
                "(the older single file, which holds the same items)")
        return [f for f in files if f.stem != OLD], [note], {}
    kinds = ", ".join(sorted(covered))
    note = (f"{path}: read {', '.join(new)}, and from {', '.join(f.name for f in old)} only what they lack "
            f"(its {kinds} items are the same)")
    return files, [note], {f: covered for f in old}


def _check_img_folder(records: list[dict], root: Path, f: Path) -> None:
    if not (root / "img").is_dir() and any(str(r.get("filename", "")).startswith("img/") for r in records):
        raise WorkbenchError(f"{root / 'img'} does not exist, and {f.name} names its images there (the hub ships the jsonl "
                             "without img/)", f"rebuild it with the dataset's build_img.py run in {root}, "
                                              "or import the parquet files, which embed the images")


def _ids(rows: list[tuple[Path, dict]]) -> list[str]:
    plain = [safe_name(r["idx"]) for _, r in rows]
    if len(set(plain)) == len(plain):
        return plain
    typed = [safe_name(f"{r.get('type', '')}-{r['idx']}") for _, r in rows]
    dup = next((k for k, c in Counter(typed).items() if c > 1), None)
    if dup is not None:
        (f, r), *_ = [(f, r) for (f, r), t in zip(rows, typed) if t == dup]
        files = sorted({g.name for (g, _), t in zip(rows, typed) if t == dup})
        raise WorkbenchError(f"{f} record idx {r['idx']!r} ({r.get('type', '?')}) occurs more than once (in {', '.join(files)})",
                             "remove the duplicate file or record")
    return typed


def load_cvbench(path: str | Path, images: str | Path | None = None, name: str | None = None, letters: bool = False) -> ProbeSet:
    path = require_file(path, "CV-Bench file")
    files, notes, drop = _files(path)
    rows: list[tuple[Path, dict]] = []
    for f in files:
        records = [r for r in read_table(f) if str(r.get("type", "")).upper() not in drop.get(f, set())]
        embedded = f.suffix.lower() == ".parquet"
        require_columns(records, COLUMNS + (("image",) if embedded else ("filename",)) + (("prompt",) if letters else ()), f)
        if not embedded:
            _check_img_folder(records, Path(images) if images else f.parent, f)
        rows += [(f, r) for r in records]
    items, sources = [], {}
    for rid, (f, rec) in zip(_ids(rows), rows):
        where = f"{f} record {rec['idx']!r}"
        choices = rec["choices"]
        choices = tuple(str(c) for c in (choices.tolist() if isinstance(choices, np.ndarray) else choices))
        a = letter(rec["answer"])
        if not a or ord(a) - 65 >= len(choices):
            raise WorkbenchError(f"{where}: answer {rec['answer']!r} names no choice of {list(choices)}",
                                 "expected (A), (B), …")
        if f.suffix.lower() == ".parquet":
            data = image_bytes_from_cell(rec["image"], where + " column 'image'")
            key = f"images/{rid}.{image_extension(data, where)}"
            sources[key] = data
        else:
            root = Path(images) if images else f.parent
            src = check_image_file(inside(root, rec["filename"], where), where)
            key = f"images/{src.relative_to(root).as_posix()}"
            sources[key] = src
        task = str(rec["task"]).lower()
        text = choices[ord(a) - 65]
        meta = {"source": "cvbench", "type": str(rec.get("type", "")), "dataset": str(rec.get("source", "") or "")}
        if letters:
            opts = tuple(string.ascii_uppercase[: len(choices)])
            question, options, answer = str(rec["prompt"]), opts, a
            meta["option_texts"] = dict(zip(opts, choices))
        else:
            question, options, answer = str(rec["question"]), choices, text
        items.append(ProbeItem(id=rid, task=f"cvbench-{task}", family="spatial" if task in SPATIAL else "control",
                               question=check_question(question, where), options=options, answer=answer, image=key,
                               relation=text if task == "relation" else "", meta=meta))
    info = {"source": "cvbench", "path": str(path), "scoring": "letters" if letters else "choices"}
    if notes:
        info["notes"] = notes
    return ProbeSet(items, sources, name=name or f"cvbench-{path.stem}", info=info)
