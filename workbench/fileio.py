"""Atomic file writes: a temporary file in the same folder, fsync, then rename (or link) into place.

A killed writer leaves the old file or the new one, never half of one. Temporary files are named
``.<name>.<random>.tmp`` so that ``workbench store gc`` can find leftovers.

The temporary file is created the way a plain ``open(path, "w")`` creates a file — mode
``0o666`` less the process umask — so a store shared with a group (umask 002) is readable and
writable by it; ``tempfile.mkstemp`` would give every file 0600.

- :func:`atomic_write` replaces ``path`` (the last writer wins);
- :func:`atomic_create` creates ``path`` only if nothing is there yet (the first writer wins: a
  hard link fails when the name exists), for files that others must agree on, such as a sweep's
  manifest.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def _new_tmp(path: Path) -> Path:
    """A fresh, empty ``.<name>.<random>.tmp`` next to ``path``, with the mode a plain ``open()`` gives."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the kernel applies the umask
            return tmp
        except FileExistsError:
            continue


def new_tmp_dir(path: str | os.PathLike) -> Path:
    """A fresh, empty ``.<name>.<random>.tmp`` folder next to ``path``, with the mode a plain ``mkdir`` gives (0o777 less
    the umask), to be filled and renamed into place as a whole (``tempfile.mkdtemp`` would make it 0700)."""
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.mkdir(tmp, 0o777)  # the kernel applies the umask
            return tmp
        except FileExistsError:
            continue


def _write_synced(tmp: Path, write: Callable[[str], None]) -> None:
    write(str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result to ``path``; clean up on any failure."""
    path = Path(path)
    tmp = _new_tmp(path)
    try:
        _write_synced(tmp, write)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_create(path: str | os.PathLike, write: Callable[[str], None]) -> bool:
    """Like :func:`atomic_write`, but only if ``path`` does not exist yet: True when this call created it,
    False when another writer's file was already there (which is then left exactly as it was)."""
    path = Path(path)
    tmp = _new_tmp(path)
    try:
        _write_synced(tmp, write)
        try:
            os.link(tmp, path)  # atomic and exclusive: fails with FileExistsError if the name is taken
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: check, then rename (exclusive except in that instant)
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)
