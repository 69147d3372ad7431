"""What'sUp (Kamath et al., 2023) as its authors publish it, the AdaptVis prompt files built on it, and a plain QA jsonl.

**Published What'sUp** (``amitakamath/whatsup_vlms``, ``dataset_zoo/aro_datasets.py``): JSON arrays in a data folder,
one file per subset, read whole (indented or not):

================================  =====================================================  ==========================
file                              record                                                 image
================================  =====================================================  ==========================
controlled_images_dataset.json    ``{"image_path": ".../controlled_images/x.jpeg",``     ``controlled_images/x.jpeg``
(Controlled Images A)             ``"caption_options": [4 captions, first true]}``
controlled_clevr_dataset.json     same                                                   ``controlled_clevr/x.jpeg``
(Controlled Images B)
coco_qa_one_obj.json,             ``[image_id, true_caption, false_caption]``            ``val2017/{id:012d}.jpg``
coco_qa_two_obj.json
vg_qa_one_obj.json,               ``[image_id, true_caption, false_caption]``            ``vg_images/{id}.jpg``
vg_qa_two_obj.json
================================  =====================================================  ==========================

The benchmark is a caption choice: the image and its captions, the first one true. Captions of one record
differ only in the preposition ("A mug on a table" / "A mug under a table"), so they share their first token
and no single answer position can tell them apart; each record therefore becomes a lettered multiple choice —
the question lists the captions as "A. …", "B. …", the options are the letters and the answer is the true
caption's letter (the captions are kept in ``meta``: ``captions`` in published order, ``option_texts``,
``answer_text``). The published order puts the true caption first, which would make "A" always right, so the
captions are lettered in an order shuffled per record (seeded by subset and record index: the same file gives
the same set). The image folder is the JSON's folder unless ``images`` names the What'sUp data folder (or the
subset's image folder itself). ``relation`` is the preposition, read as the authors' code reads it.

**AdaptVis prompt files** (``shiqichen17/AdaptVis prompts/<Subset>_with_answer_<n>_options.jsonl``, e.g.
``{"id": 0, "question": "<image>\\nUSER: Where is … Answer with left, right, on or under.\\nASSISTANT:",
"answer": ["On"]}``): line *i* belongs to image *i* of the matching What'sUp subset file (AdaptVis pairs them
by position), found in ``images`` (the What'sUp data folder; default the jsonl's folder, then ``../data``).
The wrapper is stripped, the options are the words of the "Answer with …" list and the answer is ``answer[0]``
in lower case, which must be one of them.

**Plain QA jsonl** ``{id, question, answer}`` with ``images`` holding ``<id>.<jpg|jpeg|png>`` (or the record's
``image``): options are the record's ``options``, else every distinct answer in the file.
"""

from __future__ import annotations

import random
import re
import string
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.probes.items import ProbeItem
from workbench.probes.loaders._common import (
    check_image_file,
    inside,
    read_json,
    read_jsonl,
    require_columns,
    require_file,
    safe_name,
)
from workbench.probes.loaders.wrappers import check_question, strip_wrapper
from workbench.probes.probeset import ProbeSet

COLUMNS = ("id", "question", "answer")
EXTENSIONS = (".jpg", ".jpeg", ".png")
CAPTION_QUESTION = "Which caption describes the image?"

# published file → (subset, image folder); the subset also names the task ("whatsup-<subset>")
SUBSETS: dict[str, tuple[str, str]] = {
    "controlled_images_dataset.json": ("controlled-a", "controlled_images"),
    "controlled_clevr_dataset.json": ("controlled-b", "controlled_clevr"),
    "coco_qa_one_obj.json": ("coco-one", "val2017"),
    "coco_qa_two_obj.json": ("coco-two", "val2017"),
    "vg_qa_one_obj.json": ("vg-one", "vg_images"),
    "vg_qa_two_obj.json": ("vg-two", "vg_images"),
}
# AdaptVis dataset name (the prefix of its prompt file) → the What'sUp file its lines follow
ADAPTVIS: dict[str, str] = {
    "Controlled_Images_A": "controlled_images_dataset.json",
    "Controlled_Images_B": "controlled_clevr_dataset.json",
    "COCO_QA_one_obj": "coco_qa_one_obj.json",
    "COCO_QA_two_obj": "coco_qa_two_obj.json",
    "VG_QA_one_obj": "vg_qa_one_obj.json",
    "VG_QA_two_obj": "vg_qa_two_obj.json",
}
_ADAPTVIS_FILE = re.compile(r"(?P<ds>" + "|".join(ADAPTVIS) + r")_with_answer_\w+?_options\.jsonl")
_ANSWER_WITH = re.compile(r"Answer with (?P<list>[^.?\n]+)", re.I)


# ------------------------------------------------------------------ relations, as aro_datasets.py reads them
def _relation(subset: str, image_path: str, caption: str) -> str:
    if subset == "controlled-a":
        pairs = (("left_of", "left of"), ("right_of", "right of"), ("_on_", "on"))
        return next((r for k, r in pairs if k in image_path), "under")
    if subset == "controlled-b":
        pairs = (("left_of", "left of"), ("right_of", "right of"), ("_in-front_of_", "in front of"))
        return next((r for k, r in pairs if k in image_path), "behind")
    if subset.endswith("-one"):
        return caption.split()[-1] if caption.split() else ""
    if subset == "coco-two":
        return next((r for k, r in (("left of", "left"), ("right of", "right"), ("above", "above")) if k in caption), "below")
    pairs = (("left of", "left"), ("right of", "right"), ("front of", "front"), ("behind", "behind"))
    return next((r for k, r in pairs if k in caption), "top")


# ------------------------------------------------------------------ images
def _image(root: Path, folder: str, name: str, where: str) -> Path:
    """``root/folder/name`` (root = the What'sUp data folder) or ``root/name`` (root = the image folder itself)."""
    for rel in (f"{folder}/{name}", name):
        p = inside(root, rel, where)
        if p.is_file():
            return check_image_file(p, where)
    raise WorkbenchError(f"image {folder}/{name} for {where} is not in {root}",
                         f"pass --images DIR: the What'sUp data folder that holds {folder}/ (or {folder}/ itself)")


def _published_records(path: Path, subset: str, folder: str, root: Path) -> list[dict]:
    """Each record of a published subset file as {id, captions, image (Path), relation}."""
    data = read_json(path)
    out, seen = [], {}
    for i, rec in enumerate(data):
        where = f"{path} record {i + 1}"
        if subset.startswith("controlled"):
            if not isinstance(rec, dict) or "image_path" not in rec or "caption_options" not in rec:
                raise WorkbenchError(f"{where} is not an object with 'image_path' and 'caption_options'",
                                     "this is not a published What'sUp controlled-images file")
            image_path, captions = str(rec["image_path"]), rec["caption_options"]
            name = image_path.replace("\\", "/").rsplit("/", 1)[-1]
            rid = safe_name(Path(name).stem)
            if rid in seen:
                raise WorkbenchError(f"{path} lists image {name!r} twice (records {seen[rid]} and {i + 1})",
                                     "remove the duplicate record: each controlled image is one probe")
            seen[rid] = i + 1
        else:
            if not isinstance(rec, list) or len(rec) != 3:
                raise WorkbenchError(f"{where} is not [image_id, true_caption, false_caption]",
                                     "this is not a published What'sUp COCO-QA / VG-QA file")
            image_path, captions = str(rec[0]), rec[1:]
            try:
                name = f"{int(rec[0]):012d}.jpg" if folder == "val2017" else f"{rec[0]}.jpg"
            except (TypeError, ValueError) as e:
                raise WorkbenchError(f"{where}: image id {rec[0]!r} is not a COCO image number", "fix the record") from e
            rid = f"{subset}-{i:05d}"  # one image can carry several records: ids follow the record
        if not isinstance(captions, list) or len(captions) < 2 or not all(isinstance(c, str) and c.strip() for c in captions):
            raise WorkbenchError(f"{where}: captions {captions!r} are not two or more texts", "the first caption is the true one")
        out.append({"id": rid, "captions": [c.strip() for c in captions], "image": _image(root, folder, name, where),
                    "relation": _relation(subset, image_path, captions[0]), "where": where})
    return out


def _caption_item(rec: dict, subset: str, index: int, key: str) -> ProbeItem:
    captions = rec["captions"]
    order = list(range(len(captions)))
    random.Random(f"whatsup:{subset}:{index}").shuffle(order)  # str seeds are hashed with sha512: stable across runs
    letters = string.ascii_uppercase[: len(captions)]
    texts = {letters[k]: captions[j] for k, j in enumerate(order)}
    answer = letters[order.index(0)]
    question = "\n".join([CAPTION_QUESTION, *(f"{c}. {t}" for c, t in texts.items()), "Answer with the caption's letter."])
    return ProbeItem(id=rec["id"], task=f"whatsup-{subset}", family="spatial", question=question, options=tuple(letters),
                     answer=answer, image=key, relation=rec["relation"],
                     meta={"source": "whatsup", "form": "captions", "captions": captions, "option_texts": texts,
                           "answer_text": captions[0]})


def _subset_of(path: Path) -> tuple[str, str]:
    if path.name in SUBSETS:
        return SUBSETS[path.name]
    known = ", ".join(SUBSETS)
    raise WorkbenchError(f"{path} is not one of What'sUp's published files, so its subset (and image folder) is unknown",
                         f"keep the published name: {known}")


def _load_published(path: Path, images: Path | None, name: str | None) -> ProbeSet:
    subset, folder = _subset_of(path)
    root = require_file(images, "What'sUp data folder") if images else path.parent
    items, files = [], {}
    for i, rec in enumerate(_published_records(path, subset, folder, root)):
        key = f"images/{folder}/{rec['image'].name}"
        files[key] = rec["image"]
        items.append(_caption_item(rec, subset, i, key))
    return ProbeSet(items, files, name=name or f"whatsup-{subset}",
                    info={"source": "whatsup", "subset": subset, "path": str(path)})


# ------------------------------------------------------------------ AdaptVis prompt files
def parse_answer_with(question: str) -> tuple[str, ...]:
    """The options an AdaptVis question lists: "… Answer with left, right, above, or below." → (left, right, above, below)."""
    m = _ANSWER_WITH.search(question)
    if not m:
        return ()
    words = re.split(r"\s*,\s*(?:or\s+)?|\s+or\s+", m.group("list").strip())
    return tuple(w.strip().lower() for w in words if w.strip())


def _load_adaptvis(path: Path, dataset: str, images: Path | None, name: str | None) -> ProbeSet:
    target = ADAPTVIS[dataset]
    roots = [images] if images else [path.parent, path.parent.parent / "data"]
    found = next((r / target for r in roots if (r / target).is_file()), None)
    if found is None:
        raise WorkbenchError(f"{path} pairs line i with image i of What'sUp's {target}, which is not in {roots[0]}",
                             f"pass --images DIR: the What'sUp data folder holding {target} and its images")
    subset, folder = SUBSETS[target]
    lines = read_jsonl(path)
    require_columns(lines, ("question", "answer"), path)
    records = _published_records(found, subset, folder, found.parent)
    if len(lines) != len(records):
        raise WorkbenchError(f"{path} has {len(lines)} lines but {found} has {len(records)} records, so line i cannot be paired "
                             "with image i", "use the prompt file and the What'sUp file of the same subset, both as published")
    seen: dict[object, int] = {}
    items, files = [], {}
    for i, (line, rec) in enumerate(zip(lines, records)):
        where = f"{path} line {i + 1}"
        if "id" in line:
            if line["id"] in seen:
                raise WorkbenchError(f"{where} repeats id {line['id']!r} (first on line {seen[line['id']]})",
                                     "AdaptVis pairs line i with What'sUp image i: restore the published prompt file")
            seen[line["id"]] = i + 1
        question = check_question(strip_wrapper(str(line["question"])), where)
        options = parse_answer_with(question)
        if len(options) < 2:
            raise WorkbenchError(f"{where}: the question lists no options (no 'Answer with a, b or c')",
                                 "only AdaptVis's multiple-choice prompt files can be imported")
        raw = line["answer"][0] if isinstance(line["answer"], list) and line["answer"] else line["answer"]
        answer = str(raw).strip().lower()
        if answer not in options:
            raise WorkbenchError(f"{where}: answer {raw!r} is not one of the listed options {list(options)}", "fix the line")
        key = f"images/{folder}/{rec['image'].name}"
        files[key] = rec["image"]
        items.append(ProbeItem(id=rec["id"], task=f"whatsup-{subset}", family="spatial", question=question, options=options,
                               answer=answer, image=key, relation=answer,
                               meta={"source": "adaptvis", "form": "adaptvis", "line": i, "whatsup_caption": rec["captions"][0]}))
    return ProbeSet(items, files, name=name or f"adaptvis-{subset}",
                    info={"source": "adaptvis", "subset": subset, "path": str(path), "whatsup": str(found)})


# ------------------------------------------------------------------ plain QA jsonl
def _find(images: Path, rec: dict, where: str) -> Path:
    if rec.get("image"):
        return check_image_file(inside(images, rec["image"], where), where)
    for ext in EXTENSIONS:
        p = inside(images, f"{rec['id']}{ext}", where)
        if p.is_file():
            return check_image_file(p, where)
    raise WorkbenchError(f"no image {rec['id']}{{{','.join(EXTENSIONS)}}} in {images} for {where}", "check the image folder")


def _load_qa(jsonl: Path, images: Path, name: str | None) -> ProbeSet:
    records = read_jsonl(jsonl)
    require_columns(records, COLUMNS, jsonl)
    all_answers = tuple(sorted({str(r["answer"]).strip() for r in records}))
    items, files = [], {}
    for rec in records:
        where = f"{jsonl} record {rec['id']!r}"
        question = check_question(str(rec["question"]), where)
        src = _find(images, rec, where)
        key = f"images/{src.relative_to(images).as_posix()}"
        files[key] = src
        options = tuple(str(o).strip() for o in rec["options"]) if rec.get("options") else all_answers
        answer = str(rec["answer"]).strip()
        items.append(ProbeItem(id=safe_name(rec["id"]), task="whatsup", family="spatial", question=question,
                               options=options, answer=answer, image=key, relation=answer, meta={"source": "whatsup"}))
    return ProbeSet(items, files, name=name or f"whatsup-{jsonl.stem}", info={"source": "whatsup", "path": str(jsonl)})


def _is_adaptvis(path: Path) -> str | None:
    m = _ADAPTVIS_FILE.fullmatch(path.name)
    if m:
        return m.group("ds")
    if path.name == "VSR_with_answer.jsonl":
        raise WorkbenchError(f"{path} is AdaptVis's open-ended VSR prompt file ('Answer with one word or phrase'): "
                             "it lists no options",
                             "import VSR itself with the vsr format")
    return None


def load_whatsup(path: str | Path, images: str | Path | None = None, name: str | None = None) -> ProbeSet:
    """A What'sUp subset file (.json, as published), an AdaptVis prompt file, or a plain QA jsonl → ProbeSet."""
    path = Path(path)
    images = Path(images) if images is not None else None
    if path.suffix.lower() == ".json":
        return _load_published(require_file(path, "What'sUp file"), images, name)
    dataset = _is_adaptvis(path)
    if dataset is not None:
        return _load_adaptvis(require_file(path, "AdaptVis prompt file"), dataset, images, name)
    if images is None:
        raise WorkbenchError(f"the whatsup QA jsonl {path} needs its image folder", "pass --images DIR")
    path = require_file(path, "What'sUp file")
    first = read_jsonl(path)[0]
    if isinstance(first.get("answer"), list) and "image" not in first:
        raise WorkbenchError(f"{path} looks like an AdaptVis prompt file (list answers, no image field) under another name",
                             "keep its published name (<Subset>_with_answer_<n>_options.jsonl) so its What'sUp subset is known")
    return _load_qa(path, require_file(images, "What'sUp image folder"), name)
