"""What one app process serves: the store folder, the default model, the device jobs run on.

Set once by :func:`workbench.app.create_app`; pages read it through :func:`current`. The server
itself never loads a model: the model path is only passed on to job workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    store: Path
    model: str
    device: str = "cpu"
    poll_ms: int = 500


_current: Settings | None = None


def configure(settings: Settings) -> None:
    global _current
    _current = settings


def current() -> Settings:
    if _current is None:
        raise RuntimeError("the app is not configured: build it with workbench.app.create_app(...)")
    return _current


def known_models() -> list[dict]:
    """The models the forms offer first: the shipped organism and its planted-deficit twin, then the default."""
    from workbench.app.train_views import model_label
    from workbench.organism import DEFAULT_MODEL, DEFICIT_MODEL

    out = [{"label": "organism (shipped)", "value": str(DEFAULT_MODEL)},
           {"label": model_label("organism-deficit", DEFICIT_MODEL), "value": str(DEFICIT_MODEL)}]  # count from planted.json
    model = current().model
    if model not in (o["value"] for o in out):
        out.insert(0, {"label": Path(model).name or model, "value": model})
    return out
