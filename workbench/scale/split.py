"""The ScAle reference's train/test split, per task, reproduced index for index.

The reference (``create_train_test_split.py`` beside ``ft_vlm_spatial.py`` in the ScAle code) splits
SpatialEval's ``vqa`` test split (``MilaWang/SpatialEval``, config ``vqa``, split ``test``) like this,
for each seed ``s`` of 0, 1, 2::

    rng = np.random.RandomState(s)                  # ONE stream for all three tasks, in this order:
    for task in ("spatialmap", "mazenav", "spatialgrid"):
        idxs = [rows whose id starts with task, in row order]
        perm = rng.permutation(len(idxs))
        shuffled = [idxs[i] for i in perm]
        n_train = floor(len(idxs) * 0.20)           # 1,500 rows -> 300
        train[task], test[task] = shuffled[:n_train], shuffled[n_train:]
    train["all"], test["all"] = the three lists concatenated in task order

``ft_vlm_spatial.py`` then trains one vector per task on ``train[task]`` (20%) and tests it on
``test[task]`` (80%); ``spatialreal`` is in neither side, nor in any run.

**Probe order assumed.** :func:`split_indices` works on positions in a probe set, and a position
is a reference row index when the probe set holds the ``vqa`` test split's rows in the dataset's
order, all of them, as ``workbench probes import spatialeval`` keeps them (one probe per row, in file
order). Which probes a task draws depends on the order of that task's probes and on its size, and,
because the three tasks share one random stream, on the sizes of the tasks drawn before it: a probe
set that lacks one of the three tasks is refused (the other tasks' draws would not be the
reference's); a set that holds part of a task is split by the same rule, but its draws are not the
published ones.

A probe set with none of the three tasks (the organism's, What'sUp, …) is split by the same rule,
its own tasks taken in order of first appearance, each task's probes in set order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from workbench.errors import WorkbenchError
from workbench.probes.probeset import ProbeSet

REFERENCE_TASKS: tuple[str, ...] = ("spatialmap", "mazenav", "spatialgrid")
TRAIN_FRACTION = 0.20
SEEDS = (0, 1, 2)  # the seeds the reference reports


def split_tasks(task_of: Sequence[str]) -> tuple[str, ...]:
    """The tasks the split draws, in drawing order, for probes whose tasks are ``task_of`` (in set order).

    SpatialEval (any of the three reference tasks present): exactly the reference's three, in its
    order; one missing is refused. Any other set: its tasks in order of first appearance."""
    present = dict.fromkeys(task_of)
    if any(t in present for t in REFERENCE_TASKS):
        missing = [t for t in REFERENCE_TASKS if t not in present]
        if missing:
            raise WorkbenchError(f"this SpatialEval probe set has no {', '.join(missing)} probes, and the ScAle reference draws "
                                 f"{', '.join(REFERENCE_TASKS)} from one random stream in that order, so no other task's "
                                 "split would be the reference's",
                                 "import the whole vqa test split (all of spatialmap, mazenav and spatialgrid)")
        return REFERENCE_TASKS
    return tuple(present)


def split_indices(task_of: Sequence[str], seed: int, train_fraction: float = TRAIN_FRACTION) -> dict:
    """The reference's split of probes whose tasks are ``task_of``, as positions into that sequence.

    Returns the reference's JSON layout: ``{"seed", "train_frac", "train": {task: [positions], …,
    "all": [...]}, "test": {same}}``, each task's list in the permuted order the reference stores.
    Probes of a task the split does not draw (``spatialreal``) are in no list."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
        raise WorkbenchError(f"paper split seed {seed!r} is not an integer in [0, 2³²)", "the reference uses seeds 0, 1 and 2")
    rng = np.random.RandomState(int(seed))
    out: dict = {"seed": int(seed), "train_frac": train_fraction, "train": {}, "test": {}}
    train_all, test_all = [], []
    for task in split_tasks(task_of):
        idxs = [i for i, t in enumerate(task_of) if t == task]
        perm = rng.permutation(len(idxs))
        shuffled = [idxs[i] for i in perm]
        n_train = int(math.floor(len(shuffled) * train_fraction))
        out["train"][task], out["test"][task] = shuffled[:n_train], shuffled[n_train:]
        train_all += shuffled[:n_train]
        test_all += shuffled[n_train:]
    out["train"]["all"], out["test"]["all"] = train_all, test_all
    return out


def reference_split(probes: ProbeSet, seed: int, task: str | None = None) -> tuple[ProbeSet, ProbeSet]:
    """(train, test) probe sets of the reference's split: one task's 20% / 80%, or (``task=None``) every
    drawn task's sides pooled (the reference's ``"all"``). Probes keep their set order within each side.
    A side without any probe (a task of fewer than 5 probes has no training probe) is refused."""
    sp = split_indices([it.task for it in probes], seed)
    key = "all" if task is None else task
    if key not in sp["train"]:
        raise WorkbenchError(f"task {task!r} is not one the paper split draws from {probes.name!r}",
                             f"use one of: {', '.join(k for k in sp['train'] if k != 'all')}")
    where = "" if task is None else f" {task}"
    sides = []
    for side in ("train", "test"):
        keep = set(sp[side][key])
        if not keep:
            n = len(sp["train"][key]) + len(sp["test"][key])
            raise WorkbenchError(f"the paper split (seed {seed}) of{where} leaves no {side} probe: "
                                 f"floor({TRAIN_FRACTION:.0%} of {n}) = {len(sp['train'][key])} train",
                                 "use a probe set with at least 5 probes per task")
        ids = {probes.items[i].id for i in keep}
        label = f"{probes.name}.paper{seed}{'-' + task if task else ''}-{side}"
        sides.append(probes.filter(lambda it, ids=ids: it.id in ids, name=label))
    return sides[0], sides[1]


def per_task_splits(probes: ProbeSet, seed: int) -> dict[str, tuple[ProbeSet, ProbeSet]]:
    """``{task: (train, test)}`` for every task the split draws, as ``ft_vlm_spatial.py`` trains them;
    refuses (before anything is trained) if any task's side would be empty."""
    return {t: reference_split(probes, seed, t) for t in split_tasks([it.task for it in probes])}
