"""Benchmark loaders, each on a small fixture written here in that benchmark's exact format."""

import io
import json

import pandas as pd
import pytest
from PIL import Image

from workbench.errors import WorkbenchError
from workbench.probes.loaders import load_cvbench, load_spatialeval, load_vsr, load_whatsup
from workbench.probes.loaders.spatialeval import parse_options
from workbench.probes.probeset import ProbeSet


def _img(color, fmt="PNG", size=(20, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# ------------------------------------------------------------------ SpatialEval
SE_TEXT = ("This is a map. Which landmark is directly north of the tower?\n"
           "Available options:\nA. the bank\nB. the park\nC. the school\nD. the lake\nAnswer:")


def _spatialeval(path, drop=None):
    rows = [
        {"id": "spatialmap.vqa.0", "text": SE_TEXT, "image": {"bytes": _img("red"), "path": "a.png"},
         "oracle_answer": "the park", "oracle_option": "B", "oracle_full_answer": "B. the park"},
        {"id": "mazenav_vqa_1", "text": "How many right turns? A. 1 B. 2 C. 3",
         "image": {"bytes": _img("blue", "JPEG"), "path": None},
         "oracle_answer": "3", "oracle_option": "C", "oracle_full_answer": "C. 3"},
        {"id": "spatialgrid-2", "text": "What is in row 2? (A) cat (B) dog", "image": {"bytes": _img("green"), "path": None},
         "oracle_answer": "cat", "oracle_option": "A", "oracle_full_answer": "A. cat"},
    ]
    df = pd.DataFrame(rows)
    if drop:
        df = df.drop(columns=[drop])
    df.to_parquet(path)
    return path


def test_spatialeval_parquet(tmp_path):
    ps = load_spatialeval(_spatialeval(tmp_path / "vqa.parquet"))
    assert [it.task for it in ps] == ["spatialmap", "mazenav", "spatialgrid"]
    assert [it.options for it in ps] == [("A", "B", "C", "D"), ("A", "B", "C"), ("A", "B")]
    assert [it.answer for it in ps] == ["B", "C", "A"]
    assert ps.items[0].meta["option_texts"]["B"] == "the park" and ps.items[0].meta["oracle_answer"] == "the park"
    assert ps.image(ps.items[0]).getpixel((0, 0)) == (255, 0, 0)
    assert ps.items[1].image.endswith(".jpg")
    ps.save(tmp_path / "out")
    assert ProbeSet.load(tmp_path / "out") == ps


def test_parse_options_forms():
    assert parse_options("Q? A. left B. right") == {"A": "left", "B": "right"}
    assert parse_options("Q?\nA. the red one\nB. the blue one\nC. none") == {"A": "the red one", "B": "the blue one", "C": "none"}
    assert parse_options("no options here") == {}


@pytest.mark.parametrize("col", ["id", "text", "oracle_option"])  # no image column: the tqa refusal (test_published_layouts)
def test_spatialeval_missing_column_names_file_and_column(tmp_path, col):
    path = _spatialeval(tmp_path / "vqa.parquet", drop=col)
    with pytest.raises(WorkbenchError, match=f"vqa.parquet lacks column '{col}'"):
        load_spatialeval(path)


def test_spatialeval_missing_and_damaged_file(tmp_path):
    with pytest.raises(WorkbenchError, match="SpatialEval file .*nope.parquet does not exist"):
        load_spatialeval(tmp_path / "nope.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(WorkbenchError, match="bad.parquet is not a readable parquet file"):
        load_spatialeval(tmp_path / "bad.parquet")


# ------------------------------------------------------------------ What'sUp
def _whatsup(tmp_path):
    imgs = tmp_path / "images"
    imgs.mkdir()
    (imgs / "mug_left_of_plate.jpg").write_bytes(_img("white", "JPEG"))
    (imgs / "mug_on_plate.png").write_bytes(_img("black"))
    return _jsonl(tmp_path / "whatsup_a.jsonl", [
        {"id": "mug_left_of_plate", "question": "Where is the mug relative to the plate?", "answer": "left of"},
        {"id": "mug_on_plate", "question": "Where is the mug relative to the plate?", "answer": "on"},
    ]), imgs


def test_whatsup_qa(tmp_path):
    jsonl, imgs = _whatsup(tmp_path)
    ps = load_whatsup(jsonl, imgs)
    assert [it.answer for it in ps] == ["left of", "on"]
    assert all(it.options == ("left of", "on") for it in ps)
    assert [it.image for it in ps] == ["images/mug_left_of_plate.jpg", "images/mug_on_plate.png"]
    assert ps.image(ps.items[1]).getpixel((3, 3)) == (0, 0, 0)


def test_whatsup_errors(tmp_path):
    jsonl, imgs = _whatsup(tmp_path)
    (imgs / "mug_on_plate.png").unlink()
    with pytest.raises(WorkbenchError, match="no image mug_on_plate.* for .*record 'mug_on_plate'"):
        load_whatsup(jsonl, imgs)
    (imgs / "mug_on_plate.png").write_bytes(b"garbage")
    with pytest.raises(WorkbenchError, match="mug_on_plate.png .* is unreadable"):
        load_whatsup(jsonl, imgs)
    _jsonl(jsonl, [{"id": "x", "question": "q"}])
    with pytest.raises(WorkbenchError, match="whatsup_a.jsonl lacks column 'answer'"):
        load_whatsup(jsonl, imgs)
    jsonl.write_text('{"id": 1,\n')
    with pytest.raises(WorkbenchError, match="whatsup_a.jsonl line 1 is not valid JSON"):
        load_whatsup(jsonl, imgs)


# ------------------------------------------------------------------ VSR
def test_vsr_with_coco_subfolders(tmp_path):
    coco = tmp_path / "coco"
    (coco / "val2017").mkdir(parents=True)
    (coco / "val2017" / "000000000139.jpg").write_bytes(_img("gray", "JPEG"))
    (coco / "000000000285.jpg").write_bytes(_img("yellow", "JPEG"))
    jsonl = _jsonl(tmp_path / "test.jsonl", [
        {"image": "000000000139.jpg", "caption": "The cat is left of the dog.", "relation": "left of", "label": 1},
        {"image": "000000000285.jpg", "caption": "The bear is under the bench.", "relation": "under", "label": 0},
    ])
    ps = load_vsr(jsonl, coco)
    assert [it.answer for it in ps] == ["yes", "no"]
    assert [it.relation for it in ps] == ["left of", "under"]
    assert ps.items[0].question == "Is this true of the image: The cat is left of the dog?"
    assert ps.items[0].image == "images/val2017/000000000139.jpg"
    _jsonl(jsonl, [{"image": "000000000139.jpg", "caption": "c", "label": 1}])
    with pytest.raises(WorkbenchError, match="test.jsonl lacks column 'relation'"):
        load_vsr(jsonl, coco)
    with pytest.raises(WorkbenchError, match="COCO image folder .*nowhere does not exist"):
        load_vsr(jsonl, tmp_path / "nowhere")


# ------------------------------------------------------------------ CV-Bench
CV_ROWS = [
    {"idx": 0, "type": "2D", "task": "Relation", "question": "Where is the lamp with respect to the sofa?",
     "choices": ["left", "right"], "answer": "(B)", "filename": "img/2D/relation/ade20k_1.png"},
    {"idx": 1, "type": "2D", "task": "Count", "question": "How many chairs are in the image?",
     "choices": ["0", "1", "2", "3"], "answer": "(C)", "filename": "img/2D/count/ade20k_2.png"},
    {"idx": 2, "type": "3D", "task": "Depth", "question": "Which is closer to the camera?",
     "choices": ["the table", "the bed"], "answer": "(A)", "filename": "img/3D/depth/omni3d_3.png"},
]


def test_cvbench_jsonl_with_img_folder(tmp_path):
    for r in CV_ROWS:
        p = tmp_path / r["filename"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(_img("purple"))
    ps = load_cvbench(_jsonl(tmp_path / "test.jsonl", CV_ROWS))
    assert [it.answer for it in ps] == ["right", "2", "the table"]
    assert [it.task for it in ps] == ["cvbench-relation", "cvbench-count", "cvbench-depth"]
    assert [it.family for it in ps] == ["spatial", "control", "spatial"]
    assert ps.items[0].relation == "right" and ps.items[0].image == "images/img/2D/relation/ade20k_1.png"


def test_cvbench_parquet_with_embedded_images(tmp_path):
    rows = [{**{k: v for k, v in r.items() if k != "filename"}, "image": {"bytes": _img("cyan"), "path": r["filename"]}}
            for r in CV_ROWS]
    pd.DataFrame(rows).to_parquet(tmp_path / "test.parquet")
    ps = load_cvbench(tmp_path / "test.parquet")
    assert [it.options for it in ps][1] == ("0", "1", "2", "3") and [it.answer for it in ps] == ["right", "2", "the table"]
    assert ps.image(ps.items[2]).getpixel((1, 1)) == (0, 255, 255)


def test_cvbench_errors(tmp_path):
    rows = [dict(CV_ROWS[0], answer="(D)")]
    p = tmp_path / rows[0]["filename"]
    p.parent.mkdir(parents=True)
    p.write_bytes(_img("red"))
    with pytest.raises(WorkbenchError, match="answer '\\(D\\)' names no choice"):
        load_cvbench(_jsonl(tmp_path / "test.jsonl", rows))
    with pytest.raises(WorkbenchError, match="test.jsonl lacks column 'filename'"):
        load_cvbench(_jsonl(tmp_path / "test.jsonl", [{k: v for k, v in CV_ROWS[0].items() if k != "filename"}]))
