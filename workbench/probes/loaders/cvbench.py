"""CV-Bench (Tong et al., 2024): parquet with embedded images, or jsonl with an ``img/`` folder.

Columns: ``idx``, ``task`` (Count, Relation, Depth, Distance), ``question``, ``choices`` (list),
``answer`` ("(A)" style), and ``image`` (parquet) or ``filename`` (jsonl, relative to the folder
that holds the jsonl, e.g. ``img/2D/relation/ade20k_10.png``). Options are the choice texts.
"""

from __future__ import annotations

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
from workbench.probes.probeset import ProbeSet

COLUMNS = ("idx", "task", "question", "choices", "answer")
SPATIAL = {"relation", "depth", "distance"}


def load_cvbench(path: str | Path, images: str | Path | None = None, name: str | None = None) -> ProbeSet:
    path = require_file(path, "CV-Bench file")
    records = read_table(path)
    embedded = path.suffix.lower() == ".parquet" or path.is_dir()
    require_columns(records, COLUMNS + (("image",) if embedded else ("filename",)), path)
    root = Path(images) if images else (path if path.is_dir() else path.parent)
    items, sources = [], {}
    for rec in records:
        rid = safe_name(rec["idx"])
        where = f"{path} record {rec['idx']!r}"
        choices = rec["choices"]
        choices = tuple(str(c) for c in (choices.tolist() if isinstance(choices, np.ndarray) else choices))
        a = letter(rec["answer"])
        if not a or ord(a) - 65 >= len(choices):
            raise WorkbenchError(f"{where}: answer {rec['answer']!r} names no choice of {list(choices)}", "expected (A), (B), …")
        if embedded:
            data = image_bytes_from_cell(rec["image"], where + " column 'image'")
            key = f"images/{rid}.{image_extension(data, where)}"
            sources[key] = data
        else:
            src = check_image_file(inside(root, rec["filename"], where), where)
            key = f"images/{src.relative_to(root).as_posix()}"
            sources[key] = src
        task = str(rec["task"]).lower()
        answer = choices[ord(a) - 65]
        items.append(ProbeItem(id=rid, task=f"cvbench-{task}", family="spatial" if task in SPATIAL else "control",
                               question=str(rec["question"]), options=choices, answer=answer, image=key,
                               relation=answer if task == "relation" else "",
                               meta={"source": "cvbench", "type": str(rec.get("type", ""))}))
    return ProbeSet(items, sources, name=name or f"cvbench-{path.stem}", info={"source": "cvbench", "path": str(path)})
