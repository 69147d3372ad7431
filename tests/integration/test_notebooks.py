"""The notebooks: 01_quickstart runs end to end on the organism (CPU, offline) and prints what it
claims; 02_real_model (hub + GPU) is only checked to be a valid notebook that says what it needs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CHECK_KERNEL = "import sys\nprint(f'kernel python: {sys.executable}')"


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def _line(text: str, pattern: str) -> re.Match:
    m = re.search(pattern, text, flags=re.MULTILINE)
    assert m, f"no line matching {pattern!r} in:\n{text}"
    return m


@pytest.fixture(scope="module")
def quickstart():
    """01_quickstart.ipynb executed with nbclient in a python3 kernel (cwd = notebooks/); the executed
    notebook (kept in memory, never written back) and the file listing of notebooks/ before and after."""
    import nbformat
    from nbclient import NotebookClient

    path = NOTEBOOKS / "01_quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), \
        "commit the notebook with its outputs cleared"
    nb.cells.insert(0, nbformat.v4.new_code_cell(CHECK_KERNEL))  # which interpreter runs the kernel
    before = sorted(p.name for p in NOTEBOOKS.iterdir())
    # jupyter_client starts the "python3" kernelspec's `python` as sys.executable, i.e. this venv's interpreter
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    after = sorted(p.name for p in NOTEBOOKS.iterdir())
    return nb, before, after


def _cell(nb, cell_id: str):
    return next(c for c in nb.cells if c.get("id") == cell_id)


@pytest.mark.slow
def test_quickstart_runs_and_prints_what_it_claims(quickstart):
    nb, before, after = quickstart
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{errors[0].ename}: {errors[0].evalue}" if errors else ""
    assert all(c.execution_count is not None for c in code)

    kernel = _line(_stdout(code[0]), r"^kernel python: (.+)$").group(1)
    assert Path(kernel).resolve() == Path(sys.executable).resolve(), f"kernel ran {kernel}, not {sys.executable}"

    a = _stdout(_cell(nb, "a-code"))
    assert _line(a, r"^family: (.+)$").group(1).startswith("LLaVA-1.5")
    assert _line(a, r"^layers x heads: (\d+) x (\d+)").groups() == ("6", "8")
    assert re.fullmatch(r"[0-9a-f]{64}", _line(a, r"^fingerprint: (\S+)$").group(1))

    b = _stdout(_cell(nb, "b-code"))
    assert int(_line(b, r"^probes: (\d+)").group(1)) == 96
    assert "'relation': 48" in b and "'verify': 48" in b

    c = _stdout(_cell(nb, "c-code"))
    computed, cached = map(int, _line(c, r"^first call: computed=(\d+) cached=(\d+)").groups())
    assert computed > 0 and cached == 0
    again = tuple(map(int, _line(c, r"^second call: computed=(\d+) cached=(\d+)").groups()))
    assert again == (0, computed), "the second sweep must be answered from the store"
    assert "same values: True" in c

    d = _cell(nb, "d-code")
    assert len(re.findall(r"^  L\d+H\d+: [-+]\d+\.\d+ \[[-+]\d+\.\d+, [-+]\d+\.\d+\]", _stdout(d), flags=re.MULTILINE)) == 6
    figures = [o for o in d.outputs if o.output_type in ("execute_result", "display_data")]
    assert figures, "the heatmap cell shows no figure"
    data = figures[-1].data
    fig = data.get("application/vnd.plotly.v1+json") or {}
    assert fig.get("data", [{}])[0].get("type") == "heatmap" or "plotly" in data.get("text/html", ""), list(data)

    e = _stdout(_cell(nb, "e-code"))
    for family in ("spatial", "control"):
        lo, hi = map(float, _line(e, rf"^{family} accuracy: before=([\d.]+) after=([\d.]+)$").groups())
        assert 0 <= lo <= 1 and 0 <= hi <= 1
    assert "trained 48 scales" in e

    f = _stdout(_cell(nb, "f-code"))
    assert "head set reloaded equal: json=True csv=True" in f
    assert "scale vector reloaded equal: safetensors=True npy=True" in f
    for name in ("spatial_heads.json", "spatial_heads.csv", "repair.safetensors", "repair.json", "npy/eff_attn.npy"):
        assert f"'{name}'" in f, name
    assert "'npy/eff_mlp.npy'" not in f  # mode attn: the reference writes no MLP file

    g = _stdout(_cell(nb, "g-code"))
    assert float(_line(g, r"^max abs diff with scales: (\S+)$").group(1)) > 0, "the vector changed nothing"
    assert float(_line(g, r"^max abs diff vs workbench backend: (\S+)$").group(1)) <= 1e-5
    assert float(_line(g, r"^max abs diff after remove: (\S+)$").group(1)) == 0.0
    assert "hooks active after remove: False" in g

    assert "scratch folder removed: True" in _stdout(_cell(nb, "cleanup"))
    assert after == before, "the notebook left files in notebooks/"


def test_real_model_notebook_is_valid_and_states_its_requirements():
    import nbformat

    nb = nbformat.read(NOTEBOOKS / "02_real_model.ipynb", as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    text = first.source.lower()
    assert "hugging face hub" in text and "network" in text and "gpu" in text
    assert "not executed by the test suite" in text
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code")
    for call in ("load_vlm(MODEL_ID, device=DEVICE, dtype=DTYPE)", 'DEVICE = "cuda"', 'DTYPE = "bfloat16"', "sweep(",
                 "bootstrap_ci(", "train_scales(", "score(", "top_heads(", ".save(", "to_npy(", "apply_scales(",
                 "handle.remove()"):
        assert call in code, call
    compile(code, "02_real_model.ipynb", "exec")  # at least it parses
