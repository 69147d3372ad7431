"""Loaders on fixtures written in the layouts the benchmarks' authors publish (issue 23).

What'sUp (amitakamath/whatsup_vlms dataset_zoo/aro_datasets.py): whole-file JSON arrays per subset, images under
controlled_images/, controlled_clevr/, val2017/{id:012d}.jpg and vg_images/{id}.jpg. AdaptVis (shiqichen17/AdaptVis
prompts/*.jsonl): line i ↔ What'sUp image i, a LLaVA-1.5 wrapper, ``answer: ["On"]``. SpatialEval (MilaWang/SpatialEval):
``{task}.{mode}.{instance}.{question}`` ids, "Available options:" lists ending in a period, a text-only tqa configuration.
CV-Bench (nyu-visionx/CV-Bench): test.parquet (old) beside test_2d/test_3d.parquet (new), jsonl without img/, ``prompt``.
VSR: ``subj`` / ``obj``. Each subset's question, options and answer are asserted; each refusal is one line naming the
file and the fix. Images are tiny solid colours, so a pixel tells which file a probe got.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from workbench.cli import app as cli
from workbench.errors import WorkbenchError
from workbench.models.prompts import check_questions
from workbench.probes.items import ProbeItem
from workbench.probes.loaders import load_cvbench, load_spatialeval, load_vsr, load_whatsup
from workbench.probes.loaders.whatsup import CAPTION_QUESTION, parse_answer_with
from workbench.probes.loaders.wrappers import strip_wrapper, wrapper_in
from workbench.probes.probeset import ProbeSet

COLORS = ["red", "green", "blue", "yellow", "cyan", "magenta", "white", "black"]
RGB = {"red": (255, 0, 0), "green": (0, 128, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0), "cyan": (0, 255, 255),
       "magenta": (255, 0, 255), "white": (255, 255, 255), "black": (0, 0, 0)}


def _img(color: str, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 8), color).save(buf, format=fmt)
    return buf.getvalue()


def _write_img(path: Path, color: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_img(color, "JPEG" if path.suffix in (".jpg", ".jpeg") else "PNG"))


def _pixel(ps: ProbeSet, item: ProbeItem) -> tuple[int, int, int]:
    return ps.image(item).getpixel((5, 4))


def _close(a, b, tol=40) -> bool:  # JPEG shifts solid colours a little
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ====================================================================== What'sUp, as published
CONTROLLED_A = [  # (file, colour, relation the authors' code reads from the file name)
    ("beer-bottle_on_armchair.jpeg", "red", "on", "A beer bottle on a armchair",
     ["A beer bottle under a armchair", "A beer bottle to the left of a armchair", "A beer bottle to the right of a armchair"]),
    ("mug_left_of_table.jpeg", "green", "left of", "A mug to the left of a table",
     ["A mug on a table", "A mug under a table", "A mug to the right of a table"]),
    ("cup_under_chair.jpeg", "blue", "under", "A cup under a chair",
     ["A cup on a chair", "A cup to the left of a chair", "A cup to the right of a chair"]),
]
CONTROLLED_B = [
    ("mug_in-front_of_knife.jpeg", "yellow", "in front of", "A mug in front of a knife",
     ["A mug behind a knife", "A mug to the left of a knife", "A mug to the right of a knife"]),
    ("bowl_behind_cup.jpeg", "cyan", "behind", "A bowl behind a cup",
     ["A bowl in front of a cup", "A bowl to the left of a cup", "A bowl to the right of a cup"]),
]
COCO_ONE = [[139, "A photo of a dog on the left", "A photo of a dog on the right"],
            [632, "A photo of a bed on the top", "A photo of a bed on the bottom"]]
COCO_TWO = [[285, "A bear to the left of a bench", "A bear to the right of a bench"],
            [285, "A bench below a bear", "A bench above a bear"]]  # one image, two records
VG_ONE = [[2345, "A photo of a fence on the top", "A photo of a fence on the bottom"]]
VG_TWO = [[2346, "A man in front of a car", "A man behind a car"],
          [2347, "A cup on top of a table", "A cup below a table"]]


def _whatsup_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for folder, rows, fname in (("controlled_images", CONTROLLED_A, "controlled_images_dataset.json"),
                                ("controlled_clevr", CONTROLLED_B, "controlled_clevr_dataset.json")):
        for f, color, *_ in rows:
            _write_img(root / folder / f, color)
        recs = [{"image_path": f"data/{folder}/{f}", "caption_options": [true, *false]} for f, _, _, true, false in rows]
        (root / fname).write_text(json.dumps(recs, indent=4))  # the published files are indented
    for i, (iid, *_) in enumerate(COCO_ONE + COCO_TWO):
        _write_img(root / "val2017" / f"{iid:012d}.jpg", COLORS[i % 4])
    for i, (iid, *_) in enumerate(VG_ONE + VG_TWO):
        _write_img(root / "vg_images" / f"{iid}.jpg", COLORS[4 + i % 4])
    for name, rows in (("coco_qa_one_obj.json", COCO_ONE), ("coco_qa_two_obj.json", COCO_TWO),
                       ("vg_qa_one_obj.json", VG_ONE), ("vg_qa_two_obj.json", VG_TWO)):
        (root / name).write_text(json.dumps(rows, indent=2))
    return root


def _assert_caption_item(it: ProbeItem, captions: list[str]) -> None:
    """The benchmark's meaning: these captions are offered, the first one is true; lettered so one token answers."""
    letters = tuple("ABCD"[: len(captions)])
    assert it.options == letters
    assert sorted(it.meta["option_texts"].values()) == sorted(captions) and tuple(it.meta["option_texts"]) == letters
    assert it.meta["option_texts"][it.answer] == captions[0] == it.meta["answer_text"]
    assert it.meta["captions"] == captions
    assert it.question == "\n".join([CAPTION_QUESTION, *(f"{c}. {it.meta['option_texts'][c]}" for c in letters),
                                     "Answer with the caption's letter."])
    assert wrapper_in(it.question) is None


@pytest.mark.parametrize("subset,folder,rows", [("controlled-a", "controlled_images", CONTROLLED_A),
                                                ("controlled-b", "controlled_clevr", CONTROLLED_B)])
def test_whatsup_controlled_subsets(tmp_path, subset, folder, rows):
    root = _whatsup_root(tmp_path)
    fname = "controlled_images_dataset.json" if subset == "controlled-a" else "controlled_clevr_dataset.json"
    ps = load_whatsup(root / fname)  # images: the JSON's folder, as in the authors' data/ layout
    assert len(ps) == len(rows) and ps.name == f"whatsup-{subset}"
    for it, (f, color, relation, true, false) in zip(ps, rows):
        assert it.id == Path(f).stem and it.task == f"whatsup-{subset}" and it.family == "spatial"
        assert it.relation == relation
        assert it.image == f"images/{folder}/{f}"
        assert _close(_pixel(ps, it), RGB[color])
        _assert_caption_item(it, [true, *false])
    ps.save(tmp_path / "out")
    assert ProbeSet.load(tmp_path / "out") == ps == load_whatsup(root / fname)  # the same file gives the same set


@pytest.mark.parametrize("fname,subset,rows,folder,relations", [
    ("coco_qa_one_obj.json", "coco-one", COCO_ONE, "val2017", ["left", "top"]),
    ("coco_qa_two_obj.json", "coco-two", COCO_TWO, "val2017", ["left", "below"]),
    ("vg_qa_one_obj.json", "vg-one", VG_ONE, "vg_images", ["top"]),
    ("vg_qa_two_obj.json", "vg-two", VG_TWO, "vg_images", ["front", "top"]),
])
def test_whatsup_qa_subsets(tmp_path, fname, subset, rows, folder, relations):
    root = _whatsup_root(tmp_path)
    ps = load_whatsup(root / fname)
    assert [it.id for it in ps] == [f"{subset}-{i:05d}" for i in range(len(rows))]
    assert [it.relation for it in ps] == relations
    for it, (iid, true, false) in zip(ps, rows):
        name = f"{iid:012d}.jpg" if folder == "val2017" else f"{iid}.jpg"
        assert it.image == f"images/{folder}/{name}" and it.task == f"whatsup-{subset}"
        _assert_caption_item(it, [true, false])


def test_whatsup_images_folder_can_be_named_and_be_the_subset_folder(tmp_path):
    root = _whatsup_root(tmp_path)
    moved = tmp_path / "elsewhere"
    (root / "val2017").rename(moved)
    ps = load_whatsup(root / "coco_qa_one_obj.json", images=moved)  # --images pointing at val2017/ itself
    assert [it.image for it in ps] == ["images/val2017/000000000139.jpg", "images/val2017/000000000632.jpg"]


def test_whatsup_true_caption_is_not_always_the_same_letter(tmp_path):
    """The file lists the true caption first; lettered in that order, answering "A" would score 100%."""
    root = tmp_path / "data"
    rows = [[i + 1, f"A photo of a cat number {i} on the left", f"A photo of a cat number {i} on the right"] for i in range(40)]
    for iid, *_ in rows:
        _write_img(root / "val2017" / f"{iid:012d}.jpg", "red")
    (root / "coco_qa_one_obj.json").write_text(json.dumps(rows))
    answers = [it.answer for it in load_whatsup(root / "coco_qa_one_obj.json")]
    assert set(answers) == {"A", "B"}


def test_whatsup_refusals_are_one_line_naming_file_and_fix(tmp_path):
    root = _whatsup_root(tmp_path)
    (root / "controlled_images" / "mug_left_of_table.jpeg").unlink()
    with pytest.raises(WorkbenchError) as e:
        load_whatsup(root / "controlled_images_dataset.json")
    assert "controlled_images/mug_left_of_table.jpeg for" in _one_line(e)
    assert "controlled_images_dataset.json record 2" in str(e.value)
    assert "pass --images DIR" in str(e.value)

    recs = json.loads((root / "controlled_clevr_dataset.json").read_text())
    (root / "controlled_clevr_dataset.json").write_text(json.dumps(recs + recs[:1], indent=1))  # a duplicate record
    with pytest.raises(WorkbenchError) as e:
        load_whatsup(root / "controlled_clevr_dataset.json")
    assert "controlled_clevr_dataset.json lists image 'mug_in-front_of_knife.jpeg' twice (records 1 and 3)" in _one_line(e)

    (root / "mine.json").write_text(json.dumps(COCO_ONE))
    with pytest.raises(WorkbenchError) as e:
        load_whatsup(root / "mine.json")
    assert "mine.json is not one of What'sUp's published files" in _one_line(e) and "coco_qa_one_obj.json" in str(e.value)

    (root / "vg_qa_one_obj.json").write_text(json.dumps([[2345, "only one caption"]]))
    with pytest.raises(WorkbenchError) as e:
        load_whatsup(root / "vg_qa_one_obj.json")
    assert "vg_qa_one_obj.json record 1 is not [image_id, true_caption, false_caption]" in _one_line(e)

    (root / "coco_qa_two_obj.json").write_text('[\n  [285, "a", "b"],\n')
    with pytest.raises(WorkbenchError) as e:
        load_whatsup(root / "coco_qa_two_obj.json")
    assert "coco_qa_two_obj.json is not valid JSON (line 3" in _one_line(e)


# ====================================================================== AdaptVis prompt files
def _adaptvis_line(i: int, question: str, answer: str, double: bool = False) -> dict:
    gap = "  " if double else " "
    return {"id": i, "question": f"<image>\nUSER:{gap}{question}\nASSISTANT:", "answer": [answer]}


def _adaptvis(tmp_path: Path, name: str, lines: list[dict]) -> Path:
    p = tmp_path / "prompts" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return p


A_QUESTIONS = [("Where is the beer bottle in relation to the armchair? Answer with left, right, on or under.", "On", "on"),
               ("Where is the mug in relation to the table? Answer with left, right, on or under.", "Left", "left"),
               ("Where is the cup in relation to the chair? Answer with left, right, on or under.", "Under", "under")]


def test_adaptvis_controlled_a_pairs_line_i_with_whatsup_image_i(tmp_path):
    root = _whatsup_root(tmp_path)
    p = _adaptvis(tmp_path, "Controlled_Images_A_with_answer_four_options.jsonl",
                  [_adaptvis_line(i, q, a) for i, (q, a, _) in enumerate(A_QUESTIONS)])
    ps = load_whatsup(p)  # the What'sUp data folder found as ../data, AdaptVis's own layout
    assert [it.question for it in ps] == [q for q, _, _ in A_QUESTIONS]
    assert all(it.options == ("left", "right", "on", "under") for it in ps)
    assert [it.answer for it in ps] == [a for _, _, a in A_QUESTIONS]
    assert [it.image for it in ps] == [f"images/controlled_images/{f}" for f, *_ in CONTROLLED_A]
    assert [_close(_pixel(ps, it), RGB[c]) for it, (_, c, *_) in zip(ps, CONTROLLED_A)] == [True] * 3
    assert [it.meta["whatsup_caption"] for it in ps] == [t for *_, t, _ in CONTROLLED_A]
    assert ps.info["whatsup"] == str(root / "controlled_images_dataset.json")
    assert load_whatsup(p, images=root) == ps


def test_adaptvis_coco_and_vg_wording(tmp_path):
    root = _whatsup_root(tmp_path)
    coco = _adaptvis(tmp_path, "COCO_QA_two_obj_with_answer_four_options.jsonl", [
        _adaptvis_line(0, "Where is the bear in relation to the bench? Answer with left, right, above, or below.", "Left"),
        _adaptvis_line(1, "Where is the bench in relation to the bear? Answer with left, right, above or below.", "Below",
                       double=True),
    ])
    ps = load_whatsup(coco, images=root)
    assert [it.question for it in ps] == [
        "Where is the bear in relation to the bench? Answer with left, right, above, or below.",
        "Where is the bench in relation to the bear? Answer with left, right, above or below."]
    assert all(it.options == ("left", "right", "above", "below") for it in ps) and [it.answer for it in ps] == ["left", "below"]
    assert [it.image for it in ps] == ["images/val2017/000000000285.jpg"] * 2
    vg = _adaptvis(tmp_path, "VG_QA_one_obj_with_answer_six_options.jsonl", [
        _adaptvis_line(0, "Where is the fence in the photo? Answer with left, right, front, behind, top or bottom..", "Top")])
    (it,) = load_whatsup(vg, images=root)
    assert it.question == "Where is the fence in the photo? Answer with left, right, front, behind, top or bottom."
    assert it.options == ("left", "right", "front", "behind", "top", "bottom") and it.answer == "top"
    assert it.image == "images/vg_images/2345.jpg" and it.task == "whatsup-vg-one"


def test_adaptvis_refusals(tmp_path):
    root = _whatsup_root(tmp_path)
    name = "Controlled_Images_A_with_answer_four_options.jsonl"
    lines = [_adaptvis_line(i, q, a) for i, (q, a, _) in enumerate(A_QUESTIONS)]
    p = _adaptvis(tmp_path, name, lines[:2])
    with pytest.raises(WorkbenchError) as e:
        load_whatsup(p, images=root)
    assert f"{p} has 2 lines but {root / 'controlled_images_dataset.json'} has 3 records" in _one_line(e)
    p = _adaptvis(tmp_path, name, [lines[0], lines[1], {**lines[2], "id": 1}])
    with pytest.raises(WorkbenchError) as e:
        load_whatsup(p, images=root)
    assert f"{p} line 3 repeats id 1 (first on line 2)" in _one_line(e)
    p = _adaptvis(tmp_path, name, [lines[0], lines[1], {**lines[2], "answer": ["Behind"]}])
    with pytest.raises(WorkbenchError) as e:
        load_whatsup(p, images=root)
    assert f"{p} line 3: answer 'Behind' is not one of the listed options ['left', 'right', 'on', 'under']" in _one_line(e)
    p = _adaptvis(tmp_path / "alone", name, lines)
    with pytest.raises(WorkbenchError) as e:
        load_whatsup(p)
    assert "controlled_images_dataset.json, which is not in" in _one_line(e) and "pass --images DIR" in str(e.value)
    vsr = _adaptvis(tmp_path, "VSR_with_answer.jsonl", [{"id": 0, "question": "<image>\nUSER: Where? Answer with one word or "
                                                        "phrase.\nASSISTANT:", "answer": "behind"}])
    with pytest.raises(WorkbenchError) as e:
        load_whatsup(vsr, images=root)
    assert "VSR_with_answer.jsonl is AdaptVis's open-ended VSR prompt file" in _one_line(e) and "vsr format" in str(e.value)


def test_answer_with_and_wrapper_parsing():
    assert parse_answer_with("Where? Answer with left, right, above, or below.") == ("left", "right", "above", "below")
    assert parse_answer_with("Where? Answer with left, right, on or under.") == ("left", "right", "on", "under")
    assert parse_answer_with("Where is it?") == ()
    assert strip_wrapper("<image>\nUSER:  Where is it?\nASSISTANT:") == "Where is it?"
    assert strip_wrapper("Where is it?") == "Where is it?"


# ====================================================================== item 2: wrapped questions never reach transformers
def test_wrapped_question_in_a_qa_jsonl_is_refused_naming_the_record(tmp_path):
    _write_img(tmp_path / "imgs" / "a.png", "red")
    p = tmp_path / "qa.jsonl"
    p.write_text(json.dumps({"id": "a", "question": "<image>\nUSER: Where is the mug?\nASSISTANT:", "answer": "on",
                             "options": ["on", "under"]}) + "\n")
    with pytest.raises(WorkbenchError) as e:
        load_whatsup(p, images=tmp_path / "imgs")
    assert f"{p} record 'a': the question already holds the chat wrapper or image token '<image>'" in _one_line(e)
    p.write_text(json.dumps({"id": "b", "question": "USER: Where is the mug?", "answer": "on", "options": ["on", "under"],
                             "image": "a.png"}) + "\n")
    with pytest.raises(WorkbenchError, match="record 'b': the question already holds the chat wrapper or image token 'USER:'"):
        load_whatsup(p, images=tmp_path / "imgs")


@pytest.mark.parametrize("question,marker", [
    ("<image>\nUSER: Where is the mug?\nASSISTANT:", "<image>"),
    ("<|im_start|>user\nWhere is the mug?<|im_end|>", "<|im_start|>"),
    ("Where is the mug?\nASSISTANT:", "ASSISTANT:"),
    ("Where is the mug? <img_tok>", "<img_tok>"),  # the processor's own image token
])
def test_check_questions_names_the_probe(question, marker):
    processor = SimpleNamespace(image_token="<img_tok>", boi_token=None)
    ok = ProbeItem(id="ok", task="t", family="spatial", question="Where is the mug? A user asked.", options=("a", "b"),
                   answer="a", image="images/x.png")
    bad = ProbeItem(id="w1", task="t", family="spatial", question=question, options=("a", "b"), answer="a", image="images/x.png")
    check_questions(processor, [ok])
    with pytest.raises(WorkbenchError) as e:
        check_questions(processor, [ok, bad])
    assert _one_line(e).startswith(f"probe 'w1': the question already holds the chat wrapper or image token {marker!r}")


def test_build_batch_refuses_a_wrapped_question_before_the_processor(llava_vlm):
    from workbench.models.prompts import build_batch

    it = ProbeItem(id="wrapped-7", task="t", family="spatial", question="<image>\nUSER: Where is it?\nASSISTANT:",
                   options=("a", "b"), answer="a", image="images/x.png")
    ps = ProbeSet([it], {"images/x.png": _img("red")}, name="w")
    with pytest.raises(WorkbenchError, match="probe 'wrapped-7': the question already holds"):
        build_batch(llava_vlm, ps, list(ps))


# ====================================================================== SpatialEval, as on the hub
SE_TEXT = ("Consider the map. Which direction is the Police Supply Store relative to the Bakery? Available options:\n"
           "A. Northeast\nB. Northwest\nC. Southwest\nD. Southeast.")
SE_ROWS = [
    {"id": "spatialmap.vqa.2000.0", "text": SE_TEXT, "oracle_answer": "Southeast", "oracle_option": "D",
     "oracle_full_answer": "D. Southeast"},
    {"id": "mazenav.vqa.17.1", "text": "How many right turns are there? Available options:\nA. 1\nB. 2\nC. 3.",
     "oracle_answer": "2", "oracle_option": "B", "oracle_full_answer": "B. 2"},
]


def test_spatialeval_hub_ids_options_and_full_answer(tmp_path):
    df = pd.DataFrame([{**r, "image": {"bytes": _img(c), "path": None}} for r, c in zip(SE_ROWS, ["red", "blue"])])
    df.to_parquet(tmp_path / "test-00000-of-00001.parquet")
    ps = load_spatialeval(tmp_path / "test-00000-of-00001.parquet")
    assert [it.task for it in ps] == ["spatialmap", "mazenav"]
    assert [it.question for it in ps] == [SE_TEXT, SE_ROWS[1]["text"]]
    assert [it.options for it in ps] == [("A", "B", "C", "D"), ("A", "B", "C")]
    assert [it.answer for it in ps] == ["D", "B"]
    assert ps.items[0].meta["option_texts"] == {"A": "Northeast", "B": "Northwest", "C": "Southwest", "D": "Southeast"}
    assert ps.items[1].meta["option_texts"]["C"] == "3"
    assert [it.meta["oracle_full_answer"] for it in ps] == ["D. Southeast", "B. 2"]


def test_spatialeval_tqa_is_refused_in_one_line(tmp_path):
    tqa = tmp_path / "tqa"
    tqa.mkdir()
    pd.DataFrame(SE_ROWS).to_parquet(tqa / "test-00000-of-00001.parquet")
    with pytest.raises(WorkbenchError) as e:
        load_spatialeval(tqa)
    assert _one_line(e).startswith(f"{tqa / 'test-00000-of-00001.parquet'} is SpatialEval's text-only configuration (tqa")
    assert "import the vqa or vtqa configuration" in str(e.value)


def test_spatialeval_jsonl_with_path_base64_and_data_uri(tmp_path):
    _write_img(tmp_path / "images" / "spatialmap_vqa_2000_0.png", "red")
    b64 = base64.b64encode(_img("blue")).decode()
    rows = [{**SE_ROWS[0], "image_path": "images/spatialmap_vqa_2000_0.png"},
            {**SE_ROWS[1], "image_path": b64},
            {**SE_ROWS[1], "id": "spatialgrid.vqa.3.0", "image_path": f"data:image/png;base64,{b64}"}]
    p = tmp_path / "vqa.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ps = load_spatialeval(p)
    assert ps.items[0].image == "images/images/spatialmap_vqa_2000_0.png"
    assert [_pixel(ps, it) for it in ps] == [RGB["red"], RGB["blue"], RGB["blue"]]
    assert [it.answer for it in ps] == ["D", "B", "B"] and ps.items[0].meta["oracle_full_answer"] == "D. Southeast"
    rows[0]["image_path"] = "images/missing.png"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(WorkbenchError) as e:
        load_spatialeval(p)
    assert "missing.png for" in _one_line(e) and "record 'spatialmap.vqa.2000.0'" in str(e.value)
    p.write_text("".join(json.dumps(r) + "\n" for r in [rows[1], rows[1]]))
    with pytest.raises(WorkbenchError) as e:
        load_spatialeval(p)
    assert "vqa.jsonl record 'mazenav.vqa.17.1' occurs twice" in _one_line(e)


# ====================================================================== CV-Bench, as on the hub
def _cv_rows(offset: int, kind: str) -> list[dict]:
    tasks = [("Count", ["0", "1", "2", "3"], "(C)"), ("Relation", ["left", "right"], "(B)")] if kind == "2D" else \
        [("Depth", ["the table", "the bed"], "(A)"), ("Distance", ["the lamp", "the chair"], "(B)")]
    rows = []
    for k, (task, choices, answer) in enumerate(tasks):
        listed = "\n".join(f"({chr(65 + j)}) {c}" for j, c in enumerate(choices))
        q = f"Question {offset + k} about {task.lower()}?"
        rows.append({"idx": offset + k, "type": kind, "task": task, "question": q, "choices": choices, "answer": answer,
                     "prompt": f"{q} Select from the following choices.\n{listed}",
                     "source": "ADE20K" if kind == "2D" else "Omni3D",
                     "filename": f"img/{kind}/{task.lower()}/x_{offset + k}.png"})
    return rows


def _cv_parquet(path: Path, rows: list[dict], color: str) -> None:
    pd.DataFrame([{**r, "image": {"bytes": _img(color), "path": r["filename"]}} for r in rows]).to_parquet(path)


def test_cvbench_folder_with_old_and_new_files_reads_the_new(tmp_path):
    new2d, new3d = _cv_rows(0, "2D"), _cv_rows(2, "3D")
    _cv_parquet(tmp_path / "test_2d.parquet", new2d, "green")
    _cv_parquet(tmp_path / "test_3d.parquet", new3d, "blue")
    _cv_parquet(tmp_path / "test.parquet", new2d + new3d, "red")  # the older single file: the same items
    ps = load_cvbench(tmp_path)
    assert [it.id for it in ps] == ["0", "1", "2", "3"]
    assert [it.answer for it in ps] == ["2", "right", "the table", "the chair"]
    assert [it.question for it in ps] == [r["question"] for r in new2d + new3d]
    assert {_pixel(ps, it) for it in ps} == {RGB["green"], RGB["blue"]}  # nothing from test.parquet
    (note,) = ps.info["notes"]
    assert "read test_2d.parquet, test_3d.parquet and left out test.parquet" in note


def test_cvbench_old_file_beside_one_new_file_gives_only_what_the_new_one_lacks(tmp_path):
    new2d, new3d = _cv_rows(0, "2D"), _cv_rows(2, "3D")
    _cv_parquet(tmp_path / "test_2d.parquet", new2d, "green")
    _cv_parquet(tmp_path / "test.parquet", new2d + new3d, "red")
    ps = load_cvbench(tmp_path)
    assert sorted((it.id, it.meta["type"], _pixel(ps, it)) for it in ps) == [
        ("0", "2D", RGB["green"]), ("1", "2D", RGB["green"]), ("2", "3D", RGB["red"]), ("3", "3D", RGB["red"])]
    assert "from test.parquet only what they lack (its 2D items are the same)" in ps.info["notes"][0]


def test_cvbench_reused_idx_across_2d_and_3d_get_typed_ids(tmp_path):
    _cv_parquet(tmp_path / "test_2d.parquet", _cv_rows(0, "2D"), "green")
    _cv_parquet(tmp_path / "test_3d.parquet", _cv_rows(0, "3D"), "blue")
    assert [it.id for it in load_cvbench(tmp_path)] == ["2D-0", "2D-1", "3D-0", "3D-1"]
    _cv_parquet(tmp_path / "test_3d.parquet", _cv_rows(0, "2D"), "blue")  # the same item twice
    with pytest.raises(WorkbenchError) as e:
        load_cvbench(tmp_path)
    assert "record idx 0 (2D) occurs more than once (in test_2d.parquet, test_3d.parquet)" in _one_line(e)


def test_cvbench_letters_use_prompt_and_score_the_letter(tmp_path):
    rows = _cv_rows(0, "2D")
    _cv_parquet(tmp_path / "test_2d.parquet", rows, "green")
    ps = load_cvbench(tmp_path / "test_2d.parquet", letters=True)
    assert [it.question for it in ps] == [r["prompt"] for r in rows]
    assert [it.options for it in ps] == [("A", "B", "C", "D"), ("A", "B")]
    assert [it.answer for it in ps] == ["C", "B"]
    assert ps.items[0].meta["option_texts"] == {"A": "0", "B": "1", "C": "2", "D": "3"}
    assert ps.info["scoring"] == "letters"
    pd.DataFrame([{k: v for k, v in r.items() if k != "prompt"} | {"image": {"bytes": _img("red")}} for r in rows]).to_parquet(
        tmp_path / "old.parquet")
    with pytest.raises(WorkbenchError, match="old.parquet lacks column 'prompt'"):
        load_cvbench(tmp_path / "old.parquet", letters=True)


def test_cvbench_hub_jsonl_without_img_names_the_folder_and_build_img(tmp_path):
    p = tmp_path / "test_2d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in _cv_rows(0, "2D")))
    with pytest.raises(WorkbenchError) as e:
        load_cvbench(p)
    assert _one_line(e).startswith(f"{tmp_path / 'img'} does not exist, and test_2d.jsonl names its images there")
    assert "build_img.py" in str(e.value)
    for r in _cv_rows(0, "2D"):
        _write_img(tmp_path / r["filename"], "magenta")
    ps = load_cvbench(p)
    assert [it.image for it in ps] == ["images/img/2D/count/x_0.png", "images/img/2D/relation/x_1.png"]
    assert ps.items[1].meta["dataset"] == "ADE20K"


# ====================================================================== VSR
def test_vsr_keeps_subj_and_obj(tmp_path):
    coco = tmp_path / "coco"
    _write_img(coco / "train2017" / "000000000139.jpg", "gray")
    p = tmp_path / "test.jsonl"
    link = "http://images.cocodataset.org/train2017/000000000139.jpg"
    p.write_text(json.dumps({"image": "000000000139.jpg", "image_link": link,
                             "caption": "The cat is left of the dog.", "label": 1, "relation": "left of", "subj": "cat",
                             "obj": "dog", "annotator_id": 3}) + "\n")
    (it,) = load_vsr(p, coco)
    assert (it.meta["subj"], it.meta["obj"], it.relation, it.answer) == ("cat", "dog", "left of", "yes")


# ====================================================================== the CLI path
def test_cli_import_refusals_exit_2_with_one_line(tmp_path):
    root = _whatsup_root(tmp_path)
    (root / "controlled_images" / "cup_under_chair.jpeg").unlink()
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["probes", "import", "whatsup", str(root / "controlled_images_dataset.json"), "--out", str(out)])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: image controlled_images/cup_under_chair.jpeg for ")
    assert not out.exists()
    coco = str(root / "coco_qa_one_obj.json")
    r = CliRunner().invoke(cli, ["probes", "import", "whatsup", coco, "--letters", "--out", str(out)])
    assert r.exit_code == 2 and "--letters applies to the cvbench format" in r.output and not out.exists()
    r = CliRunner().invoke(cli, ["probes", "import", "whatsup", str(root / "coco_qa_one_obj.json"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert [it.task for it in ProbeSet.load(out)] == ["whatsup-coco-one"] * 2


def test_cli_import_cvbench_letters_and_note(tmp_path):
    _cv_parquet(tmp_path / "test_2d.parquet", _cv_rows(0, "2D"), "green")
    _cv_parquet(tmp_path / "test_3d.parquet", _cv_rows(2, "3D"), "blue")
    _cv_parquet(tmp_path / "test.parquet", _cv_rows(0, "2D") + _cv_rows(2, "3D"), "red")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["probes", "import", "cvbench", str(tmp_path), "--letters", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "left out test.parquet" in r.output.replace("\n", "")
    assert [it.answer for it in ProbeSet.load(out)] == ["C", "B", "A", "B"]
