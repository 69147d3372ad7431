"""Bad input gets one line, exit code 2, and leaves nothing behind (issue 21: α, hub, dtypes, devices, sizes, overwrites, jobs).

Every case runs the real command (typer's CliRunner on the workbench app, or a subprocess where the
environment must be set before import) and checks three things: the exit code, the distinctive words of
the one-line message, and the files on disk before and after. Checks that need no model happen before
any model loads; where a test must prove that, ``load_vlm`` is replaced by a function that fails the
test, so "validated first" is asserted, not timed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from workbench.cli import app
from workbench.errors import WorkbenchError
from workbench.scale.vector import ScaleVector

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def listing(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (an absent root is empty)."""
    return ({str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}
            if Path(root).exists() else {})


def one_line(result) -> str:
    """The CLI's error output, checked to be a single ``error:`` line (no traceback)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def no_sweeps(store: Path) -> bool:
    return not (store / "sweeps").exists() or not any((store / "sweeps").iterdir())


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory, probes32):
    return probes32.save(tmp_path_factory.mktemp("p") / "probes")


@pytest.fixture
def no_model_load(monkeypatch):
    """Make any model load fail the test: what is checked here must be checked before loading."""
    def refuse(*_a, **_k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr("workbench.models.load.load_vlm", refuse)


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without a GPU, whatever it has (the CPU test machines have none)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# ------------------------------------------------------------------ (7) α: finite and distinct
@pytest.mark.parametrize("alpha, words", [("nan", "α nan is not a finite number"), ("0,inf", "α inf is not a finite number"),
                                          ("-inf", "α -inf is not a finite number"), ("0,0", "α 0 is given twice"),
                                          ("2,0.5,2.0", "α 2 is given twice")])
def test_sweep_refuses_non_finite_and_repeated_alpha(alpha, words, llava_folder, probe_dir, tmp_path):
    store = tmp_path / "store"
    r = run("sweep", "--model", llava_folder, "--probes", probe_dir, "--alpha", alpha, "--store", store,
            "--layers-per-chunk", "1")
    assert r.exit_code == 2, r.output
    line = one_line(r)
    assert words in line and "--alpha" in line
    assert no_sweeps(store)


@pytest.mark.parametrize("alphas, words", [((float("nan"),), "α nan is not a finite number"), ((0.0, -0.0), "α 0 is given twice"),
                                           ((1, float("inf")), "α inf is not a finite number"),
                                           (("x",), "α 'x' is not a number")])
def test_python_api_refuses_the_same_alphas(alphas, words):
    from workbench.sweeps.engine import SweepSpec

    with pytest.raises(WorkbenchError, match=words):
        SweepSpec(alphas=alphas)


@pytest.mark.parametrize("text, words", [("0, 0", "α 0 is given twice"), ("0.5, 2, .5", "α 0.5 is given twice"),
                                         ("inf", "α inf is not a finite number"), ("nan", "α nan is not a finite number")])
def test_job_form_refuses_the_same_alphas(text, words, tmp_path):
    from workbench.jobs.params import FieldError, sweep_params

    with pytest.raises(FieldError, match=words) as e:
        sweep_params(tmp_path, "org/model", alphas=text)
    assert e.value.field == "alphas" and "type" in (e.value.fix or "")
    assert listing(tmp_path) == {}


# ------------------------------------------------------------------ (8) a hub that accepts and never answers
class SilentServer:
    """A loopback TCP server that accepts connections and never sends a byte (closed on exit)."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                self.conns.append(self.sock.accept()[0])
            except (TimeoutError, OSError):
                continue

    def hang_up(self) -> None:
        """Close every accepted connection (a client blocked without a timeout then sees the end, not a hang)."""
        for c in self.conns:
            c.close()

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)
        self.hang_up()
        self.sock.close()


def run_against(hub: SilentServer, code: str, hf_home, limit: float):
    """Run ``code`` in a fresh interpreter whose hub is ``hub`` (online, no proxy, cache ``hf_home``): (result, seconds);
    a run past ``limit`` seconds fails the test as a hang."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") and "proxy" not in k.lower()}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{hub.port}", HF_HOME=str(hf_home), NO_PROXY="*")
    t0 = time.monotonic()
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading with a silent hub hung for {limit:g} s")
    return out, time.monotonic() - t0


def test_a_silent_hub_fails_within_seconds_with_one_line(tmp_path):
    code = ("from workbench.models.load import load_vlm\nfrom workbench.errors import WorkbenchError\n"
            "try:\n    load_vlm('someorg/somemodel')\nexcept WorkbenchError as e:\n    print('ERROR', e)\n")
    with SilentServer() as hub:
        out, elapsed = run_against(hub, code, tmp_path / "hf", limit=90)
        asked = len(hub.conns)
    lines = [line for line in out.stdout.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 1, out.stdout + out.stderr
    assert f"127.0.0.1:{hub.port}" in lines[0] and "did not answer" in lines[0] and "local folder" in lines[0]
    assert asked >= 1  # it did try the endpoint it was given
    assert elapsed < 30, f"took {elapsed:.1f}s"
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").rglob("config.json"))


def test_a_silent_hub_does_not_hold_a_cached_model(llava_folder, tmp_path):
    """Cached, the model needs no hub: with one that never answers it loads from the cache (it retried every file's
    metadata request for minutes before)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--someorg--somemodel"
    shutil.copytree(llava_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    before = listing(tmp_path)
    code = "from workbench.models.load import load_vlm\nvlm = load_vlm('someorg/somemodel')\nprint('LOADED', vlm.site.shape)\n"
    with SilentServer() as hub:
        out, elapsed = run_against(hub, code, tmp_path / "hf", limit=120)
    assert "LOADED (2, 4)" in out.stdout, out.stdout + out.stderr[-2000:]
    assert elapsed < 45, f"took {elapsed:.1f}s"
    assert listing(tmp_path) == before  # the cache was only read


def test_hub_requests_get_a_timeout_when_the_caller_gives_none():
    """huggingface_hub's own client has no timeout (``timeout=None``) on calls such as ``model_info``: the loader bounds them."""
    import httpx2

    from workbench.models.load import bounded_hub_client

    with SilentServer() as hub, bounded_hub_client(timeout=1.0):
        from huggingface_hub import get_session

        guard = threading.Timer(20, hub.hang_up)  # without a timeout the request would wait for this instead
        guard.start()
        t0 = time.monotonic()
        try:
            with pytest.raises(httpx2.TimeoutException):
                get_session().get(f"http://127.0.0.1:{hub.port}/api/models/x", timeout=None)
        finally:
            guard.cancel()
        assert time.monotonic() - t0 < 10
    from huggingface_hub.utils import _http

    assert _http._GLOBAL_CLIENT_FACTORY is _http.default_client_factory  # put back as it was


# ------------------------------------------------------------------ (9) wrong dtypes and devices
@pytest.mark.parametrize("kind", ["strings", "complex", "bool"])
def test_scale_import_refuses_arrays_that_are_not_real_numbers(kind, llava_folder, tmp_path):
    arrays = {"strings": np.array(["a", "b"]), "complex": np.array([1 + 2j, 1j]), "bool": np.array([True, False])}
    np.save(tmp_path / "mlp.npy", arrays[kind])  # [2] = the tiny LLaVA's layer count: only the dtype is wrong
    before = listing(tmp_path)
    r = run("scale", "import", "--mlp", tmp_path / "mlp.npy", "--model", llava_folder, "--out", tmp_path / "v")
    assert r.exit_code == 2, r.output
    line = one_line(r)
    assert f"holds {arrays[kind].dtype} values" in line and "float" in line
    assert listing(tmp_path) == before


class Payload:
    """Pickles to ``open(marker, "w")``: loading it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_object_npy(path: Path, items: list) -> None:
    """An object-array ``.npy`` as an attacker would craft it: the format's header (dtype ``|O``) and a pickle of
    ``items`` as the body. Written by hand so that nothing here ever goes through a pickle-allowing numpy call."""
    import pickle

    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (len(items),)})
        f.write(pickle.dumps(items))


def test_scale_import_never_unpickles_an_object_array(llava_folder, tmp_path):
    marker = tmp_path / "ran"
    write_object_npy(tmp_path / "mlp.npy", [Payload(marker), 1.0])
    r = run("scale", "import", "--mlp", tmp_path / "mlp.npy", "--model", llava_folder, "--out", tmp_path / "v")
    assert r.exit_code == 2, r.output
    assert "object" in one_line(r) and not marker.exists() and not (tmp_path / "v.safetensors").exists()


@pytest.mark.parametrize("argv", [
    ["sweep", "--probes", "{probes}", "--model", "{model}", "--device", "cuda", "--store", "{store}"],
    ["sweep", "--probes", "{probes}", "--model", "{model}", "--device", "cuda:1", "--store", "{store}"],
    ["scale", "train", "--probes", "{probes}", "--model", "{model}", "--out", "v", "--device", "cuda", "--store", "{store}"],
    ["app", "--store", "{store}", "--model", "{model}", "--device", "cuda", "--no-default-sweep"],
])
def test_cuda_without_cuda_is_one_line(argv, no_cuda, no_model_load, monkeypatch, llava_folder, probe_dir, tmp_path):
    monkeypatch.setattr("workbench.app.create_app", lambda *a, **k: pytest.fail("the app started"))
    store = tmp_path / "store"
    r = run(*[a.format(probes=probe_dir, model=llava_folder, store=store) for a in argv])
    assert r.exit_code == 2, r.output
    line = one_line(r)
    assert "CUDA is not available on this machine" in line and "pass --device cpu" in line
    assert listing(tmp_path) == {}


@pytest.mark.parametrize("device, words", [("gpu0", "unknown device 'gpu0'"), ("cuda:x", "unknown device 'cuda:x'"),
                                           ("meta", "device 'meta' cannot run a model")])
def test_unknown_device_is_one_line(device, words, no_model_load, llava_folder, probe_dir, tmp_path):
    r = run("sweep", "--probes", probe_dir, "--model", llava_folder, "--device", device, "--store", tmp_path / "store")
    assert r.exit_code == 2, r.output
    line = one_line(r)
    assert words in line and "--device cpu" in line
    assert listing(tmp_path) == {}


def test_organism_train_refuses_an_unknown_device(tmp_path):
    r = run("lab", "train", "--out", tmp_path / "org", "--device", "gpu0", "--steps", "1")
    assert r.exit_code == 2, r.output
    assert "unknown device 'gpu0'" in one_line(r)
    assert listing(tmp_path) == {}


def test_python_api_and_job_forms_check_the_device(no_cuda, llava_folder, tmp_path):
    from workbench.jobs.params import FieldError, sweep_params, train_params
    from workbench.models.load import load_vlm

    with pytest.raises(WorkbenchError, match="CUDA is not available on this machine"):
        load_vlm(llava_folder, device="cuda")
    for make in (lambda: sweep_params(tmp_path, "org/model", device="cuda"),
                 lambda: train_params(tmp_path, "org/model", "v", device="gpu0")):
        with pytest.raises(FieldError) as e:
            make()
        assert e.value.field == "device" and "--device" not in str(e.value) and "cpu" in str(e.value)
    assert listing(tmp_path) == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_message_says_why_on_this_machine(llava_folder, probe_dir, tmp_path):
    r = run("sweep", "--probes", probe_dir, "--model", llava_folder, "--device", "cuda", "--store", tmp_path / "store")
    assert r.exit_code == 2
    line = one_line(r)
    reason = "built without CUDA" if torch.version.cuda is None else "no GPU"
    assert f"torch {torch.__version__}" in line and reason in line


# ------------------------------------------------------------------ (10) sizes of probes make
@pytest.mark.parametrize("args, words", [(["--n", "1000000000000"], "--n 1000000000000 is over the limit of 1,000,000 probes"),
                                         (["--n", "0"], "n must be positive"),
                                         (["--canvas", "100000", "--n", "1"], "--canvas 100000 px is over the limit of 1,024 px"),
                                         (["--object-size", "-5"], "--object-size -5 is negative"),
                                         (["--seed", "-1"], "--seed -1 is negative")])
def test_probes_make_bounds_sizes_before_any_work(args, words, monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules["workbench.probes.generate"], "generate", lambda *a, **k: pytest.fail("generation started"))
    r = run("probes", "make", "--out", tmp_path / "p", "--n", "8", *args)
    assert r.exit_code == 2, r.output
    assert words in one_line(r)
    assert listing(tmp_path) == {} and not (tmp_path / "p").exists()


def test_probes_make_help_names_the_limits():
    r = run("probes", "make", "--help")
    text = " ".join(r.output.replace("│", " ").split())
    assert "at most 1,000,000" in text and "at most 1,024" in text


def test_job_form_sizes_are_bounded(tmp_path):
    from workbench.jobs.params import FieldError, sweep_params, train_params

    for make, field in [(lambda: train_params(tmp_path, "org/model", "v", n_train=10**7), "n_train"),
                        (lambda: sweep_params(tmp_path, "org/model", attention_probes=10**9), "attention_probes"),
                        (lambda: sweep_params(tmp_path, "org/model", attention_probes=-1), "attention_probes")]:
        with pytest.raises(FieldError) as e:
            make()
        assert e.value.field == field and "must be between" in str(e.value)


# ------------------------------------------------------------------ (12) overwrites, checks before the model, jobs
@pytest.fixture(scope="module")
def swept_store(tmp_path_factory, llava_folder, probe_dir):
    store = tmp_path_factory.mktemp("store")
    r = run("sweep", "--model", llava_folder, "--probes", probe_dir, "--alpha", "0", "--store", store)
    assert r.exit_code == 0, r.output
    return store, json.loads(next((store / "sweeps").glob("*/manifest.json")).read_text())["key"]


def test_heads_export_refuses_to_overwrite_without_force(swept_store, tmp_path):
    store, key = swept_store
    out = tmp_path / "heads.json"
    out.write_text("my own notes\n")
    before = listing(tmp_path)
    r = run("heads", "export", "--sweep", key[:12], "--out", out, "--k", "2", "--store", store)
    assert r.exit_code == 2, r.output
    line = one_line(r)
    assert f"{out} already exists" in line and "--force" in line
    assert listing(tmp_path) == before
    r = run("heads", "export", "--sweep", key[:12], "--out", out, "--k", "2", "--store", store, "--force")
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["heads"] and len(json.loads(out.read_text())["heads"]) == 2


def _vector(layers: int = 2, heads: int = 4) -> ScaleVector:
    return ScaleVector(attn=torch.full((layers, heads), 0.5), mlp=torch.full((layers,), 2.0), model="tiny",
                       model_fingerprint="f" * 64)


def test_scale_export_refuses_to_overwrite_without_force(tmp_path):
    store = tmp_path / "store"
    _vector().save(store / "scales" / "v.safetensors")
    npy = tmp_path / "npy"
    npy.mkdir()
    (npy / "eff_mlp.npy").write_bytes(b"not yours to replace")
    before = listing(tmp_path)
    r = run("scale", "export", "v", "--npy", npy, "--store", store)
    assert r.exit_code == 2, r.output
    line = one_line(r)
    assert "eff_mlp.npy already exists" in line and "--force" in line
    assert listing(tmp_path) == before
    r = run("scale", "export", "v", "--npy", npy, "--store", store, "--force")
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(npy / "eff_mlp.npy"), np.full(2, 2.0, dtype=np.float32))


def test_scale_import_refuses_to_overwrite_without_force(no_model_load, tmp_path):
    _vector().save(tmp_path / "v.safetensors")
    np.save(tmp_path / "mlp.npy", np.ones(2, dtype=np.float32))
    before = listing(tmp_path)
    r = run("scale", "import", "--mlp", tmp_path / "mlp.npy", "--out", tmp_path / "v.safetensors", "--model", "/no/model/needed")
    assert r.exit_code == 2, r.output
    line = one_line(r)
    assert "v.safetensors already exists" in line and "--force" in line
    assert listing(tmp_path) == before


@pytest.mark.parametrize("args, words", [(["--layers-per-chunk", "0"], "chunk sizes must be positive"),
                                         (["--probes-per-chunk", "-3"], "chunk sizes must be positive"),
                                         (["--engine", "fast"], "unknown engine 'fast'"),
                                         (["--dtype", "float8"], "unknown dtype 'float8'")])
def test_sweep_checks_everything_before_loading_the_model(args, words, no_model_load, llava_folder, probe_dir, tmp_path):
    store = tmp_path / "store"
    t0 = time.monotonic()
    r = run("sweep", "--model", llava_folder, "--probes", probe_dir, "--store", store, *args)
    assert r.exit_code == 2, r.output
    assert words in one_line(r)
    assert time.monotonic() - t0 < 10  # generous: loading is refused above, this only catches a hang
    assert no_sweeps(store) and listing(tmp_path) == {}


def test_job_form_wants_a_model_folder_and_a_real_probe_set(probe_dir, tmp_path):
    from workbench.jobs.params import FieldError, sweep_params, train_params

    server_dir = tmp_path / "etc"
    server_dir.mkdir()
    (server_dir / "passwd").write_text("root:x:0:0\n")
    fake = tmp_path / "fake-probes"
    fake.mkdir()
    (fake / "probeset.json").write_text("{}")
    tampered = tmp_path / "tampered"
    shutil.copytree(probe_dir, tampered)
    first, second = sorted((tampered / "images").glob("*.png"))[:2]
    first.write_bytes(second.read_bytes())  # a valid image, but not the one the set was hashed with
    before = listing(tmp_path)
    for make, field, words in [(lambda: sweep_params(tmp_path, str(server_dir)), "model", "has no config.json"),
                               (lambda: train_params(tmp_path, str(server_dir), "v"), "model", "has no config.json"),
                               (lambda: sweep_params(tmp_path, "org/model", probes=str(fake)), "probes",
                                "not a readable probe set"),
                               (lambda: sweep_params(tmp_path, "org/model", probes=str(tampered)), "probes",
                                "not a readable probe set")]:
        with pytest.raises(FieldError, match=words) as e:
            make()
        assert e.value.field == field
    assert listing(tmp_path) == before
    assert sweep_params(tmp_path, "org/model", probes=str(probe_dir))["probes"] == str(probe_dir)  # a real one is accepted


def _zombie_children() -> list[int]:
    """Children of this process in state Z (exited, not reaped)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and fields[0] == "Z":
            out.append(int(stat.parent.name))
    return out


def test_finished_job_workers_are_reaped_on_list(tmp_path):
    from workbench.jobs import JobRegistry

    reg = JobRegistry(tmp_path)
    jobs = [reg.submit("sweep", {"label": f"short {i}"}) for i in range(2)]  # no parameters: each worker fails at once
    pids = [int((reg.folder(j.id) / "pid").read_text()) for j in jobs]
    deadline = time.monotonic() + 120
    while not all(pid in _zombie_children() for pid in pids):  # both workers exited (and nobody has reaped them yet)
        assert time.monotonic() < deadline, "the short jobs did not finish"
        time.sleep(0.1)
    # A worker (torch: many threads) shows as a zombie as soon as its main thread exits, but is waitable only once
    # its last thread has: reads that come until then cannot reap it yet, so the app's next reads must. Without
    # reaping on read nothing ever waits on a finished job's worker, and it stays a zombie for the deadline and beyond.
    deadline = time.monotonic() + 30
    while True:
        listed = reg.list()
        left = [pid for pid in _zombie_children() if pid in pids]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(j.state for j in listed) == ["failed", "failed"], [(j.state, j.error) for j in listed]
    assert left == [], f"workers {left} are still zombies after 30 s of reads"


def test_a_silent_ray_cluster_fails_within_its_bound_with_one_line():
    """``--ray-address`` at a server that accepts and never answers: ray.init retries it for ever (seen > 150 s); the
    executor gives it ``connect_timeout_s`` and then fails with one line, and the process exits at once after it."""
    code = ("import ray, sys\nfrom workbench.errors import WorkbenchError\nfrom workbench.sweeps.executors import RayExecutor\n"
            "try:\n    RayExecutor(address=sys.argv[1], connect_timeout_s=3)._init(ray)\nexcept WorkbenchError as e:\n"
            "    print('ERROR', e)\n    sys.exit(2)\n")
    with SilentServer() as cluster:
        t0 = time.monotonic()
        try:
            out = subprocess.run([sys.executable, "-c", code, f"127.0.0.1:{cluster.port}"], capture_output=True, text=True,
                                 timeout=90, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        except subprocess.TimeoutExpired:
            pytest.fail("connecting to a silent Ray cluster hung for 90 s")
        elapsed = time.monotonic() - t0
    assert out.returncode == 2, out.stdout + out.stderr[-2000:]
    assert [line for line in out.stdout.splitlines() if line.startswith("ERROR")] == [
        f"ERROR the Ray cluster at 127.0.0.1:{cluster.port} did not answer within 3 s "
        "(start it (ray start --head) or drop --ray-address)"]
    assert elapsed < 30, f"took {elapsed:.1f}s"


@pytest.mark.parametrize("cmd", [("store", "ls"), ("store", "show", "abc"), ("store", "rm", "abc"), ("store", "gc"),
                                 ("store", "fsck"), ("heads", "export", "--sweep", "abc", "--out", "{tmp}/h.json")])
def test_commands_that_read_a_store_refuse_a_missing_one_and_create_nothing(tmp_path, cmd):
    """A mistyped ``--store`` used to be created as an empty store (and listed as empty) by every store command."""
    wrong = tmp_path / "no-such-store"
    r = run(*[c.format(tmp=tmp_path) for c in cmd], "--store", wrong)
    assert r.exit_code == 2, r.output
    line = one_line(r)
    assert str(wrong) in line and ("no effect store" in line or "does not exist" in line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == []
