"""Downloads the app offers, as ``(file name, bytes)``: head sets and scale vectors. No Dash here.

- Head sets from a stored sweep: the top ``k`` heads ranked by how much scaling them to α lowers
  the metric (score = −mean effect, over all probes or one relation), as the workbench's JSON or
  CSV (:class:`~workbench.discovery.headsets.HeadSet`, carrying the model fingerprint).
- Scale vectors: the ``.safetensors`` with its ``.json`` metadata (zipped together, since a vector
  is both files), or the ScAle reference code's ``eff_attn.npy`` / ``eff_mlp.npy`` (zipped).

Every file is produced by the same writers the CLI uses, in a temporary folder, so a download is
byte-for-byte what ``workbench heads export`` / ``workbench scale export`` would write.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import torch

from workbench.app.data import ALL, matrix, sweep_data
from workbench.discovery.headsets import HeadSet, top_heads
from workbench.errors import WorkbenchError

HEADSET_FORMATS = ("json", "csv")
VECTOR_FORMATS = ("safetensors", "npy")


def headset(root: str | Path, key: str, alpha: float, k: int, relation: str = ALL) -> HeadSet:
    data = sweep_data(root, key)
    m = data.manifest
    if m["spec"]["target"] != "heads":
        raise WorkbenchError(f"sweep {data.key[:12]} scaled MLPs, not heads", "choose a head sweep")
    mat = matrix(root, data.key, alpha, relation)
    method = f"sweep:{m['spec']['metric']}@alpha={alpha:g}" + ("" if relation in ("", ALL) else f":{relation}") + f":{data.key[:12]}"
    return top_heads(-torch.from_numpy(mat.mean), int(k), m["model"], m["model_fingerprint"], method)


def headset_file(hs: HeadSet, fmt: str) -> tuple[str, bytes]:
    if fmt not in HEADSET_FORMATS:
        raise WorkbenchError(f"unknown head-set format {fmt!r}", f"choose from: {', '.join(HEADSET_FORMATS)}")
    name = f"heads-{hs.model}-k{len(hs.heads)}.{fmt}"
    with tempfile.TemporaryDirectory() as tmp:
        return name, hs.save(Path(tmp) / name).read_bytes()


def save_headset(root: str | Path, hs: HeadSet, name: str) -> Path:
    """Keep a head set in the store (``<store>/headsets/NAME.json``) so the train page can offer it."""
    return hs.save(Path(root) / "headsets" / f"{name}.json")


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
    src = Path(root) / "scales" / f"{name}.safetensors"
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
