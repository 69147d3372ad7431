"""What'sUp (Kamath et al., 2023) as QA: a jsonl of ``{id, question, answer}`` and an image folder.

The image of record ``id`` is ``IMAGES/<id>.<jpg|jpeg|png>`` unless the record names one in an
``image`` field. Answer options are the record's ``options`` if it has them, else every distinct
answer in the file (What'sUp's relations: left of, right of, on, under, in front of, behind…).
"""

from __future__ import annotations

from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.probes.items import ProbeItem
from workbench.probes.loaders._common import check_image_file, inside, read_jsonl, require_columns, require_file, safe_name
from workbench.probes.probeset import ProbeSet

COLUMNS = ("id", "question", "answer")
EXTENSIONS = (".jpg", ".jpeg", ".png")


def _find(images: Path, rec: dict, where: str) -> Path:
    if rec.get("image"):
        return check_image_file(inside(images, rec["image"], where), where)
    for ext in EXTENSIONS:
        p = inside(images, f"{rec['id']}{ext}", where)
        if p.is_file():
            return check_image_file(p, where)
    raise WorkbenchError(f"no image {rec['id']}{{{','.join(EXTENSIONS)}}} in {images} for {where}", "check the image folder")


def load_whatsup(jsonl: str | Path, images: str | Path, name: str | None = None) -> ProbeSet:
    jsonl = require_file(jsonl, "What'sUp file")
    images = require_file(images, "What'sUp image folder")
    records = read_jsonl(jsonl)
    require_columns(records, COLUMNS, jsonl)
    all_answers = tuple(sorted({str(r["answer"]).strip() for r in records}))
    items, files = [], {}
    for rec in records:
        where = f"{jsonl} record {rec['id']!r}"
        src = _find(images, rec, where)
        key = f"images/{src.relative_to(images).as_posix()}"
        files[key] = src
        options = tuple(str(o).strip() for o in rec["options"]) if rec.get("options") else all_answers
        answer = str(rec["answer"]).strip()
        items.append(ProbeItem(id=safe_name(rec["id"]), task="whatsup", family="spatial", question=str(rec["question"]),
                               options=options, answer=answer, image=key, relation=answer, meta={"source": "whatsup"}))
    return ProbeSet(items, files, name=name or f"whatsup-{jsonl.stem}", info={"source": "whatsup", "path": str(jsonl)})
