"""The shipped organism, as the library uses it: where its folders are, its planted ground truth, its probe sets.

The organism is the project's own small LLaVA (``assets/models/organism``), trained on the probe suite, and
its copy with a planted spatial deficit (``assets/models/organism-deficit``). Everything here is torch-free
and reads files only:

    DEFAULT_MODEL, DEFICIT_MODEL   the two shipped folders (the default ``--model`` of every command)
    planted_record, read_planted   a deficit folder's ``planted.json`` (the heads turned down, and the factor)
    probesets                      the fixed held-out evaluation set and the scene geometry the organism sees

Making organisms (training, data pools, staged recipes, planting the deficit, model cards) is the lab's
work, :mod:`workbench.lab`, which nothing in the library imports (tests/unit/test_import_graph.py).
"""

import json
from pathlib import Path

from workbench.errors import WorkbenchError

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"
DEFAULT_MODEL = ASSETS / "organism"
DEFICIT_MODEL = ASSETS / "organism-deficit"
PLANTED_FILE = "planted.json"  # a planted-deficit folder's ground truth: {"heads": [[layer, head], ...], "factor", ...}


def planted_record(folder: str | Path | None) -> dict | None:
    """The ``planted.json`` of a model folder, or None when it has none or it does not read as a record with a ``heads``
    list. For the app, which shows whatever a folder records; :func:`read_planted` is the strict reader (it refuses)."""
    if folder is None:
        return None
    try:
        record = json.loads((Path(folder) / PLANTED_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("heads"), list) else None


def read_planted(folder: str | Path) -> dict:
    """The ground truth of a deficit folder: ``{"heads": [[layer, head], ...], "factor": f, ...}`` as
    :func:`workbench.lab.deficit.plant` wrote it. For tests and analyses that score discovery against it;
    discovery and training code never read it. A folder without one is refused."""
    path = Path(folder) / PLANTED_FILE
    if not path.is_file():
        raise WorkbenchError(f"{path} is missing", "this folder is not a planted-deficit organism")
    return json.loads(path.read_text())
