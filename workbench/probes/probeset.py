"""A set of probes with a content hash, saved as a folder of images plus a JSONL manifest.

Folder layout::

    DIR/probeset.json     {"format", "version", "name", "hash", "n_items", "info"}
    DIR/manifest.jsonl    one ProbeItem per line, keys sorted (byte-identical for the same seed)
    DIR/images/…          the images the manifest names (PNG for generated scenes)

The content hash is what the effect store uses as a cache key: sha256 over the manifest bytes and,
for every image in key order, the key and the sha256 of its bytes. It does not cover ``name`` or
``info`` (where the set came from), so the same probes give the same key wherever they live.
Loading recomputes it; a set whose files changed since it was saved is refused, never used.

Saving writes into a temporary sibling folder and renames it into place, so an interrupted save
leaves either nothing or a complete set, and an existing folder is only replaced when asked.

Image keys are file paths inside the folder, and the manifest (or a benchmark record behind it) may
come from anyone: a key is refused unless it is a plain relative path (:func:`check_key`: no
absolute path, ``..``, backslash or empty part, not the set's own files), both when a set is built
and when one is loaded, so saving a set never writes outside its folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from workbench.errors import WorkbenchError
from workbench.fileio import new_tmp_dir
from workbench.probes.items import ProbeItem

FORMAT = "workbench-probeset"
VERSION = 1
META_FILE, MANIFEST_FILE = "probeset.json", "manifest.jsonl"

ImageSource = bytes | Path  # encoded image bytes in memory, or a file to read them from


def check_key(key: str, where: str) -> str:
    """``key`` if it is a plain relative POSIX path (``images/000017.png``) that stays inside a probe-set
    folder, else one error naming ``where`` it came from. Checked on the text alone, so it holds for
    folders that do not exist yet and wherever the set is later saved."""
    parts = key.split("/")
    odd = not key or "\\" in key or "\0" in key or key.startswith("/") or any(p in ("", ".", "..") for p in parts)
    if odd or key in (META_FILE, MANIFEST_FILE):
        raise WorkbenchError(f"{where} names image {key!r}, which is not a plain path inside the probe set",
                             "image keys are relative paths like images/NAME.png, without '..', '\\' or a leading '/'")
    return key


def manifest_bytes(items: Iterable[ProbeItem]) -> bytes:
    """Canonical JSONL: sorted keys, compact separators, one item per line."""
    return b"".join(json.dumps(it.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                    for it in items)


class ProbeSet:
    """Probe items and the images they name. Immutable in use: filters return new sets."""

    def __init__(self, items: Iterable[ProbeItem], images: Mapping[str, ImageSource], name: str, info: dict | None = None):
        self.items: tuple[ProbeItem, ...] = tuple(items)
        self.name = name
        self.info = dict(info or {})
        ids = Counter(it.id for it in self.items)
        dup = [i for i, c in ids.items() if c > 1]
        if dup:
            raise WorkbenchError(f"probe id {dup[0]!r} occurs {ids[dup[0]]} times in {name!r}", "probe ids must be unique")
        for it in self.items:
            for key in filter(None, (it.image, it.cf_image)):
                check_key(key, f"probe {it.id!r}")
        needed = self.image_keys()
        missing = [k for k in needed if k not in images]
        if missing:
            raise WorkbenchError(f"probe set {name!r} names image {missing[0]!r} but it was not provided",
                                 "provide every image the items refer to")
        self._images: dict[str, ImageSource] = {k: images[k] for k in needed}
        self._hash: str | None = None

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ProbeItem]:
        return iter(self.items)

    def __getitem__(self, i: int) -> ProbeItem:
        return self.items[i]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProbeSet) and self.hash == other.hash and self.items == other.items

    def __repr__(self) -> str:
        return f"ProbeSet({self.name!r}, {len(self)} items, hash={self.hash[:12]})"

    @property
    def id(self) -> str:
        """Human-readable and unique: the set's name and the start of its content hash."""
        return f"{self.name}@{self.hash[:12]}"

    def image_keys(self) -> list[str]:
        keys = {it.image for it in self.items} | {it.cf_image for it in self.items if it.cf_image}
        return sorted(keys)

    def image_bytes(self, key: str) -> bytes:
        src = self._images[key]
        if isinstance(src, bytes):
            return src
        try:
            return src.read_bytes()
        except OSError as e:
            raise WorkbenchError(f"cannot read image {src}: {e.strerror}", "restore the file or rebuild the probe set") from e

    def image(self, item_or_key: ProbeItem | str) -> Image.Image:
        """The decoded RGB image of an item (or of an image key)."""
        key = item_or_key.image if isinstance(item_or_key, ProbeItem) else item_or_key
        return decode_image(self.image_bytes(key), where=str(self._images[key]) if isinstance(self._images[key], Path) else key)

    # ----------------------------------------------------------------- hashing
    @property
    def hash(self) -> str:
        if self._hash is None:
            h = hashlib.sha256(manifest_bytes(self.items))
            for key in self.image_keys():
                h.update(key.encode() + b"\0" + hashlib.sha256(self.image_bytes(key)).digest())
            self._hash = h.hexdigest()
        return self._hash

    # ----------------------------------------------------------------- views
    def filter(self, keep: Callable[[ProbeItem], bool], name: str | None = None) -> ProbeSet:
        items = [it for it in self.items if keep(it)]
        return ProbeSet(items, self._images, name or self.name, self.info)

    def split(self, split: str) -> ProbeSet:
        """The items of one split ("train" or "test") as a set of its own."""
        known = sorted({it.split for it in self.items})
        if split not in known:
            raise WorkbenchError(f"probe set {self.name!r} has no split {split!r}", f"its splits are: {', '.join(known)}")
        return self.filter(lambda it: it.split == split, name=f"{self.name}.{split}")

    def counts(self) -> Counter:
        """Items per (split, family, task, relation)."""
        return Counter((it.split, it.family, it.task, it.relation or "-") for it in self.items)

    # ----------------------------------------------------------------- files
    def save(self, folder: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the set to ``folder`` atomically (temporary sibling, then rename)."""
        folder = Path(folder)
        if folder.exists() and not overwrite:
            raise WorkbenchError(f"{folder} already exists", "choose another --out or pass --force to replace it")
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = new_tmp_dir(folder)  # the mode a plain mkdir gives (mkdtemp's 0700 would hide a shared store's probe sets)
        try:
            for key in self.image_keys():
                dest = tmp / check_key(key, f"probe set {self.name!r}")  # checked when built; kept here next to the write
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(self.image_bytes(key))
            (tmp / MANIFEST_FILE).write_bytes(manifest_bytes(self.items))
            meta = {"format": FORMAT, "version": VERSION, "name": self.name, "hash": self.hash,
                    "n_items": len(self.items), "info": self.info}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
            if folder.exists():
                old = folder.with_name(f".{folder.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                folder.rename(old)
                tmp.rename(folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> ProbeSet:
        """Read a saved set; refuse it if any file is missing, malformed, or changed since saving."""
        folder = Path(folder)
        if not folder.is_dir():
            raise WorkbenchError(f"probe set folder {folder} does not exist", "make one with `workbench probes make --out DIR`")
        meta_path, man_path = folder / META_FILE, folder / MANIFEST_FILE
        for p in (meta_path, man_path):
            if not p.is_file():
                raise WorkbenchError(f"{p} is missing", "this is not a probe set folder; make one with `workbench probes make`")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise WorkbenchError(f"{meta_path} is not valid JSON ({e})", "regenerate the probe set") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise WorkbenchError(f"{meta_path} is not a workbench probe-set file", "regenerate the probe set")
        if meta.get("version") != VERSION:
            raise WorkbenchError(f"{meta_path} has format version {meta.get('version')}, this workbench reads {VERSION}",
                                 "regenerate the probe set with this version")
        items = []
        for lineno, line in enumerate(man_path.read_bytes().splitlines(), 1):
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
                items.append(ProbeItem.from_json(rec))
            except (ValueError, TypeError) as e:
                raise WorkbenchError(f"{man_path} line {lineno} is corrupt ({e})", "regenerate the probe set") from e
            except WorkbenchError as e:
                raise WorkbenchError(f"{man_path} line {lineno}: {e}") from e
        images: dict[str, ImageSource] = {}
        for it in items:
            for key in filter(None, (it.image, it.cf_image)):
                check_key(key, f"{man_path}: probe {it.id!r}")
                path = (folder / key).resolve()
                if folder.resolve() not in path.parents:
                    raise WorkbenchError(f"{man_path}: image path {key!r} leaves the probe set folder",
                                         "regenerate the probe set")
                if not path.is_file():
                    raise WorkbenchError(f"image {path} named by probe {it.id!r} is missing",
                                         "restore it or regenerate the probe set")
                images[key] = path
        ps = cls(items, images, name=str(meta.get("name", folder.name)), info=meta.get("info", {}))
        if ps.hash != meta.get("hash"):
            raise WorkbenchError(f"probe set {folder} is corrupt: its content hash does not match {META_FILE}",
                                 "a file was changed after saving; regenerate the probe set")
        return ps


def decode_image(data: bytes, where: str) -> Image.Image:
    """Decode image bytes to RGB, or say which image is unreadable."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise WorkbenchError(f"image {where} is unreadable ({e})", "replace it with a valid PNG or JPEG") from e
    return img.convert("RGB") if img.mode != "RGB" else img
