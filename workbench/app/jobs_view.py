"""What the job cards and the Export page say, as plain functions of job parameters and store rows (no Dash).

- :func:`describe`: one line naming what a job runs — for a sweep its target (every head, or every
  layer's MLP, one at a time), the intervention (scale that site's output by α), the positions, the
  α list, the metric, the probe set and the model; for a training run its mode, heads and schedule.
- :func:`progress_text` / :func:`eta_text`: the percentage of work units done and the time left,
  extrapolated from the rate measured so far (:meth:`workbench.jobs.registry.Job.eta`); "ETA —"
  until a rate is measurable.
- :func:`explorer_href`: the Explorer's URL of one sweep (``/?key=KEY``).
- :func:`rankable_alphas` / :func:`export_sweeps`: α = 1 is the identity (every effect 0 by
  construction), so a sweep of α = 1 alone has nothing to rank heads on; Export lists it, disabled,
  with the reason, and never preselects it.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from workbench import axis
from workbench.app.data import default_alpha, rankable
from workbench.jobs.params import DEFAULT_PROBES
from workbench.jobs.registry import Job

POSITIONS = {"last": "last token", "all": "every token"}
EVERY = {axis.HEADS.name: "every attention head", axis.MLP.name: "every layer's MLP",  # what a sweep of each kind runs over
         axis.EDGES.name: "every head's last-token → image attention"}


def _alphas(alphas) -> str:
    return ", ".join(f"{float(a):g}" for a in alphas)


def _name(path_or_id: str) -> str:
    """A model or probe folder by its last part (a hub id stays whole)."""
    text = str(path_or_id or "")
    return Path(text).name if text.startswith(("/", ".", "~")) else text


def _probes(spec: str, kind: str = "sweep") -> str:
    """The probe set by the name and size its header records (a library copy's folder is only a hash), else the folder's name.
    The default differs by job: a sweep runs on the organism's held-out spatial probes; training draws the study's repair
    set and tests on the whole 500-probe held-out set (:mod:`workbench.jobs.tasks`)."""
    if spec == DEFAULT_PROBES:
        if kind == "train":
            return "the study's repair set (every task), tested on the organism's held-out set (default)"
        return "the organism's held-out spatial set (default)"
    try:
        head = json.loads((Path(spec) / "probeset.json").read_text())
        return f"{head['name']} ({int(head['n_items'])})"
    except (OSError, ValueError, KeyError, TypeError):
        return _name(spec)


def describe(kind: str, params: dict) -> str:
    """One line: what a job of ``kind`` with ``params`` (:func:`workbench.jobs.sweep_params` /
    :func:`~workbench.jobs.train_params`) computes."""
    if kind == "sweep":
        from workbench.app.head_visuals import intervention_phrase

        site = axis.KINDS.get(params.get("target", axis.HEADS.name), axis.HEADS)
        fam = axis.FAMILIES.get(params.get("intervention", "scale"), axis.SCALE)
        spec = {"target": site.name, "intervention": fam.name, "direction": params.get("direction", "")}
        parts = [f"target: {EVERY.get(site.name, site.title)}, one at a time", f"intervention: {intervention_phrase(spec)}",
                 f"positions: {POSITIONS.get(params.get('positions'), params.get('positions'))}"]
        if fam.has_alpha:
            parts.append(f"{fam.alpha_name}: {_alphas(params.get('alphas', ()))}")
        parts.append(f"metric: {params.get('metric')}" if not fam.needs_pairs else
                     "value: normalized effect of the logit difference")
    elif kind == "train":
        heads = params.get("heads")
        listed = "all heads" if heads is None else ", ".join(f"L{a}H{b}" for a, b in heads)
        parts = [f"train ScAle scales ({params.get('mode')})", f"heads: {listed}",
                 f"positions: {POSITIONS.get(params.get('positions'), params.get('positions'))}",
                 f"{params.get('epochs')} epochs · lr {params.get('lr')} · batch {params.get('batch')}"]
    else:
        parts = [kind]
    parts += [f"probes: {_probes(params.get('probes', DEFAULT_PROBES), kind)}", f"model: {_name(params.get('model', ''))}"]
    return " · ".join(parts)


def eta_text(seconds: float | None) -> str:
    """``None`` → "ETA —"; 5.2 → "ETA 6 s"; 65 → "ETA 1 min 05 s"; 3700 → "ETA 1 h 02 min" (rounded up: never early)."""
    if seconds is None:
        return "ETA —"
    s = int(-(-max(0.0, seconds) // 1))
    if s < 60:
        return f"ETA {s} s"
    if s < 3600:
        return f"ETA {s // 60} min {s % 60:02d} s"
    minutes = -(-s // 60)
    return f"ETA {minutes // 60} h {minutes % 60:02d} min"


def progress_text(job: Job, now: float | None = None) -> tuple[str, str]:
    """``("37%", "ETA 1 min 05 s")`` for a running job: the share of its work units done (a sweep counts
    probe × variant, so it moves inside a chunk), and the time left; a finished job gets no ETA (``""``)."""
    pct = f"{round(100 * job.fraction)}%"
    return pct, "" if job.final else eta_text(job.eta(now))


def explorer_href(key: str, **choices) -> str:
    """The Explorer opened on sweep ``key`` (``/?key=KEY``; further choices — alpha, relation … — in the query)."""
    return "/?" + urlencode({"key": key, **{k: v for k, v in choices.items() if v is not None}})


def rankable_alphas(alphas, intervention: str = "scale") -> list[float]:
    """The α of a sweep that heads can be ranked on: all but the family's identity α = 1, whose effects are 0 by
    construction (a patching sweep's single α 1.0 is the patched site, not an identity: it is rankable)."""
    return [float(a) for a in alphas if rankable(a, intervention)]


IDENTITY_ONLY = "α = 1 only: the identity, every effect 0, nothing to rank"


def export_sweeps(rows: list[dict]) -> tuple[list[dict], str | None]:
    """Export's sweep choices from :func:`workbench.app.data.catalog` rows: complete sweeps of heads (a per-head site
    kind: heads, edges; any family), newest first. A sweep of α = 1 alone is listed disabled with the reason; the value
    preselected is the newest sweep with an α to rank on (None when there is none)."""
    options, first = [], None
    for r in rows:
        if not (r.get("complete") and axis.kind(r.get("target", axis.HEADS.name)).per_head):
            continue
        usable = bool(rankable_alphas(r.get("alphas", ()), r.get("intervention", "scale")))
        label = r["label"] if usable else f"{r['label']} ({IDENTITY_ONLY})"
        options.append({"label": label, "value": r["key"], "disabled": not usable})
        if usable and first is None:
            first = r["key"]
    return options, first


def alpha_options(alphas, intervention: str = "scale") -> tuple[list[dict], float | None]:
    """"Rank by α" choices of one sweep: the family's identity (α = 1) shown but disabled, the family's default α
    preselected (:func:`workbench.app.data.default_alpha`); a patching sweep's one α 1.0 is "fully patched"."""
    fam = axis.family(intervention)
    note = " (identity: nothing to rank)" if fam.has_alpha else " (fully patched)"
    opts = [{"label": f"{float(a):g}" + (note if not fam.has_alpha or not rankable(a, intervention) else ""),
             "value": float(a), "disabled": not rankable(a, intervention)} for a in alphas]
    ranked = rankable_alphas(alphas, intervention)
    return opts, (default_alpha(ranked, intervention) if ranked else None)


def ranking_rule(intervention: str = "scale") -> str:
    """The Export page's line on how a sweep of this family ranks heads (the head set's ``method`` names it too)."""
    if axis.family(intervention).needs_pairs:
        return ("heads by normalized patching effect, largest first: a head carrying the whole logit difference scores "
                "near 1 (method patch:DIRECTION@POSITIONS)")
    return "heads whose intervention at this α lowers the metric most (score = −mean Δ)"
