"""Benchmark loaders: local files in each benchmark's published format → ProbeSet. No downloads.

``LOADERS`` maps a format name to ``(loader, needs_image_folder)`` so the CLI and the app offer
the same list without a ladder of ifs.
"""

from workbench.probes.loaders.cvbench import load_cvbench
from workbench.probes.loaders.spatialeval import load_spatialeval
from workbench.probes.loaders.vsr import load_vsr
from workbench.probes.loaders.whatsup import load_whatsup

LOADERS = {
    "spatialeval": (load_spatialeval, False),
    "whatsup": (load_whatsup, True),
    "vsr": (load_vsr, True),
    "cvbench": (load_cvbench, False),
}

__all__ = ["LOADERS", "load_cvbench", "load_spatialeval", "load_vsr", "load_whatsup"]
