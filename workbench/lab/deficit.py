"""The planted deficit: the intact organism with a few spatial heads turned down.

Discovery methods and ScAle repair need a case where the right answer is *known*. We make one:
scale every head of the intact organism by a factor f (all positions, through the intervention
layer) on a selection set drawn from the training distribution, then grow a head set greedily:
the next head is the one whose addition drops spatial accuracy most *in combination* while every
control task stays within 2 points (heads are redundant, so single-head effects mislead). The
``o_proj`` columns of the chosen 4–8 heads are multiplied by f (weight surgery on a copy); f is
the strongest of {0.1, 0.2, 0.3} that reaches a 30-point spatial drop on the selection set.

The targets hold on the fixed held-out set: spatial down by at least 25 points, every control task
within 3. The selection works with margins below them (30 points; 2, not 3: a control task has about
60 held-out items, so one item is 1.6 points), and the result is checked on the held-out set before
anything is written — a check that only refuses, never chooses, so the held-out set stays out of the
selection. (Why both: a control budget at the target itself let a replant through that missed the
target on the held-out set; analyses/results/organism_retrain_same_seed.md.)

The heads and factor are written to ``planted.json`` in the deficit folder. That file is the
ground truth for tests and analyses only (:func:`workbench.organism.read_planted`); discovery and
training code never read it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from workbench.errors import WorkbenchError
from workbench.evaluation import score
from workbench.interventions.core import HeadScale
from workbench.models.load import load_vlm
from workbench.organism import PLANTED_FILE
from workbench.organism.probesets import eval_probes, probe_config
from workbench.probes.generate import generate
from workbench.probes.probeset import ProbeSet

CONTROL = ("color", "shape", "count", "exists")
TARGETS = (0.25, 0.03)  # held-out: the least spatial drop, the largest drop of any control task (issue 4)


def selection_probes(seed: int = 0, n: int = 600) -> ProbeSet:
    """Training-distribution probes (no held-out pairs, the organism's scene geometry) for choosing heads;
    never the evaluation set."""
    return generate(probe_config(n, seed))


def control_drop(base: dict[str, float], other: dict[str, float]) -> float:
    return max(base[t] - other[t] for t in CONTROL if t in base)


def missed_targets(intact: dict[str, float], deficit: dict[str, float], targets: tuple[float, float] = TARGETS) -> str | None:
    """What a deficit misses of ``targets`` (least spatial drop, largest control-task drop; accuracies as
    fractions, per task), in words, or None when it meets both."""
    least_drop, budget = targets
    missed = []
    if (drop := intact["spatial"] - deficit["spatial"]) < least_drop:
        missed.append(f"spatial drops {100 * drop:.1f} points (needs ≥ {100 * least_drop:.0f})")
    missed += [f"{t} drops {100 * (intact[t] - deficit[t]):.1f} points (allowed {100 * budget:.0f})"
               for t in CONTROL if t in intact and intact[t] - deficit[t] > budget + 1e-6]
    return "; ".join(missed) or None


def head_effects(vlm, probes: ProbeSet, alpha: float = 0.0, log: Callable[[str], None] = print,
                 base: dict[str, float] | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Spatial accuracy drop and worst control-task drop for scaling each head to ``alpha`` (all
    positions): ``[layer, head]`` each, and the unmodified scores."""
    base = base or score(vlm, probes, backend="torch").by_task()
    spatial, control = torch.zeros(vlm.site.shape), torch.zeros(vlm.site.shape)
    for layer in range(vlm.site.n_layers):
        for head in range(vlm.site.n_heads):
            acc = score(vlm, probes, [HeadScale.at(vlm.site, [(layer, head)], alpha, positions="all")], backend="torch").by_task()
            spatial[layer, head] = base["spatial"] - acc["spatial"]
            control[layer, head] = control_drop(base, acc)
        log(f"layer {layer}: spatial drops {[round(float(x), 3) for x in spatial[layer]]}")
    return spatial, control, base


def _surgery(model: torch.nn.Module, site, heads: list[tuple[int, int]], factor: float) -> None:
    d = site.head_dim
    with torch.no_grad():
        for layer, head in heads:
            site.attn_out(model, layer).weight[:, head * d:(head + 1) * d] *= factor


def greedy_heads(vlm, probes: ProbeSet, factor: float, spatial: torch.Tensor, base: dict[str, float], k_max: int = 8,
                 candidates: int = 16, target: float = 0.30, control_budget: float = 0.02,
                 log: Callable[[str], None] = print) -> tuple[list[tuple[int, int]], dict[str, float]]:
    """Grow a head set one head at a time: among the ``candidates`` heads with the largest single-head
    spatial drop, add the one whose *combined* scaling (all chosen heads × ``factor``, all positions)
    drops spatial accuracy most while keeping every control task within ``control_budget``. Heads
    are redundant, so single-head effects alone do not predict what a set does. Stops at ``k_max``
    heads, or (with at least 4) once the drop reaches ``target``."""
    n_heads = vlm.site.n_heads
    pool = [(i // n_heads, i % n_heads) for i in torch.argsort(spatial.flatten(), descending=True)[:candidates].tolist()]
    chosen: list[tuple[int, int]] = []
    acc = base
    while len(chosen) < k_max:
        best = None
        for h in pool:
            if h in chosen:
                continue
            trial = score(vlm, probes, [HeadScale.at(vlm.site, chosen + [h], factor, positions="all")], backend="torch").by_task()
            drop, ctrl = base["spatial"] - trial["spatial"], control_drop(base, trial)
            if ctrl <= control_budget and (best is None or drop > best[0]):
                best = (drop, h, trial)
        if best is None:
            break
        chosen.append(best[1])
        acc = best[2]
        log(f"factor {factor}: {chosen} → spatial {base['spatial']:.3f}→{acc['spatial']:.3f}, worst control drop "
            f"{control_drop(base, acc):.3f}")
        if len(chosen) >= 4 and best[0] >= target:
            break
    return chosen, acc


def plant(intact: Path, out: Path, seed: int = 0, log: Callable[[str], None] = print, n_select: int = 800,
          factors: tuple[float, ...] = (0.1, 0.2, 0.3), control_budget: float = 0.02, min_drop: float = 0.30,
          targets: tuple[float, float] | None = TARGETS) -> dict:
    """Choose the heads and factor, write the deficit model folder and its planted.json; return the record.

    Nothing is written unless at least 4 heads drop spatial accuracy on the selection set by
    ``min_drop`` with every control task within ``control_budget``, and the result meets ``targets``
    on the fixed held-out set (:func:`missed_targets`; None skips that check). The factors are tried
    strongest first (redundant heads need it); the first that qualifies on the selection set is kept."""
    vlm = load_vlm(intact, attn_implementation="eager")
    sel = selection_probes(seed, n_select)
    chosen, best_seen = None, 0.0
    base = score(vlm, sel, backend="torch").by_task()
    for factor in factors:
        spatial, control, _ = head_effects(vlm, sel, factor, log, base)
        heads, acc = greedy_heads(vlm, sel, factor, spatial, base, target=max(min_drop, 0.30), control_budget=control_budget,
                                  log=log)
        drop = base["spatial"] - acc["spatial"]
        best_seen = max(best_seen, drop if len(heads) >= 4 else 0.0)
        if len(heads) >= 4 and drop >= min_drop and control_drop(base, acc) <= control_budget:
            chosen = (heads, factor, acc)
            break
    if chosen is None:
        raise WorkbenchError(f"no set of 4–8 heads and factor in {list(factors)} drops spatial accuracy by "
                             f"{min_drop:.2f} with controls within {control_budget:.2f} (best: {best_seen:.2f})",
                             "lower --min-drop, or train a less redundant organism")
    heads, factor, sel_acc = chosen
    if targets:  # scored before the surgery, which is in place
        held_out = eval_probes()
        held_intact = score(vlm, held_out, backend="torch").by_task()
    _surgery(vlm.model, vlm.site, heads, factor)
    if targets:
        held_deficit = score(vlm, held_out, backend="torch").by_task()
        if problem := missed_targets(held_intact, held_deficit, targets):
            raise WorkbenchError(f"{[tuple(h) for h in heads]} × {factor} meet the selection set's margins but miss the held-out "
                                 f"targets: {problem}; nothing written",
                                 "plant with a tighter --control-budget (e.g. 0.01) or other selection probes (--seed 1)")
    tmp = out.with_name(f".{out.name}.tmp")  # built aside, then swapped in: never a half-written model folder
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(intact, tmp, ignore=shutil.ignore_patterns("README.md", "training.json", PLANTED_FILE))
    vlm.model.save_pretrained(tmp, safe_serialization=True)
    record = {"heads": [list(h) for h in heads], "factor": factor, "selection_seed": seed, "selection_probes": n_select,
              "control_budget": control_budget, "min_drop": min_drop,
              "selection": {"intact": base, "deficit": sel_acc},
              **({"held_out": {"intact": held_intact, "deficit": held_deficit}} if targets else {}),
              "head_spatial_drop": spatial.tolist(), "head_control_drop": control.tolist()}
    (tmp / PLANTED_FILE).write_text(json.dumps(record, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return record

