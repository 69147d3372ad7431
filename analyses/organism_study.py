"""The organism study: can ScAle repair a *known* spatial deficit, and at what cost?

The planted-deficit organism is the intact organism with the ``o_proj`` columns of a few spatial
heads multiplied by a factor in [0.1, 0.3] (ground truth in ``planted.json``, read here only to
score). Every method is trained in the same harness (``workbench.scale.train.fit``: answer-token
cross-entropy, AdamW, early stopping on a 10% validation split) on the same repair set — fresh
training-distribution probes — and scored on the fixed 500-probe held-out evaluation set
(spatial and control tasks):

- none: the deficit model as is;
- ScAle last-token: attn, mlp, both (the reference setting: only the answer position is scaled);
- ScAle all-positions (attn): can undo the planted surgery exactly (eff = 1/factor on those heads);
- random heads: ScAle all-positions restricted to as many random heads as were planted;
- sweep heads (``--methods sweep-heads``): the same, restricted to the heads an exact ablation sweep
  of the deficit model ranks highest (a discovered head set, found without the ground truth);
- LoRA rank 1 on every linear layer of the language model; (IA)³ on k, v and down_proj.
- AdaptVis (``--methods adaptvis,adaptvis-confidence``; Chen et al., ICML 2025), training-free: the last token's
  attention logits on the image keys, in every layer and head, divided by a temperature
  (:class:`workbench.interventions.attention.ImageTemperature`). ``adaptvis``: one uniform temperature, chosen per
  seed by repair-set accuracy from the AdaptVis repository's grid plus the identity; ``adaptvis-confidence``: the
  paper's rule (smooth when the unedited first-token confidence is below a threshold, else sharpen; both temperatures
  and the threshold chosen the same way). The chosen settings are each JSON row's ``chosen``.

Recovery = (method − deficit) / (intact − deficit) on spatial accuracy. Control Δ = method − intact,
on all control items together (the target: within 1 point) and on the worst control task. Recall@k: the
planted heads among the k heads whose scales moved most.

    python analyses/organism_study.py            # 3 seeds, writes analyses/results/organism_study.{md,json} + PNGs
    python analyses/organism_study.py --seeds 0 --n-train 400 --epochs 2   # a quick look
    # side by side (one process per method and seed), then one report:
    python analyses/organism_study.py --seeds 1 --methods ia3 --out analyses/results/organism_study/ia3_s1
    python analyses/organism_study.py --merge analyses/results/organism_study/*.json

Settings (the defaults): the repair set is 2,000 fresh probes of every task (half spatial: relation and
verify; half control: color, shape, count, exists — the generator's mix), batch 32, lr 1e-2, 15 epochs, early
stopping on the 10% validation split. ``--repair-tasks spatial`` trains on spatial probes only, the paper's
setting: nothing in that loss asks the heads it moves to keep serving the control tasks, and on this organism
ScAle all-positions then breaks them (color −76, −13, −49 points on seeds 0–2; the row
"scale-all-attn (spatial repair set)" of ``analyses/results/organism_study.md``). Earlier studies, on earlier organisms:
``organism_study_v2_spatial_84fb09f.md`` (spatial repair set) and ``organism_study_v1_all_tasks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from workbench.discovery.headsets import recall_at_k, top_heads
from workbench.evaluation import score
from workbench.figures import heatmap_png
from workbench.lab.config import OrganismConfig
from workbench.models.load import load_vlm
from workbench.organism import DEFAULT_MODEL, DEFICIT_MODEL, read_planted
from workbench.organism.probesets import eval_probes
from workbench.probes.generate import generate
from workbench.probes.items import CONTROL_TASKS, SPATIAL_TASKS, TASKS
from workbench.scale.baselines import train_ia3, train_lora, train_random_heads
from workbench.scale.train import TrainConfig, train_scales

RESULTS = Path(__file__).parent / "results"
DEFAULT_METHODS = "none,scale-last-attn,scale-last-mlp,scale-last-both,scale-all-attn,random-heads,lora-r1,ia3"


def recall(vec, planted: set[tuple[int, int]]) -> float:
    """Planted heads among the k heads the vector moved most (k = number planted)."""
    return recall_at_k(top_heads(vec.moved(), len(planted), vec.model, vec.model_fingerprint, "scale"), list(planted))


def sweep_heads(vlm, k: int) -> list[tuple[int, int]]:
    """A discovered head set without peeking: the k heads whose ablation (exact last-token sweep on
    400 relation probes, from the effect store) lowers the deficit model's logit difference most."""
    from workbench.store.effects import EffectStore
    from workbench.sweeps.engine import SweepSpec
    from workbench.sweeps.run import sweep

    spatial = generate(OrganismConfig().probe_config(400, 30_000, tasks=("relation",)))
    effects = sweep(vlm, spatial, SweepSpec(alphas=(0.0,)), EffectStore(RESULTS / ".store"),
                    log=lambda m: None).values[:, 0].mean(0)
    return list(top_heads(-effects, k, vlm.name, vlm.fingerprint, "sweep").heads)


# AdaptVis (Chen et al., ICML 2025; github.com/shiqichen17/AdaptVis): the attention logits of the last token on the image
# keys, in every layer and head, divided by a temperature T = 1/weight. Grids: the repository's README weight options
# (weight 0.5, 0.8, 1.2, 1.5, 2.0 → T 2, 1.25, 0.833, 0.667, 0.5) and the identity; for the confidence rule its weight1
# options (< 1, smoothing: T 2, 1.25), weight2 options (> 1, sharpening: T 0.833, 0.667, 0.5) and thresholds.
ADAPTVIS_TEMPERATURES = (0.5, 1 / 1.5, 1 / 1.2, 1.0, 1.25, 2.0)
ADAPTVIS_SMOOTH, ADAPTVIS_SHARPEN = (2.0, 1.25), (1 / 1.2, 1 / 1.5, 0.5)
ADAPTVIS_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def adaptvis_tables(vlm, probes, batch_size: int = 64) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """On ``probes``: the unedited first-token confidence ``[n]`` (max softmax probability at the last position) and,
    for every grid temperature, each probe's correctness ``[n]`` with that uniform temperature (AdaptVis's search space;
    rows are independent, so the confidence rule's correctness is read off these tables)."""
    import torch

    from workbench import metrics
    from workbench.interventions.attention import ImageTemperature
    from workbench.interventions.torch_hooks import TorchHooksBackend
    from workbench.models.prompts import build_batch

    be = TorchHooksBackend(vlm)
    conf, correct = [], {t: [] for t in ADAPTVIS_TEMPERATURES}
    for s in range(0, len(probes), batch_size):
        batch = build_batch(vlm, probes, probes.items[s:s + batch_size])
        with torch.no_grad():
            for t in ADAPTVIS_TEMPERATURES:
                logits = be.last_logits(batch.inputs, [ImageTemperature.uniform(vlm.site, t)]).float()
                correct[t].append(metrics.accuracy(logits, batch.option_ids, batch.answer).cpu().numpy())
                if t == 1.0:
                    conf.append(torch.softmax(logits, -1).max(-1).values.cpu().numpy())
    return np.concatenate(conf), {t: np.concatenate(v) for t, v in correct.items()}


def choose_adaptvis(conf: np.ndarray, correct: dict[float, np.ndarray]) -> tuple[dict, dict]:
    """The uniform temperature and the (smooth, sharpen, threshold) confidence rule with the best repair-set accuracy
    (ties: the uniform T nearest 1, then the grids' order). Returns ``(uniform, rule)``, each with its repair accuracy."""
    best_t = max(ADAPTVIS_TEMPERATURES, key=lambda t: (correct[t].mean(), -abs(np.log(t))))
    uniform = {"temperature": best_t, "repair_accuracy": float(correct[best_t].mean()),
               "repair_accuracy_unedited": float(correct[1.0].mean())}
    rules = [(float(np.where(conf < th, correct[lo], correct[hi]).mean()), lo, hi, th)
             for lo in ADAPTVIS_SMOOTH for hi in ADAPTVIS_SHARPEN for th in ADAPTVIS_THRESHOLDS]
    acc, lo, hi, th = max(rules, key=lambda r: (r[0], -abs(np.log(r[1])) - abs(np.log(r[2]))))  # ties: the gentlest
    rule = {"smooth": lo, "sharpen": hi, "threshold": th, "repair_accuracy": acc,
            "repair_share_smoothed": float((conf < th).mean())}
    return uniform, rule


def score_adaptvis(vlm, probes, smooth: float, sharpen: float, threshold: float, batch_size: int = 64):
    """:func:`workbench.evaluation.score` for AdaptVis's confidence rule: per batch, the unedited forward decides each
    row's temperature (:meth:`ImageTemperature.confidence_driven`), then the edited forward is scored the same way."""
    import torch

    from workbench import metrics
    from workbench.evaluation import Scores
    from workbench.interventions.attention import ImageTemperature
    from workbench.interventions.torch_hooks import TorchHooksBackend
    from workbench.models.prompts import build_batch

    be = TorchHooksBackend(vlm)
    acc, ld = [], []
    items = probes.items
    for s in range(0, len(items), batch_size):
        batch = build_batch(vlm, probes, items[s:s + batch_size])
        with torch.no_grad():
            clean = be.last_logits(batch.inputs)
            iv = ImageTemperature.confidence_driven(vlm, batch.inputs, smooth, sharpen, threshold, clean_logits=clean)
            logits = be.last_logits(batch.inputs, [iv]).float()
        acc.append(metrics.accuracy(logits, batch.option_ids, batch.answer).cpu())
        ld.append(metrics.logit_diff(logits, batch.option_ids, batch.answer).cpu())
    return Scores(torch.cat(acc), torch.cat(ld), tuple(it.task for it in items), tuple(it.family for it in items),
                  tuple(it.relation if it.family == "spatial" else "" for it in items))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n-train", type=int, default=2000, help="Repair-set probes (training distribution, fresh scenes).")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--patience", type=int, default=15)
    ap.add_argument("--schedule", default="constant", help="Learning-rate schedule of every method: constant or cosine.")
    ap.add_argument("--l2", type=float, default=1e-4, help="Penalty on ScAle's raw parameters u (pulls every scale toward 1).")
    ap.add_argument("--repair-tasks", default="all", choices=("spatial", "all"),
                    help="Tasks of the repair set: all (the generator's mix, half spatial; default) "
                    "or spatial (relation, verify; the paper's setting).")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="Only write one report (--out) from the .json files of earlier runs, "
                    "e.g. one per seed run side by side.")
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    ap.add_argument("--adaptvis-probes", type=int, default=500,
                    help="AdaptVis methods: choose their temperatures on the first N repair-set probes (each setting "
                    "is one forward per probe; the trained methods see the whole repair set).")
    ap.add_argument("--out", default=str(RESULTS / "organism_study"))
    ap.add_argument("--intact", default=str(DEFAULT_MODEL), help="The intact organism folder.")
    ap.add_argument("--deficit", default=str(DEFICIT_MODEL), help="Its planted-deficit folder (with planted.json).")
    args = ap.parse_args()
    if args.merge:
        return merge(args.merge, Path(args.out))
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    planted_rec = read_planted(Path(args.deficit))
    planted = {tuple(h) for h in planted_rec["heads"]}
    intact = load_vlm(args.intact, attn_implementation="eager")
    deficit = load_vlm(args.deficit, attn_implementation="eager")
    test = eval_probes(0)
    n_items = {t: sum(it.task == t for it in test) for t in TASKS}
    s_int, s_def = score(intact, test, backend="torch"), score(deficit, test, backend="torch")
    base = {"intact": s_int.by_task(), "deficit": s_def.by_task()}
    gap = base["intact"]["spatial"] - base["deficit"]["spatial"]
    print(f"intact spatial {base['intact']['spatial']:.3f}, deficit {base['deficit']['spatial']:.3f} (gap {gap:.3f}); "
          f"planted {sorted(planted)} × {planted_rec['factor']}", flush=True)

    rows: list[dict] = []
    # a spatial-only repair set's files apart from the default set's
    tag = "" if args.repair_tasks == "all" else f"_{args.repair_tasks}-repair"
    vectors_dir = out.parent / f"vectors{tag.replace('-', '_')}"
    adaptvis_chosen: dict[int, tuple[dict, dict]] = {}  # seed → AdaptVis settings (both rows share one search)
    for seed in seeds:
        repair = generate(OrganismConfig().probe_config(args.n_train, 20_000 + seed,
                                                   tasks=SPATIAL_TASKS if args.repair_tasks == "spatial" else TASKS))
        for method in methods:
            t0 = time.time()
            cfg = dict(epochs=args.epochs, batch=args.batch, lr=args.lr, patience=args.patience, seed=seed, l2=args.l2,
                       schedule=args.schedule)
            vec, model_for_eval, ivs, n_params = None, deficit, [], 0
            chosen = None  # a training-free method's settings, chosen on the repair set
            if method == "none":
                pass
            elif method.startswith("scale-"):
                _, where, mode = method.split("-")
                vec = train_scales(deficit, repair, TrainConfig(mode=mode, positions=where, **cfg))
                ivs, n_params = vec.interventions(), vec.metrics["n_params"]
            elif method == "random-heads":
                vec = train_random_heads(deficit, repair, len(planted), TrainConfig(positions="all", **cfg))
                ivs, n_params = vec.interventions(), vec.metrics["n_params"]
            elif method == "sweep-heads":
                heads = sweep_heads(deficit, len(planted))
                vec = train_scales(deficit, repair, TrainConfig(mode="attn", positions="all", **cfg), heads=heads)
                ivs, n_params = vec.interventions(), vec.metrics["n_params"]
            elif method == "lora-r1":
                ad = train_lora(deficit, repair, TrainConfig(**cfg), rank=1)
                model_for_eval, n_params = ad.vlm, ad.n_params
            elif method == "ia3":
                ad = train_ia3(deficit, repair, TrainConfig(**cfg))
                model_for_eval, n_params = ad.vlm, ad.n_params
            elif method in ("adaptvis", "adaptvis-confidence"):  # training-free: settings chosen on the repair set
                if seed not in adaptvis_chosen:
                    keep = {it.id for it in repair.items[:args.adaptvis_probes]}
                    subset = repair.filter(lambda it, keep=keep: it.id in keep)
                    adaptvis_chosen[seed] = choose_adaptvis(*adaptvis_tables(deficit, subset))
                uniform, rule = adaptvis_chosen[seed]
                chosen = uniform if method == "adaptvis" else rule
                if method == "adaptvis":
                    from workbench.interventions.attention import ImageTemperature

                    ivs = [ImageTemperature.uniform(deficit.site, uniform["temperature"])]
            else:
                raise SystemExit(f"unknown method {method!r}")
            if method == "adaptvis-confidence":
                s = score_adaptvis(deficit, test, rule["smooth"], rule["sharpen"], rule["threshold"])
            else:
                s = score(model_for_eval, test, ivs, backend="torch")
            bt, br = s.by_task(), s.by_relation()
            row = {"method": method, "seed": seed, "repair_tasks": args.repair_tasks, "n_params": n_params,
                   **{k: bt[k] for k in bt},
                   "n_items": n_items,
                   **{f"rel:{k}": v for k, v in br.items()},
                   "recovery": (bt["spatial"] - base["deficit"]["spatial"]) / gap if gap > 0 else float("nan"),
                   "control_delta": min(bt[t] - base["intact"][t] for t in CONTROL_TASKS),
                   "control_all_delta": bt["control"] - base["intact"]["control"],
                   "recall": recall(vec, planted) if vec is not None and vec.mode != "mlp" else None,
                   "seconds": round(time.time() - t0, 1)}
            if chosen is not None:
                row["chosen"] = chosen
            rows.append(row)
            print(f"seed {seed} {method:16s} params {n_params:6d} spatial {bt['spatial']:.3f} control {bt['control']:.3f} "
                  f"recovery {row['recovery']:+.2f} controlΔ {row['control_delta']:+.3f} recall {row['recall']} "
                  f"({row['seconds']}s)",
                  flush=True)
            if vec is not None and seed == seeds[0]:
                vec.save(vectors_dir / f"{method}_seed{seed}")
            if vec is not None and seed == seeds[0] and vec.mode != "mlp":
                heatmap_png(vec.attn, out.parent / f"organism_study_{method}{tag}_seed{seed}.png",
                            title=f"{method}: effective head scales (planted heads framed)", marked=planted, center=1.0)
    write_report(rows, base, planted_rec, [vars(args)], out)
    return 0


def command(a: dict) -> str:
    default_out = a["out"] == str(RESULTS / "organism_study")
    out = os.path.relpath(a["out"]) if Path(a["out"]).is_relative_to(Path.cwd()) else a["out"]
    return (f"python analyses/organism_study.py --seeds {a['seeds']} --n-train {a['n_train']} --epochs {a['epochs']} "
            f"--batch {a['batch']} --lr {a['lr']} --patience {a['patience']} --repair-tasks {a['repair_tasks']} --l2 {a['l2']}"
            + (f" --schedule {a['schedule']}" if a.get("schedule", "constant") != "constant" else "")
            + ("" if default_out and a["methods"] == DEFAULT_METHODS else f" --methods {a['methods']} --out {out}")
            + (f" --adaptvis-probes {a['adaptvis_probes']}" if "adaptvis" in a["methods"] and "adaptvis_probes" in a else ""))


def merge(parts: list[str], out: Path) -> int:
    """One report from several runs' JSON (same deficit model; rows concatenated in the order given)."""
    runs = [json.loads(Path(p).read_text()) for p in parts]
    for run in runs:  # rows written before rows carried their repair set take their run's
        for r in run["rows"]:
            r.setdefault("repair_tasks", run["args"].get("repair_tasks", "spatial"))
    rows = [r for run in runs for r in run["rows"]]
    planted_rec = {"heads": runs[0]["planted"], "factor": runs[0]["factor"]}
    write_report(rows, runs[0]["base"], planted_rec, [run["args"] for run in runs], out)
    return 0


def write_report(rows: list[dict], base: dict, planted_rec: dict, parts: list[dict], out: Path) -> None:
    """The markdown table and the JSON; ``parts``: the arguments of each run whose rows these are."""
    order = DEFAULT_METHODS.split(",")
    repair = [t for t in ("all", "spatial") if any(r.get("repair_tasks") == t for r in rows)]
    if len(repair) > 1:  # runs on both repair sets: a row per method and set (the method none is the same on either)
        rows = [r for r in rows if not (r["method"] == "none" and r["repair_tasks"] != repair[0])]
        for r in rows:
            if r["method"] != "none" and r["repair_tasks"] != repair[0]:
                r["method"] = f"{r['method']} ({r['repair_tasks']} repair set)"
    def rank(method: str) -> int:  # "scale-all-attn (spatial repair set)" sorts with scale-all-attn
        base_method = method.split(" ")[0]
        return order.index(base_method) if base_method in order else len(order)

    rows = sorted(rows, key=lambda r: (rank(r["method"]), r["method"], r["seed"]))
    methods = list(dict.fromkeys(r["method"] for r in rows))

    def stat(method: str, key: str) -> str:
        vals = [r[key] for r in rows if r["method"] == method and r.get(key) is not None]
        if not vals:
            return "–"
        v = np.array(vals, dtype=float)
        pct = key not in ("recovery", "n_params")
        scale = 100 if pct or key == "recovery" else 1
        if key == "n_params":
            return f"{int(v[0]):,}"
        return f"{scale * v.mean():.1f} ± {scale * v.std():.1f}" if len(v) > 1 else f"{scale * v[0]:.1f}"

    lines = [
        "# Organism study: repairing a planted spatial deficit",
        "",
        ("Command" if len(parts) == 1 else "Commands (run side by side, then merged with `--merge`)") + ": "
        + "; ".join(f"`{command(a)}`" for a in parts),
        "",
        f"Planted: heads {planted_rec['heads']} × {planted_rec['factor']}. Held-out (500 probes): intact spatial "
        f"{100 * base['intact']['spatial']:.1f}%, control {100 * base['intact']['control']:.1f}%; deficit spatial "
        f"{100 * base['deficit']['spatial']:.1f}%, control {100 * base['deficit']['control']:.1f}%.",
        "",
        "Mean ± std over seeds. Recovery: share of the intact − deficit spatial gap closed (100 = fully). "
        "Control Δ: all control items together (the target: within 1 point), and the worst single control task, "
        "method − intact (points). Recall: planted heads among the top-k moved heads (k = planted).",
        "",
        "| method | seeds | trainable params | spatial % | control % | recovery % | control Δ (pts) | worst task Δ (pts) "
        "| recall % |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in methods:
        seeds = ",".join(str(r["seed"]) for r in rows if r["method"] == m)
        lines.append(f"| {m} | {seeds} | {stat(m, 'n_params')} | {stat(m, 'spatial')} | {stat(m, 'control')} "
                     f"| {stat(m, 'recovery')} | "
                     f"{stat(m, 'control_all_delta')} | {stat(m, 'control_delta')} | {stat(m, 'recall')} |")
    tasks = SPATIAL_TASKS + CONTROL_TASKS
    counts = next((r["n_items"] for r in rows if "n_items" in r), {})
    lines += ["", "Per task (%; items per task in the 500-probe set: "
              + (", ".join(f"{t} {counts[t]}" for t in tasks if t in counts) or "see the JSON")
              + (f"; one item of a {min(counts.values())}-item task is {100 / min(counts.values()):.1f} points" if counts else "")
              + "):", "",
              "| method | " + " | ".join(tasks) + " |", "| --- |" + " ---: |" * len(tasks)]
    for name in ("intact", "deficit"):
        lines.append(f"| ({name} model) | " + " | ".join(f"{100 * base[name][t]:.1f}" for t in tasks) + " |")
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(stat(m, t) for t in tasks) + " |")
    rels = sorted(k[4:] for k in rows[0] if k.startswith("rel:"))
    lines += ["", "Per relation (spatial probes, %):", "", "| method | " + " | ".join(rels) + " |",
              "| --- |" + " ---: |" * len(rels)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(stat(m, f"rel:{r}") for r in rels) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"base": base, "planted": planted_rec["heads"],
                                                    "factor": planted_rec["factor"],
                                                    "args": parts if len(parts) > 1 else parts[0], "rows": rows},
                                                   indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
