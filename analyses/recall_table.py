"""Recall@k of the planted heads for each discovery method (k = the number of planted heads).

The planted-deficit organism is the intact organism with a few spatial heads turned down; which
ones is written in ``planted.json`` (read here only to score). Each method ranks all heads, and
recall@k is the share of planted heads among its top k:

- sweep: exact ablation sweep (α = 0, last token, logit difference, packed fast path; from the
  effect store), heads ranked by how much ablating them lowers the logit difference;
- attribution: the one-forward-one-backward estimate of the same sweep;
- linear probe: cross-validated accuracy of a logistic regression predicting the relation from
  each head's last-token output;
- ScAle deviation: |effective scale − 1| of a ScAle vector (attention, all positions) trained on
  the model (on the deficit model this is "which heads did the repair turn back up").

Each method runs on the intact and on the deficit organism. On the intact model, "sweep" is close
to circular (the planted heads were chosen by scaling effects on the intact model, on all
positions and accuracy rather than last-token logit difference), so read it as a consistency check.

    python analyses/recall_table.py      # writes analyses/results/recall_table.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from workbench.discovery.headsets import recall_at_k, top_heads
from workbench.discovery.probes import linear_probe_scores
from workbench.models.load import load_vlm
from workbench.organism import DEFAULT_MODEL, DEFICIT_MODEL
from workbench.organism.deficit import read_planted
from workbench.organism.train import OrganismConfig
from workbench.probes.generate import generate
from workbench.scale.train import TrainConfig, train_scales
from workbench.store.effects import EffectStore
from workbench.sweeps.attribution import attribution, spearman
from workbench.sweeps.engine import SweepSpec
from workbench.sweeps.run import sweep

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    planted_rec = read_planted(DEFICIT_MODEL)
    planted = [tuple(h) for h in planted_rec["heads"]]
    k = len(planted)
    spatial = generate(OrganismConfig().probe_config(400, 30_000, tasks=("relation",)))
    repair = generate(OrganismConfig().probe_config(1000, 20_000))
    store = EffectStore(RESULTS / ".store")
    spec = SweepSpec(alphas=(0.0,), positions="last", metric="logit_diff")
    rows = []
    for label, folder in (("intact", DEFAULT_MODEL), ("deficit", DEFICIT_MODEL)):
        vlm = load_vlm(folder, attn_implementation="eager")
        exact = sweep(vlm, spatial, spec, store, log=lambda m: None).values[:, 0].mean(0)  # [layer, head]
        est = attribution(vlm, spatial, spec)[:, 0].mean(0)
        scores = {
            "sweep (ablation, exact)": -exact,
            "attribution": -est,
            "linear probe": linear_probe_scores(vlm, spatial),
            "ScAle deviation": train_scales(vlm, repair, TrainConfig(mode="attn", positions="all", epochs=12, batch=8, lr=3e-3,
                                                                   patience=5, seed=0)).moved(),
        }
        rho = spearman(exact, est)
        for method, sc in scores.items():
            hs = top_heads(sc, k, vlm.name, vlm.fingerprint, method)
            rows.append((label, method, recall_at_k(hs, planted), [list(h) for h in hs.heads]))
            print(f"{label:8s} {method:24s} recall@{k} {rows[-1][2]:.2f}  top {rows[-1][3]}", flush=True)
        print(f"{label}: spearman(exact, attribution) = {rho:.3f}", flush=True)
        rows.append((label, "spearman(exact, attribution)", rho, None))
    lines = ["# Recall@k of the planted heads, per discovery method", "",
             f"Planted heads (k = {k}): {[list(h) for h in planted]} × {planted_rec['factor']}. "
             "Command: `python analyses/recall_table.py`.",
             "Spatial probes: 400 `relation` probes (seed 30000, training distribution). "
             "ScAle: attention, all positions, lr 3e-3, batch 8, up to 12 epochs on "
             "1,000 mixed probes (seed 20000).", "",
             f"| model | method | recall@{k} | top {k} heads |", "| --- | --- | ---: | --- |"]
    for label, method, value, heads in rows:
        if heads is None:
            lines.append(f"| {label} | {method} | {value:.3f} | |")
        else:
            lines.append(f"| {label} | {method} | {100 * value:.0f}% | {heads} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "recall_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
