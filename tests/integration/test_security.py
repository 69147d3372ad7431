"""Security cases of issue 21: no code runs from a user's file, the app stays inside its store and answers
only its own host names, the fingerprint sees every weight byte, and imports never write outside ``--out``.

Each case crafts the hostile input, runs it through the CLI (exit code 2, one ``error:`` line) or the
library (:class:`WorkbenchError`) or the app's HTTP server, and checks the harm did not happen: no
marker file, no bytes from outside the store, no file outside the target folder.
"""

from __future__ import annotations

import base64
import io
import json
import pathlib
import re
import zipfile

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from workbench.cli import app as cli
from workbench.errors import WorkbenchError


def tree(folder: pathlib.Path) -> list[str]:
    """Every path under ``folder``, relative and sorted: what a case may not change."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def error_lines(result) -> list[str]:
    """The ``error:`` lines of a CLI run; any other line may only be the progress bar the command had started."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert all(line.startswith(("error:", "training ")) for line in lines), lines
    return [line for line in lines if line.startswith("error:")]


# ---------------------------------------------------------------- (1) no code from a user's file
class Payload:
    """Unpickling this creates ``marker``: the harmless stand-in for code run from a file."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def payload_file(path: pathlib.Path, marker: pathlib.Path, extra: dict | None = None) -> pathlib.Path:
    torch.save({**(extra or {}), "config": {}, "step": Payload(marker)}, path)
    assert not marker.exists()
    return path


def test_a_checkpoint_carrying_code_is_refused_before_anything_runs(tmp_path):
    ckpt, marker = payload_file(tmp_path / "state.pt", tmp_path / "ran.txt"), tmp_path / "ran.txt"
    before = tree(tmp_path)
    r = CliRunner().invoke(cli, ["lab", "train", "--out", str(tmp_path / "o"), "--steps", "2", "--batch", "2",
                                 "--n-train", "4", "--device", "cpu", "--checkpoint", str(ckpt)])
    assert not marker.exists(), "the checkpoint's payload ran"
    assert r.exit_code == 2, r.output
    (line,) = error_lines(r)
    assert line == (f"error: {ckpt} is not a workbench training checkpoint "
                    "(it names objects other than tensors, numbers and text, "
                    "which are never unpickled) (delete it to start from step 0, "
                    "or point --checkpoint at one this workbench saved)")
    assert tree(tmp_path) == before


def test_the_checkpoint_reader_of_the_analyses_refuses_code_too(tmp_path):
    from workbench.lab.checkpoint import load_checkpoint

    marker = tmp_path / "ran.txt"
    with pytest.raises(WorkbenchError, match="is not a workbench training checkpoint"):
        load_checkpoint(payload_file(tmp_path / "state.pt", marker))
    assert not marker.exists()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WorkbenchError, match="junk.pt is not a workbench training checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_a_checkpoint_the_workbench_wrote_still_loads(tmp_path):
    """The real state's parts (tensors, optimizer and scheduler dicts, generator states, a curve) read back whole."""
    from workbench.lab.checkpoint import load_checkpoint

    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-3)
    lin(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    state = {"config": {"seed": 0}, "step": 3, "model": lin.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
             "g": torch.Generator().manual_seed(1).get_state(), "torch_rng": torch.get_rng_state(), "order": torch.arange(5),
             "pos": 2, "curve": [{"step": 3, "loss": 0.25}], "threads": [2], "seconds": 1.5}
    torch.save(state, tmp_path / "state.pt")
    back = load_checkpoint(tmp_path / "state.pt")
    assert back["curve"] == [{"step": 3, "loss": 0.25}] and torch.equal(back["order"], torch.arange(5))
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_a_pool_whose_meta_carries_code_is_refused(tmp_path):
    import numpy as np

    from workbench.lab.data import load_pool

    pool, marker = tmp_path / "pool", tmp_path / "ran.txt"
    pool.mkdir()
    np.save(pool / "pixels.npy", np.zeros((1, 2, 2, 3), dtype=np.uint8))
    payload_file(pool / "meta.pt", marker, {"key": {"seed": 0}})
    with pytest.raises(WorkbenchError, match="is not a readable training pool"):
        load_pool(pool, {"seed": 0})
    assert not marker.exists(), "the pool's payload ran"
    before = tree(tmp_path)
    r = CliRunner().invoke(cli, ["lab", "train", "--out", str(tmp_path / "o"), "--steps", "2", "--batch", "2",
                                 "--n-train", "4", "--device", "cpu", "--data", "pool", "--pool", str(pool)])
    assert not marker.exists(), "the pool's payload ran"
    assert r.exit_code == 2, r.output
    (line,) = error_lines(r)
    assert line.startswith(f"error: {pool / 'meta.pt'} is not a readable training pool") and "rebuild" in line
    assert tree(tmp_path) == before


# ---------------------------------------------------------------- (2) the app stays inside its store
def _vector(path: pathlib.Path, value: float):
    from workbench.scale.vector import ScaleVector

    ScaleVector(attn=torch.full((2, 3), value), mlp=torch.full((2,), value), model="toy", model_fingerprint="f" * 64,
                positions="last", mode="both", s_max=10.0).save(path)


@pytest.fixture
def served(tmp_path):
    """A store with one vector inside (``inside``), one outside it, and the app's Flask test client."""
    from workbench.app import create_app

    store = tmp_path / "a" / "store"
    _vector(store / "scales" / "inside.safetensors", 1.5)
    _vector(tmp_path / "a" / "x.safetensors", 0.25)  # <store>/scales/../../x
    return store, tmp_path / "a" / "x", create_app(store, "toy").server.test_client()


def _download(client, name: str, fmt: str = "safetensors"):
    body = {"output": "..export-vec-download.data...export-vector-error.children..",
            "outputs": [{"id": "export-vec-download", "property": "data"}, {"id": "export-vector-error", "property": "children"}],
            "inputs": [{"id": "export-vec-download-button", "property": "n_clicks", "value": 1}],
            "changedPropIds": ["export-vec-download-button.n_clicks"],
            "state": [{"id": "export-vector", "property": "value", "value": name},
                      {"id": "export-vec-format", "property": "value", "value": fmt}]}
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code == 200, r.data[:300]
    return r.get_json()["response"]


def test_the_download_callback_serves_a_stored_vector_with_plain_entry_names(served):
    store, _, client = served
    resp = _download(client, "inside")
    data = resp["export-vec-download"]["data"]
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(data["content"]))) as z:
        assert sorted(z.namelist()) == ["inside.json", "inside.safetensors"]
        assert z.read("inside.safetensors") == (store / "scales" / "inside.safetensors").read_bytes()
    assert data["filename"] == "inside-safetensors.zip" and resp["export-vector-error"]["children"] == ""


@pytest.mark.parametrize("how", ["relative", "absolute"])
@pytest.mark.parametrize("fmt", ["safetensors", "npy"])
def test_the_download_callback_never_serves_a_file_outside_the_store(served, how, fmt):
    store, outside, client = served
    name = "../../x" if how == "relative" else str(outside)
    resp = _download(client, name, fmt)
    assert "export-vec-download" not in resp, "a vector from outside the store was served"
    assert resp["export-vector-error"]["children"] == (
        f"no saved vector named {name!r} (a name is letters, digits, '-', '_' and '.'; choose one from the list)")


def test_exports_refuse_names_that_leave_their_folder(tmp_path):
    from workbench.app import exports

    _vector(tmp_path / "x.safetensors", 0.5)
    for name in ("../x", str(tmp_path / "x"), "a/../../x", "", ".hidden"):
        with pytest.raises(WorkbenchError, match="no saved vector named"):
            exports.vector_file(tmp_path / "store", name, "safetensors")
    with pytest.raises(WorkbenchError, match="no head set name"):
        exports.save_headset(tmp_path / "store", None, "../../evil")
    assert tree(tmp_path) == ["x.json", "x.safetensors"]


def test_the_server_answers_only_its_own_host_names(tmp_path):
    from workbench.app import create_app

    client = create_app(tmp_path / "store", "toy").server.test_client()
    for host in ("localhost", "localhost:8050", "127.0.0.1:8050", "[::1]:8050"):
        assert client.get("/_dash-layout", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8050", "127.0.0.1.evil.example", "localhost.evil.example:80"):
        r = client.get("/_dash-layout", headers={"Host": host})
        assert r.status_code == 400, host
        assert r.get_data(as_text=True) == ("refused: this workbench answers only to 127.0.0.1, [::1], localhost, "
                                            f"not {host.split(':')[0]!r} "
                                            "(a guard against DNS rebinding; serve it with --host NAME to answer to NAME)\n")
    lan = create_app(tmp_path / "store", "toy", host="box.lan").server.test_client()
    assert lan.get("/_dash-layout", headers={"Host": "box.lan:8050"}).status_code == 200
    assert lan.get("/_dash-layout", headers={"Host": "localhost"}).status_code == 200
    assert lan.get("/_dash-layout", headers={"Host": "evil.example"}).status_code == 400
    assert (b"answers only to 127.0.0.1, [::1], localhost, box.lan, not 'evil.example'"
            in lan.get("/", headers={"Host": "evil.example"}).data)
    anywhere = create_app(tmp_path / "store", "toy", host="0.0.0.0").server.test_client()
    assert anywhere.get("/_dash-layout", headers={"Host": "192.168.1.7:8050"}).status_code == 200


# ---------------------------------------------------------------- (3) the fingerprint sees every weight byte
@pytest.fixture(scope="module")
def o_proj():
    torch.manual_seed(0)
    return torch.nn.Linear(4096, 4096, bias=False)  # fp32, 64 MB; heads of 128 columns


def test_the_fingerprint_sees_an_edit_of_head_5_at_real_size(o_proj):
    from workbench.models.load import fingerprint

    w = o_proj.weight
    fp = fingerprint(o_proj)
    saved = w.data[:, 5 * 128:6 * 128].clone()
    try:
        with torch.no_grad():
            w[:, 5 * 128:6 * 128] *= 0.1
        assert fingerprint(o_proj) != fp
    finally:
        with torch.no_grad():
            w[:, 5 * 128:6 * 128] = saved
    assert fingerprint(o_proj) == fp


def test_the_fingerprint_sees_any_single_element(o_proj):
    from workbench.models.load import fingerprint

    w, fp = o_proj.weight, fingerprint(o_proj)
    g = torch.Generator().manual_seed(21)
    for flat in torch.randint(0, w.numel(), (4,), generator=g).tolist():
        r, c = divmod(flat, w.shape[1])
        old = w[r, c].item()
        try:
            with torch.no_grad():
                w[r, c] = torch.nextafter(torch.tensor(old), torch.tensor(float("inf")))  # one ulp
            assert fingerprint(o_proj) != fp, (r, c)
        finally:
            with torch.no_grad():
                w[r, c] = old
    assert fingerprint(o_proj) == fp


def test_the_fingerprint_hashes_bf16_bytes_and_is_the_same_for_the_same_weights():
    from workbench.models.load import fingerprint

    def make():
        torch.manual_seed(3)
        return torch.nn.Linear(1024, 1024).to(torch.bfloat16)

    a, b = make(), make()
    assert fingerprint(a) == fingerprint(b)
    g = torch.Generator().manual_seed(5)
    r, c = torch.randint(1, 1024, (2,), generator=g).tolist()
    with torch.no_grad():
        b.weight.view(torch.int16)[r, c] ^= 1  # the lowest mantissa bit of one bf16 value
    assert not torch.equal(a.weight, b.weight) and fingerprint(a) != fingerprint(b)
    assert fingerprint(a) != fingerprint(a.float()), "the dtype is part of the fingerprint"


def test_the_fingerprint_is_the_same_for_any_slab_size_and_thread_count(monkeypatch):
    """Hand oracle: one tensor's digest is sha256(name|shape|dtype NUL, raw bytes), whatever the slabs (a GPU tensor
    is copied a slab at a time) or the threads."""
    import hashlib

    from workbench.models import load

    t = torch.arange(1000, dtype=torch.float16).reshape(10, 100)
    want = hashlib.sha256(b"w|(10, 100)|torch.float16\0" + t.numpy().tobytes()).digest()
    assert load.tensor_digest("w", t) == want
    monkeypatch.setattr(load, "SLAB_BYTES", 333)
    assert load.tensor_digest("w", t) == want and load.tensor_digest("w", t.t().contiguous().t()) == want
    m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 3))
    assert load.fingerprint(m, threads=1) == load.fingerprint(m, threads=4) == hashlib.sha256(
        b"".join(load.tensor_digest(k, v) for k, v in sorted(m.state_dict().items()))).hexdigest()


# ---------------------------------------------------------------- (6) imports write inside --out only
def _png(path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(path)


def test_whatsup_import_never_writes_outside_out(tmp_path):
    top = tmp_path / "a"
    imgs, out = top / "b" / "imgs", top / "b" / "out"
    _png(imgs / "ok.png")
    _png(top / "x.png")  # <imgs>/../../x.png
    jsonl = top / "b" / "w.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [
        {"id": "ok", "question": "Where?", "answer": "left of"},
        {"id": "evil", "question": "Where?", "answer": "on", "image": "../../x.png"}]) + "\n")
    before = tree(tmp_path)
    r = CliRunner().invoke(cli, ["probes", "import", "whatsup", str(jsonl), "--images", str(imgs), "--out", str(out)])
    assert r.exit_code == 2, r.output
    (line,) = error_lines(r)
    assert line == (f"error: {jsonl} record 'evil' names image '../../x.png', which leaves the image folder {imgs} "
                    "(name an image inside the folder, without '..' or an absolute path)")
    assert tree(tmp_path) == before
    jsonl.write_text(json.dumps({"id": "abs", "question": "Where?", "answer": "on", "image": str(top / "x.png")}) + "\n")
    r = CliRunner().invoke(cli, ["probes", "import", "whatsup", str(jsonl), "--images", str(imgs), "--out", str(out)])
    assert r.exit_code == 2 and "record 'abs' names image" in r.output and "leaves the image folder" in r.output
    assert tree(tmp_path) == before


def test_cvbench_and_vsr_refuse_images_outside_their_folder(tmp_path):
    from workbench.probes.loaders import load_cvbench, load_vsr

    _png(tmp_path / "x.png")
    _png(tmp_path / "d" / "img" / "ok.png")
    (tmp_path / "d" / "cv.jsonl").write_text(json.dumps({"idx": 7, "task": "Relation", "question": "q", "choices": ["a", "b"],
                                                         "answer": "(A)", "filename": "../x.png"}) + "\n")
    with pytest.raises(WorkbenchError, match=r"cv.jsonl record 7 names image '../x.png', which leaves the image folder"):
        load_cvbench(tmp_path / "d" / "cv.jsonl")
    (tmp_path / "d" / "vsr.jsonl").write_text(json.dumps({"caption": "c", "label": 1, "relation": "left of",
                                                          "image": str(tmp_path / "x.png")}) + "\n")
    with pytest.raises(WorkbenchError, match=r"vsr.jsonl record 1 names image '/.*x.png', which leaves the image folder"):
        load_vsr(tmp_path / "d" / "vsr.jsonl", tmp_path / "d" / "img")


@pytest.mark.parametrize("key", ["../x.png", "images/../../x.png", "/tmp/x.png", "images\\x.png", "images//x.png",
                                 "probeset.json"])
def test_a_probe_set_refuses_file_keys_that_could_leave_its_folder(tmp_path, key):
    from workbench.probes.items import ProbeItem
    from workbench.probes.probeset import ProbeSet

    it = ProbeItem(id="a", task="t", family="spatial", question="q", options=("x", "y"), answer="x", image=key)
    with pytest.raises(WorkbenchError,
                       match=re.escape(f"probe 'a' names image {key!r}, which is not a plain path inside the probe set")):
        ProbeSet([it], {key: b"png"}, name="s")
    assert tree(tmp_path) == []


def test_a_saved_probe_set_naming_a_file_outside_is_refused_on_load(tmp_path):
    from workbench.probes.probeset import MANIFEST_FILE, ProbeSet

    r = CliRunner().invoke(cli, ["probes", "make", "--out", str(tmp_path / "p"), "--n", "2"])
    assert r.exit_code == 0, r.output
    man = tmp_path / "p" / MANIFEST_FILE
    lines = man.read_text().splitlines()
    first = json.loads(lines[0])
    first["image"] = "images/../" + first["image"]  # resolves inside the folder, but is no plain key
    man.write_text("\n".join([json.dumps(first, sort_keys=True), *lines[1:]]) + "\n")
    with pytest.raises(WorkbenchError,
                       match=r"names image 'images/\.\./images/.*', which is not a plain path inside the probe set"):
        ProbeSet.load(tmp_path / "p")


def test_the_committed_vectors_of_the_shipped_organism_name_it_by_its_full_fingerprint():
    """The study's vectors were trained on the shipped deficit organism; moved to the full fingerprint
    (``analyses/migrate_fingerprints.py``), they still pass ``check_model`` on it, and fail on the intact one."""
    from workbench.models.load import load_vlm
    from workbench.organism import DEFAULT_MODEL, DEFICIT_MODEL
    from workbench.scale.vector import ScaleVector

    root = pathlib.Path(__file__).resolve().parents[2]
    files = sorted(root.glob("analyses/results/organism_study/vectors*/*.safetensors"))
    assert len(files) == 7
    deficit, intact = load_vlm(DEFICIT_MODEL), load_vlm(DEFAULT_MODEL)
    for f in files:
        vec = ScaleVector.load(f)
        vec.check_model(deficit.fingerprint, deficit.site.shape, "the deficit organism")
        with pytest.raises(WorkbenchError, match="this scale vector was trained on 'organism-deficit'"):
            vec.check_model(intact.fingerprint, intact.site.shape, "the intact organism")


def test_the_compare_page_never_reads_a_vector_outside_the_store(served):
    """Compare reads the vectors it is asked for by name: one from outside the store is one line under the page, never
    drawn (before, ``data.vector_matrix`` read ``<store>/scales/../../x`` and the page then failed with a 500)."""
    store, outside, client = served
    outs = [("alpha", "options"), ("alpha", "value"), ("heatmaps", "children"), ("scale-note", "children"), ("diff", "children"),
            ("table", "children"), ("message", "children")]
    for name in ("../../x", str(outside)):
        body = {"output": ".." + "...".join(f"compare-{o}.{p}" for o, p in outs) + "..",
                "outputs": [{"id": f"compare-{o}", "property": p} for o, p in outs],
                "inputs": [{"id": "compare-items", "property": "value", "value": [f"vector:{name}", "vector:inside"]},
                           {"id": "compare-alpha", "property": "value", "value": None}],
                "changedPropIds": ["compare-items.value"]}
        r = client.post("/_dash-update-component", json=body)
        assert r.status_code == 200, r.data[:300]
        resp = r.get_json()["response"]
        assert resp["compare-message"]["children"] == f"no saved vector named {name!r} (choose one from the list)"
        assert resp["compare-heatmaps"]["children"] == []
