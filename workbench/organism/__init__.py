"""The organism: the project's own small LLaVA, trained on the probe suite, and its planted deficit.

    train    the seeded recipe (workbench organism train), the fixed held-out evaluation set
    deficit  choosing spatial heads by ablation and turning them down (planted.json = ground truth)
    card     model cards from measured numbers
"""

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"
DEFAULT_MODEL = ASSETS / "organism"
DEFICIT_MODEL = ASSETS / "organism-deficit"
