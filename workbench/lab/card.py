"""Model cards (README.md) for the organism and its planted-deficit variant, from measured numbers."""

from __future__ import annotations

from workbench.evaluation import Scores
from workbench.lab.deficit import CONTROL
from workbench.lab.deficit import TARGETS as DEFICIT_TARGETS
from workbench.probes.scenes import SceneSpec

TASK_ORDER = ("relation", "verify", "color", "shape", "count", "exists", "spatial", "control", "all")


def _acc_table(columns: dict[str, dict[str, float]]) -> str:
    names = list(columns)
    rows = ["| task | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    keys = [k for k in TASK_ORDER if any(k in c for c in columns.values())]
    for k in keys:
        rows.append(f"| {k} | " + " | ".join(f"{100 * columns[n][k]:.1f}%" if k in columns[n] else "–" for n in names) + " |")
    return "\n".join(rows)


def _relation_table(columns: dict[str, dict[str, float]]) -> str:
    names = list(columns)
    rels = sorted({r for c in columns.values() for r in c})
    rows = ["| relation (spatial probes) | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    rows += [f"| {r} | " + " | ".join(f"{100 * columns[n][r]:.1f}%" for n in names) + " |" for r in rels]
    return "\n".join(rows)


def curve_table(curve: list[dict], tasks: tuple[str, ...] = ("spatial", "control"), rows: int | None = 16,
                seconds: bool = True) -> str:
    """A training curve as a markdown table: loss, held-out accuracy of ``tasks``, image spread (when logged)
    and seconds; about ``rows`` evenly spaced points and the last one (``None``: every point)."""
    step = max(1, len(curve) // rows) if rows else 1
    picked = curve[::step] + ([curve[-1]] if (len(curve) - 1) % step else [])
    spread = all("image_spread" in p for p in picked)  # a curve recorded before it was logged lacks it
    out = ["| step | loss | " + " | ".join(tasks) + " |" + (" image spread |" if spread else "")
           + (" seconds |" if seconds else ""),
           "| ---: | ---: |" + " ---: |" * len(tasks) + (" ---: |" if spread else "") + (" ---: |" if seconds else "")]
    out += [f"| {p['step']} | {p['loss']:.3f} | " + " | ".join(f"{100 * p[t]:.1f}%" for t in tasks) + " |"
            + (f" {p['image_spread']:.3f} |" if spread else "") + (f" {p['seconds']:.0f} |" if seconds else "") for p in picked]
    return "\n".join(out)


def _pool(c: dict) -> str:
    return (", a pool of independently seeded chunks rendered by every CPU (`workbench.lab.data`)"
            if c.get("data") == "pool" else "")


def _patch_loss(c: dict) -> str:
    if not c.get("patch_loss"):
        return ""
    return (f", plus {c['patch_loss']} × an auxiliary patch loss: linear read-outs of each projected image token "
            "predict the color and the shape of the object centered in its patch"
            + (f" (or whose center lies within {c['patch_reach']} px of the patch's center)" if c.get("patch_reach") else "")
            + " and the token's row and column "
            "(`workbench.lab.readouts.PatchReadout`; used only while training, not part of this model)")


def _label_smoothing(c: dict) -> str:
    if not c.get("label_smoothing"):
        return ""
    return (f" with label smoothing {c['label_smoothing']} (a never-seen answer, such as a held-out pair's color, is not "
            "pushed down without bound)")


def _temperature(summary: dict) -> str:
    c = summary["config"]
    if not c.get("confidence"):
        return ""
    return (f"\n- After training, the logits were multiplied by {summary.get('temperature', float('nan')):.3f} "
            "(folded into `lm_head.weight`): "
            f"the factor that makes the right answer's mean probability on fresh training-distribution scenes {c['confidence']}, "
            "undoing label smoothing's under-confidence (`workbench.lab.calibration.answer_temperature`). The order of the "
            "logits, hence every prediction and accuracy, is unchanged; the curve's accuracies are from before it.")


def _where_loss(c: dict) -> str:
    if not c.get("where_loss"):
        return ""
    return (f", plus {c['where_loss']} × an auxiliary read-out of the language model: at the last position, after decoder "
            f"layer {c['where_layer']}, linear read-outs predict the row and column of the two objects a spatial question "
            "names (`workbench.lab.readouts.WhereReadout`; used only while training) — so the spatial heads that fetch "
            f"the positions sit in layers 0–{c['where_layer']} by construction")


def stages(summary: dict) -> list[dict]:
    """A staged run's records, first stage first: each earlier stage's ``init_run``, then ``summary`` itself."""
    chain, run = [summary], summary.get("init_run")
    while run:
        chain.insert(0, run)
        run = run.get("init_run")
    return chain


def recipe(summary: dict) -> list[dict]:
    """A (staged) run's recipe: every stage's config, first stage first, without the folder it started from
    (an earlier stage's own result, kept anywhere) and with the fields added since a stage was recorded filled
    in by their defaults (as a resumed checkpoint's are). Two runs of one recipe have equal recipes."""
    from dataclasses import asdict

    from workbench.lab.config import OrganismConfig

    return [{k: v for k, v in asdict(OrganismConfig(**run["config"])).items() if k != "init"} for run in stages(summary)]


def _stage_settings(c: dict) -> str:
    extra = [f"{name} {c[key]}" for key, name in (("patch_loss", "patch loss"), ("where_loss", "where loss"),
                                                  ("label_smoothing", "label smoothing")) if c.get(key)]
    return ", ".join([f"lr {c['lr']}", f"batch {c['batch']}", *extra])


def recipe_commands(summary: dict, out: str, last_command: str) -> str:
    """The shell commands that retrain a (staged) run from fresh weights: one ``workbench lab train``
    per stage, each from the folder of the one before (``/tmp/stageN``); a stage that was stopped before the
    end of its schedule is trained with ``--stop-after`` and exported from its checkpoint. ``last_command``
    is the final stage's own command line, used as it is for a single-stage run. The recipe fields the
    command takes are read from the command itself (:func:`workbench.cli.lab.train_fields`); a stage that
    sets another one is flagged instead of printed as a command that would train something else."""
    from dataclasses import asdict

    from workbench.cli.lab import train_fields
    from workbench.lab.config import OrganismConfig

    cli_fields = train_fields()
    chain = stages(summary)
    if len(chain) == 1:
        return _threads_env(summary) + last_command
    lines = []
    for i, run in enumerate(chain, 1):
        c = run["config"]
        default = asdict(OrganismConfig(seed=c["seed"]))
        flags = [f"--{k.replace('_', '-')} {c[k]}" for k in cli_fields if k in c and c[k] != default[k]]
        other = [k for k in default if k not in cli_fields + ("seed", "init") and c.get(k, default[k]) != default[k]]
        if other:  # not expressible on the command line: say so instead of printing a command that trains something else
            lines.append(f"# stage {i} also sets {', '.join(f'{k}={c[k]}' for k in other)} "
                         "(analyses/organism_retrain.py takes these)")
        init = [f"--init /tmp/stage{i - 1}"] if i > 1 else []
        end = run.get("step", c["steps"])
        train = _threads_env(run) + "workbench lab train"
        if run is summary:
            lines.append(" ".join([train, f"--out {out}", f"--seed {c['seed']}", *init, *flags, "--force"]))
        elif end < c["steps"]:
            lines.append(" ".join([train, f"--out /tmp/stage{i}", f"--seed {c['seed']}", *init, *flags,
                                   f"--checkpoint /tmp/stage{i}.ckpt", f"--stop-after {end}"]))
            lines.append(f"workbench lab export /tmp/stage{i}.ckpt /tmp/stage{i}")
        else:
            lines.append(" ".join([train, f"--out /tmp/stage{i}", f"--seed {c['seed']}", *init, *flags]))
    return "\n".join(lines)


def _threads_env(run: dict) -> str:
    """``OMP_NUM_THREADS=N `` for a CPU stage recorded with one thread count (CPU sums depend on it), else ``""``."""
    threads = run.get("threads") or []
    return f"OMP_NUM_THREADS={threads[0]} " if len(threads) == 1 else ""


def _device(summary: dict) -> str:
    threads = summary.get("threads") or []
    return summary["device"] + (f" ({'/'.join(map(str, threads))} threads)" if threads else "")


def _curves(summary: dict) -> str:
    """The training curve; for a staged run, every stage's (from the chain of init folders' records), first stage first."""
    chain = stages(summary)
    if len(chain) == 1:
        return curve_table(summary["curve"])
    parts = []
    for i, run in enumerate(chain, 1):
        c = run["config"]
        origin = "from fresh weights" if i == 1 else f"from stage {i - 1}'s weights"
        if run is summary:
            parts.append(f"Stage {i} ({origin}; the configuration above):\n\n{curve_table(run['curve'])}")
            continue
        end = run.get("step", run["curve"][-1]["step"])
        stop = f"stopped at step {end:,} of a {c['steps']:,}-step schedule" if end < c["steps"] else f"{c['steps']:,} steps"
        parts.append(f"Stage {i} ({origin}; {_stage_settings(c)}; {stop}):\n\n{curve_table(run['curve'])}")
    return "\n\n".join(parts)


def _init(summary: dict) -> str:
    init = summary["config"].get("init")
    if not init:
        return ""
    return (f"\n- Started from the weights of `{init}` (model.safetensors sha256 `{summary.get('init_sha256', '?')[:16]}…`), "
            f"not from a fresh initialisation: this is stage {len(stages(summary))} of a staged recipe.")


def _scenes(c: dict) -> str:
    size = SceneSpec(c["canvas"], c.get("object_size", 0)).size
    if c.get("grid"):
        return (f"{c['canvas']} px scenes with 2–3 objects of {size} px, centered in the cells of a {c['grid']} px grid "
                f"(one object per vision patch)")
    return f"{c['canvas']} px scenes with 2–3 objects of {size} px, placed freely"


TARGETS = {"spatial": 0.90, "color": 0.95, "shape": 0.95, "count": 0.95, "exists": 0.95}


def _targets(scores: dict[str, float]) -> str:
    rows = ["| target | held-out | met |", "| --- | ---: | --- |"]
    rows += [f"| {k} ≥ {100 * v:.0f}% | {100 * scores[k]:.1f}% | {'yes' if scores[k] >= v else '**no**'} |"
             for k, v in TARGETS.items()]
    return "\n".join(rows)


def intact_card(summary: dict, scores: Scores, retrain_command: str, fresh: Scores | None = None,
                out: str = "assets/models/organism") -> str:
    c = summary["config"]
    hidden = c["heads"] * c["head_dim"]
    n_img = (c["canvas"] // c["patch"]) ** 2
    return f"""# The organism: a small LLaVA trained on spatial probes

A `LlavaForConditionalGeneration` trained from scratch by the Spatial Head Workbench on its own probe
generator, so that head discovery and ScAle can run (and be scored against a known answer) where no
pretrained VLM can be downloaded. It loads offline with `AutoProcessor`, `AutoModelForImageTextToText`,
nnsight's `TransformersModel` and `workbench.models.load.load_vlm`.

## Architecture

| part | value |
| --- | --- |
| vision tower | CLIP-style, {c['vision_layers']} layers, hidden {c['vision_hidden']}, {c['canvas']} px images, {c['patch']} px \
patches → {n_img} image tokens |
| projector | LLaVA 2-layer MLP (GELU) |
| language model | Llama, {c['layers']} layers × {c['heads']} query heads ({c['kv_heads']} key/value heads, grouped-query \
attention), head_dim {c['head_dim']}, hidden {hidden}, MLP {4 * hidden} |
| tokenizer | word-level, the probe suite's vocabulary; `<image>` is a special token |
| prompt | `USER: <image>\\n{{question}} ASSISTANT:` — the answer is the next word |
| parameters | {summary['parameters']:,} (fp32) |

## Data and training

- Probes: `workbench.probes` generator, seed {c['seed']}, {c['n_train']:,} training probes{_pool(c)} (train split only:
  held-out color–shape pairs never appear), {_scenes(c)}; tasks relation, verify (spatial)
  and color, shape, count, exists (control), half spatial.
- Loss: cross-entropy of the answer word at the last position{_label_smoothing(c)}{_patch_loss(c)}{_where_loss(c)}. AdamW lr \
{c['lr']}, weight decay
  {c['weight_decay']}, batch {c['batch']}, {c['steps']:,} steps, {c['warmup']} warm-up steps then cosine decay to 10%,
  gradient-norm clipping 1.0. Trained on {_device(summary)} in {summary['seconds'] / 60:.0f} \
minutes.{_temperature(summary)}{_init(summary)}
- Evaluation: the fixed 500-probe held-out set (`workbench.organism.probesets.eval_probes(seed={c['seed']})`): test-split
  scenes, each containing at least one held-out color–shape pair.

### Training curve (held-out accuracy over the options)

{_curves(summary)}

"image spread": how different the projected image tokens of one image are, relative to their size
(`workbench.lab.train.image_spread`); near 0 the vision tower has collapsed and the language model
sees one vector at every image position.

## Held-out accuracy (500 probes)

"held-out" is the fixed evaluation set above; "fresh scenes" are 500 new scenes built only from training
pairs (`fresh_probes(seed={c['seed']})`). The gap between the two columns is what unseen color–shape pairs cost.

{_acc_table({'held-out': scores.by_task(), **({'fresh scenes': fresh.by_task()} if fresh else {})})}

{_relation_table({'held-out': scores.by_relation(), **({'fresh scenes': fresh.by_relation()} if fresh else {})})}

### Targets

{_targets(scores.by_task())}

## Retrain

```bash
{recipe_commands(summary, out, retrain_command)}
```

Runs on a GPU when one is present (`--device auto`), else on the CPU. Same seed, same machine type: same
data, same initialisation, same batch order; the same weights on a CPU only with the same thread count
(`OMP_NUM_THREADS`, recorded in `training.json` as `threads`), since float sums depend on it.
"""


def _deficit_targets(a: dict[str, float], d: dict[str, float]) -> str:
    least_drop, budget = DEFICIT_TARGETS
    drop = a["spatial"] - d["spatial"]
    rows = ["| target | measured | met |", "| --- | ---: | --- |",
            f"| spatial drop ≥ {100 * least_drop:.0f} points | {100 * drop:.1f} | {'yes' if drop >= least_drop else '**no**'} |"]
    for t in CONTROL:
        delta = d[t] - a[t]
        rows.append(f"| {t} within {100 * budget:.0f} points | {100 * delta:+.1f} | "
                    f"{'yes' if abs(delta) <= budget else '**no**'} |")
    return "\n".join(rows)


def _held_out_check(record: dict) -> str:
    if "held_out" not in record:  # planted before the check existed
        return ""
    return (" The targets below were checked on the held-out set before the folder was written (a check that only "
            "refuses, never chooses heads).")


def deficit_card(intact: Scores, deficit: Scores, record: dict) -> str:
    return f"""# The organism with a planted spatial deficit

The intact organism (`../organism`) with the `o_proj` output columns of {len(record['heads'])} attention heads
multiplied by {record['factor']} (weight surgery; nothing else changed). The heads were chosen through the
intervention layer on a selection set from the training distribution ({record.get('selection_probes', 400)} probes, seed
{record['selection_seed']}; never the evaluation set): every head scaled by the factor alone (all positions), then a
greedy search over the 16 heads with the largest single-head spatial drop, adding the head whose *combined* scaling
drops spatial accuracy most while every control task stays within {100 * record.get('control_budget', 0.03):.0f} points, until \
at least 4 heads
drop it by {100 * max(record.get('min_drop', 0.30), 0.30):.0f} points, or 8 heads are chosen (heads are redundant: single-head \
effects alone
overstate what a set does). The factor is the strongest
of 0.1, 0.2, 0.3 that reaches this. Selection set: spatial {100 * record['selection']['intact']['spatial']:.1f}% →
{100 * record['selection']['deficit']['spatial']:.1f}%.{_held_out_check(record)}

**Which heads, and the factor, are recorded in `planted.json`: the ground truth for tests and analyses.
Discovery and training code never read it; if you are evaluating a discovery method, don't peek.**

## Held-out accuracy (the same 500 probes as the intact card)

{_acc_table({'intact': intact.by_task(), 'deficit': deficit.by_task()})}

{_relation_table({'intact': intact.by_relation(), 'deficit': deficit.by_relation()})}

### Targets

{_deficit_targets(intact.by_task(), deficit.by_task())}

## Remake

```bash
workbench lab plant --intact assets/models/organism --out assets/models/organism-deficit \\
  --factors {record['factor']} --min-drop {record.get('min_drop', 0.30)} --control-budget {record.get('control_budget', 0.03)}
```
"""
