"""Component ids, namespaced by page (``explorer-heatmap``, ``train-curves`` …), so pages never collide.

Pattern-matching ids (one cancel button per job) are dicts whose ``type`` carries the namespace.
"""

from __future__ import annotations


class _Ns:
    def __init__(self, page: str):
        self._page = page

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return f"{self._page}-{name.replace('_', '-')}"

    def match(self, name: str, value: str) -> dict:
        """A pattern-matching id, e.g. ``sweeps.match("cancel", job_id)``."""
        return {"type": f"{self._page}-{name}", "id": value}


shell = _Ns("shell")
explorer = _Ns("explorer")
head = _Ns("head")
sweeps = _Ns("sweeps")
train = _Ns("train")
compare = _Ns("compare")
export = _Ns("export")
