"""What the head page states beside its figures, as pure functions (no Dash, no model): readable percentages,
each metric's definition and sign, which probes a plot averages, and which attention maps it shows on which scale.

- :func:`percent`: a share in [0, 1] as text that never reads "2e-02%" and never rounds a real share to 0%;
- :func:`metric_note` / :func:`metric_axis`: the definition and sign convention of a sweep's effect
  (an effect is the metric under the intervention minus the same metric clean; ``kl`` is already relative;
  a patching sweep's value is the normalized effect, :data:`workbench.axis.PATCH`'s ``value``);
- :func:`intervention_phrase`: what a sweep did to one site, in words ("patching the head's output …");
- :func:`family_of`, :func:`task_choices`, :func:`normalize_task`, :func:`task_mask`: the probe filter of the α-curve and the
  ranking
  ("spatial" by default: spatial and control probes are never averaged together unless "all" is chosen);
- :func:`attention_window`: which stored attention maps the page shows (the chosen probe, then the next ones);
- :func:`attention_scale`: the one maximum every shown map is coloured against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from workbench import axis
from workbench.errors import WorkbenchError
from workbench.probes.items import CONTROL_TASKS, SPATIAL_TASKS

SPATIAL, CONTROL, ALL = "spatial", "control", "all"
FAMILIES = (SPATIAL, CONTROL, ALL)
SCALES = ("model", "head")  # attention colour scale: every head of the model on the shown probes, or this head's maps only
ATTENTION_UNIT = "share of the last token's attention, %"


def percent(share: float) -> str:
    """``share`` (a fraction, 0 … 1) as a percentage: "0%" only for exactly 0, "<0.01%" below 0.01%,
    two decimals below 1% ("0.02%"), one decimal up to 100% ("12.3%", ">99.9%" just below 1), "100%" at 1."""
    share = float(share)
    if not math.isfinite(share) or share < 0:
        raise ValueError(f"a share must be a finite number ≥ 0, got {share!r}")
    p = 100.0 * share
    if share == 0:
        return "0%"
    if p < 0.01:
        return "<0.01%"
    if p < 1:
        return f"{p:.2f}%"
    if share >= 1:
        return "100%"
    if p >= 99.95:
        return ">99.9%"
    return f"{p:.1f}%"


# ---------------------------------------------------------------- metrics
_METRIC = {  # (axis label, definition, sign)
    "logit_diff": ("Δ logit diff", "logit diff = the correct option's logit − the best wrong option's",
                   "negative = the intervention hurts the correct answer, positive = it helps"),
    "accuracy": ("Δ accuracy", "accuracy = 1 when the correct option has the highest logit among the options, else 0",
                 "negative = the intervention makes the model wrong more often"),
    "p_correct": ("Δ p(correct)", "p(correct) = the correct option's probability, renormalised over the options",
                  "negative = the intervention hurts the correct answer"),
}


PATCH_AXIS = "fraction of the logit difference"  # a patching effect's axis (the figure's title names the effect)
DROPPED = ("Probes whose base and source logit differences are too close to normalise are dropped (stored as NaN) and "
           "counted; every mean is over the probes used.")


def metric_axis(metric: str, intervention: str = "scale") -> str:
    """The y-axis label of an effect of ``metric`` under ``intervention`` (a patching sweep's value has its own unit)."""
    if axis.family(intervention).needs_pairs:
        return PATCH_AXIS
    if metric == "kl":
        return "KL(clean ‖ intervened), nats"
    return _METRIC[metric][0] if metric in _METRIC else f"Δ {metric}"


def metric_note(metric: str, intervention: str = "scale") -> str:
    """One sentence: what the plotted value is and which sign means what (``workbench.metrics``' definitions); for a
    family other than scale, the family's own definition (:attr:`workbench.axis.Family.value`) first."""
    fam = axis.family(intervention)
    if fam.needs_pairs:
        return f"{fam.value[0].upper()}{fam.value[1:]}. {DROPPED}"
    if fam is not axis.SCALE:
        base = metric_note(metric)
        return (f"{fam.value[0].upper()}{fam.value[1:]}. " + base.replace("α = 1 is the unchanged model",
                                                                          f"{fam.alpha_name} = 1 is the unchanged model"))
    if metric == "kl":
        return ("KL(clean ‖ intervened) over the whole vocabulary at the answer position, in nats: ≥ 0, 0 = nothing changed; "
                "it has no sign, so it does not say whether the answer got better or worse.")
    if metric not in _METRIC:
        return f"Δ {metric} = {metric} under the intervention − {metric} of the clean model."
    label, definition, sign = _METRIC[metric]
    return f"{label} = intervened − clean, where {definition}; {sign}. α = 1 is the unchanged model (effect 0)."


_WHERE = {axis.HEADS.name: "the head's output", axis.MLP.name: "the layer's MLP output",  # what one site of each kind is
          axis.EDGES.name: "the head's attention from the last token to the image"}


def intervention_phrase(spec: dict) -> str:
    """What a sweep (a manifest's ``spec``) did to each site, in words, for titles: "scaling the head's output by α",
    "patching the head's output from the counterfactual run into the clean run (noising)", "dividing the head's
    image-key attention logits by the temperature"."""
    fam, kind = axis.family(spec.get("intervention", "scale")), axis.kind(spec["target"])
    what = _WHERE.get(kind.name, kind.title)
    if fam.needs_pairs:
        src, base = ("the counterfactual run", "the clean run") if spec.get("direction") == "noising" else \
            ("the clean run", "the counterfactual run")
        return f"patching {what} from {src} into {base} ({spec.get('direction', '')})"
    if fam is axis.TEMPERATURE:
        return f"dividing {what.replace('attention from', 'attention logits from')} by the temperature"
    return f"scaling {what} by α"


# ---------------------------------------------------------------- which probes
def family_of(task: str, family: str | None = None) -> str:
    """A probe's family: its own where the probe set records it, else from the generator's task names."""
    if family in (SPATIAL, CONTROL):
        return family
    return SPATIAL if task in SPATIAL_TASKS else CONTROL if task in CONTROL_TASKS else "other"


def task_choices(tasks: Sequence[str], families: Sequence[str]) -> list[dict]:
    """The α-curve's filter options with their probe counts: the families present, "all" when more than one family is
    present, then each task: ``[{"value", "label", "n"}]``."""
    fam = np.asarray(families)
    out = [{"value": f, "label": f"{f} probes (n = {int((fam == f).sum())})", "n": int((fam == f).sum())}
           for f in (SPATIAL, CONTROL) if (fam == f).any()]
    if len(set(families)) > 1:
        out.append({"value": ALL, "label": f"all probes, spatial and control together (n = {len(fam)})", "n": len(fam)})
    t = np.asarray(tasks)
    out += [{"value": f"task:{name}", "label": f"task {name} (n = {int((t == name).sum())})", "n": int((t == name).sum())}
            for name in sorted(set(tasks))]
    return out


def default_task(families: Sequence[str]) -> str:
    return SPATIAL if SPATIAL in families else ALL


def normalize_task(choice: str, tasks: Sequence[str]) -> str:
    """A bare task name (``relation``, as another page may link it) as its filter value (``task:relation``)."""
    if choice not in FAMILIES and not choice.startswith("task:") and choice in set(tasks):
        return f"task:{choice}"
    return choice


def task_mask(choice: str, tasks: Sequence[str], families: Sequence[str]) -> np.ndarray:
    """``[probe]`` bool: the probes a filter value (:func:`task_choices`) keeps. Refuses a filter that keeps none."""
    fam, t = np.asarray(families), np.asarray(tasks)
    if choice == ALL:
        m = np.ones(len(fam), dtype=bool)
    elif choice in (SPATIAL, CONTROL):
        m = fam == choice
    elif choice.startswith("task:"):
        m = t == choice[5:]
    else:
        m = np.zeros(len(fam), dtype=bool)
    if not m.any():
        names = ", ".join(c["value"] for c in task_choices(tasks, families))
        raise WorkbenchError(f"no probe of this sweep matches the filter {choice!r}", f"choose one of {names}")
    return m


# ---------------------------------------------------------------- attention maps
def attention_window(probe_ids: Sequence[str], chosen: str | None, n: int) -> tuple[list[int], str | None]:
    """Indices of the ``n`` stored maps to show: ``chosen`` first, then the next stored probes in order (wrapping round),
    and the line to show when ``chosen`` has no stored map (then the window starts at the first probe)."""
    problem = None
    start = 0
    if chosen:
        if chosen in probe_ids:
            start = list(probe_ids).index(chosen)
        else:
            problem = f"probe {chosen!r} has no stored attention map; showing the first stored probes instead"
    k = min(n, len(probe_ids))
    return [(start + i) % len(probe_ids) for i in range(k)], problem


def attention_scale(attn: np.ndarray, shown: Sequence[int], layer: int, head: int, kind: str = "model") -> float:
    """The maximum the shown maps are coloured against, from ``attn [probe, layer, head, patch]``: the largest share any
    head of the model (``kind="model"``, comparable across head pages) or this head (``"head"``) puts on one patch of
    the shown probes. 0 when every shown share is 0."""
    if kind not in SCALES:
        raise WorkbenchError(f"unknown attention scale {kind!r}", f"choose one of {', '.join(SCALES)}")
    sel = attn[list(shown)]
    sel = sel if kind == "model" else sel[:, layer, head]
    return float(sel.max()) if sel.size else 0.0
