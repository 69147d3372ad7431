"""ProbeSet files: exact round trips, corruption detected, saves atomic, nothing half-written."""

import json
import shutil

import pytest

from workbench.errors import WorkbenchError
from workbench.probes.items import ProbeItem
from workbench.probes.probeset import MANIFEST_FILE, META_FILE, ProbeSet, manifest_bytes


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_round_trip_is_exact(small_probes, tmp_path):
    small_probes.save(tmp_path / "ps")
    back = ProbeSet.load(tmp_path / "ps")
    assert back == small_probes and back.hash == small_probes.hash and back.items == small_probes.items
    assert back.name == small_probes.name and back.info == small_probes.info
    assert all(back.image_bytes(k) == small_probes.image_bytes(k) for k in small_probes.image_keys())
    assert (tmp_path / "ps" / MANIFEST_FILE).read_bytes() == manifest_bytes(small_probes.items)
    # saving the loaded set again gives the same files
    back.save(tmp_path / "ps2")
    for f in (MANIFEST_FILE, META_FILE):
        assert (tmp_path / "ps" / f).read_bytes() == (tmp_path / "ps2" / f).read_bytes()


def test_split_views_and_their_hashes(small_probes):
    train, test = small_probes.split("train"), small_probes.split("test")
    assert len(train) + len(test) == len(small_probes)
    assert {it.split for it in train} == {"train"} and train.hash != test.hash != small_probes.hash
    with pytest.raises(WorkbenchError, match="no split 'val'.*test, train"):
        small_probes.split("val")


def test_changed_image_is_detected(small_probes, tmp_path):
    folder = small_probes.save(tmp_path / "ps")
    img = folder / small_probes.items[0].image
    data = bytearray(img.read_bytes())
    data[-20] ^= 0xFF
    img.write_bytes(bytes(data))
    with pytest.raises(WorkbenchError, match="corrupt: its content hash does not match"):
        ProbeSet.load(folder)


@pytest.mark.parametrize("damage,msg", [
    (lambda f: (f / MANIFEST_FILE).write_bytes((f / MANIFEST_FILE).read_bytes()[:-40]), "line .* is corrupt"),
    (lambda f: (f / MANIFEST_FILE).write_text('{"id": "x"}\n'), "lacks fields"),
    (lambda f: (f / META_FILE).write_text("{not json"), "not valid JSON"),
    (lambda f: (f / META_FILE).write_text('{"format": "other"}'), "not a workbench probe-set file"),
    (lambda f: (f / META_FILE).unlink(), "probeset.json is missing"),
    (lambda f: shutil.rmtree(f / "images"), "is missing"),
])
def test_damaged_folders_are_refused_with_the_file_named(small_probes, tmp_path, damage, msg):
    folder = small_probes.save(tmp_path / "ps")
    damage(folder)
    with pytest.raises(WorkbenchError, match=msg):
        ProbeSet.load(folder)


def test_missing_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(WorkbenchError, match="does not exist.*probes make"):
        ProbeSet.load(tmp_path / "nope")


def test_existing_folder_is_kept_unless_overwrite(small_probes, tmp_path):
    folder = tmp_path / "ps"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    with pytest.raises(WorkbenchError, match="already exists"):
        small_probes.save(folder)
    assert (folder / "precious.txt").read_text() == "keep me"
    small_probes.save(folder, overwrite=True)
    assert not (folder / "precious.txt").exists() and ProbeSet.load(folder) == small_probes
    assert _leftovers(tmp_path) == []


def test_interrupted_save_leaves_nothing(small_probes, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = type(tmp_path).write_bytes

    def failing(self, data):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        return real(self, data)

    monkeypatch.setattr(type(tmp_path), "write_bytes", failing)
    with pytest.raises(OSError, match="disk full"):
        small_probes.save(tmp_path / "ps")
    assert not (tmp_path / "ps").exists() and _leftovers(tmp_path) == []


def test_items_validate_their_answer():
    with pytest.raises(WorkbenchError, match="answer 'up' is not one of its options"):
        ProbeItem(id="a", task="t", family="spatial", question="q", options=("left", "right"), answer="up", image="i.png")


def test_duplicate_ids_and_missing_images_are_refused():
    it = ProbeItem(id="a", task="t", family="spatial", question="q", options=("x", "y"), answer="x", image="i.png")
    with pytest.raises(WorkbenchError, match="occurs 2 times"):
        ProbeSet([it, it], {"i.png": b""}, name="s")
    with pytest.raises(WorkbenchError, match="names image 'i.png'"):
        ProbeSet([it], {}, name="s")


def test_manifest_is_canonical_json_lines(small_probes):
    lines = manifest_bytes(small_probes.items[:3]).decode().splitlines()
    assert len(lines) == 3
    rec = json.loads(lines[0])
    assert list(rec) == sorted(rec) and ProbeItem.from_json(rec) == small_probes.items[0]
