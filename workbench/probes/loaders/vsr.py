"""VSR, Visual Spatial Reasoning (Liu et al., 2023): true/false captions over COCO images.

The jsonl has ``caption``, ``label`` (1 true, 0 false), ``relation`` and ``image`` (a COCO file
name), and in the published splits (random and zero-shot) also ``subj`` / ``obj``, kept in ``meta``;
images are looked up in the COCO folder, in its sub-folders too (train2017/, val2017/).
Each record becomes a yes/no item: "Is this true of the image: <caption>?".
"""

from __future__ import annotations

from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.probes.items import ProbeItem
from workbench.probes.loaders._common import check_image_file, inside, read_jsonl, require_columns, require_file
from workbench.probes.probeset import ProbeSet

COLUMNS = ("caption", "label", "relation", "image")


def _meta(rec: dict) -> dict:
    """The caption, and the subject and object the relation holds between (``subj`` / ``obj``, as published)."""
    meta = {"source": "vsr", "caption": str(rec["caption"])}
    meta.update({k: str(rec[k]) for k in ("subj", "obj", "image_link") if rec.get(k) is not None})
    return meta


def load_vsr(jsonl: str | Path, images: str | Path, name: str | None = None) -> ProbeSet:
    jsonl = require_file(jsonl, "VSR file")
    images = require_file(images, "COCO image folder")
    records = read_jsonl(jsonl)
    require_columns(records, COLUMNS, jsonl)
    index: dict[str, Path] | None = None
    items, files = [], {}
    for i, rec in enumerate(records):
        where = f"{jsonl} record {i + 1}"
        src = inside(images, rec["image"], where)
        if not src.is_file():  # COCO folders are often split into train2017/ val2017/
            if index is None:
                index = {p.name: p for p in images.rglob("*") if p.is_file()}
            src = index.get(Path(str(rec["image"])).name, src)
        check_image_file(src, where)
        key = f"images/{src.relative_to(images).as_posix()}"
        files[key] = src
        if str(rec["label"]) not in ("0", "1", "True", "False", "true", "false"):
            raise WorkbenchError(f"{where}: label {rec['label']!r} is not 0/1 or true/false", "fix the label column")
        truth = str(rec["label"]) in ("1", "True", "true")
        items.append(ProbeItem(id=f"vsr{i:06d}", task="vsr", family="spatial",
                               question=f"Is this true of the image: {str(rec['caption']).rstrip('.')}?",
                               options=("yes", "no"), answer="yes" if truth else "no", image=key,
                               relation=str(rec["relation"]), meta=_meta(rec)))
    return ProbeSet(items, files, name=name or f"vsr-{jsonl.stem}", info={"source": "vsr", "path": str(jsonl)})
