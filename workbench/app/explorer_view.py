"""The explorer's view as pure functions of the store and the URL's query string: no Dash, no model.

The explorer page (``workbench/app/pages/explorer.py``) is a thin layer over these, so every view is
reproducible from its address: ``/?key=<sweep key>&alpha=<α>&task=<task>&relation=<r>&search=<text>``
(the narrowing filters ``model``, ``probes``, ``intervention``, ``metric`` stand in for ``key`` when
no key is given: the newest sweep matching them is shown).

- :func:`parse_query`, :func:`to_query`: the query string ↔ the choices (unknown keys ignored);
- :func:`resolve`: the choices the catalog allows, keeping what was asked where possible;
- :func:`task_options`, :func:`default_task`: the task filter (spatial by default: "all tasks" would average
  spatial and control probes, so it is offered only as an explicit, labelled choice);
- :func:`ranked`, :func:`search_rows`: the ranked head table (rank 1 = the site whose scaling hurts most);
- :func:`small_multiples`: one ``[layer, head]`` mean per relation, with one colour range for all of them;
- :func:`matrix_csv`: the shown matrix (mean and 95% interval per site) as CSV;
- :func:`model_folder`, :func:`planted_heads`: the heads a planted-deficit organism turned down (``planted.json``);
- :func:`metric_definition`, :func:`clean_rows`: what the colour means, and how the clean model does on the probes.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from workbench import axis
from workbench.app.data import ALL, Matrix, SweepData, default_alpha
from workbench.app.head_visuals import metric_note
from workbench.organism import planted_record
from workbench.probes.items import CONTROL_TASKS, SPATIAL_TASKS

CHOICES = ("model", "probes", "intervention", "metric")
QUERY_KEYS = ("key", *CHOICES, "alpha", "task", "relation", "search")
FAMILIES = {"spatial": SPATIAL_TASKS, "control": CONTROL_TASKS}

def metric_definition(metric: str, intervention: str = "scale") -> str:
    """The sentence under the heatmap: the head page's (:func:`~workbench.app.head_visuals.metric_note`), one text for
    both; a family other than scale says what its value is (:attr:`workbench.axis.Family.value`)."""
    return metric_note(metric, intervention)


def hurts_low(metric: str) -> bool:
    """True when a more negative value means more harm (every metric but ``kl``, where larger = more change)."""
    return metric != "kl"


def high_first(metric: str, intervention: str = "scale") -> bool:
    """Whether rank 1 is the largest value: for ``kl`` (the largest change) and for patching (a site carrying the whole
    logit difference has normalized effect 1); for every Δ metric rank 1 is the most negative (the largest harm)."""
    return axis.family(intervention).needs_pairs or not hurts_low(metric)


def diverging(metric: str, intervention: str = "scale") -> bool:
    """Whether the values are drawn on a diverging scale centred at 0 (every Δ metric, and patching's normalized effect,
    which can be negative); ``kl`` (≥ 0) is drawn from 0 up."""
    return axis.family(intervention).needs_pairs or hurts_low(metric)


# ---------------------------------------------------------------- URL state
def parse_query(query: dict) -> dict:
    """The explorer's choices from a query string's parameters (as Dash passes them to a page's layout: strings,
    or lists of strings for repeated keys, the first of which counts). ``alpha`` becomes a float; a value that is
    not a number is dropped (the default α is shown). Unknown keys are ignored."""
    out = {}
    for k in QUERY_KEYS:
        v = query.get(k)
        if isinstance(v, (list, tuple)):
            v = v[0] if v else None
        if v is None or v == "":
            continue
        if k == "alpha":
            try:
                v = float(v)
            except (TypeError, ValueError):
                continue
            if not np.isfinite(v):
                continue
        out[k] = v if k == "alpha" else str(v)
    return out


def to_query(state: dict) -> str:
    """``?key=…&alpha=…`` for the choices in ``state`` (in :data:`QUERY_KEYS` order, empty values left out)."""
    from urllib.parse import urlencode

    pairs = [(k, f"{state[k]:g}" if k == "alpha" else str(state[k])) for k in QUERY_KEYS if state.get(k) not in (None, "")]
    return "?" + urlencode(pairs) if pairs else ""


def intervention_label(row: dict) -> str:
    """The explorer's "Intervention" choice of a catalog row: ``heads · last token`` for a scale sweep (as before
    families existed, so old links keep working), else the family named: ``heads · patch · noising · last token``,
    ``edges · temperature · last token``."""
    pos = f"{row['positions']} token{'s' if row['positions'] == 'all' else ''}"
    fam = axis.family(row.get("intervention", "scale"))
    if fam is axis.SCALE:
        return f"{row['target']} · {pos}"
    return " · ".join(x for x in (row["target"], fam.name, row.get("direction", ""), pos) if x)


def _pick(options: list, value):
    return value if value in options else (options[0] if options else None)


def resolve(rows: list[dict], chosen: dict) -> tuple[dict, dict]:
    """(options per choice, chosen values) for catalog ``rows`` (newest first) and the asked ``chosen``.

    A ``key`` that names a row (its full key or a unique prefix) picks that sweep, and the filters follow it. Without
    one, each filter narrows the rows the next one sees, keeping what was asked where it is still possible, else the
    newest sweep's value; the sweep is then the newest one left that has the asked α. Pure, for the tests."""
    key = chosen.get("key")
    hit = [r for r in rows if key and (r["key"] == key or (len(key) >= 6 and r["key"].startswith(key)))] if key else []
    if len(hit) == 1:
        chosen = {**chosen, **{n: (intervention_label(hit[0]) if n == "intervention" else hit[0][n]) for n in CHOICES}}
    options, values = {}, {}
    for name in CHOICES:
        keyf = intervention_label if name == "intervention" else (lambda r, n=name: r[n])
        opts = list(dict.fromkeys(keyf(r) for r in rows))
        options[name], values[name] = opts, _pick(opts, chosen.get(name))
        rows = [r for r in rows if keyf(r) == values[name]]
    if len(hit) == 1:
        rows = hit
    alphas = sorted({a for r in rows for a in r["alphas"]})
    options["alpha"] = alphas
    values["alpha"] = chosen.get("alpha") if chosen.get("alpha") in alphas else \
        default_alpha(alphas, rows[0].get("intervention", "scale") if rows else "scale")
    rows = [r for r in rows if values["alpha"] in r["alphas"]]
    values["key"] = rows[0]["key"] if rows else None
    return options, values


# ---------------------------------------------------------------- task filter
def task_options(tasks) -> list[dict]:
    """The task filter's choices for a sweep whose probes have ``tasks`` (one per probe): the spatial and control
    families, each task, and "all tasks" labelled as the mix it is; each label carries its probe count."""
    tasks = list(tasks)
    out = []
    for fam, members in FAMILIES.items():
        n = sum(t in members for t in tasks)
        if n:
            present = [t for t in members if t in tasks]
            out.append({"label": f"{fam} ({', '.join(present)}) · n = {n}", "value": fam})
    for t in [*SPATIAL_TASKS, *CONTROL_TASKS, *sorted(set(tasks) - set(SPATIAL_TASKS) - set(CONTROL_TASKS))]:
        if t in tasks:
            out.append({"label": f"task {t} · n = {tasks.count(t)}", "value": t})
    families = [fam for fam, members in FAMILIES.items() if any(t in members for t in tasks)]
    if len(families) > 1 or len(set(tasks)) > 1:
        out.append({"label": f"all tasks (mixes {' and '.join(families) or 'every task'}) · n = {len(tasks)}", "value": ALL})
    return out


def default_task(tasks) -> str:
    """``spatial`` when the sweep has spatial probes, else ``control``, else every probe."""
    tasks = set(tasks)
    for fam, members in FAMILIES.items():
        if tasks & set(members):
            return fam
    return ALL


def task_phrase(task: str) -> str:
    if task in (None, "", ALL):
        return "all tasks, spatial and control mixed"
    if task in FAMILIES:
        return f"{task} probes"
    return f"task {task}"


def relations_of(sd: SweepData, task: str) -> list[str]:
    """The relations (non-empty) among the probes of ``task``."""
    m = sd.task_mask(task)
    return sorted({r for r, keep in zip(sd.relations, m) if keep} - {""})


# ---------------------------------------------------------------- ranked table
def is_mlp(sd: SweepData) -> bool:
    """Whether the sweep's sites are one per layer (its kind has no head axis: the MLPs)."""
    return not sd.kind.per_head


def ranked(m: Matrix, mlp: bool = False, kind: axis.SiteKind | None = None) -> list[dict]:
    """Every site of ``m`` as a table row, ranked: rank 1 = the largest harm (the most negative mean; for ``kl``
    the largest change; for patching the largest normalized effect, :func:`high_first`). Ties keep layer-major
    order; a site no probe measured (NaN) ranks last. Row ``id`` is the site label (``L3H5``, ``L3 MLP``,
    ``L3H5→img``: ``kind``'s, else heads or, with ``mlp``, MLPs)."""
    kind = kind or (axis.MLP if mlp else axis.HEADS)
    mean = np.asarray(m.mean, dtype=float)
    flat = mean.ravel()
    order = np.argsort(-flat if high_first(m.metric, m.intervention) else flat, kind="stable")  # NaN sorts last either way
    n_heads = mean.shape[1]
    used = None if m.n_used is None else np.asarray(m.n_used).ravel()
    rows = []
    for rank, i in enumerate(order, start=1):
        layer, head = divmod(int(i), n_heads)
        h = head if kind.per_head else axis.NO_HEAD
        site = kind.label(layer, h)
        rows.append({"id": site, "rank": rank, "site": site, "layer": layer, "head": h,
                     "mean": float(flat[i]), "low": float(m.low.ravel()[i]), "high": float(m.high.ravel()[i]),
                     "n": int(used[i]) if used is not None else m.n_probes})
    return rows


def search_rows(rows: list[dict], text: str | None) -> list[dict]:
    """Rows whose site contains every word of ``text`` (case-insensitive; ``L3``, ``h5``, ``L3H5``, ``mlp``). A word
    ``L3`` matches layer 3 only, not 30: a site matches when the word ends at a digit boundary."""
    words = (text or "").lower().replace(",", " ").split()
    if not words:
        return rows

    def hit(site: str, w: str) -> bool:
        s = site.lower()
        at = s.find(w)
        while at >= 0:
            end = at + len(w)
            if not (w[-1].isdigit() and end < len(s) and s[end].isdigit()):
                return True
            at = s.find(w, at + 1)
        return False

    return [r for r in rows if all(hit(r["site"], w) for w in words)]


# ---------------------------------------------------------------- small multiples
def small_multiples(sd: SweepData, alpha: float, task: str) -> tuple[list[dict], tuple[float, float] | None]:
    """(one panel per relation among ``task``'s probes: ``{"relation", "n", "mean" [layer, head]}``, the colour range
    they share: symmetric about 0 and spanning every panel's largest magnitude; for ``kl`` 0 to the largest value)."""
    from workbench.sweeps import aggregate

    ai = sd.alpha_index(alpha)
    panels = []
    for r in relations_of(sd, task):
        keep = sd.mask(r, task)
        v = sd.values[keep, ai]  # [probe, layer, head]; n = the probes used (a patching sweep's dropped ones are not)
        panels.append({"relation": r, "n": int(aggregate.n_used(v).max(initial=0)), "mean": aggregate.mean(v)})
    if not panels:
        return [], None
    stacked = np.stack([p["mean"] for p in panels])
    if not diverging(sd.manifest["spec"]["metric"], sd.family.name):
        return panels, (0.0, float(np.nanmax(stacked)) or 1.0)
    span = float(np.nanmax(np.abs(stacked))) or 1.0
    return panels, (-span, span)


# ---------------------------------------------------------------- downloads
def matrix_csv(m: Matrix, sd: SweepData, task: str) -> str:
    """The shown matrix as CSV, one row per site: layer, head (−1 = a per-layer site: the layer's MLP), site, mean,
    ci_low, ci_high (the 95% bootstrap interval), rank, and what it is (sweep key, metric, α, task, relation, n_probes,
    and the intervention; ``n_used``: the probes the site's mean is over, fewer than n_probes where a patching sweep
    dropped some)."""
    kind = sd.kind
    ranks = {r["id"]: r["rank"] for r in ranked(m, kind=kind)}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["layer", "head", "site", "mean", "ci_low", "ci_high", "rank", "sweep", "metric", "alpha", "task", "relation",
                "n_probes", "intervention", "n_used"])
    n_layers, n_heads = m.mean.shape
    used = m.n_used if m.n_used is not None else np.full(m.mean.shape, m.n_probes)
    what = intervention_label(sd.manifest["spec"])
    for layer in range(n_layers):
        for head in range(n_heads):
            h = head if kind.per_head else axis.NO_HEAD
            site = kind.label(layer, h)
            w.writerow([layer, h, site, repr(float(m.mean[layer, head])), repr(float(m.low[layer, head])),
                        repr(float(m.high[layer, head])), ranks[site], sd.key, m.metric, f"{m.alpha:g}", task or ALL, m.relation,
                        m.n_probes, what, int(used[layer, head])])
    return buf.getvalue()


def file_stem(sd: SweepData, alpha: float, task: str, relation: str) -> str:
    rel = "" if relation in (None, "", ALL) else f"_{relation}"
    return f"effects_{sd.key[:12]}_alpha{alpha:g}_{task or ALL}{rel}"


# ---------------------------------------------------------------- planted heads
def model_folder(name: str, default_model: str | Path | None = None) -> Path | None:
    """The model folder a manifest's ``model`` (the folder's name) refers to: the app's default model folder when it
    has that name, else a folder of that name beside it or among the shipped models (``assets/models``); None when
    none exists (a hub model, a folder elsewhere)."""
    from workbench.organism import ASSETS

    if not name or "/" in name or "\\" in name or name in (".", ".."):
        return None
    candidates = []
    if default_model:
        d = Path(default_model)
        candidates += [d] if d.name == name else []
        candidates.append(d.parent / name)
    candidates.append(ASSETS / name)
    return next((c for c in candidates if c.is_dir()), None)


def planted_heads(folder: Path | None, shape: tuple[int, int]) -> tuple[list[tuple[int, int]], dict] | None:
    """(the ``[layer, head]`` sites a planted-deficit organism's ``planted.json`` records as turned down, the record)
    for a model ``folder``; None when the folder has no readable ``planted.json``. Sites outside ``shape`` are left
    out (the file belongs to another model than the sweep's)."""
    record = planted_record(folder)
    if record is None:
        return None
    try:
        heads = [(int(a), int(b)) for a, b in record["heads"]]
    except (ValueError, TypeError):
        return None
    return [(a, b) for a, b in heads if 0 <= a < shape[0] and 0 <= b < shape[1]], record


# ---------------------------------------------------------------- clean accuracy
CLEAN_ORDER = ("spatial", *SPATIAL_TASKS, "control", *CONTROL_TASKS, "all")


def clean_rows(manifest: dict) -> list[dict] | None:
    """The clean model's accuracy per family and task on the sweep's probes (``manifest["clean"]``): rows of
    ``{"name", "accuracy", "chance", "n"}``, families first; None for a sweep that did not record it."""
    rec = manifest.get("clean")
    if not isinstance(rec, dict) or not isinstance(rec.get("accuracy"), dict):
        return None
    acc, chance, n = rec["accuracy"], rec.get("chance") or {}, rec.get("n") or {}
    names = [k for k in CLEAN_ORDER if k in acc] + sorted(set(acc) - set(CLEAN_ORDER))
    return [{"name": k, "accuracy": float(acc[k]), "chance": float(chance[k]) if k in chance else None, "n": n.get(k)}
            for k in names]
