"""Recall@k of the planted heads for every discovery method (k = the number of planted heads), and AtP against exact patching.

The planted-deficit organism is the intact organism with a few spatial heads turned down; which ones is
written in ``planted.json`` (read here only to score). Each method is one small function returning a score
map ``[layer, head]`` (higher = more likely planted); recall@k is the share of planted heads among its top k
(ties broken by the lower flat index, :func:`workbench.discovery.rankings.top_k`). For every method × model
the table gives recall@k, the top k, and each planted head it misses with its rank (of 48).

Methods (sweeps go through the effect store ``analyses/results/.store``, so a rerun recomputes nothing):

- ablation sweep: exact, α = 0 at the last token, logit difference; heads ranked by how much ablating lowers it;
- attribution: the one-forward-one-backward gradient estimate of that sweep (:mod:`workbench.sweeps.attribution`);
- specificity (two variants): spatial drop − max(0, worst control-task drop) per head
  (:func:`workbench.discovery.rankings.specificity`) from two scaling sweeps, one on spatial probes and one on
  control probes (color, shape, count, exists). "planting criterion" is the very measurement the deficit was
  chosen by (accuracy, α = 0.1 — the first factor :func:`workbench.lab.deficit.plant` tries — on all positions);
  "ablation" is the graded version (logit difference, α = 0, last token);
- activation patching, noising and denoising (:func:`workbench.causal.patching.patching_sweep`): mean normalized
  effect over the spatial probes' counterfactual pairs, last token;
- AtP, noising and denoising (:mod:`workbench.causal.atp`): the first-order estimate of the two patching sweeps;
- DLA (:mod:`workbench.causal.dla`): the signed mean direct term of each head in logit[answer] − logit[foil];
- path patching to the logits (:mod:`workbench.causal.path`, noising): a head's effect through the residual and
  the MLPs only, every other head frozen;
- edge knock-out: α = 0 on the last token's attention to the image keys, per head, logit difference;
- linear probe: cross-validated accuracy of a logistic regression predicting the relation from each head's
  last-token output (:mod:`workbench.discovery.linear_probes`);
- ScAle deviation: |effective scale − 1| of a ScAle vector (attention, all positions) trained on the model
  (on the deficit model: "which heads did the repair turn back up").

The planting-criterion specificity, path patching, edge knock-out and all-position patching run on the first
``SMALL`` (128) probes of each set: they cost a forward per head and probe batch. A method whose module is
missing is listed as not available in this run. Each method runs on the intact and on the deficit organism. On the
intact model the sweeps are close to circular (the planted heads were chosen by
scaling effects on the intact model), so read them as consistency checks; the planting chose its set greedily
*in combination*, which no per-head score reproduces (a head that matters only together with others ranks low).

    python analyses/recall_table.py      # writes analyses/results/recall_table.md and recall_table.json
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workbench.discovery.linear_probes import linear_probe_scores
from workbench.discovery.rankings import rank_of, specificity, task_drops, top_k, top_k_overlap
from workbench.errors import WorkbenchError
from workbench.lab.config import OrganismConfig
from workbench.models.load import load_vlm
from workbench.organism import DEFAULT_MODEL, DEFICIT_MODEL, read_planted
from workbench.probes.generate import generate
from workbench.scale.train import TrainConfig, train_scales
from workbench.store.effects import EffectStore
from workbench.sweeps.attribution import attribution, spearman
from workbench.sweeps.engine import SweepSpec
from workbench.sweeps.run import sweep

RESULTS = Path(__file__).parent / "results"
SPATIAL_TASKS = ("relation", "verify")  # the "spatial" family the deficit's selection measured
CONTROL_TASKS = ("color", "shape", "count", "exists")  # workbench.lab.deficit.CONTROL
PLANT_ALPHA = 0.1  # the first (strongest) factor workbench.lab.deficit.plant tries
SMALL = 128  # probes for the methods without a packed path (one forward per head and probe batch, on 2 shared CPU cores)


@dataclass
class Context:
    """What the methods share on one model: the model, the probe sets, the store, and results already computed."""

    vlm: object
    spatial: object  # ProbeSet: relation + verify probes, each with a counterfactual partner
    control: object  # ProbeSet: color, shape, count, exists probes
    repair: object  # ProbeSet: mixed probes for ScAle training
    spatial_small: object  # the first SMALL spatial probes, for the methods that cost a forward per head and batch
    control_small: object  # the first SMALL control probes
    store: EffectStore
    memo: dict = field(default_factory=dict)

    def sweep(self, probes, spec: SweepSpec):
        key = (probes.name, probes.hash, json.dumps(spec.to_json(), sort_keys=True))
        if key not in self.memo:
            self.memo[key] = sweep(self.vlm, probes, spec, self.store, log=lambda m: None)
        return self.memo[key]

    def cached(self, name: str, probes, fn) -> torch.Tensor:
        """``fn()`` (a tensor) for a method that is not a sweep, kept under the store folder keyed by the model's
        fingerprint, the probe set's hash and ``name`` (delete ``analyses/results/.store/recall_table`` to recompute)."""
        slug = "".join(ch if ch.isalnum() else "_" for ch in name)
        path = self.store.root / "recall_table" / f"{self.vlm.fingerprint[:16]}-{probes.hash[:12]}-{slug}.pt"
        if name not in self.memo:
            if path.is_file():
                self.memo[name] = torch.load(path)
            else:
                value = fn()
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(value, path.with_suffix(".tmp"))
                path.with_suffix(".tmp").replace(path)
                self.memo[name] = value
        return self.memo[name]

    def patch_values(self, direction: str) -> torch.Tensor:
        """``[probe, layer, head]`` exact normalized patching effects (NaN: dropped probes)."""
        from workbench.causal.patching import patching_spec

        return self.sweep(self.spatial, patching_spec(direction)).values[:, 0]

    def atp_values(self, direction: str) -> torch.Tensor:
        from workbench.causal.atp import atp

        spec = SweepSpec(intervention="patch", direction=direction)
        return self.cached(f"atp {direction}", self.spatial, lambda: atp(self.vlm, self.spatial, spec)[:, 0])


ABLATION = SweepSpec(alphas=(0.0,), positions="last", metric="logit_diff")


def ablation_sweep(c: Context) -> torch.Tensor:
    return -c.sweep(c.spatial, ABLATION).values[:, 0].mean(0)


def attribution_estimate(c: Context) -> torch.Tensor:
    return -c.cached("attribution", c.spatial, lambda: attribution(c.vlm, c.spatial, ABLATION)[:, 0]).mean(0)


def _specificity(c: Context, spec: SweepSpec, spatial, control) -> torch.Tensor:
    spatial_drop = -c.sweep(spatial, spec).values[:, 0].nanmean(0)
    res = c.sweep(control, spec)
    drops = task_drops(res.values[:, 0], res.tasks)
    return specificity(spatial_drop, [drops[t] for t in CONTROL_TASKS if t in drops])


def specificity_planting(c: Context) -> torch.Tensor:
    return _specificity(c, SweepSpec(alphas=(PLANT_ALPHA,), positions="all", metric="accuracy"), c.spatial_small, c.control_small)


def specificity_ablation(c: Context) -> torch.Tensor:
    return _specificity(c, ABLATION, c.spatial, c.control)


def patching(direction: str):
    def method(c: Context) -> torch.Tensor:
        return c.patch_values(direction).nanmean(0)
    return method


def patching_all_positions(c: Context) -> torch.Tensor:
    """Noising at every position of aligned pairs: a head's output at the image and question tokens too, so a head whose
    work is done before the last token (an early head read by later ones) can show."""
    from workbench.causal.patching import patching_spec

    return c.sweep(c.spatial_small, patching_spec("noising", positions="all")).values[:, 0].nanmean(0)


def atp_method(direction: str):
    def method(c: Context) -> torch.Tensor:
        return c.atp_values(direction).nanmean(0)
    return method


def dla(c: Context) -> torch.Tensor:
    from workbench.causal.dla import direct_logit_attribution

    return c.cached("dla", c.spatial, lambda: direct_logit_attribution(c.vlm, c.spatial).heads).mean(0)


def path_to_logits(c: Context) -> torch.Tensor:
    from workbench.causal.path import path_patch

    return c.cached("path logits noising", c.spatial_small,
                    lambda: path_patch(c.vlm, c.spatial_small, "logits", direction="noising").effect).nanmean(0)


def edge_knockout(c: Context) -> torch.Tensor:
    spec = SweepSpec(alphas=(0.0,), positions="last", metric="logit_diff", target="edges")
    return -c.sweep(c.spatial_small, spec).values[:, 0].mean(0)


def linear_probe(c: Context) -> torch.Tensor:
    return c.cached("linear probe", c.spatial, lambda: linear_probe_scores(c.vlm, c.spatial))


def scale_deviation(c: Context) -> torch.Tensor:
    cfg = TrainConfig(mode="attn", positions="all", epochs=12, batch=8, lr=3e-3, patience=5, seed=0)
    return c.cached("scale deviation", c.repair, lambda: train_scales(c.vlm, c.repair, cfg).moved())


METHODS = (
    ("ablation sweep (α=0, last token, LD)", ablation_sweep),
    ("attribution (gradient estimate of the ablation sweep)", attribution_estimate),
    ("specificity, planting criterion (accuracy, α=0.1, all positions)", specificity_planting),
    ("specificity, ablation (LD, α=0, last token)", specificity_ablation),
    ("activation patching, noising", patching("noising")),
    ("activation patching, denoising", patching("denoising")),
    ("activation patching, noising, all positions", patching_all_positions),
    ("AtP, noising", atp_method("noising")),
    ("AtP, denoising", atp_method("denoising")),
    ("DLA (signed mean)", dla),
    ("path patching → logits (noising)", path_to_logits),
    ("edge knock-out (last token → image, α=0)", edge_knockout),
    ("linear probe", linear_probe),
    ("ScAle deviation", scale_deviation),
)


def compare(a: torch.Tensor, b: torch.Tensor, k: int) -> dict:
    """Spearman of the mean maps, of the per-probe values (probes dropped by either left out) and top-k overlaps."""
    keep = ~(torch.isnan(a).any(-1).any(-1) | torch.isnan(b).any(-1).any(-1))
    ma, mb = a[keep].mean(0), b[keep].mean(0)
    return {"spearman_mean": spearman(ma, mb), "spearman_per_probe": spearman(a[keep], b[keep]),
            f"top{k}_overlap": top_k_overlap(ma, mb, k), f"top{2 * k}_overlap": top_k_overlap(ma, mb, 2 * k),
            "probes_used": int(keep.sum()), "probes_dropped": int((~keep).sum())}


SLOW = ("specificity, planting criterion", "path patching", "edge knock-out", "ScAle",
        "activation patching, noising, all")  # run after the comparisons


def run_method(label: str, c: Context, method: str, fn, planted, k: int) -> tuple[dict, list | None]:
    """One method on one model → its table row and its score map (None when it is not available)."""
    t0 = time.perf_counter()
    try:
        scores = fn(c).float()
    except ImportError as e:  # a module another piece of work has not delivered yet
        print(f"{label:8s} {method}: not available ({e})", flush=True)
        return dict(model=label, method=method, status=f"not available in this run ({e.name})"), None
    except WorkbenchError as e:
        print(f"{label:8s} {method}: refused ({e})", flush=True)
        return dict(model=label, method=method, status=f"not available in this run: {e}"), None
    seconds = time.perf_counter() - t0
    found = top_k(scores, k)
    hit = set(found) & set(planted)
    missed = {f"L{h[0]}H{h[1]}": r for h, r in rank_of(scores, planted).items() if h not in hit}
    kth = scores.flatten().sort(descending=True).values[k - 1]
    tied = int((scores == kth).sum())  # heads sharing the k-th best score: the top k is then partly the tie-break's
    print(f"{label:8s} {method:60s} recall@{k} {len(hit) / k:.2f} top {found} missed {missed} ({seconds:.0f} s)", flush=True)
    return dict(model=label, method=method, status="ok", recall=len(hit) / k, top=[list(h) for h in found], missed=missed,
                tied=tied, seconds=round(seconds, 1)), scores.tolist()


def comparisons_of(label: str, c: Context, k: int) -> list[dict]:
    out = []
    try:
        for direction in ("noising", "denoising"):
            out.append(dict(model=label, pair=f"AtP vs activation patching, {direction}",
                            **compare(c.atp_values(direction), c.patch_values(direction), k)))
    except (ImportError, WorkbenchError) as e:
        out.append(dict(model=label, pair="AtP vs activation patching", status=f"not available in this run: {e}"))
    abl = -c.sweep(c.spatial, ABLATION).values[:, 0]
    est = -c.cached("attribution", c.spatial, lambda vlm=c.vlm: attribution(vlm, c.spatial, ABLATION)[:, 0])
    out.append(dict(model=label, pair="attribution vs ablation sweep", **compare(est, abl, k)))
    for cmp in out:
        print(cmp, flush=True)
    return out


def main() -> int:
    planted_rec = read_planted(DEFICIT_MODEL)
    planted = [tuple(h) for h in planted_rec["heads"]]
    k = len(planted)
    cfg = OrganismConfig()
    spatial = generate(cfg.probe_config(400, 30_000, tasks=SPATIAL_TASKS))
    control = generate(cfg.probe_config(400, 30_001, tasks=CONTROL_TASKS))
    repair = generate(cfg.probe_config(1000, 20_000))
    small = ({it.id for it in spatial.items[:SMALL]}, {it.id for it in control.items[:SMALL]})
    spatial_small = spatial.filter(lambda it: it.id in small[0])
    control_small = control.filter(lambda it: it.id in small[1])
    store = EffectStore(RESULTS / ".store")
    contexts = {label: Context(load_vlm(folder, attn_implementation="eager"), spatial, control, repair, spatial_small,
                               control_small, store)
                for label, folder in (("intact", DEFAULT_MODEL), ("deficit", DEFICIT_MODEL))}
    rows, maps, comparisons = [], {}, []
    order = [m for m in METHODS if not m[0].startswith(SLOW)] + [None] + [m for m in METHODS if m[0].startswith(SLOW)]
    for step in order:  # methods outer, models inner: the table fills in for both models as it goes
        for label, c in contexts.items():
            if step is None:
                comparisons += comparisons_of(label, c, k)
                continue
            row, scores = run_method(label, c, *step, planted, k)
            rows.append(row)
            if scores is not None:
                maps[f"{label}: {step[0]}"] = scores
        rank = {m[0]: i for i, m in enumerate(METHODS)}
        rows.sort(key=lambda r: (r["model"] != "intact", rank[r["method"]]))
        write(planted_rec, planted, k, rows, comparisons, maps, spatial, control)  # after every step: a partial table
    return 0


def _heads(hs) -> str:
    return ", ".join(f"L{a}H{b}" for a, b in hs)


def write(planted_rec: dict, planted, k: int, rows: list, comparisons: list, maps: dict, spatial, control) -> None:
    lines = ["# Recall@k of the planted heads, per discovery method", "",
             f"Planted heads (k = {k}): {_heads(planted)} × {planted_rec['factor']}. Command: `python analyses/recall_table.py` "
             "(sweeps cached in `analyses/results/.store`; score maps in `recall_table.json`).",
             f"Spatial probes: {len(spatial)} `relation` + `verify` probes (seed 30000, training distribution), each with its "
             f"counterfactual partner; control probes: {len(control)} `color`/`shape`/`count`/`exists` probes (seed 30001). "
             f"The planting-criterion specificity, path patching, edge knock-out and all-position patching "
             f"(a forward per head and probe batch, "
             f"no packed path) use the first {SMALL} of each set. "
             "ScAle: attention, all positions, lr 3e-3, batch 8, up to 12 epochs on 1,000 mixed probes (seed 20000). "
             "Ranks are of 48 heads, 1 = best; ties go to the lower (layer, head); \"tied at #k\": how many heads share the "
             "k-th best score when more than one does (the top k is then partly the tie-break's). "
             "s: seconds in the run that wrote this "
             "file (0 for results read from the cache).", "",
             f"| model | method | recall@{k} | top {k} heads | planted heads missed (rank) | tied at #{k} | s |",
             "| --- | --- | ---: | --- | --- | ---: | ---: |"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['method']} | — | {r['status']} | | | |")
            continue
        missed = ", ".join(f"{h} ({n})" for h, n in r["missed"].items()) or "none"
        lines.append(f"| {r['model']} | {r['method']} | {100 * r['recall']:.0f}% | {_heads(r['top'])} | {missed} | "
                     f"{r['tied'] if r['tied'] > 1 else ''} | {r['seconds']:.0f} |")
    lines += ["", "## Estimates against the exact sweeps", "",
              "Spearman over the 48 heads' mean maps and over every (probe, head) value; top-k overlap of the mean maps "
              "(share of one's top k in the other's). Probes dropped by either (|LD_source − LD_base| too small) left out.", "",
              f"| model | comparison | Spearman (means) | Spearman (per probe) | top-{k} overlap | top-{2 * k} overlap | probes "
              "|",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for cmp in comparisons:
        if "status" in cmp:
            lines.append(f"| {cmp['model']} | {cmp['pair']} | {cmp['status']} | | | | |")
            continue
        lines.append(f"| {cmp['model']} | {cmp['pair']} | {cmp['spearman_mean']:.3f} | {cmp['spearman_per_probe']:.3f} | "
                     f"{cmp[f'top{k}_overlap']:.2f} | {cmp[f'top{2 * k}_overlap']:.2f} | {cmp['probes_used']} "
                     f"(+{cmp['probes_dropped']} dropped) |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "recall_table.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "recall_table.json").write_text(json.dumps({"planted": [list(h) for h in planted], "rows": rows,
                                                           "comparisons": comparisons, "scores": maps}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
