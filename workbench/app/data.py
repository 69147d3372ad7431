"""What the app shows, computed from the store alone: no Dash, no model, no GPU.

Every page is a thin layer over these functions, and so are the tests and the latency benchmark
(``analyses/bench_app.py``). They read what sweeps and training jobs left in the store:

- :func:`catalog`: every sweep (model, probe set, spec, completeness) — the explorer's choices;
- :func:`catalog_problems`: one line per store entry the listings skip (a garbage manifest, a stray file, a
  broken probe set, scale vector or head set), for the pages to show: one bad entry never breaks a page;
- :func:`sweep_message`: the one line to show instead of a sweep that cannot be read (a corrupt chunk);
- :func:`sweep_data`: one complete sweep as ``values [probe, alpha, layer, head]`` plus labels, cached
  per process (a complete sweep never changes under its key);
- :func:`matrix`: the ``[layer, head]`` mean effect at one α, over all probes or one relation, with a
  seeded bootstrap 95% interval per head (probes resampled with replacement) and the probes each mean is over
  (:mod:`workbench.sweeps.aggregate`, the one implementation ``workbench store show`` uses too: NaN — a probe a
  patching sweep dropped — is skipped and counted);
- :func:`head_detail`: one head's α-curve (α = 1 is the identity, effect exactly 0), its effect per
  relation, its most affected probes, and where it looks (last-token attention on the image);
- :func:`family_of`, :func:`site_kind`, :func:`value_unit`: what a sweep did (:mod:`workbench.axis`: the site kind,
  the intervention family) and what its values are; every label and branch asks them, not a ``target`` string.
- :func:`vectors`, :func:`vector_matrix`: saved scale vectors and their ``[layer, head]`` scales.

Images come back as ``data:image/png;base64`` strings, ready for an ``<img src>``.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from workbench import axis
from workbench.errors import WorkbenchError
from workbench.figures import attention_overlay
from workbench.store.effects import EffectStore
from workbench.store.library import Library
from workbench.sweeps import aggregate

ALL = "all"  # the relation filter meaning "every probe"
IDENTITY = 1.0  # α = 1 leaves the model unchanged: every effect there is 0 by construction (scale, temperature)
PATCH_UNIT = "fraction of the logit difference"  # the unit of a patching sweep's values (axis.PATCH.value)


def family_of(spec: dict) -> axis.Family:
    """The intervention family of a manifest's ``spec`` (a spec written before families existed is a scale sweep)."""
    return axis.family(spec.get("intervention", "scale"))


def site_kind(spec: dict) -> axis.SiteKind:
    """The site kind of a manifest's ``spec`` (its ``target``)."""
    return axis.kind(spec["target"])


def value_unit(spec: dict) -> str:
    """What one of the sweep's values is, short (a colour bar's title, a table's column): ``Δ logit_diff``, ``KL (nats)``,
    or, for patching, :data:`PATCH_UNIT`. Patching effects are never drawn on one colour scale with Δ-metric effects:
    pages group panels by this unit."""
    if family_of(spec).needs_pairs:
        return PATCH_UNIT
    return "KL (nats)" if spec["metric"] == "kl" else f"Δ {spec['metric']}"


def default_alpha(alphas, intervention: str = "scale") -> float | None:
    """The α a page opens a sweep at (explorer, head page ranking, compare, export), by the sweep's family: the family's
    first default α where it was swept (scale: 0, the ablation; temperature: 0.5), else the first α other than the
    family's identity; else the first (None for no α). A family without an identity (patching: its single α 1.0 is
    the fully patched site, not "unchanged") opens at its first α."""
    fam = axis.family(intervention)
    values = [float(a) for a in alphas]
    if fam.default_alphas and fam.default_alphas[0] in values:
        return fam.default_alphas[0]
    return next((a for a in values if a != fam.identity), values[0] if values else None)


def rankable(alpha: float, intervention: str = "scale") -> bool:
    """Whether heads can be ranked on ``alpha``: every α but the family's identity (whose effects are 0 by construction)."""
    return float(alpha) != axis.family(intervention).identity


def png_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def site_label(layer: int, head: int, target: str | None = None) -> str:
    """A site's name by its kind (:meth:`workbench.axis.SiteKind.label`: ``L3H5``, ``L3 MLP``, ``L3H5→img``). Without a
    ``target``: a head, or the layer's MLP for ``head`` = :data:`workbench.axis.NO_HEAD`."""
    kind = axis.kind(target) if target else (axis.MLP if head == axis.NO_HEAD else axis.HEADS)
    return kind.label(layer, head)


def spec_phrase(spec: dict) -> str:
    """What a sweep did, in the words of its family: ``logit_diff · heads@last · α 0, 2``,
    ``patch · noising · heads@last``, ``logit_diff · edges@last · temperature 0.5, 2``."""
    fam = family_of(spec)
    where = f"{spec['target']}@{spec['positions']}"
    if not fam.has_alpha:
        return f"{fam.name} · {spec.get('direction', '')} · {where}"
    alphas = ", ".join(f"{float(a):g}" for a in spec["alphas"])
    return f"{spec['metric']} · {where} · {fam.alpha_name} {alphas}"


# ---------------------------------------------------------------- sweeps
def catalog(root: str | Path) -> list[dict]:
    """One row per readable stored sweep, newest first: key, model, probes, alphas, metric, positions, target,
    intervention, direction, complete (a sweep with a chunk whose footer does not identify it as its own is not
    complete), and a label naming what it did (:func:`spec_phrase`)."""
    rows = []
    for e in EffectStore(root).ls():
        m, s = e.manifest, e.manifest["spec"]
        rows.append({"key": e.key, "model": m["model"], "model_fingerprint": m["model_fingerprint"], "probes": m["probes"],
                     "probeset_hash": m["probeset_hash"], "n_probes": m["n_probes"], "alphas": list(s["alphas"]),
                     "metric": s["metric"],
                     "positions": s["positions"], "target": s["target"], "intervention": family_of(s).name,
                     "direction": s.get("direction", ""), "complete": e.complete, "done": e.done,
                     "expected": e.expected,
                     "created": m.get("created", 0.0), "shape": m["shape"],
                     "label": f"{m['model']} · {m['probes']} ({m['n_probes']}) · {spec_phrase(s)} · {e.key[:8]}"})
    return sorted(rows, key=lambda r: -float(r["created"]) if isinstance(r["created"], (int, float)) else 0.0)


def catalog_problems(root: str | Path) -> list[str]:
    """One line per entry of the store that the app's listings skip, each ending in "run `workbench store fsck`":
    unreadable entries, and sweeps left out as incomplete because some of their chunks cannot be used."""
    entries, problems = EffectStore(root).scan()
    unusable = [f"sweep {e.key[:12]}…: {len(e.problems)} of its chunks cannot be used, e.g. {e.problems[0]} (run "
                "`workbench store fsck`)"
                for e in entries if e.problems]
    return [p.notice(root) for p in problems + Library(root).problems()] + unusable


def sweep_message(root: str | Path, key: str) -> str | None:
    """None when sweep ``key`` reads; else the one line that says why not (a corrupt chunk, a broken manifest)."""
    try:
        sweep_data(root, key)
    except WorkbenchError as e:
        return str(e)
    return None


@dataclass(frozen=True, eq=False)  # hashed by identity: one object per cached sweep
class SweepData:
    key: str
    manifest: dict
    values: np.ndarray  # [probe, alpha, layer, head] (head axis of 1 for a per-layer kind); NaN = a dropped probe
    alphas: tuple[float, ...]
    probe_ids: tuple[str, ...]
    relations: tuple[str, ...]
    tasks: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape[2], self.values.shape[3]

    @property
    def kind(self) -> axis.SiteKind:
        return site_kind(self.manifest["spec"])

    @property
    def family(self) -> axis.Family:
        return family_of(self.manifest["spec"])

    def label(self, layer: int, head: int) -> str:
        """The site at ``values[:, :, layer, head]`` by name (a per-layer kind ignores ``head``)."""
        return self.kind.label(layer, head if self.kind.per_head else axis.NO_HEAD)

    def alpha_index(self, alpha: float) -> int:
        for i, a in enumerate(self.alphas):
            if abs(a - float(alpha)) < 1e-12:
                return i
        raise WorkbenchError(f"sweep {self.key[:12]} has no α = {alpha:g}",
                             f"choose one of {', '.join(f'{a:g}' for a in self.alphas)}")

    def task_mask(self, task: str = ALL) -> np.ndarray:
        """``[probe]`` bool: the probes of ``task``: a task name (``relation``, ``color`` …), a family (``spatial``,
        ``control``: the tasks of :data:`workbench.probes.items.SPATIAL_TASKS` / ``CONTROL_TASKS``) or ``ALL``."""
        from workbench.probes.items import CONTROL_TASKS, SPATIAL_TASKS

        if task in (None, "", ALL):
            return np.ones(len(self.probe_ids), dtype=bool)
        members = {"spatial": SPATIAL_TASKS, "control": CONTROL_TASKS}.get(task, (task,))
        m = np.asarray([t in members for t in self.tasks], dtype=bool)
        if not m.any():
            present = sorted(set(self.tasks))
            raise WorkbenchError(f"no probe of sweep {self.key[:12]} is of task {task!r}",
                                 f"choose one of {', '.join(present)}, or a family (spatial, control) they belong to")
        return m

    def mask(self, relation: str, task: str = ALL) -> np.ndarray:
        """``[probe]`` bool: the probes of ``task`` (see :meth:`task_mask`) with ``relation`` (``ALL``: any)."""
        m = self.task_mask(task)
        if relation in (None, "", ALL):
            return m
        m = m & np.asarray([r == relation for r in self.relations], dtype=bool)
        if not m.any():
            among = sorted({r for r, t in zip(self.relations, self.task_mask(task)) if t} - {""})
            where = "" if task in (None, "", ALL) else f" among its {task} probes"
            raise WorkbenchError(f"no probe of sweep {self.key[:12]} has relation {relation!r}{where}",
                                 f"choose one of {', '.join(among)}" if among else "choose all relations")
        return m


def sweep_data(root: str | Path, key: str, fresh: bool = False) -> SweepData:
    """Sweep ``key`` (or a unique prefix) as a dense array, cached per process; ``fresh`` reads and verifies it now,
    past the cache (for saying why a sweep that the listing finds incomplete cannot be read)."""
    store = EffectStore(root)
    full = store.resolve(key)
    args = (str(Path(root).resolve()), full, len(store.chunk_names(full)))
    return _sweep_data.__wrapped__(*args) if fresh else _sweep_data(*args)


@lru_cache(maxsize=16)
def _sweep_data(root: str, key: str, n_chunks: int) -> SweepData:
    """The dense ``[probe, alpha, layer, head]`` array of a complete sweep, probes in the order the store holds them
    (:meth:`~workbench.store.effects.EffectStore.read_dense`: its verified dense copy, or every chunk read and
    verified). Refuses incomplete or corrupt sweeps."""
    store = EffectStore(root)
    d = store.read_dense(key)
    return SweepData(key=key, manifest=store.manifest(key), values=d.values, alphas=d.alphas, probe_ids=d.probe_ids,
                     relations=d.relations, tasks=d.tasks)


def bootstrap(values: np.ndarray, n_boot: int = aggregate.N_BOOT, seed: int = aggregate.SEED) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) 95% percentile interval of the mean over axis 0 (NaN skipped), each shaped like ``values[0]``:
    :func:`workbench.sweeps.aggregate.bootstrap_ci`, the interval ``workbench store show`` prints."""
    return aggregate.bootstrap_ci(values, n_boot, seed)


@dataclass(frozen=True, eq=False)
class Matrix:
    mean: np.ndarray  # [layer, head]
    low: np.ndarray  # [layer, head]
    high: np.ndarray  # [layer, head]
    n_probes: int  # probes of the filter
    alpha: float
    relation: str
    metric: str
    task: str = ALL
    n_used: np.ndarray | None = None  # [layer, head] int: probes each mean is over (fewer than n_probes where NaN: dropped)
    intervention: str = "scale"

    @property
    def dropped(self) -> int:
        """Probes of the filter no site used (a patching sweep's probes too close to normalise)."""
        return 0 if self.n_used is None else int(self.n_probes - self.n_used.max(initial=0))


def matrix(root: str | Path, key: str, alpha: float, relation: str = ALL, task: str = ALL) -> Matrix:
    """The ``[layer, head]`` mean effect at ``alpha`` over the probes of ``task`` (a task, a family ``spatial`` /
    ``control``, or ``ALL``) with ``relation`` (or ``ALL``), and its seeded bootstrap 95% interval."""
    data = sweep_data(root, key)
    return _matrix(data, float(alpha), relation or ALL, task or ALL)


@lru_cache(maxsize=64)
def _matrix(data: SweepData, alpha: float, relation: str, task: str = ALL) -> Matrix:
    v = data.values[data.mask(relation, task), data.alpha_index(alpha)]  # [probe, layer, head]
    low, high = bootstrap(v)
    return Matrix(aggregate.mean(v), low, high, int(v.shape[0]), alpha, relation, data.manifest["spec"]["metric"], task,
                  aggregate.n_used(v), data.family.name)


# ---------------------------------------------------------------- one head
def head_detail(root: str | Path, key: str, layer: int, head: int, top: int = 8, attention_probes: int = 4,
                task: str | None = None,
                probe: str | None = None, scale: str = "model", alpha: float | None = None) -> dict:
    """Everything the head page draws, from the store: α-curve, per relation, most affected probes, attention.

    ``head = -1`` (or any head of an MLP sweep) is the layer's MLP. ``task``: which probes the α-curve averages and the
    ranking ranks (:func:`workbench.app.head_visuals.task_choices`; default spatial). The per-relation means are over
    the probes that carry a true relation (spatial probes), each with its count. Attention (heads only): the stored maps
    of ``attention_probes`` probes starting at ``probe`` (default the first stored), each an overlay on one shared scale
    (``scale``: :func:`~workbench.app.head_visuals.attention_scale`); MLPs have none. A bad ``task`` / ``probe`` falls
    back to the default and says so in ``problems``. ``alpha``: the α whose effects rank the most affected probes (the
    explorer's α; default 0 where swept, else the first α other than the identity, 1, whose effects are all 0).

    Families (:mod:`workbench.axis`): the α-curve's identity point (effect 0) is the family's identity, and a family
    without α (patching) has one point, its normalized effect. A patching sweep ranks probes by normalized effect,
    largest first; every family leaves out the probes whose value is NaN (dropped: too close to normalise) and lists
    them under ``dropped``; means are over the probes used and each curve point says how many (``n``)."""
    from workbench.app import head_visuals as hv

    data = sweep_data(root, key)
    n_layers, n_heads = data.shape
    kind, fam = data.kind, data.family
    is_mlp = not kind.per_head
    if head == axis.NO_HEAD and kind.per_head:
        raise WorkbenchError(f"sweep {data.key[:12]} intervened on {kind.title}, not MLPs: L{layer} MLP is not in it",
                             "pick a site on the heatmap")
    h = 0 if is_mlp else head
    site = data.label(layer, head)
    if not (0 <= layer < n_layers and 0 <= h < n_heads):
        raise WorkbenchError(f"{site} is outside this model's {n_layers} layers"
                             + ("" if is_mlp else f" × {n_heads} heads"), "pick a site on the heatmap")
    library = Library(root)
    try:
        probes = library.probes(data.manifest["probeset_hash"])
        by_id = {it.id: it for it in probes}
    except WorkbenchError:
        probes, by_id = None, {}
    families = [hv.family_of(t, by_id[p].family if p in by_id else None) for p, t in zip(data.probe_ids, data.tasks)]
    problems = []
    chosen = hv.normalize_task(task or hv.default_task(families), data.tasks)
    try:
        keep = hv.task_mask(chosen, data.tasks, families)
    except WorkbenchError as e:
        problems.append(str(e))
        chosen = hv.default_task(families)
        keep = hv.task_mask(chosen, data.tasks, families)
    v_all = data.values[:, :, layer, h]  # [probe, alpha]; NaN = a probe the sweep dropped
    v = v_all[keep]
    low, high = bootstrap(v)
    means, used = aggregate.mean(v), aggregate.n_used(v)
    curve = [{"alpha": a, "mean": float(means[i]), "low": float(low[i]), "high": float(high[i]), "n": int(used[i])}
             for i, a in enumerate(data.alphas)]
    if fam.has_alpha and data.manifest["spec"]["metric"] != "kl" and fam.identity not in data.alphas:
        curve.append({"alpha": fam.identity, "mean": 0.0, "low": 0.0, "high": 0.0, "n": int(keep.sum()),
                      "identity": True})  # the identity is exactly the clean model
    curve.sort(key=lambda p: p["alpha"])
    relations = sorted(set(data.relations) - {""})
    per_relation = {r: [float(x) for x in aggregate.mean(v_all[data.mask(r)])] for r in relations}
    relation_n = {r: int(aggregate.n_used(v_all[data.mask(r)]).max(initial=0)) for r in relations}
    first = data.alphas.index(default_alpha(data.alphas, fam.name))
    if alpha is not None:
        hit = [i for i, a in enumerate(data.alphas) if rankable(a, fam.name) and abs(a - float(alpha)) < 1e-12]
        if hit:
            first = hit[0]
        else:
            problems.append(f"α = {float(alpha):g} is not a ranked α of this sweep; ranking at α = {data.alphas[first]:g}")
    idx = np.flatnonzero(keep)
    col = v_all[idx, first]
    dropped_idx, idx, col = idx[np.isnan(col)], idx[~np.isnan(col)], col[~np.isnan(col)]
    # patching: the sites that carry the difference have effects near 1, so rank by the effect itself; else by |Δ|
    order = idx[np.argsort(-col if fam.needs_pairs else -np.abs(col), kind="stable")[:top]]

    def card(i: int) -> dict:
        pid = data.probe_ids[i]
        it = by_id.get(pid)
        return {"probe_id": pid, "effect": float(v_all[i, first]), "relation": data.relations[i], "task": data.tasks[i],
                "question": it.question if it else "", "answer": it.answer if it else "",
                "image": png_uri(probes.image(it)) if it else ""}

    affected = [card(i) for i in order]
    dropped = [{"probe_id": data.probe_ids[i], "relation": data.relations[i], "task": data.tasks[i],
                "question": by_id[data.probe_ids[i]].question if data.probe_ids[i] in by_id else ""} for i in dropped_idx]
    attention, choices, scale_max = [], [], None
    maps = None if is_mlp else library.attention(data.manifest["model_fingerprint"], data.manifest["probeset_hash"])
    if maps is not None and probes is not None and maps.grid[0] > 1:
        stored = [pid for pid in maps.probe_ids if pid in by_id]
        choices = [{"value": pid, "label": f"{by_id[pid].question} ({by_id[pid].answer})"} for pid in stored]
        shown, problem = hv.attention_window(stored, probe, attention_probes)
        if problem:
            problems.append(problem)
        rows = [maps.probe_ids.index(stored[j]) for j in shown]
        attn = maps.attn.numpy()  # [probe, layer, head, patch]
        if scale not in hv.SCALES:
            problems.append(f"unknown attention scale {scale!r}; showing the model-wide one")
            scale = "model"
        scale_max = hv.attention_scale(attn, rows, layer, head, scale)
        per_probe = maps.for_head(layer, head).numpy()  # [probe, rows, cols]
        for j in rows:
            pid = maps.probe_ids[j]
            attention.append({"probe_id": pid, "question": by_id[pid].question, "answer": by_id[pid].answer,
                              "mass": float(per_probe[j].sum()), "peak": float(per_probe[j].max()),
                              "image": png_uri(attention_overlay(probes.image(by_id[pid]), per_probe[j], scale_max=scale_max,
                                                                 size=192))})
    metric = data.manifest["spec"]["metric"]
    return {"key": data.key, "layer": layer, "head": axis.NO_HEAD if is_mlp else head, "is_mlp": is_mlp,
            "site": site, "kind": kind.name, "kind_title": kind.title, "intervention": fam.name, "needs_pairs": fam.needs_pairs,
            "direction": data.manifest["spec"].get("direction", ""), "alpha_name": fam.alpha_name,
            "intervention_phrase": hv.intervention_phrase(data.manifest["spec"]),
            "metric": metric, "metric_axis": hv.metric_axis(metric, fam.name),
            "metric_note": hv.metric_note(metric, fam.name),
            "dropped": dropped, "n_ranked": int(idx.size),
            "model": data.manifest["model"], "probes": data.manifest["probes"],
            "alphas": list(data.alphas), "curve": curve, "task": chosen, "tasks": hv.task_choices(data.tasks, families),
            "n_curve": int(keep.sum()),
            "per_relation": per_relation, "relation_n": relation_n, "affected": affected, "ablation_alpha": data.alphas[first],
            "attention": attention, "attention_choices": choices, "attention_scale": scale_max, "scale": scale,
            "probe": attention[0]["probe_id"] if attention else None, "problems": problems}


def prefetch_head_pages(root: str | Path, manifest: dict) -> None:
    """Load what every head page of a sweep (its ``manifest``) reads besides the sweep itself (its probe set and
    attention maps; both cached by the library), so the first click on the heatmap costs no more than the next ones."""
    library = Library(root)
    try:
        library.probes(manifest["probeset_hash"])
        library.attention(manifest["model_fingerprint"], manifest["probeset_hash"])
    except WorkbenchError:
        pass  # nothing stored: the head page says so


# ---------------------------------------------------------------- scale vectors
def _obj(d, name: str) -> dict:
    """``d[name]`` when it is a JSON object, else ``{}``: a vector's optional records never break its listing."""
    v = d.get(name) if isinstance(d, dict) else None
    return v if isinstance(v, dict) else {}


def vectors(root: str | Path) -> list[dict]:
    """Saved scale vectors (``<store>/scales``) whose metadata reads, newest first, with their evaluation where one was
    recorded (:func:`catalog_problems` names the others).

    ``before`` / ``after``: accuracy on the vector's test probes without / with it, per task, per family (``spatial``,
    ``control``) and ``all`` (fractions; ``metrics["eval"]``, written by the training job, ``workbench scale train`` or an
    import given a probe set, through :func:`workbench.scale.train.evaluate_vector`); ``{}`` and ``measured = False``
    when nothing measured it (the pages then say "not measured"). ``eval_n``: the number of test probes."""
    rows = []
    for name, meta, st in Library(root).scale_vectors():
        metrics = _obj(meta, "metrics")
        ev = _obj(metrics, "eval")
        before, after = _obj(ev, "before"), _obj(ev, "after")
        if not before and isinstance(ev.get("accuracy_before"), (int, float)):  # a record with only the legacy keys
            before, after = {"spatial": ev["accuracy_before"]}, {"spatial": ev.get("accuracy_after")}
        rows.append({"name": name, "path": str(st), "model": str(meta.get("model", "")), "mode": str(meta.get("mode", "")),
                     "s_max": meta.get("s_max"), "positions": meta.get("positions", ""), "layers": meta.get("layers"),
                     "heads": meta.get("heads"),
                     "n_params": metrics.get("n_params"), "best_epoch": metrics.get("best_epoch"),
                     "before": before, "after": after, "measured": bool(before or after),
                     "eval_probes": str(ev.get("probes", "")),
                     "eval_n": ev.get("n") if isinstance(ev.get("n"), int) else None, "mtime": st.stat().st_mtime})
    return sorted(rows, key=lambda r: -r["mtime"])


def vector_matrix(root: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(effective attention scales ``[layer, head]``, MLP scales ``[layer]``) of a saved vector."""
    from workbench.app.exports import store_file  # (exports imports this module: imported here, when used)
    from workbench.scale.vector import ScaleVector

    # a name from the browser: kept inside the store
    vec = ScaleVector.load(store_file(root, "scales", name, ".safetensors", "vector"))
    return vec.attn.numpy(), vec.mlp.numpy()
