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

**One bad file never breaks a listing.** :meth:`Library.probesets`, :meth:`Library.scale_vectors` and
:meth:`Library.headsets` return the entries they can read and skip the rest; :meth:`Library.problems`
names each skipped one (a garbage ``probeset.json``, a ``scales/NAME.json`` that is not a vector's
metadata or lacks its ``.safetensors``, a malformed head set, an unreadable attention cache) as a
:class:`~workbench.store.problems.Problem`, which the app shows and ``workbench store fsck --fix``
moves to ``quarantine/`` (attention caches, which a sweep recomputes, are removed).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import WorkbenchError
from workbench.fileio import atomic_write
from workbench.names import SCALE_FORMAT
from workbench.probes.probeset import FORMAT as PROBESET_FORMAT
from workbench.probes.probeset import ProbeSet
from workbench.store.problems import Problem

if TYPE_CHECKING:
    import torch

QUARANTINE = "move it to quarantine/"


def _json(path: Path):
    """The JSON in ``path``, or None when it is unreadable or not JSON."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def probeset_header_problem(info) -> str | None:
    """Why a parsed ``probeset.json`` is not a probe-set header (None when it is): listing reads only these fields."""
    if not isinstance(info, dict) or info.get("format") != PROBESET_FORMAT:
        return "probeset.json is not a probe-set header"
    if not (isinstance(info.get("name"), str) and isinstance(info.get("hash"), str) and isinstance(info.get("n_items"), int)):
        return "probeset.json is not a probe-set header (it lacks its name, hash or size)"
    return None


def scale_meta_problem(meta) -> str | None:
    if not isinstance(meta, dict) or meta.get("format") != SCALE_FORMAT:
        return "is not a scale vector's metadata"
    if not isinstance(meta.get("metrics", {}), dict):
        return "is not a scale vector's metadata (its metrics are not an object)"
    return None


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
            raise WorkbenchError(f"the store has no copy of probe set {probeset_hash[:12]}",
                                 "rerun the sweep from the app or CLI")
        return _load_probes(str(folder), probeset_hash)

    def probesets(self) -> list[dict]:
        """Name, hash, size and folder of every kept probe set whose header reads (no hashing); :meth:`problems`
        names the others."""
        out = []
        for f in sorted((self.root / "probesets").glob("*/probeset.json")):
            info = _json(f)
            if probeset_header_problem(info) is None:
                out.append({"name": info["name"], "hash": info["hash"], "n": info["n_items"], "folder": str(f.parent)})
        return out

    # ------------------------------------------------------------ scale vectors and head sets
    def scale_vectors(self) -> list[tuple[str, dict, Path]]:
        """(name, metadata, .safetensors path) of every saved scale vector whose metadata reads and whose tensor file
        is there; :meth:`problems` names the others."""
        out = []
        for js in sorted((self.root / "scales").glob("*.json")):
            meta, st = _json(js), js.with_suffix(".safetensors")
            if scale_meta_problem(meta) is None and st.is_file():
                out.append((js.stem, meta, st))
        return out

    def headsets(self) -> list[tuple[str, object]]:
        """(name, :class:`~workbench.discovery.headsets.HeadSet`) of every head set under ``headsets/`` that loads."""
        from workbench.discovery.headsets import HeadSet

        out = []
        for p in sorted((self.root / "headsets").glob("*.json")):
            try:
                out.append((p.stem, HeadSet.load(p)))
            except WorkbenchError:
                continue  # named by problems()
        return out

    # ------------------------------------------------------------ problems
    def problems(self, full: bool = False, older_than_s: float = 3600.0) -> list[Problem]:
        """A :class:`Problem` for every entry of ``probesets/``, ``scales/``, ``headsets/`` (and, when ``full``,
        ``attention/``) that the listings above skip. ``full`` also loads every probe set (checking its content hash)
        and every scale vector's tensors, as ``workbench store fsck`` does; otherwise headers only."""
        return (self._probeset_problems(full, older_than_s) + self._scale_problems(full) + self._headset_problems()
                + (self._attention_problems() if full else []))

    def _probeset_problems(self, full: bool, older_than_s: float) -> list[Problem]:
        out, now = [], time.time()
        folder = self.root / "probesets"
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            if entry.name.startswith("."):  # a save in progress (.NAME.x.tmp) or its old copy (.NAME.old)
                if now - entry.stat().st_mtime > older_than_s:
                    out.append(Problem(entry, "is a stale temporary folder (left by a killed writer)", "remove it", "remove"))
                continue
            if not entry.is_dir():
                out.append(Problem(entry, "is not a probe-set folder", QUARANTINE, "quarantine"))
                continue
            problem = probeset_header_problem(_json(entry / "probeset.json")) if (entry / "probeset.json").is_file() \
                else "is not a probe set (it has no probeset.json)"
            if problem is None and full:
                try:
                    ProbeSet.load(entry)
                except WorkbenchError as e:
                    problem = f"is corrupt: {e.problem.replace(str(entry), 'the folder')}"
            if problem:
                out.append(Problem(entry, problem, QUARANTINE, "quarantine"))
        return out

    def _scale_problems(self, full: bool) -> list[Problem]:
        out = []
        folder = self.root / "scales"
        for js in sorted(folder.glob("*.json")):
            st = js.with_suffix(".safetensors")
            problem = scale_meta_problem(_json(js)) or (None if st.is_file() else f"has no {st.name} next to it")
            if problem is None and full:
                from workbench.scale.vector import ScaleVector

                try:
                    ScaleVector.load(st)
                except WorkbenchError:
                    problem = f"goes with {st.name}, which is not a readable scale vector"
            if problem:
                out.append(Problem(js, problem, QUARANTINE + " (with its .safetensors)", "quarantine", targets=(js, st)))
        for st in sorted(folder.glob("*.safetensors")):
            if not st.with_suffix(".json").is_file():
                out.append(Problem(st, f"has no {st.stem}.json next to it", QUARANTINE, "quarantine"))
        return out

    def _headset_problems(self) -> list[Problem]:
        from workbench.discovery.headsets import HeadSet

        out = []
        for p in sorted((self.root / "headsets").glob("*")):
            if p.name.startswith("."):
                continue  # a write in progress
            try:
                HeadSet.load(p)
            except WorkbenchError as e:
                out.append(Problem(p, "is not a valid head set"
                                   + (f" ({e.problem.split(' (', 1)[1]}" if " (" in e.problem else ""),
                                   QUARANTINE, "quarantine"))
        return out

    def _attention_problems(self) -> list[Problem]:
        out = []
        for p in sorted((self.root / "attention").glob("*.safetensors")):
            try:
                _load_attention(str(p), p.stat().st_mtime_ns)
            except Exception as e:  # noqa: BLE001 - any failure to read a cache file makes it one to drop
                out.append(Problem(p, f"is not a readable attention map ({type(e).__name__})",
                                   "remove it (a cache; the next sweep from the app recomputes it)", "remove"))
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
        """The maps, or None when none are stored or the file does not read (:meth:`problems` names it)."""
        path = self.attention_path(fingerprint, probeset_hash)
        if not path.is_file():
            return None
        try:
            return _load_attention(str(path), path.stat().st_mtime_ns)
        except Exception:  # noqa: BLE001 - a broken cache is no maps, never a broken page
            return None


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
