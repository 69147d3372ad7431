"""The effect store: sweep results cached on disk, content-addressed, crash-safe, checksummed.

Layout under the store root::

    sweeps/<key>/manifest.json        what was asked: model, probe set, spec, expected chunks
    sweeps/<key>/<chunk>.parquet      one chunk's effects in long form:
                                      layer, head, alpha, probe_id, task, relation, value

The **key** is the sha256 of (model fingerprint, probe-set content hash, sweep spec with the
metric version): the same request always maps to the same folder, so a repeated sweep is answered
from disk without loading the model, and any change to the model's weights, the probes, or the
definition of a metric gives a new key rather than a stale answer.

**Crash safety.** Each file is written to a temporary name in the same folder and renamed into
place (an atomic step on POSIX): a killed sweep leaves whole chunks or none, and a rerun computes
only the missing ones. Two sweeps writing the same chunk produce the same bytes, so the last
rename wins harmlessly; different sweeps never share files.

**Checksums.** Every chunk carries, in its parquet metadata, the sha256 of its values; reading
recomputes it. A corrupt chunk is reported with its path and never used: :meth:`EffectStore.missing`
treats it as absent, so the next run recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.errors import WorkbenchError
from workbench.fileio import atomic_write

COLUMNS = ("layer", "head", "alpha", "probe_id", "task", "relation", "value")
STORE_VERSION = 1


def sweep_key(model_fingerprint: str, probeset_hash: str, spec: dict) -> str:
    blob = json.dumps({"model": model_fingerprint, "probes": probeset_hash, "spec": spec, "store": STORE_VERSION},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _values_digest(table: pa.Table) -> str:
    h = hashlib.sha256()
    for name in COLUMNS:
        col = table.column(name).to_numpy(zero_copy_only=False)
        h.update(name.encode())
        h.update(np.ascontiguousarray(col.astype(str) if col.dtype == object else col).tobytes())
    return h.hexdigest()


class CorruptChunk(WorkbenchError):
    pass


@dataclass(frozen=True)
class SweepEntry:
    key: str
    manifest: dict
    done: int
    expected: int

    @property
    def complete(self) -> bool:
        return self.done == self.expected


class EffectStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        (self.root / "sweeps").mkdir(parents=True, exist_ok=True)

    def folder(self, key: str) -> Path:
        return self.root / "sweeps" / key

    # ------------------------------------------------------------ manifests
    def ensure(self, key: str, manifest: dict) -> None:
        """Create the sweep's folder and manifest (idempotent: an existing manifest is kept)."""
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "manifest.json"
        if not path.is_file():
            atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps({**manifest, "key": key, "created": time.time()},
                                                                             indent=1, sort_keys=True)))

    def manifest(self, key: str) -> dict:
        path = self.folder(key) / "manifest.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise WorkbenchError(f"no sweep {key[:12]}… in {self.root}", "list sweeps with `workbench store ls`") from None
        except json.JSONDecodeError as e:
            raise WorkbenchError(f"{path} is corrupt ({e.msg})", f"remove the sweep with `workbench store rm {key[:12]}`") from e

    def resolve(self, prefix: str) -> str:
        """A full key from a unique prefix."""
        hits = [p.name for p in (self.root / "sweeps").iterdir() if p.name.startswith(prefix)] if prefix else []
        if len(hits) != 1:
            raise WorkbenchError(f"{'no' if not hits else len(hits)} sweeps match {prefix!r} in {self.root}",
                                 "give more of the key (see `workbench store ls`)")
        return hits[0]

    # ------------------------------------------------------------ chunks
    def write_chunk(self, key: str, name: str, frame: pd.DataFrame) -> Path:
        table = pa.Table.from_pandas(frame[list(COLUMNS)], preserve_index=False)
        table = table.replace_schema_metadata({b"workbench.sha256": _values_digest(table).encode()})
        path = self.folder(key) / f"{name}.parquet"
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        return path

    def read_chunk(self, key: str, name: str) -> pd.DataFrame:
        path = self.folder(key) / f"{name}.parquet"
        try:
            table = pq.read_table(path)
            stored = (table.schema.metadata or {}).get(b"workbench.sha256", b"").decode()
            ok = stored == _values_digest(table)
        except (OSError, pa.ArrowException, KeyError) as e:
            raise CorruptChunk(f"chunk {path} is unreadable ({type(e).__name__})", "it will be recomputed on the next run") from e
        if not ok:
            raise CorruptChunk(f"chunk {path} fails its checksum", "it will be recomputed on the next run")
        return table.to_pandas()

    def chunk_names(self, key: str) -> list[str]:
        return sorted(p.stem for p in self.folder(key).glob("*.parquet"))

    def missing(self, key: str, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """(names to compute, corrupt chunk reports): a chunk is present only if it reads and checks."""
        todo, corrupt = [], []
        have = set(self.chunk_names(key))
        for name in names:
            if name not in have:
                todo.append(name)
                continue
            try:
                self.read_chunk(key, name)
            except CorruptChunk as e:
                corrupt.append(str(e))
                todo.append(name)
        return todo, corrupt

    def read(self, key: str) -> pd.DataFrame:
        """All chunks of a complete sweep, verified, as one long-form frame."""
        manifest = self.manifest(key)
        todo, corrupt = self.missing(key, manifest["chunks"])
        if corrupt:
            raise CorruptChunk(corrupt[0], "run the sweep again to recompute it")
        if todo:
            raise WorkbenchError(f"sweep {key[:12]}… is incomplete ({len(todo)} of {len(manifest['chunks'])} chunks missing)",
                                 "run the same sweep again to finish it")
        return pd.concat([self.read_chunk(key, n) for n in manifest["chunks"]], ignore_index=True)

    # ------------------------------------------------------------ housekeeping
    def ls(self) -> list[SweepEntry]:
        out = []
        for folder in sorted((self.root / "sweeps").iterdir()):
            if not (folder / "manifest.json").is_file():
                continue
            m = self.manifest(folder.name)
            done = len(set(m["chunks"]) & set(self.chunk_names(folder.name)))
            out.append(SweepEntry(folder.name, m, done, len(m["chunks"])))
        return out

    def rm(self, key: str) -> None:
        shutil.rmtree(self.folder(key))

    def gc(self, older_than_s: float = 3600.0) -> list[str]:
        """Remove temporary files older than ``older_than_s`` (left by killed writers) and folders without
        a manifest; returns what was removed. Complete and resumable sweeps are kept."""
        removed = []
        now = time.time()
        for folder in (self.root / "sweeps").iterdir():
            if not (folder / "manifest.json").is_file() and now - folder.stat().st_mtime > older_than_s:
                shutil.rmtree(folder)
                removed.append(str(folder))
                continue
            for tmp in folder.glob(".*.tmp"):
                if now - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink(missing_ok=True)
                    removed.append(str(tmp))
        return removed
