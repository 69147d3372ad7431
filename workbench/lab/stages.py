"""A staged recipe's links: each stage starts from the folder the stage before wrote (``OrganismConfig.init``).

A stage records what it started from (the init folder's weights' sha256 and its own record, recursively), so
a model card can print the whole chain back to fresh weights (:func:`workbench.lab.card.recipe_commands`). A
stage stopped before the end of its schedule lives in a checkpoint; :func:`export` writes it as a folder the
next stage can start from.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from workbench.lab.checkpoint import load_checkpoint
from workbench.lab.model import from_checkpoint


def init_fingerprint(init: str) -> str:
    """sha256 of the init folder's weights (recorded with a run, so a staged recipe names the exact stage it started from)."""
    return hashlib.sha256((Path(init) / "model.safetensors").read_bytes()).hexdigest() if init else ""


def init_run(init: str) -> dict | None:
    """The earlier stage's record from the init folder's training.json, if it has one: config, last step,
    curve, seconds, and its own ``init_run`` (so a chain of stages is recorded back to fresh weights)."""
    f = Path(init) / "training.json" if init else None
    if f is None or not f.is_file():
        return None
    run = json.loads(f.read_text())
    record = {k: run[k] for k in ("config", "step", "curve", "seconds", "threads", "init_sha256", "init_run", "temperature")
              if run.get(k) is not None}
    if "step" not in record and run.get("curve"):  # a finished stage: its last logged step
        record["step"] = run["curve"][-1]["step"]
    return record


def export(ckpt: Path, folder: Path) -> dict:
    """Write a checkpoint's model as an organism folder (weights, tokenizer, processor, and a training.json with
    its config, step and curve so far): the starting point of a later stage (``workbench lab train --init
    FOLDER``). Returns the checkpoint's state; a file that is not a workbench checkpoint is refused first."""
    state = load_checkpoint(Path(ckpt))
    out = Path(folder)
    from_checkpoint(state, out)
    (out / "training.json").write_text(json.dumps({"config": state["config"], "step": state["step"], "curve": state["curve"],
                                                     **({"threads": state["threads"]} if state.get("threads") else {})},
                                                    indent=1) + "\n")
    return state
