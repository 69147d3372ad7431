"""The planted deficit: the intact organism with a few spatial heads turned down.

Discovery methods and ScAle repair need a case where the right answer is *known*. We make one:
ablate every head of the intact organism (α = 0 on all positions, through the intervention
layer) on a selection set drawn from the training distribution, rank heads by how much spatial
accuracy they carry and how little control accuracy, then multiply the ``o_proj`` columns of the
top k heads by a factor f (weight surgery on a copy) — the smallest k in [4, 8] and the largest f
in {0.3, 0.2, 0.1} that drop spatial accuracy by at least 25 points (30 on the selection set, for
margin) while every control task stays within 3 points (2 on the selection set).

The heads and factor are written to ``planted.json`` in the deficit folder. That file is the
ground truth for tests and analyses only; discovery and training code never read it.
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
from workbench.probes.generate import ProbeConfig, generate
from workbench.probes.probeset import ProbeSet

PLANTED_FILE = "planted.json"
CONTROL = ("color", "shape", "count", "exists")


def selection_probes(seed: int = 0, n: int = 600, canvas: int = 48) -> ProbeSet:
    """Training-distribution probes (no held-out pairs) for choosing heads; never the evaluation set."""
    return generate(ProbeConfig(n=n, seed=seed, canvas=canvas, test_fraction=0.0))


def control_drop(base: dict[str, float], other: dict[str, float]) -> float:
    return max(base[t] - other[t] for t in CONTROL if t in base)


def head_effects(vlm, probes: ProbeSet, log: Callable[[str], None] = print) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Spatial accuracy drop and worst control-task drop for ablating each head: ``[layer, head]`` each."""
    base = score(vlm, probes).by_task()
    spatial, control = torch.zeros(vlm.site.shape), torch.zeros(vlm.site.shape)
    for layer in range(vlm.site.n_layers):
        for head in range(vlm.site.n_heads):
            acc = score(vlm, probes, [HeadScale.at(vlm.site, [(layer, head)], 0.0, positions="all")]).by_task()
            spatial[layer, head] = base["spatial"] - acc["spatial"]
            control[layer, head] = control_drop(base, acc)
        log(f"layer {layer}: spatial drops {[round(float(x), 3) for x in spatial[layer]]}")
    return spatial, control, base


def _surgery(model: torch.nn.Module, site, heads: list[tuple[int, int]], factor: float) -> None:
    d = site.head_dim
    with torch.no_grad():
        for layer, head in heads:
            site.attn_out(model, layer).weight[:, head * d:(head + 1) * d] *= factor


def plant(intact: Path, out: Path, seed: int = 0, log: Callable[[str], None] = print, n_select: int = 600) -> dict:
    """Choose the heads and factor, write the deficit model folder and its planted.json; return the record.
    Nothing is written when no choice meets the targets."""
    vlm = load_vlm(intact, attn_implementation="eager")
    sel = selection_probes(seed, n_select)
    spatial, control, base = head_effects(vlm, sel, log)
    order = sorted(((float(spatial[lh]), lh) for lh in ((l, h) for l in range(vlm.site.n_layers) for h in range(vlm.site.n_heads))
                    if float(control[lh]) <= 0.03 and float(spatial[lh]) > 0), reverse=True)
    ranked = [lh for _, lh in order]
    original = {k: v.clone() for k, v in vlm.model.state_dict().items()}
    chosen = None
    for k in range(4, 9):
        for factor in (0.3, 0.2, 0.1):
            heads = ranked[:k]
            if len(heads) < k:
                break
            _surgery(vlm.model, vlm.site, heads, factor)
            acc = score(vlm, sel).by_task()
            vlm.model.load_state_dict(original)
            log(f"k={k} factor={factor}: spatial {base['spatial']:.3f}→{acc['spatial']:.3f}, worst control drop {control_drop(base, acc):.3f}")
            if base["spatial"] - acc["spatial"] >= 0.30 and control_drop(base, acc) <= 0.02:
                chosen = (heads, factor, acc)
                break
        if chosen:
            break
    if chosen is None:
        raise WorkbenchError("no set of 4–8 heads and factor in [0.1, 0.3] meets the deficit targets on this organism",
                             "train the organism longer, or relax the targets")
    heads, factor, sel_acc = chosen
    _surgery(vlm.model, vlm.site, heads, factor)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(intact, out, ignore=shutil.ignore_patterns("README.md", "training.json", PLANTED_FILE))
    vlm.model.save_pretrained(out, safe_serialization=True)
    record = {"heads": [list(h) for h in heads], "factor": factor, "selection_seed": seed,
              "selection": {"intact": base, "deficit": sel_acc},
              "head_spatial_drop": spatial.tolist(), "head_control_drop": control.tolist()}
    (out / PLANTED_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return record


def read_planted(folder: Path) -> dict:
    """The ground truth of a deficit folder (for tests and analyses only)."""
    path = Path(folder) / PLANTED_FILE
    if not path.is_file():
        raise WorkbenchError(f"{path} is missing", "this folder is not a planted-deficit organism")
    return json.loads(path.read_text())


