"""Shared plumbing for benchmark loaders: reading tables, checking columns, finding images.

Every loader reads local files only (no download) and turns each record into a
:class:`~workbench.probes.items.ProbeItem`. Any missing file, missing column, or unreadable image
stops the load with one error that names the file (and the column or record).

A record's image name comes from the benchmark file, i.e. from anyone: :func:`inside` refuses one
that is absolute or climbs out of the image folder with ``..`` before anything is read, since the
name also becomes the image's path inside the saved probe set.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from workbench.errors import WorkbenchError

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(s: object) -> str:
    """A file-name-safe version of an id."""
    return _SAFE.sub("_", str(s)).strip("._") or "item"


def require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise WorkbenchError(f"{what} {path} does not exist", "check the path")
    return path


def read_jsonl(path: Path) -> list[dict]:
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise WorkbenchError(f"{path} line {lineno} is not valid JSON ({e.msg})", "fix or re-export the file") from e
        if not isinstance(rec, dict):
            raise WorkbenchError(f"{path} line {lineno} is not a JSON object", "each line must be one record {...}")
        records.append(rec)
    if not records:
        raise WorkbenchError(f"{path} has no records", "check that it is the right file")
    return records


def read_json(path: Path) -> list:
    """A whole-file JSON array (indented or not), as What'sUp publishes its annotations."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise WorkbenchError(f"{path} is not UTF-8 text", "re-download the file") from e
    except json.JSONDecodeError as e:
        raise WorkbenchError(f"{path} is not valid JSON (line {e.lineno}: {e.msg})", "re-download or re-export the file") from e
    if not isinstance(data, list):
        raise WorkbenchError(f"{path} holds a JSON {type(data).__name__}, not an array of records",
                             "check that it is the right file")
    if not data:
        raise WorkbenchError(f"{path} has no records", "check that it is the right file")
    return data


def read_table(path: Path) -> list[dict]:
    """Records of a .parquet, .jsonl or .json file (a folder: all its .parquet files, sorted)."""
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise WorkbenchError(f"{path} holds no .parquet files", "point at a parquet file or a folder of them")
        return [r for f in files for r in read_table(f)]
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise WorkbenchError(f"{path} is not a readable parquet file ({type(e).__name__})",
                                 "re-download or re-export it") from e
        return df.to_dict(orient="records")
    if suffix == ".json" and path.read_text(encoding="utf-8", errors="replace").lstrip().startswith("["):
        records = read_json(path)
        bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
        if bad is not None:
            raise WorkbenchError(f"{path} record {bad + 1} is not a JSON object", "each record must be an object {...}")
        return records
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path)
    raise WorkbenchError(f"{path} has an unsupported extension {suffix!r}", "use .parquet or .jsonl")


def require_columns(records: list[dict], columns: tuple[str, ...], path: Path) -> None:
    for i, rec in enumerate(records):
        missing = [c for c in columns if c not in rec]
        if missing:
            where = "" if i == 0 else f" (record {i + 1})"
            raise WorkbenchError(f"{path} lacks column {missing[0]!r}{where}", f"expected columns: {', '.join(columns)}")


def image_bytes_from_cell(cell: object, where: str) -> bytes:
    """Image bytes from a parquet cell: raw bytes, or a Hugging Face {"bytes": …, "path": …} struct."""
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise WorkbenchError(f"{where} has no image bytes", "this loader needs the image embedded in the file")
    return bytes(data)


def image_extension(data: bytes, where: str) -> str:
    """The image's format as a file extension, checked by decoding its header."""
    try:
        fmt = Image.open(io.BytesIO(data)).format
    except (UnidentifiedImageError, OSError) as e:
        raise WorkbenchError(f"image {where} is unreadable", "replace it with a valid PNG or JPEG") from e
    return {"JPEG": "jpg"}.get(fmt or "", (fmt or "img").lower())


def inside(folder: Path, name: object, where: str) -> Path:
    """``folder / name`` with ``name`` normalised (``a/./b`` → ``a/b``), refused with one line naming
    ``where`` (the record) when ``name`` is absolute or leads out of ``folder``. The check is on the
    normalised text, not on resolved links, so an image folder made of symlinks (a shared COCO copy)
    still works; what matters is that the relative name, which becomes a key of the probe set, stays inside."""
    rel = str(name)
    root = os.path.abspath(folder)
    joined = os.path.normpath(os.path.join(root, rel))
    if os.path.isabs(rel) or joined == root or os.path.commonpath([root, joined]) != root:
        raise WorkbenchError(f"{where} names image {rel!r}, which leaves the image folder {folder}",
                             "name an image inside the folder, without '..' or an absolute path")
    return Path(folder) / os.path.relpath(joined, root)


def check_image_file(path: Path, where: str) -> Path:
    if not path.is_file():
        raise WorkbenchError(f"image {path} for {where} does not exist", "check the image folder")
    try:
        with Image.open(path) as img:
            img.format  # noqa: B018 — opening reads and checks the header
    except (UnidentifiedImageError, OSError) as e:
        raise WorkbenchError(f"image {path} for {where} is unreadable", "replace it with a valid PNG or JPEG") from e
    return path


def letter(answer: object) -> str:
    """"(B)", "B.", " b " → "B"."""
    m = re.fullmatch(r"\s*\(?([A-Za-z])[\).:]?\s*", str(answer))
    return m.group(1).upper() if m else ""
