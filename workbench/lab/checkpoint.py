"""A training run's full state (weights, optimizer, schedule, random states, data order, curve), saved at every
evaluation so that an interrupted run resumed gives the same model as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import torch

from workbench.errors import WorkbenchError
from workbench.lab.data import read_torch_file


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (a temporary name, then a rename): an interrupted save leaves the
    previous checkpoint whole."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


CHECKPOINT_FIELDS = ("config", "step", "model", "opt", "sched", "g", "torch_rng", "order", "pos", "curve", "seconds")


def load_checkpoint(path: Path) -> dict:
    """The training state :func:`workbench.lab.train.train` saved at ``path``: tensors, numbers, text and containers only (see
    :func:`~workbench.lab.data.read_torch_file`), so a file that would run code when unpickled is
    refused before anything else happens, like one that lacks a field of the state."""
    fix = "delete it to start from step 0, or point --checkpoint at one this workbench saved"
    state = read_torch_file(path, "a workbench training checkpoint", fix)
    missing = [k for k in CHECKPOINT_FIELDS if k not in state]
    if missing:
        raise WorkbenchError(f"{path} is not a workbench training checkpoint (it lacks {missing[0]!r})", fix)
    if not isinstance(state["config"], dict):
        raise WorkbenchError(f"{path} is not a workbench training checkpoint (its 'config' is not a dict)", fix)
    return state
