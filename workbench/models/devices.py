"""Which device a model can run on here: checked before anything loads or is written.

A model on ``cuda`` where torch has no CUDA (or the machine no GPU) otherwise fails deep inside the
load with a traceback; an unknown name (``gpu0``) as torch's parse error. :func:`check_device` turns
both into one line with the fix, and needs nothing but torch, so the CLI, the job forms (in the app's
server, which never imports the model loader) and :func:`~workbench.models.load.load_vlm` all use it.
"""

from __future__ import annotations

import torch

from workbench.errors import WorkbenchError


def check_device(device: str | torch.device) -> str:
    """The device string, if this machine can run a model on it; else one line saying why, with the fix.

    Needs no model, so callers check it before loading one (and before writing anything). ``cpu``
    always works; ``cuda`` / ``cuda:N`` need a CUDA build of torch and that GPU; ``mps`` Apple's backend."""
    text = str(device).strip()
    try:
        kind = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise WorkbenchError(f"unknown device {text!r}", "pass --device cpu, cuda or cuda:N") from None
    if kind.type == "cuda":
        if not torch.cuda.is_available():
            why = f"torch {torch.__version__} is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise WorkbenchError(f"CUDA is not available on this machine ({why})", "pass --device cpu")
        count = torch.cuda.device_count()
        if kind.index is not None and kind.index >= count:
            raise WorkbenchError(f"device {text!r} does not exist: this machine has {count} GPU(s)",
                                 f"pass --device cuda:0 … cuda:{count - 1}, or --device cpu")
    elif kind.type == "mps":
        if not torch.backends.mps.is_available():
            raise WorkbenchError("Apple's MPS backend is not available on this machine", "pass --device cpu")
    elif kind.type != "cpu":
        raise WorkbenchError(f"device {text!r} cannot run a model here", "pass --device cpu or cuda")
    return text
