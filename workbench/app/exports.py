"""Downloads the app offers, as ``(file name, bytes)``: head sets and scale vectors. No Dash here.

- Head sets from a stored sweep: the top ``k`` heads by the sweep family's ranking rule
  (:func:`~workbench.discovery.headsets.sweep_ranking`: a scale sweep by how much scaling them to α lowers
  the metric, score = −mean effect; a patching sweep by normalized effect, largest first, score = the mean
  effect; over all probes or one relation), as the workbench's JSON or CSV
  (:class:`~workbench.discovery.headsets.HeadSet`, carrying the model fingerprint; its ``method`` names the rule).
- Scale vectors: the ``.safetensors`` with its ``.json`` metadata (zipped together, since a vector
  is both files), or the ScAle reference code's ``eff_attn.npy`` / ``eff_mlp.npy`` (zipped).

Every file is produced by the same writers the CLI uses, in a temporary folder, so a download is
byte-for-byte what ``workbench heads export`` / ``workbench scale export`` would write.

Names come from the browser, and a browser can send anything (``../../x``, ``/home/me/secret``):
:func:`store_file` accepts only a store name (``NAME_PATTERN``) and a path that,
resolved, lies directly in its store folder (``<store>/scales``, ``<store>/headsets``), so the app
never reads, serves or writes a file outside its store; zip entries are plain file names.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

from workbench.app.data import ALL, matrix, sweep_data
from workbench.discovery.headsets import HeadSet, sweep_ranking, top_heads
from workbench.errors import WorkbenchError

HEADSET_FORMATS = ("json", "csv")
VECTOR_FORMATS = ("safetensors", "npy")


def store_name(name: object) -> bool:
    """Whether ``name`` is a store name: letters, digits, '-', '_', '.', starting with a letter or digit
    (:data:`workbench.jobs.params.NAME_PATTERN`, imported here when used: that module loads the job forms' checks)."""
    from workbench.jobs.params import NAME_PATTERN

    return isinstance(name, str) and NAME_PATTERN.match(name) is not None


def store_file(root: str | Path, folder: str, name: object, suffix: str, what: str) -> Path:
    """``<root>/<folder>/<name><suffix>``, resolved, for a ``name`` that is a store name (:func:`store_name`)
    and a path that stays directly in that folder (a symlink pointing elsewhere is refused too); anything
    else is one error, ``no saved {what} named …``."""
    base = (Path(root) / folder).resolve()
    path = (base / f"{name}{suffix}").resolve() if store_name(name) else None
    if path is None or path.parent != base:
        raise WorkbenchError(f"no saved {what} named {name!r}",
                             "a name is letters, digits, '-', '_' and '.'; choose one from the list")
    return path


def headset(root: str | Path, key: str, alpha: float, k: int, relation: str = ALL) -> HeadSet:
    """The top ``k`` heads of sweep ``key`` at ``alpha`` over ``relation``'s probes, ranked by its family's rule."""
    data = sweep_data(root, key)
    m = data.manifest
    sign, method = sweep_ranking(m["spec"], alpha, data.key, relation)
    mat = matrix(root, data.key, alpha, relation)
    return top_heads(sign * mat.mean, int(k), m["model"], m["model_fingerprint"], method)


def headset_file(hs: HeadSet, fmt: str) -> tuple[str, bytes]:
    if fmt not in HEADSET_FORMATS:
        raise WorkbenchError(f"unknown head-set format {fmt!r}", f"choose from: {', '.join(HEADSET_FORMATS)}")
    name = f"heads-{hs.model}-k{len(hs.heads)}.{fmt}"
    with tempfile.TemporaryDirectory() as tmp:
        return name, hs.save(Path(tmp) / name).read_bytes()


def save_headset(root: str | Path, hs: HeadSet, name: str) -> Path:
    """Keep a head set in the store (``<store>/headsets/NAME.json``) so the train page can offer it."""
    if not store_name(name):
        raise WorkbenchError(f"{name!r} is no head set name",
                             "use letters, digits, '-', '_' and '.', starting with a letter or digit")
    return hs.save(store_file(root, "headsets", name, ".json", "head set"))


def saved_headsets(root: str | Path) -> list[tuple[str, HeadSet]]:
    out = []
    for p in sorted((Path(root) / "headsets").glob("*.json")):
        try:
            out.append((p.stem, HeadSet.load(p)))
        except WorkbenchError:
            continue  # a malformed file is skipped here; `workbench heads import` names the problem
    return out


def vector_file(root: str | Path, name: str, fmt: str) -> tuple[str, bytes]:
    from workbench.scale.vector import ScaleVector

    if fmt not in VECTOR_FORMATS:
        raise WorkbenchError(f"unknown vector format {fmt!r}", f"choose from: {', '.join(VECTOR_FORMATS)}")
    src = store_file(root, "scales", name, ".safetensors", "vector")
    vec = ScaleVector.load(src)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        if fmt == "safetensors":
            z.write(src, f"{name}.safetensors")
            z.write(src.with_suffix(".json"), f"{name}.json")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                for p in vec.to_npy(tmp):
                    z.write(p, p.name)
    return f"{name}-{fmt}.zip", buf.getvalue()
