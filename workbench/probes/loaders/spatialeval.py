"""SpatialEval (Wang et al., 2024), from its parquet files: vqa or vtqa, any of the tasks.

Columns: ``id``, ``text`` (the full question with lettered options), ``image`` (embedded bytes),
``oracle_answer`` and ``oracle_option`` (the correct letter). The task is the id's prefix
(spatialmap, mazenav, spatialgrid, spatialreal). Items are multiple choice over option letters
(the option texts are kept in ``meta``), which is how the ScAle paper scores it: one answer token.
"""

from __future__ import annotations

import re
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.probes.items import ProbeItem
from workbench.probes.loaders._common import (
    image_bytes_from_cell,
    image_extension,
    letter,
    read_table,
    require_columns,
    require_file,
    safe_name,
)
from workbench.probes.probeset import ProbeSet

COLUMNS = ("id", "text", "image", "oracle_answer", "oracle_option")
TASKS = ("spatialmap", "mazenav", "spatialgrid", "spatialreal")
_OPTION = re.compile(r"(?:^|[\s(])([A-H])[.)]\s+(.+?)(?=(?:[\s(][A-H][.)]\s)|$)", re.S)


def parse_options(text: str) -> dict[str, str]:
    """Lettered options in a question text: "A. north B. south" or one per line → {letter: text}."""
    found: dict[str, str] = {}
    for m in _OPTION.finditer(text):
        found.setdefault(m.group(1), m.group(2).strip().rstrip(",;").strip())
    letters = []
    for c in "ABCDEFGH":  # keep the run A, B, C, … that starts at A
        if c not in found:
            break
        letters.append(c)
    return {c: found[c] for c in letters} if len(letters) >= 2 else {}


def load_spatialeval(path: str | Path, name: str | None = None) -> ProbeSet:
    path = require_file(path, "SpatialEval file")
    records = read_table(path)
    require_columns(records, COLUMNS, path)
    all_letters = sorted({letter(r["oracle_option"]) for r in records} - {""})
    items, images = [], {}
    for rec in records:
        rid = str(rec["id"])
        where = f"{path} record {rid!r}"
        task = next((t for t in TASKS if rid.lower().startswith(t)), re.match(r"[A-Za-z]*", rid).group(0).lower() or "spatialeval")
        data = image_bytes_from_cell(rec["image"], where + " column 'image'")
        key = f"images/{safe_name(rid)}.{image_extension(data, where)}"
        images[key] = data
        opts = parse_options(str(rec["text"]))
        answer = letter(rec["oracle_option"])
        if not answer:
            raise WorkbenchError(f"{where}: oracle_option {rec['oracle_option']!r} is not an option letter", "expected A, B, C, …")
        options = tuple(opts) if opts else tuple(all_letters)
        items.append(ProbeItem(id=safe_name(rid), task=task, family="spatial", question=str(rec["text"]), options=options,
                               answer=answer, image=key,
                               meta={"source": "spatialeval", "oracle_answer": str(rec["oracle_answer"]), "option_texts": opts}))
    return ProbeSet(items, images, name=name or f"spatialeval-{path.stem}", info={"source": "spatialeval", "path": str(path)})
