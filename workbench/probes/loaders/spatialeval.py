"""SpatialEval (Wang et al., 2024), from the hub's parquet files (``MilaWang/SpatialEval``) or a jsonl export.

Columns: ``id`` (``{task}.{mode}.{instance}.{question}``, e.g. ``spatialmap.vqa.2000.0``), ``text`` (the full
question with lettered options, e.g. "… Available options:\\nA. Northeast\\nB. Northwest\\n…\\nD. Southeast."),
``oracle_answer``, ``oracle_option`` (the correct letter), ``oracle_full_answer`` (kept in ``meta``) and the image:

- parquet (the ``vqa`` and ``vtqa`` configurations): ``image``, embedded bytes;
- jsonl: ``image`` (or ``image_path``) holding a path relative to the jsonl's folder (or to ``images``), a
  base64 string (bare or as a ``data:image/…;base64,`` URI), or a ``{"bytes": …, "path": …}`` struct.

The ``tqa`` configuration is text only (no image column): every probe here is an image and a question, so such a
file is refused with one line naming it (import ``vqa`` or ``vtqa`` instead). A folder is read file by file
(parquet, jsonl and json, sorted); an id that occurs twice stops the load naming the file.

The task is the id's prefix (spatialmap, mazenav, spatialgrid, spatialreal). Items are multiple choice over
option letters (option texts in ``meta["option_texts"]``, the last one without the sentence's closing period),
which is how the ScAle paper scores it: one answer token.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

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
from workbench.probes.probeset import ImageSource, ProbeSet

COLUMNS = ("id", "text", "oracle_answer", "oracle_option")
TASKS = ("spatialmap", "mazenav", "spatialgrid", "spatialreal")
_OPTION = re.compile(r"(?:^|[\s(])([A-H])[.)]\s+(.+?)(?=(?:[\s(][A-H][.)]\s)|$)", re.S)
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]{64,}")


def parse_options(text: str) -> dict[str, str]:
    """Lettered options in a question text: "A. north B. south" or one per line → {letter: text}.
    An option ends at its line's end; the last one loses the closing period of the sentence it ends."""
    found: dict[str, str] = {}
    for m in _OPTION.finditer(text):
        found.setdefault(m.group(1), m.group(2).strip().split("\n", 1)[0].strip().rstrip(",;").strip())
    letters = []
    for c in "ABCDEFGH":  # keep the run A, B, C, … that starts at A
        if c not in found:
            break
        letters.append(c)
    if len(letters) < 2:
        return {}
    opts = {c: found[c] for c in letters}
    last = letters[-1]
    opts[last] = opts[last].removesuffix(".").strip() or opts[last]
    return opts


def _files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".parquet", ".jsonl", ".json"))
    if not files:
        raise WorkbenchError(f"{path} holds no .parquet, .jsonl or .json files",
                             "point at a SpatialEval file or a folder of them")
    return files


def _decode64(s: str, where: str) -> bytes:
    try:
        data = base64.b64decode(s.split(",", 1)[1] if s.startswith("data:") else s, validate=not s.startswith("data:"))
    except (binascii.Error, ValueError) as e:
        raise WorkbenchError(f"{where}: its base64 image does not decode",
                             "re-export the image as base64 of a PNG or JPEG") from e
    return data


def _jsonl_image(cell: object, root: Path, rid: str, where: str) -> tuple[str, ImageSource]:
    """(key, source) of a jsonl record's image: a path under ``root``, a base64 string, or a bytes/path struct."""
    if isinstance(cell, dict):
        cell = cell.get("bytes") or cell.get("path")
    if isinstance(cell, (bytes, bytearray)) and cell:
        data = bytes(cell)
    elif isinstance(cell, str) and cell.strip():
        s = cell.strip()
        if s.startswith("data:") or _BASE64.fullmatch(s):  # base64 has no '.', which every image file name has
            data = _decode64(s, where)
        else:
            src = check_image_file(inside(root, s, where), where)
            return f"images/{src.relative_to(root).as_posix()}", src
    else:
        raise WorkbenchError(f"{where} has no image", "each record needs an image path or base64 image in 'image'")
    return f"images/{safe_name(rid)}.{image_extension(data, where)}", data


def _tqa(path: Path) -> WorkbenchError:
    return WorkbenchError(f"{path} is SpatialEval's text-only configuration (tqa: no image column); every probe here is an "
                          "image and a question", "import the vqa or vtqa configuration (e.g. vqa/test-00000-of-00001.parquet)")


def load_spatialeval(path: str | Path, images: str | Path | None = None, name: str | None = None) -> ProbeSet:
    path = require_file(path, "SpatialEval file")
    items, blobs, seen = [], {}, {}
    for f in _files(path):
        embedded = f.suffix.lower() == ".parquet"
        if embedded and images is not None:
            raise WorkbenchError(f"SpatialEval parquet file {f} embeds its images", "drop --images")
        root = require_file(images, "SpatialEval image folder") if images is not None else f.parent
        records = read_table(f)
        col = "image" if any("image" in r for r in records) else "image_path"
        if all(col not in r for r in records):
            require_columns(records, COLUMNS, f)
            raise _tqa(f)
        require_columns(records, COLUMNS + (col,), f)
        all_letters = sorted({letter(r["oracle_option"]) for r in records} - {""})
        for rec in records:
            rid = str(rec["id"])
            where = f"{f} record {rid!r}"
            if rid in seen:
                raise WorkbenchError(f"{where} occurs twice (also in {seen[rid]})",
                                     "SpatialEval ids are unique: remove the duplicate file or record")
            seen[rid] = f.name
            prefix = re.match(r"[A-Za-z]*", rid).group(0).lower() or "spatialeval"
            task = next((t for t in TASKS if rid.lower().startswith(t)), prefix)
            if embedded:
                if rec[col] is None:
                    raise _tqa(f)
                data = image_bytes_from_cell(rec[col], where + f" column {col!r}")
                key = f"images/{safe_name(rid)}.{image_extension(data, where)}"
                blobs[key] = data
            else:
                key, src = _jsonl_image(rec[col], root, rid, where)
                blobs[key] = src
            text = check_question(str(rec["text"]), where)
            opts = parse_options(text)
            answer = letter(rec["oracle_option"])
            if not answer:
                raise WorkbenchError(f"{where}: oracle_option {rec['oracle_option']!r} is not an option letter",
                                     "expected A, B, C, …")
            options = tuple(opts) if opts else tuple(all_letters)
            meta = {"source": "spatialeval", "oracle_answer": str(rec["oracle_answer"]), "option_texts": opts}
            if rec.get("oracle_full_answer") is not None:
                meta["oracle_full_answer"] = str(rec["oracle_full_answer"])
            items.append(ProbeItem(id=safe_name(rid), task=task, family="spatial", question=text, options=options,
                                   answer=answer, image=key, meta=meta))
    return ProbeSet(items, blobs, name=name or f"spatialeval-{path.stem}", info={"source": "spatialeval", "path": str(path)})
