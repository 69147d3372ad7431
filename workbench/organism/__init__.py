"""The organism: the project's own small LLaVA, trained on the probe suite, and its planted deficit.

    train    the seeded recipe (workbench organism train), the fixed held-out evaluation set
    deficit  choosing spatial heads by ablation and turning them down (planted.json = ground truth)
    card     model cards from measured numbers
"""

import json
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"
DEFAULT_MODEL = ASSETS / "organism"
DEFICIT_MODEL = ASSETS / "organism-deficit"
PLANTED_FILE = "planted.json"  # a planted-deficit folder's ground truth: {"heads": [[layer, head], ...], "factor", ...}


def planted_record(folder: str | Path | None) -> dict | None:
    """The ``planted.json`` of a model folder, or None when it has none or it does not read as a record with a ``heads``
    list. Torch-free, for the app; :func:`workbench.organism.deficit.read_planted` is the strict reader (it refuses)."""
    if folder is None:
        return None
    try:
        record = json.loads((Path(folder) / PLANTED_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("heads"), list) else None
