"""What the store keeps besides effect chunks, so that reading results never needs a model.

Layout under the store root (next to ``sweeps/``)::

    probesets/<hash16>/          a copy of every probe set a sweep ran on, named by its content hash
    attention/<fp16>-<hash16>.safetensors
                                 last-token attention over the image patches, ``attn [probe, layer, head, patch]``,
                                 for the first few probes of a probe set, under one model
    headsets/NAME.json           head sets saved from the app (also exportable as CSV)
    scales/NAME.safetensors      scale vectors (+ NAME.json), as ``workbench scale train`` writes them

A sweep's manifest names its probe set by content hash; :meth:`Library.probes` finds the copy, so the
app can show a probe's image and question next to its effect. Everything is written atomically
(probe sets by :meth:`ProbeSet.save`, files by :func:`~workbench.fileio.atomic_write`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from workbench.errors import WorkbenchError
from workbench.fileio import atomic_write
from workbench.probes.probeset import ProbeSet


@dataclass(frozen=True)
class AttentionMaps:
    """``attn [probe, layer, head, patch]``: softmax weight of the last token on each image patch, per head."""

    attn: torch.Tensor
    probe_ids: tuple[str, ...]
    grid: tuple[int, int]  # patches as rows × cols (rows · cols == patch count)

    def for_head(self, layer: int, head: int) -> torch.Tensor:
        """``[probe, rows, cols]`` for one head."""
        return self.attn[:, layer, head].reshape(len(self.probe_ids), *self.grid)


class Library:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # ------------------------------------------------------------ probe sets
    def probes_folder(self, probeset_hash: str) -> Path:
        return self.root / "probesets" / probeset_hash[:16]

    def add_probes(self, probes: ProbeSet) -> Path:
        """Keep a copy of ``probes`` (no-op when one with the same content is there)."""
        folder = self.probes_folder(probes.hash)
        if not (folder / "probeset.json").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                probes.save(folder)
            except WorkbenchError:
                if not (folder / "probeset.json").is_file():  # not a concurrent writer of the same set: a real failure
                    raise
        return folder

    def probes(self, probeset_hash: str) -> ProbeSet:
        folder = self.probes_folder(probeset_hash)
        if not (folder / "probeset.json").is_file():
            raise WorkbenchError(f"the store has no copy of probe set {probeset_hash[:12]}", "rerun the sweep from the app or CLI")
        return _load_probes(str(folder), probeset_hash)

    def probesets(self) -> list[dict]:
        """Name, hash, size and folder of every kept probe set (read from their headers, no hashing)."""
        out = []
        for f in sorted((self.root / "probesets").glob("*/probeset.json")):
            info = json.loads(f.read_text())
            out.append({"name": info.get("name", f.parent.name), "hash": info.get("hash", ""), "n": info.get("n", 0),
                        "folder": str(f.parent)})
        return out

    # ------------------------------------------------------------ attention maps
    def attention_path(self, fingerprint: str, probeset_hash: str) -> Path:
        return self.root / "attention" / f"{fingerprint[:16]}-{probeset_hash[:16]}.safetensors"

    def save_attention(self, fingerprint: str, probeset_hash: str, maps: AttentionMaps) -> Path:
        from safetensors.torch import save_file

        path = self.attention_path(fingerprint, probeset_hash)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"probe_ids": json.dumps(list(maps.probe_ids)), "grid": json.dumps(list(maps.grid))}
        atomic_write(path, lambda tmp: save_file({"attn": maps.attn.contiguous().float()}, tmp, metadata=meta))
        return path

    def attention(self, fingerprint: str, probeset_hash: str) -> AttentionMaps | None:
        path = self.attention_path(fingerprint, probeset_hash)
        return _load_attention(str(path), path.stat().st_mtime_ns) if path.is_file() else None


@lru_cache(maxsize=8)
def _load_probes(folder: str, probeset_hash: str) -> ProbeSet:
    """Probe sets are immutable under their hash, so one load (with its hash check) per process is enough."""
    return ProbeSet.load(folder)


@lru_cache(maxsize=8)
def _load_attention(path: str, mtime_ns: int) -> AttentionMaps:
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        meta = f.metadata()
        attn = f.get_tensor("attn")
    return AttentionMaps(attn=attn, probe_ids=tuple(json.loads(meta["probe_ids"])), grid=tuple(json.loads(meta["grid"])))
