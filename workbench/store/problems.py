"""What is wrong with one entry of a store, and what ``workbench store fsck --fix`` does about it.

Every reader of the store (``store ls``, ``store gc``, the app's catalog, :class:`~workbench.store.library.Library`)
checks each entry on its own: a bad one becomes a :class:`Problem` that is listed next to the good entries, never an
exception that hides them. :func:`workbench.store.fsck.fsck` gathers all of them; :func:`workbench.store.fsck.repair`
does each one's ``fix``:

- ``remove``: delete a file nothing can use — a corrupt or unverifiable chunk (the next run recomputes it), an orphan
  chunk (not in its manifest's plan), a stale temporary file, an empty folder, a broken attention cache;
- ``restore``: write a sweep's lost or broken manifest from the copy every chunk carries (``source``);
- ``quarantine``: move something the workbench cannot read but did not make for certain (a plain file in ``sweeps/``,
  a garbage ``probeset.json``, a broken scale vector or head set) to ``<store>/quarantine/`` under the same relative
  path, so it leaves every listing but nothing a person put there is deleted.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

FSCK = "run `workbench store fsck`"
FIXES = ("remove", "restore", "quarantine")
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class Problem:
    path: Path  # the file or folder that is wrong
    what: str  # one line: what is wrong with it ("is not valid JSON")
    action: str  # one line: what `fsck --fix` does ("remove it; the next run recomputes it")
    fix: str  # one of FIXES
    source: Path | None = None  # for "restore": the chunk whose manifest copy is restored
    targets: tuple[Path, ...] = ()  # what the fix acts on, when not just ``path`` (a vector's two files; a manifest's folder)

    @property
    def acts_on(self) -> tuple[Path, ...]:
        return self.targets or (self.path,)

    def relative(self, root: str | Path) -> str:
        try:
            return str(self.path.relative_to(root))
        except ValueError:
            return str(self.path)

    def line(self, root: str | Path) -> str:
        """``sweeps/ab…/manifest.json: is not valid JSON → move it to quarantine/``: what fsck prints."""
        return f"{self.relative(root)}: {self.what} → {self.action}"

    def notice(self, root: str | Path) -> str:
        """The one line a listing (``store ls``, the app) shows for an entry it skipped."""
        return f"{self.relative(root)}: {self.what} ({FSCK})"


def quarantine(root: str | Path, path: Path) -> Path:
    """Move ``path`` to ``<root>/quarantine/<its path under root>`` (a free name if that is taken)."""
    root = Path(root)
    dest = root / QUARANTINE / path.relative_to(root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    n, target = 0, dest
    while target.exists():
        n += 1
        target = dest.with_name(f"{dest.name}.{n}")
    shutil.move(str(path), str(target))
    return target
