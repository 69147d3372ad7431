"""Store faults: misplaced, old-format and corrupt chunks; bad manifests and stray files; gc that keeps what a rerun
can use; first-writer-wins manifests and orphan chunks; `store fsck`; empty probe sets; group-readable files.

Most cases build a sweep by hand through :class:`EffectStore` (2 layers × 2 heads × 4 probes, value = a formula of
the cell), so each fault is one file operation away and the expected answer is known without a model. The cases
that need the sweep loop use the tiny LLaVA of ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from workbench.cli.main import app
from workbench.errors import WorkbenchError
from workbench.fileio import atomic_write
from workbench.store.effects import CorruptChunk, EffectStore, _values_digest, sweep_key
from workbench.sweeps.engine import SweepSpec, plan_chunks

SPEC = SweepSpec(alphas=(0.0, 2.0)).to_json()
N_LAYERS, N_HEADS, N_PROBES = 2, 2, 4
FSCK = "workbench store fsck"


def _manifest(lpc: int, ppc: int, fp: str) -> dict:
    return {"model": "toy", "model_fingerprint": fp, "family": "LLaVA-1.5", "shape": [N_LAYERS, N_HEADS], "probes": "toyprobes",
            "probeset_hash": "h" * 64, "n_probes": N_PROBES, "spec": SPEC, "layers_per_chunk": lpc, "probes_per_chunk": ppc,
            "chunks": [c.name for c in plan_chunks(N_LAYERS, N_PROBES, lpc, ppc)]}


def _frame(layers: range, probes: range) -> pd.DataFrame:
    """One chunk's long-form rows; value = 100·layer + 10·head + probe + α, so every cell is known."""
    return pd.DataFrame([{"layer": la, "head": h, "alpha": a, "probe_id": f"p{p}", "task": "relation", "relation": "left",
                          "value": 100.0 * la + 10 * h + p + a} for la in layers for h in range(N_HEADS) for a in SPEC["alphas"]
                         for p in probes])


def build(root: Path, fp: str = "f" * 64, lpc: int = 1, ppc: int = 2) -> tuple[EffectStore, str, list[str]]:
    store = EffectStore(root)
    key = sweep_key(fp, "h" * 64, SPEC)
    store.ensure(key, _manifest(lpc, ppc, fp))
    for c in plan_chunks(N_LAYERS, N_PROBES, lpc, ppc):
        store.write_chunk(key, c.name, _frame(range(c.layer_start, c.layer_stop), range(c.probe_start, c.probe_stop)))
    return store, key, store.manifest(key)["chunks"]


def listing(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for folders): equal listings mean nothing was written or removed."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(Path(root).rglob("*"))}


def age(path: Path, seconds: float = 7200) -> None:
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (time.time() - seconds, time.time() - seconds))


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def chunk_path(store: EffectStore, key: str, name: str) -> Path:
    return store.folder(key) / f"{name}.parquet"


# ------------------------------------------------------------------ item 4: chunks carry their identity
def test_a_chunk_copied_over_another_is_refused_treated_as_missing_and_not_complete(tmp_path):
    store, key, names = build(tmp_path)
    shutil.copyfile(chunk_path(store, key, names[0]), chunk_path(store, key, names[1]))
    with pytest.raises(CorruptChunk, match=f"{names[1]}.parquet holds chunk {names[0]}, not {names[1]}") as e:
        store.read_chunk(key, names[1])
    assert "\n" not in str(e.value) and "recomputed on the next run" in str(e.value)
    with pytest.raises(CorruptChunk, match="holds chunk"):
        store.read(key)
    assert store.missing(key, names)[0] == [names[1]]
    (entry,) = store.ls()
    assert (entry.done, entry.expected, entry.complete) == (3, 4, False)
    r = cli("store", "ls", "--store", str(tmp_path))
    assert r.exit_code == 0 and "3/4" in r.output and "holds chunk" in r.output and FSCK in r.output, r.output


def test_a_chunk_from_another_sweep_is_refused(tmp_path):
    store, key, names = build(tmp_path)
    _, other, _ = build(tmp_path, fp="e" * 64)
    shutil.copyfile(chunk_path(store, other, names[0]), chunk_path(store, key, names[0]))
    with pytest.raises(CorruptChunk, match=f"belongs to sweep {other[:12]}…, not {key[:12]}…"):
        store.read_chunk(key, names[0])


def test_a_chunk_in_the_old_format_cannot_be_verified_and_is_recomputed(tmp_path):
    store, key, names = build(tmp_path)
    path = chunk_path(store, key, names[2])
    table = pq.read_table(path)
    # as the first store format wrote it
    table = table.replace_schema_metadata({b"workbench.sha256": _values_digest(table).encode()})
    pq.write_table(table, path)
    with pytest.raises(CorruptChunk, match="has no identity metadata .written by an older workbench.*cannot be verified"):
        store.read_chunk(key, names[2])
    assert store.missing(key, names)[0] == [names[2]]
    assert not store.ls()[0].complete


def test_a_sweep_recomputes_a_misplaced_chunk_and_gives_the_right_values(llava_vlm, probes32, tmp_path):
    from workbench.sweeps.run import sweep

    six = probes32.filter(lambda it: int(it.id) < 6, name="six")
    spec, kw = SweepSpec(alphas=(0.0,)), dict(layers_per_chunk=1, probes_per_chunk=3)
    store = EffectStore(tmp_path)
    first = sweep(llava_vlm, six, spec, store, log=lambda m: None, **kw)
    names = store.chunk_names(first.key)
    shutil.copyfile(chunk_path(store, first.key, names[0]), chunk_path(store, first.key, names[3]))
    warnings = []
    again = sweep(llava_vlm, six, spec, store, log=warnings.append, **kw)
    assert (again.computed, again.cached) == (1, 3) and torch.equal(again.values, first.values)
    assert [w for w in warnings if f"holds chunk {names[0]}, not {names[3]}" in w] == warnings and len(warnings) == 1


# ------------------------------------------------------------------ item 4: one bad entry never breaks the rest
def _bad_entries(root: Path) -> dict[str, str]:
    """Broken entries next to a good sweep; returns {path under the store: distinctive words of its problem}."""
    sweeps = root / "sweeps"
    bad = {}
    for i, (content, words) in enumerate(((b"\x00\xffgarbage", "is not valid JSON"), (b"{}", "lacks model"),
                                          (json.dumps({k: v for k, v in _manifest(1, 2, "f" * 64).items()
                                                       if k != "chunks"}).encode(),
                                           "lacks chunks"))):
        folder = sweeps / (f"{i}" * 64)
        folder.mkdir()
        (folder / "manifest.json").write_bytes(content)
        bad[f"sweeps/{folder.name}/manifest.json"] = words
    (sweeps / "notes.txt").write_text("not a sweep")
    bad["sweeps/notes.txt"] = "is not a sweep folder"
    (root / "probesets" / "abcd").mkdir(parents=True)
    (root / "probesets" / "abcd" / "probeset.json").write_bytes(b"\x89garbage")
    bad["probesets/abcd"] = "probeset.json is not a probe-set header"
    (root / "scales").mkdir()
    (root / "scales" / "broken.json").write_text("[1, 2]")
    (root / "scales" / "broken.safetensors").write_bytes(b"junk")
    bad["scales/broken.json"] = "is not a scale vector's metadata"
    (root / "headsets").mkdir()
    (root / "headsets" / "h.json").write_text("{oops")
    bad["headsets/h.json"] = "is not a valid head set"
    return bad


def test_bad_entries_never_break_ls_or_gc_and_each_is_named(tmp_path):
    store, key, _ = build(tmp_path)
    bad = _bad_entries(tmp_path)
    before = listing(tmp_path)
    assert [e.key for e in store.ls()] == [key]
    r = cli("store", "ls", "--store", str(tmp_path))
    assert r.exit_code == 0 and key[:12] in r.output and "4/4" in r.output, r.output
    for path, words in bad.items():
        if path.startswith("sweeps/"):
            assert any(path in line and words in line and FSCK in line for line in r.output.splitlines()), (path, r.output)
    r = cli("store", "gc", "--store", str(tmp_path))
    assert r.exit_code == 0 and "removed 0 leftover(s)" in r.output, r.output
    assert listing(tmp_path) == before


def test_the_app_catalog_lists_good_entries_and_names_the_bad(tmp_path, probes32):
    from workbench.app import data
    from workbench.scale.vector import ScaleVector
    from workbench.store.library import Library

    store, key, _ = build(tmp_path)
    bad = _bad_entries(tmp_path)
    ScaleVector(attn=torch.ones(2, 2), mlp=torch.ones(2), model="toy", model_fingerprint="f" * 64, positions="last", mode="attn",
                s_max=1.0).save(tmp_path / "scales" / "good.safetensors")
    small = probes32.filter(lambda it: int(it.id) < 2, name="two")
    Library(tmp_path).add_probes(small)
    before = listing(tmp_path)
    assert [r["key"] for r in data.catalog(tmp_path)] == [key]
    assert [v["name"] for v in data.vectors(tmp_path)] == ["good"]
    assert [(p["name"], p["n"]) for p in Library(tmp_path).probesets()] == [("two", 2)]
    problems = data.catalog_problems(tmp_path)
    for path, words in bad.items():
        assert any(path in line and words in line and FSCK in line for line in problems), (path, problems)
    assert len(problems) == len(bad) and all("\n" not in p for p in problems)
    assert listing(tmp_path) == before


def test_the_app_says_in_one_line_that_a_sweep_has_a_corrupt_chunk(tmp_path):
    from workbench.app import data

    store, key, names = build(tmp_path)
    path = chunk_path(store, key, names[1])
    table = pq.read_table(path)
    values = table.column("value").to_numpy().copy()
    values[0] += 1.0
    pq.write_table(table.set_column(table.schema.get_field_index("value"), "value", pa.array(values)), path)  # metadata kept
    (row,) = data.catalog(tmp_path)
    assert row["complete"]  # the footer is intact; only the full read sees the values changed
    with pytest.raises(CorruptChunk, match=f"{names[1]}.parquet fails its checksum"):
        data.sweep_data(tmp_path, key)
    assert data.sweep_message(tmp_path, key) == (f"chunk {path} fails its checksum "
                                                 f"(run the sweep again to recompute it, or `{FSCK} --fix`)")


def _dash_post(client, outputs: list[tuple[str, str]], inputs: list[tuple[str, str, object]], state=()):
    """One callback round trip, as the browser makes it."""
    body = {"output": ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
            "outputs": [{"id": i, "property": p} for i, p in outputs],
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"],
            "state": [{"id": i, "property": p, "value": v} for i, p, v in state]}
    if len(outputs) == 1:
        body["outputs"] = body["outputs"][0]
        body["output"] = f"{outputs[0][0]}.{outputs[0][1]}"
    return client.post("/_dash-update-component", json=body)


def test_the_app_pages_load_with_bad_entries_and_show_a_corrupt_sweep_in_one_line(tmp_path):
    from workbench.app import create_app

    store, key, names = build(tmp_path)
    bad = _bad_entries(tmp_path)
    client = create_app(tmp_path, "toy").server.test_client()
    assert client.get("/").status_code == 200
    pages = {}
    for page in ("/compare", "/export", "/sweeps", "/train", "/"):
        r = _dash_post(client, [("_pages_content", "children"), ("_pages_store", "data")],
                       [("_pages_location", "pathname", page), ("_pages_location", "search", "")])
        pages[page] = (r.status_code, json.dumps(r.get_json(), ensure_ascii=False) if r.status_code == 200 else "")
    assert {page: code for page, (code, _) in pages.items()} == dict.fromkeys(pages, 200)
    for page, (_, text) in pages.items():
        assert f"{len(bad)} store entries cannot be read" in text and "sweeps/notes.txt" in text and FSCK in text, (
            page, text[:500])
    picker = json.dumps(r.get_json()["response"]["_pages_content"]["children"])  # the explorer ("/", the last page loaded)
    assert picker.count("toyprobes (") == 1 and f"\"value\": \"{key}\"" in picker  # its sweep picker: the one readable sweep
    chunk_path(store, key, names[2]).write_bytes(b"PAR1 not a chunk")
    from workbench.app import data

    data._sweep_data.cache_clear()  # as a server started on this store finds it: the explorer above cached the verified sweep
    r = _dash_post(client, [("_pages_content", "children"), ("_pages_store", "data")],
                   [("_pages_location", "pathname", "/"), ("_pages_location", "search", f"?key={key}")])
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    line = (f"chunk {chunk_path(store, key, names[2])} is unreadable (ArrowInvalid) "
            f"(run the sweep again to recompute it, or `{FSCK} --fix`)")
    # the explorer at /?key=KEY says why it cannot show it, in one line
    assert line in json.dumps(r.get_json(), ensure_ascii=False)
    r = _dash_post(client, [("export-alpha", "options"), ("export-alpha", "value"), ("export-relation", "options"),
                            ("export-sweep-error", "children"), ("export-relation", "value")], [("export-sweep", "value", key)])
    assert r.status_code == 200, r.get_data(as_text=True)[:500]  # the export page's sweep choice: the same line under its field
    assert r.get_json()["response"]["export-sweep-error"]["children"] == line


# ------------------------------------------------------------------ item 5: gc never deletes what a rerun can use
def test_gc_keeps_chunks_without_a_manifest_and_a_rerun_reuses_them(tmp_path):
    store, key, names = build(tmp_path)
    original = store.manifest(key)
    (store.folder(key) / "manifest.json").unlink()
    age(tmp_path)
    before = listing(tmp_path)
    r = cli("store", "gc", "--store", str(tmp_path))
    assert r.exit_code == 0 and "removed 0 leftover(s)" in r.output, r.output
    assert f"kept sweeps/{key[:12]}…: 4 chunks without a manifest (a rerun of the same sweep reuses them; " \
           f"`{FSCK} --fix` restores the manifest)" in r.output.replace("\n", " ")
    assert listing(tmp_path) == before
    store.ensure(key, _manifest(2, 4, "f" * 64))  # a rerun with other chunk sizes: the chunks' own manifest comes back
    assert store.manifest(key) == original and store.missing(key, names) == ([], [])


# ------------------------------------------------------------------ item 11: first writer wins; orphans are collected
def test_the_first_manifest_wins_and_gc_removes_orphan_chunks(tmp_path, monkeypatch):
    store = EffectStore(tmp_path)
    key = sweep_key("f" * 64, "h" * 64, SPEC)
    store.ensure(key, _manifest(1, 2, "f" * 64))
    real_is_file = Path.is_file
    with monkeypatch.context() as m:  # a second sweep that looked before the first one's manifest appeared
        m.setattr(Path, "is_file", lambda p: False if p.name == "manifest.json" else real_is_file(p))
        store.ensure(key, _manifest(2, 4, "f" * 64))
    assert store.manifest(key)["layers_per_chunk"] == 1 and not list(store.folder(key).glob(".*.tmp"))
    for c in plan_chunks(N_LAYERS, N_PROBES, 1, 2):
        store.write_chunk(key, c.name, _frame(range(c.layer_start, c.layer_stop), range(c.probe_start, c.probe_stop)))
    orphan = "L000-002_P000000-000004"  # what the other chunking computed before this fix
    store.write_chunk(key, orphan, _frame(range(2), range(4)))
    age(tmp_path)
    report = store.collect()
    assert report.removed == (str(chunk_path(store, key, orphan)),) and "not in its manifest's plan" in report.reasons[0]
    assert store.ls()[0].complete and len(store.chunk_names(key)) == 4


# ------------------------------------------------------------------ store fsck
def test_fsck_lists_every_problem_changes_nothing_and_fix_repairs_the_store(tmp_path):
    store, good, names = build(tmp_path)
    _, lost, _ = build(tmp_path, fp="1" * 64)
    lost_manifest = store.manifest(lost)
    (store.folder(lost) / "manifest.json").unlink()
    _, broken, broken_names = build(tmp_path, fp="2" * 64)
    chunk_path(store, broken, broken_names[0]).write_bytes(b"PAR1 garbage")
    store.write_chunk(good, "L000-002_P000000-000004", _frame(range(2), range(4)))  # an orphan
    (store.folder(good) / ".x.parquet.123.tmp").write_text("half")
    (tmp_path / "sweeps" / ("9" * 64)).mkdir()
    bad = _bad_entries(tmp_path)
    age(tmp_path)
    good_bytes = {n: chunk_path(store, good, n).read_bytes() for n in names}
    before = listing(tmp_path)

    r = cli("store", "fsck", "--store", str(tmp_path))
    assert r.exit_code == 1, r.output
    out = r.output.replace("\n", " ")
    for words in (f"sweeps/{lost}: 4 chunks but no manifest → restore the manifest from chunk {names[0]}",
                  f"{broken_names[0]}.parquet: is unreadable (ArrowInvalid) → remove it; the next run recomputes it",
                  "L000-002_P000000-000004.parquet: is not in its manifest's plan → remove it (an orphan)",
                  ".x.parquet.123.tmp: is a stale temporary file (left by a killed writer) → remove it",
                  f"sweeps/{'9' * 64}: is an empty folder → remove it",
                  "→ move it to quarantine/", "problems found; `workbench store fsck --fix` repairs them"):
        assert words in out, (words, out)
    for path, words in bad.items():
        assert path in out and words in out, (path, out)
    assert listing(tmp_path) == before

    r = cli("store", "fsck", "--store", str(tmp_path), "--fix")
    assert r.exit_code == 0 and f"fixed {len(bad) + 5} problems" in r.output, r.output
    r = cli("store", "fsck", "--store", str(tmp_path))
    assert r.exit_code == 0 and "no problems" in r.output, r.output
    assert store.manifest(lost) == lost_manifest and store.missing(lost, names) == ([], [])
    assert store.missing(broken, broken_names)[0] == [broken_names[0]]
    assert {n: chunk_path(store, good, n).read_bytes() for n in store.chunk_names(good)} == good_bytes
    assert (tmp_path / "quarantine" / "sweeps" / "notes.txt").read_text() == "not a sweep"
    assert (tmp_path / "quarantine" / "probesets" / "abcd" / "probeset.json").read_bytes() == b"\x89garbage"
    assert sorted(e.key for e in store.ls()) == sorted([good, lost, broken])


def test_fsck_help_documents_its_exit_codes():
    r = cli("store", "fsck", "--help")
    assert r.exit_code == 0 and "0 when the store is clean" in " ".join(r.output.split()), r.output


# ------------------------------------------------------------------ item 9: an empty probe set
def test_an_empty_probe_set_is_refused_before_anything_is_written(llava_vlm, probes32, tmp_path):
    from workbench.sweeps.run import sweep

    store = EffectStore(tmp_path)
    before = listing(tmp_path)
    empty = probes32.filter(lambda it: False, name="nothing-left")
    with pytest.raises(WorkbenchError, match="probe set 'nothing-left' has no probes") as e:
        sweep(llava_vlm, empty, SweepSpec(alphas=(0.0,)), store, log=lambda m: None)
    assert "\n" not in str(e.value)
    assert listing(tmp_path) == before


# ------------------------------------------------------------------ item 12: group-readable store files
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664)])
def test_store_files_get_the_mode_a_plain_open_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "plain.txt", lambda tmp: Path(tmp).write_text("x"))
        store, key, names = build(tmp_path / "store")
    finally:
        os.umask(old)
    for p in (tmp_path / "plain.txt", store.folder(key) / "manifest.json", chunk_path(store, key, names[0])):
        assert p.stat().st_mode & 0o777 == mode, (p, oct(p.stat().st_mode))


@pytest.mark.parametrize("umask,mode", [(0o022, 0o755), (0o002, 0o775)])
def test_probe_set_folders_get_the_mode_a_plain_mkdir_gives(tmp_path, umask, mode):
    """The store keeps a copy of every probe set a sweep ran on (``probesets/<hash>/``); it is saved through a temporary
    folder renamed into place, which ``tempfile.mkdtemp`` made 0700, unreadable to a group sharing the store."""
    from workbench.probes.generate import ProbeConfig, generate
    from workbench.store.library import Library

    old = os.umask(umask)
    try:
        folder = Library(tmp_path).add_probes(generate(ProbeConfig(n=4, seed=0, canvas=32)))
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == mode, oct(folder.stat().st_mode)
    assert all(p.stat().st_mode & 0o777 == mode & 0o666 for p in folder.rglob("*") if p.is_file())
