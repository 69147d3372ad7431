"""Benchmark loaders: local files in each benchmark's published format → ProbeSet. No downloads.

``LOADERS`` maps a format name to ``(loader, needs_image_folder)`` so the CLI and the app offer
the same list without a ladder of ifs. Every loader takes ``(path, images=None, name=None)``; those that can
find their images without being told (What'sUp's published JSON, CV-Bench, SpatialEval) do not need the folder,
and ask for it in one line when a layout does (a What'sUp QA jsonl). CV-Bench also takes ``letters``.
"""

from __future__ import annotations

import importlib

# name → (module, function, needs_image_folder); the modules (pandas, numpy) load on first use, so importing
# ``workbench.probes.loaders.wrappers`` (as ``build_batch`` does) or the CLI's help costs nothing
_TABLE = {
    "spatialeval": ("spatialeval", "load_spatialeval", False),
    "whatsup": ("whatsup", "load_whatsup", False),
    "vsr": ("vsr", "load_vsr", True),
    "cvbench": ("cvbench", "load_cvbench", False),
}

__all__ = ["LOADERS", "load_cvbench", "load_spatialeval", "load_vsr", "load_whatsup"]


def _function(module: str, name: str):
    return getattr(importlib.import_module(f"workbench.probes.loaders.{module}"), name)


def __getattr__(attr: str):
    if attr == "LOADERS":
        return {fmt: (_function(m, f), needs) for fmt, (m, f, needs) in _TABLE.items()}
    for m, f, _ in _TABLE.values():
        if attr == f:
            return _function(m, f)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
