"""The effect store: sweep results cached on disk, content-addressed, crash-safe, self-identifying.

Layout under the store root::

    sweeps/<key>/manifest.json        what was asked: model, probe set, spec, chunk sizes, the planned chunk names
    sweeps/<key>/<chunk>.parquet      one chunk's effects in long form:
                                      layer, head, alpha, probe_id, task, relation, value
                                      chunk = L<layer_start>-<layer_stop>_P<probe_start>-<probe_stop>
    sweeps/<key>/dense.npz            a complete sweep as one dense array, derived from its chunks (see below)
    quarantine/…                      what `workbench store fsck --fix` moved out of the way (never read)

The **key** is the sha256 of (model fingerprint, probe-set content hash, sweep spec with the
metric version): the same request always maps to the same folder, so a repeated sweep is answered
from disk without loading the model, and any change to the model's weights, the probes, or the
definition of a metric gives a new key rather than a stale answer.

**Every chunk knows what it is.** Its parquet metadata holds

- ``workbench.sha256``: the sha256 of its values (recomputed on every full read);
- ``workbench.chunk``: its identity — the sweep key, the chunk name, its layer and probe ranges, the
  sha256 of the spec and its row count;
- ``workbench.manifest``: a copy of the sweep's manifest, so a lost or broken ``manifest.json`` can be
  restored from any chunk (``workbench store fsck --fix``, or the next run of the same sweep).

:meth:`EffectStore.read_chunk` checks all of it against the place it is read from: a valid chunk
copied over another chunk's file, or into another sweep's folder, is refused with one line
(:class:`CorruptChunk`), like a chunk whose values fail their checksum. A chunk written before
chunks carried an identity cannot be verified, and is refused the same way. A refused chunk is
treated as missing: the next run recomputes it. :meth:`EffectStore.ls` reads only the chunks'
footers (identity, not values), so listing stays cheap; full reads check the values too.

**Crash safety.** Each file is written to a temporary name in the same folder and renamed into
place (an atomic step on POSIX): a killed sweep leaves whole chunks or none, and a rerun computes
only the missing ones. The manifest is *created* exclusively (a hard link, which fails when the
name exists): of two sweeps of one request started at once with different chunk sizes, the first
manifest wins and both compute its chunks, so neither leaves chunks outside the plan.

**One bad entry never hides the rest.** :meth:`EffectStore.scan` returns the sweeps it can read and
a :class:`~workbench.store.problems.Problem` for each entry it cannot (a garbage or incomplete
manifest, a plain file in ``sweeps/``, a folder whose manifest is lost); :mod:`workbench.store.fsck`
lists every problem and repairs them.

**The dense copy.** :meth:`EffectStore.read_dense` gives a complete sweep as ``values [probe, alpha,
layer, head]`` with its probes' ids, tasks and relations — what the app draws. Decoding millions of
long-form rows costs most of a read (a 32 × 32-head, 1,000-probe, 3-α sweep: 3 M rows in 64 chunks,
about 0.7 s on 2 cores), so the first full read, which verifies every chunk, also writes ``dense.npz``:
the array, the labels, the sha256 of both, and the checksum each chunk's footer records. A later read
takes the dense copy only if every planned chunk's footer still identifies it as this sweep's with the
same checksum, and the copy's own sha256 matches; otherwise it reads the chunks again (and so refuses a
corrupt one exactly as before). It is derived data: deleting it changes nothing but the next read's
time, and a read-only store simply goes without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workbench import axis
from workbench.errors import WorkbenchError
from workbench.fileio import atomic_create, atomic_write
from workbench.store.problems import FSCK, Problem

COLUMNS = ("layer", "head", "alpha", "probe_id", "task", "relation", "value")
STRING_COLUMNS = ("probe_id", "task", "relation")
STORE_VERSION = 1  # part of every key
CHUNK_FORMAT = 2  # chunk metadata: 1 = checksum only, 2 = checksum + identity + manifest copy
META_SHA, META_CHUNK, META_MANIFEST = b"workbench.sha256", b"workbench.chunk", b"workbench.manifest"
RANGES = ("layer_start", "layer_stop", "probe_start", "probe_stop")
MANIFEST_FIELDS = {"model": str, "model_fingerprint": str, "probes": str, "probeset_hash": str, "n_probes": int, "shape": list,
                   "spec": dict, "chunks": list}
SPEC_FIELDS = {"alphas": list, "metric": str, "positions": str, "target": str}
RECOMPUTE = "it will be recomputed on the next run"
_CHUNK_NAME = re.compile(r"L(\d+)-(\d+)_P(\d+)-(\d+)")


def sweep_key(model_fingerprint: str, probeset_hash: str, spec: dict) -> str:
    blob = json.dumps({"model": model_fingerprint, "probes": probeset_hash, "spec": spec, "store": STORE_VERSION},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def spec_digest(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def chunk_ranges(name: str) -> dict[str, int | None]:
    """``L000-008_P000000-000064`` → its layer and probe ranges (all None for a name outside that pattern)."""
    m = _CHUNK_NAME.fullmatch(name)
    return dict(zip(RANGES, map(int, m.groups()) if m else [None] * 4))


def expected_rows(manifest: dict, name: str) -> int | None:
    """Rows a chunk of this name holds in this sweep: α × layers × heads × probes (None when the name has no ranges)."""
    r = chunk_ranges(name)
    if r["layer_start"] is None:
        return None
    heads = axis.kind(manifest["spec"]["target"]).width(manifest["shape"][1])
    return len(manifest["spec"]["alphas"]) * (r["layer_stop"] - r["layer_start"]) * heads * (r["probe_stop"] - r["probe_start"])


def manifest_problem(key: str, m) -> str | None:
    """Why ``m`` cannot be the manifest of sweep ``key``, in a few words (None when it can)."""
    if not isinstance(m, dict):
        return "is not a JSON object"
    spec = m.get("spec") if isinstance(m.get("spec"), dict) else {}
    missing = [f for f in MANIFEST_FIELDS if f not in m] + [f"spec.{f}" for f in SPEC_FIELDS if "spec" in m and f not in spec]
    if missing:
        return f"lacks {', '.join(missing)}"
    wrong = [f for f, t in MANIFEST_FIELDS.items() if not isinstance(m[f], t)] + \
            [f"spec.{f}" for f, t in SPEC_FIELDS.items() if not isinstance(spec[f], t)]
    if not wrong:
        wrong = [f for f, ok in (("shape", len(m["shape"]) == 2 and all(isinstance(x, int) for x in m["shape"])),
                                 ("chunks", all(isinstance(c, str) for c in m["chunks"])),
                                 ("spec.alphas", all(isinstance(a, (int, float)) for a in spec["alphas"]))) if not ok]
    if wrong:
        return f"has a malformed {', '.join(wrong)}"
    if spec["target"] not in axis.KINDS:
        return f"names an unknown spec.target {spec['target']!r} (this workbench knows {', '.join(axis.KINDS)})"
    if spec.get("intervention", "scale") not in axis.FAMILIES:
        return f"names an unknown spec.intervention {spec['intervention']!r} (this workbench knows {', '.join(axis.FAMILIES)})"
    if m.get("key", key) != key:
        return f"names sweep {str(m['key'])[:12]}…, not the one of its folder"
    return None


def _hash_column(h, column: pa.ChunkedArray, block: int = 1 << 16) -> None:
    """Feed ``h`` the bytes a column contributes to a chunk's checksum: its numpy values; a string column as numpy's
    fixed-width ``str`` array (``astype(str)``). A string column without nulls is built from its few distinct words and
    their indices (arrow's dictionary encoding; a column read as a dictionary, :data:`STRING_COLUMNS` with
    ``dictionary=True``, brings its own), block by block: the same bytes, without converting millions of Python
    strings or holding the whole fixed-width array in memory."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        if column.null_count == 0 and len(column):
            column = pa.chunked_array([pc.dictionary_encode(column.combine_chunks())])
    if pa.types.is_dictionary(column.type):
        if column.null_count == 0 and len(column):
            words = [c.dictionary.to_numpy(zero_copy_only=False) for c in column.chunks]
            width = max([1] + [int(max(map(len, w), default=0)) for w in words])
            for w, c in zip(words, column.chunks):
                fixed, idx = w.astype(f"<U{width}"), c.indices.to_numpy()
                for start in range(0, len(idx), block):
                    h.update(np.ascontiguousarray(fixed[idx[start:start + block]]))
            return
        column = column.cast(column.type.value_type)
    col = column.to_numpy(zero_copy_only=False)
    h.update(np.ascontiguousarray(col.astype(str) if col.dtype == object else col).tobytes())


def _values_digest(table: pa.Table) -> str:
    h = hashlib.sha256()
    for name in COLUMNS:
        h.update(name.encode())
        _hash_column(h, table.column(name))
    return h.hexdigest()


def identity_problem(meta: dict, key: str, name: str, manifest: dict | None) -> str | None:
    """Why a chunk whose parquet metadata is ``meta`` cannot be chunk ``name`` of sweep ``key`` (None when it can).
    Reads only the footer: ``manifest`` (when known) adds the spec and row-count checks."""
    raw = meta.get(META_CHUNK)
    if raw is None and META_SHA not in meta:
        return "fails its checksum (it carries no workbench metadata at all)"
    if raw is None:
        return "has no identity metadata (written by an older workbench), so it cannot be verified"
    try:
        ident = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        ident = None
    if not isinstance(ident, dict):
        return "has unreadable identity metadata"
    if ident.get("format") != CHUNK_FORMAT:
        return f"has identity format {ident.get('format')!r}; this workbench reads {CHUNK_FORMAT}"
    if ident.get("key") != key:
        return f"belongs to sweep {str(ident.get('key'))[:12]}…, not {key[:12]}…"
    if ident.get("name") != name:
        return f"holds chunk {ident.get('name')}, not {name}"
    if any(ident.get(f) != v for f, v in chunk_ranges(name).items()):
        return f"records ranges {[ident.get(f) for f in RANGES]} that differ from its name's"
    if manifest is not None:
        if ident.get("spec_sha256") != spec_digest(manifest["spec"]):
            return "was computed for another spec than its manifest's"
        want = expected_rows(manifest, name)
        if want is not None and ident.get("rows") != want:
            return f"records {ident.get('rows')} rows where its place in the sweep holds {want}"
    return None


def content_problem(table: pa.Table, name: str) -> str | None:
    """Why a fully read chunk's values cannot be chunk ``name`` (None when they can): rows, checksum, ranges."""
    meta = table.schema.metadata or {}
    ident = json.loads(meta[META_CHUNK])
    if table.num_rows != ident["rows"]:
        return f"holds {table.num_rows} rows, its metadata says {ident['rows']}"
    if missing := [c for c in COLUMNS if c not in table.column_names]:
        return f"lacks column(s) {', '.join(missing)}"
    if meta.get(META_SHA, b"").decode() != _values_digest(table):
        return "fails its checksum"
    r = chunk_ranges(name)
    if r["layer_start"] is not None and table.num_rows:
        low, high = pc.min_max(table.column("layer")).values()
        if low.as_py() < r["layer_start"] or high.as_py() >= r["layer_stop"]:
            return f"holds layers {low.as_py()}–{high.as_py()}, outside its range"
        if len(pc.unique(table.column("probe_id"))) != r["probe_stop"] - r["probe_start"]:
            return "holds another number of probes than its range"
    return None


class CorruptChunk(WorkbenchError):
    """A chunk file that cannot be used where it lies: unreadable, failing its checksum, written for another place in
    the store, or too old to carry an identity. Treated as missing: the next run recomputes it."""


@dataclass(frozen=True)
class SweepEntry:
    key: str
    manifest: dict
    done: int  # chunks of the plan present whose footer identifies them as theirs
    expected: int
    problems: tuple[str, ...] = ()  # one line per chunk that is there but cannot be used

    @property
    def complete(self) -> bool:
        return self.done == self.expected


@dataclass(frozen=True)
class GcReport:
    removed: tuple[str, ...]  # paths removed
    reasons: tuple[str, ...]  # why, one line per removed path
    kept: tuple[str, ...]  # what was kept although something is wrong with it, and why


_FOOTERS: dict[tuple, dict] = {}  # (path, size, mtime_ns, inode) → identity metadata: `ls` re-reads a footer only after a change


def _footer(path: Path) -> dict:
    st = path.stat()
    sig = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if sig not in _FOOTERS:
        if len(_FOOTERS) > 100_000:
            _FOOTERS.clear()
        meta = pq.read_schema(path).metadata or {}
        _FOOTERS[sig] = {k: v for k, v in meta.items() if k in (META_SHA, META_CHUNK)}
    return _FOOTERS[sig]


def check_chunk(path: Path, key: str, name: str, manifest: dict | None, full: bool = True,
                dictionary: bool = False) -> tuple[pa.Table | None, str | None]:
    """(the table when ``full``, why it cannot be chunk ``name`` of sweep ``key``, or None). ``dictionary``: the string
    columns come back dictionary-encoded (as parquet stores them; no per-row strings are built), decoded in this thread
    (the caller reads chunks side by side)."""
    try:
        if not full:
            return None, identity_problem(_footer(path), key, name, manifest)
        table = (pq.read_table(path, read_dictionary=list(STRING_COLUMNS), use_threads=False) if dictionary
                 else pq.read_table(path))
    except FileNotFoundError:
        return None, "is missing"
    except (OSError, pa.ArrowException) as e:
        return None, f"is unreadable ({type(e).__name__})"
    problem = identity_problem(table.schema.metadata or {}, key, name, manifest) or content_problem(table, name)
    return table, problem


class EffectStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        (self.root / "sweeps").mkdir(parents=True, exist_ok=True)

    @classmethod
    def existing(cls, root: str | os.PathLike) -> EffectStore:
        """The store at ``root`` for commands that only read or tidy it: a mistyped ``--store`` is one line, and no
        empty store is left behind (the constructor creates one, as a sweep needs)."""
        if not (Path(root) / "sweeps").is_dir():
            raise WorkbenchError(f"no effect store at {root} (it has no sweeps/ folder)",
                                 "pass --store with the folder your sweeps were written to (default runs/store, or "
                                 "$WORKBENCH_STORE)")
        return cls(root)

    def folder(self, key: str) -> Path:
        return self.root / "sweeps" / key

    # ------------------------------------------------------------ manifests
    def ensure(self, key: str, manifest: dict) -> None:
        """Create the sweep's folder and manifest, unless one is there. The first writer wins (see the module
        docstring); a folder whose manifest was lost gets back the copy its chunks carry, so a rerun reuses them."""
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "manifest.json"
        if path.is_file():
            return
        restored = self.restorable_manifest(key)
        content = restored[0] if restored else {**manifest, "key": key, "created": time.time()}
        atomic_create(path, lambda tmp: Path(tmp).write_text(json.dumps(content, indent=1, sort_keys=True)))

    def manifest(self, key: str) -> dict:
        path = self.folder(key) / "manifest.json"
        try:
            m = json.loads(path.read_bytes().decode())
        except FileNotFoundError:
            raise WorkbenchError(f"no sweep {key[:12]}… in {self.root}", "list sweeps with `workbench store ls`") from None
        except (ValueError, UnicodeDecodeError) as e:
            why = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8 text"
            raise WorkbenchError(f"{path} is corrupt: it is not valid JSON ({why})",
                                 f"{FSCK} --fix (it restores it from the chunks)") from e
        if problem := manifest_problem(key, m):
            raise WorkbenchError(f"{path} is corrupt: it {problem}", f"{FSCK} --fix (it restores it from the chunks)")
        return m

    def restorable_manifest(self, key: str) -> tuple[dict, Path] | None:
        """(the manifest copy, the chunk it came from) from the first chunk of ``key`` that verifies and carries a copy
        that is a valid manifest of exactly this sweep (it hashes to ``key``); None when no chunk does."""
        for path in sorted(self.folder(key).glob("*.parquet")):
            table, problem = check_chunk(path, key, path.stem, None)
            if problem or table is None:
                continue
            try:
                m = json.loads((table.schema.metadata or {})[META_MANIFEST])
            except (KeyError, ValueError, UnicodeDecodeError):
                continue
            if manifest_problem(key, m) is None and m.get("key") == key \
                    and sweep_key(m["model_fingerprint"], m["probeset_hash"], m["spec"]) == key:
                return m, path
        return None

    def resolve(self, prefix: str) -> str:
        """A full key from a unique prefix."""
        hits = [p.name for p in (self.root / "sweeps").iterdir() if p.is_dir() and p.name.startswith(prefix)] if prefix else []
        if len(hits) != 1:
            raise WorkbenchError(f"{'no' if not hits else len(hits)} sweeps match {prefix!r} in {self.root}",
                                 "give more of the key (see `workbench store ls`)")
        return hits[0]

    # ------------------------------------------------------------ chunks
    def write_chunk(self, key: str, name: str, frame: pd.DataFrame) -> Path:
        """Write chunk ``name`` of sweep ``key`` (whose manifest must exist) with its checksum, identity and a copy of
        the manifest in the parquet metadata."""
        manifest = self.manifest(key)
        table = pa.Table.from_pandas(frame[list(COLUMNS)], preserve_index=False)
        identity = {"format": CHUNK_FORMAT, "key": key, "name": name, **chunk_ranges(name),
                    "spec_sha256": spec_digest(manifest["spec"]),
                    "rows": table.num_rows}
        table = table.replace_schema_metadata({META_SHA: _values_digest(table).encode(),
                                               META_CHUNK: json.dumps(identity).encode(),
                                               META_MANIFEST: json.dumps(manifest, sort_keys=True).encode()})
        path = self.folder(key) / f"{name}.parquet"
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        return path

    def _read_checked(self, key: str, name: str, manifest: dict | None, as_table: bool = False) -> pd.DataFrame | pa.Table:
        path = self.folder(key) / f"{name}.parquet"
        table, problem = check_chunk(path, key, name, manifest, dictionary=as_table)
        if problem:
            raise CorruptChunk(f"chunk {path} {problem}", RECOMPUTE)
        return table if as_table else table.to_pandas()

    def read_chunk(self, key: str, name: str) -> pd.DataFrame:
        """Chunk ``name`` of sweep ``key``, verified: values, identity, ranges, spec and rows (:class:`CorruptChunk` if not)."""
        return self._read_checked(key, name, self.manifest(key))

    def chunk_names(self, key: str) -> list[str]:
        return sorted(p.stem for p in self.folder(key).glob("*.parquet"))

    def _check_all(self, key: str, names: Iterable[str], as_table: bool = False) -> tuple[list, list[str], list[CorruptChunk]]:
        """(the frames (arrow tables when ``as_table``) of the chunks that read and check, names to compute, corrupt
        chunks): each chunk read once."""
        frames, todo, corrupt = [], [], []
        have = set(self.chunk_names(key))
        manifest = self.manifest(key)

        def one(name: str):
            try:
                return self._read_checked(key, name, manifest, as_table)
            except CorruptChunk as e:
                return e

        names = list(names)
        present = [n for n in names if n in have]
        # parquet decoding and sha256 release the GIL: chunks are read and verified side by side, results kept in order
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1, len(present)))) as pool:
            got = dict(zip(present, pool.map(one, present)))
        for name in names:
            if name not in got:
                todo.append(name)
            elif isinstance(got[name], CorruptChunk):
                corrupt.append(got[name])
                todo.append(name)
            else:
                frames.append(got[name])
        return frames, todo, corrupt

    def missing(self, key: str, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """(names to compute, corrupt chunk reports): a chunk is present only if it reads and checks."""
        _, todo, corrupt = self._check_all(key, names)
        return todo, [str(e) for e in corrupt]

    def read(self, key: str) -> pd.DataFrame:
        """All chunks of a complete sweep, verified, as one long-form frame."""
        return pd.concat(self._read_complete(key, as_table=False), ignore_index=True)

    def read_table(self, key: str) -> pa.Table:
        """:meth:`read` as one arrow table (chunks in the manifest's order, verified the same way), for readers that
        turn millions of rows into arrays without going through pandas. Its string columns (:data:`STRING_COLUMNS`)
        are dictionary-encoded, one dictionary for the whole table, its words in order of first appearance."""
        return pa.concat_tables(self._read_complete(key, as_table=True)).unify_dictionaries()

    def read_dense(self, key: str) -> DenseSweep:
        """A complete sweep as a dense array (module docstring, "The dense copy"): from ``dense.npz`` when it matches
        the chunks' footers and its own checksum, else from the chunks, every one verified (then cached)."""
        manifest = self.manifest(key)
        folder = self.folder(key)
        sums = {}
        for name in manifest["chunks"]:
            path = folder / f"{name}.parquet"
            try:
                meta = _footer(path)
            except (OSError, pa.ArrowException):
                sums = None
                break
            if identity_problem(meta, key, name, manifest) is not None:
                sums = None
                break
            sums[name] = meta.get(META_SHA, b"").decode(errors="replace")
        if sums is not None:
            cached = _load_dense(folder / DENSE_FILE, key, sums)
            if cached is not None:
                return cached
        dense = dense_from_table(key, manifest, self.read_table(key))  # refuses incomplete or corrupt sweeps
        if sums is not None:
            _save_dense(folder / DENSE_FILE, key, sums, dense)
        return dense

    def read_result(self, key: str, probe_ids=None) -> np.ndarray:
        """A complete sweep in the engine's result shape and the order of ``probe_ids`` (:meth:`DenseSweep.result`):
        the one long → dense reader, for a finished run as for the app (no pandas pivot, no torch)."""
        return self.read_dense(key).result(self.manifest(key)["spec"]["target"], probe_ids)

    def _read_complete(self, key: str, as_table: bool) -> list:
        manifest = self.manifest(key)
        frames, todo, corrupt = self._check_all(key, manifest["chunks"], as_table)  # every chunk read and verified once
        if corrupt:
            raise CorruptChunk(corrupt[0].problem, "run the sweep again to recompute it, or `workbench store fsck --fix`")
        if todo:
            raise WorkbenchError(f"sweep {key[:12]}… is incomplete ({len(todo)} of {len(manifest['chunks'])} chunks missing)",
                                 "run the same sweep again to finish it")
        return frames

    # ------------------------------------------------------------ listing
    def entry(self, key: str) -> SweepEntry:
        """One sweep's completeness from its manifest and its chunks' footers (WorkbenchError for a bad manifest)."""
        m = self.manifest(key)
        have, done, problems = set(self.chunk_names(key)), 0, []
        for name in m["chunks"]:
            if name in have:
                path = self.folder(key) / f"{name}.parquet"
                problem = check_chunk(path, key, name, m, full=False)[1]
                if problem is None:
                    done += 1
                else:
                    problems.append(f"chunk {path} {problem}")
        return SweepEntry(key, m, done, len(m["chunks"]), tuple(problems))

    def scan(self) -> tuple[list[SweepEntry], list[Problem]]:
        """(every sweep that can be listed, a problem for each entry of ``sweeps/`` that cannot): one bad entry never
        hides the rest. Cheap: manifests and chunk footers only (``workbench store fsck`` checks everything)."""
        entries, problems = [], []
        for folder in sorted((self.root / "sweeps").iterdir()):
            if not folder.is_dir():
                problems.append(Problem(folder, "is not a sweep folder", "move it to quarantine/", "quarantine"))
                continue
            path = folder / "manifest.json"
            if not path.is_file():
                n = len(list(folder.glob("*.parquet")))
                if n:
                    problems.append(Problem(folder, f"{n} chunks but no manifest", "restore the manifest from its chunks",
                                            "restore"))
                continue  # an empty folder: a sweep being created, or one for gc
            try:
                entries.append(self.entry(folder.name))
            except WorkbenchError as e:
                problems.append(Problem(path, e.problem.removeprefix(f"{path} "), "restore it from the chunks", "restore"))
        return entries, problems

    def ls(self) -> list[SweepEntry]:
        """Every sweep that can be listed (:meth:`scan` names the entries that cannot)."""
        return self.scan()[0]

    # ------------------------------------------------------------ housekeeping
    def rm(self, key: str) -> None:
        shutil.rmtree(self.folder(key))

    def collect(self, older_than_s: float = 3600.0) -> GcReport:
        """Remove what no run can use — stale temporary files, empty folders, chunks that fail their checks, orphan
        chunks outside their manifest's plan — once older than ``older_than_s``. Keep everything a rerun can use,
        above all chunks whose manifest is lost or broken, and say so (see :func:`workbench.store.fsck.collect`)."""
        from workbench.store.fsck import collect

        return collect(self.root, older_than_s)

    def gc(self, older_than_s: float = 3600.0) -> list[str]:
        """The paths :meth:`collect` removed."""
        return list(self.collect(older_than_s).removed)


# ---------------------------------------------------------------- the dense copy
DENSE_FILE, DENSE_FORMAT = "dense.npz", "workbench.dense/1"


@dataclass(frozen=True, eq=False)
class DenseSweep:
    """One complete sweep as arrays: ``values [probe, alpha, layer, head]`` (a head axis of 1 for a per-layer site kind,
    :meth:`workbench.axis.SiteKind.width`), probes in the order the store holds them (each probe's first row).

    NaN is a stored value, not a hole: a patching sweep stores NaN for a probe it dropped (its base and source logit
    differences too close to normalise; :data:`workbench.axis.PATCH`), and the aggregates count the probes they used.
    A cell no row wrote cannot occur: :func:`dense_from_table` refuses it."""

    values: np.ndarray
    alphas: tuple[float, ...]
    probe_ids: tuple[str, ...]
    tasks: tuple[str, ...]
    relations: tuple[str, ...]

    def result(self, target: str, probe_ids=None) -> np.ndarray:
        """The sweep as the engine returns it: ``[probe, alpha, layer, head]`` for a per-head site kind, ``[probe, alpha,
        layer]`` for a per-layer one (:meth:`workbench.axis.SiteKind.result_shape`), probes in the order ``probe_ids``
        gives (default: the store's). A probe id the sweep does not hold is refused."""
        values = self.values
        if probe_ids is not None:
            where = {p: i for i, p in enumerate(self.probe_ids)}
            missing = [p for p in probe_ids if p not in where]
            if missing:
                raise WorkbenchError(f"the sweep holds no probe {missing[0]!r} ({len(missing)} of {len(probe_ids)} missing)",
                                     "read it with the probe set it was run on")
            values = values[[where[p] for p in probe_ids]]
        return values if axis.kind(target).per_head else values[..., 0]


def dense_from_table(key: str, manifest: dict, table: pa.Table) -> DenseSweep:
    """The dense array of a sweep's verified long-form table, without pandas: probe ids are dictionary-encoded (a
    probe's index is the order of its first row), α values are matched to the spec's by one comparison per α, so
    millions of rows become one vectorised scatter. A row whose α the spec does not list is refused (the chunks do
    not belong to this manifest)."""
    alphas = tuple(float(a) for a in manifest["spec"]["alphas"])

    def encoded(name: str):  # one dictionary array whose every word is used
        col = table.column(name).combine_chunks()
        if pa.types.is_dictionary(col.type):
            if (np.bincount(col.indices.to_numpy(zero_copy_only=False), minlength=len(col.dictionary)) > 0).all():
                return col
            col = col.cast(col.type.value_type)
        return pc.dictionary_encode(col)

    probe = encoded("probe_id")
    pidx = probe.indices.to_numpy()
    n_probes = len(probe.dictionary)

    def per_probe(name: str) -> tuple[str, ...]:  # a probe's task / relation is the same on all its rows
        enc = encoded(name)
        codes = np.zeros(n_probes, dtype=np.int64)
        codes[pidx] = enc.indices.to_numpy(zero_copy_only=False)
        words = enc.dictionary.to_pylist()
        return tuple("" if words[c] is None else str(words[c]) for c in codes)

    alpha_col = table.column("alpha").to_numpy()
    aidx = np.full(len(alpha_col), -1, dtype=np.int64)
    for i, a in enumerate(alphas):  # a few α: one comparison each, no sort of millions of values
        aidx[alpha_col == a] = i
    if (aidx < 0).any():
        raise WorkbenchError(f"sweep {key[:12]} holds α = {float(alpha_col[aidx < 0][0]):g}, which its spec does not list",
                             "run `workbench store fsck` (the sweep's chunks do not match its manifest)")
    n_layers, n_heads = manifest["shape"]
    kind = axis.kind(manifest["spec"]["target"])
    heads = kind.width(n_heads)
    values = np.full((n_probes, len(alphas), n_layers, heads), np.nan)
    # one linear index; a per-layer kind's rows carry axis.NO_HEAD and sit at head index 0
    flat = ((pidx.astype(np.int64) * len(alphas) + aidx) * n_layers + table.column("layer").to_numpy()) * heads
    if kind.per_head:
        head_col = table.column("head").to_numpy()
        if len(head_col) and (head_col.min() < 0 or head_col.max() >= n_heads):
            raise WorkbenchError(f"sweep {key[:12]} holds head {int(head_col[(head_col < 0) | (head_col >= n_heads)][0])}, "
                                 f"outside its {n_heads} heads",
                                 "run `workbench store fsck` (the chunks do not match the manifest)")
        flat += head_col
    written = np.zeros(values.size, dtype=bool)
    written[flat] = True
    if not written.all():  # NaN in a value is data (a dropped probe); a cell without a row is a sweep that is not whole
        raise WorkbenchError(f"sweep {key[:12]} lacks {int((~written).sum())} of its {values.size} effects although every chunk "
                             "is present", "run `workbench store fsck` (the sweep's chunks do not match its manifest)")
    values.reshape(-1)[flat] = table.column("value").to_numpy()
    return DenseSweep(values, alphas, tuple(str(p) for p in probe.dictionary.to_pylist()), per_probe("task"),
                      per_probe("relation"))


def _dense_digest(values: np.ndarray, labels: dict) -> str:
    h = hashlib.sha256(json.dumps(labels, sort_keys=True).encode())
    h.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
    return h.hexdigest()


def _labels(key: str, dense: DenseSweep) -> dict:
    return {"key": key, "alphas": list(dense.alphas), "probe_ids": list(dense.probe_ids), "tasks": list(dense.tasks),
            "relations": list(dense.relations), "shape": list(dense.values.shape)}


def _save_dense(path: Path, key: str, chunk_sums: dict, dense: DenseSweep) -> None:
    labels = _labels(key, dense)
    meta = {"format": DENSE_FORMAT, "chunks": chunk_sums, "sha256": _dense_digest(dense.values, labels), **labels}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to the temporary name
            np.savez(f, values=np.ascontiguousarray(dense.values, dtype="<f8"), meta=np.array(json.dumps(meta)))

    try:
        atomic_write(path, write)
    except OSError:  # a read-only store: it reads the chunks every time, as before
        pass


def _load_dense(path: Path, key: str, chunk_sums: dict) -> DenseSweep | None:
    """The dense copy at ``path`` when it is this sweep's, built from exactly these chunks and intact; else None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            values = z["values"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if (not isinstance(meta, dict) or meta.get("format") != DENSE_FORMAT or meta.get("key") != key
            or meta.get("chunks") != chunk_sums):
        return None
    labels = {k: meta.get(k) for k in ("key", "alphas", "probe_ids", "tasks", "relations", "shape")}
    if (values.dtype != np.dtype("<f8") or list(values.shape) != labels["shape"]
            or _dense_digest(values, labels) != meta.get("sha256")):
        return None
    return DenseSweep(values, tuple(float(a) for a in labels["alphas"]), tuple(labels["probe_ids"]), tuple(labels["tasks"]),
                      tuple(labels["relations"]))
