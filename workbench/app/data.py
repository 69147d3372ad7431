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
  seeded bootstrap 95% interval per head (probes resampled with replacement);
- :func:`head_detail`: one head's α-curve (α = 1 is the identity, effect exactly 0), its effect per
  relation, its most affected probes, and where it looks (last-token attention on the image);
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

from workbench.errors import WorkbenchError
from workbench.figures import attention_overlay
from workbench.store.effects import EffectStore
from workbench.store.library import Library

ALL = "all"  # the relation filter meaning "every probe"


def png_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def site_label(layer: int, head: int) -> str:
    return f"L{layer}H{head}" if head >= 0 else f"L{layer} MLP"


# ---------------------------------------------------------------- sweeps
def catalog(root: str | Path) -> list[dict]:
    """One row per readable stored sweep, newest first: key, model, probes, alphas, metric, positions, target, complete
    (a sweep with a chunk whose footer does not identify it as its own is not complete)."""
    rows = []
    for e in EffectStore(root).ls():
        m, s = e.manifest, e.manifest["spec"]
        rows.append({"key": e.key, "model": m["model"], "model_fingerprint": m["model_fingerprint"], "probes": m["probes"],
                     "probeset_hash": m["probeset_hash"], "n_probes": m["n_probes"], "alphas": list(s["alphas"]), "metric": s["metric"],
                     "positions": s["positions"], "target": s["target"], "complete": e.complete, "done": e.done, "expected": e.expected,
                     "created": m.get("created", 0.0), "shape": m["shape"],
                     "label": f"{m['model']} · {m['probes']} ({m['n_probes']}) · {s['metric']} · {s['target']}@{s['positions']} · "
                              f"α {', '.join(f'{a:g}' for a in s['alphas'])} · {e.key[:8]}"})
    return sorted(rows, key=lambda r: -float(r["created"]) if isinstance(r["created"], (int, float)) else 0.0)


def catalog_problems(root: str | Path) -> list[str]:
    """One line per entry of the store that the app's listings skip, each ending in "run `workbench store fsck`":
    unreadable entries, and sweeps left out as incomplete because some of their chunks cannot be used."""
    entries, problems = EffectStore(root).scan()
    unusable = [f"sweep {e.key[:12]}…: {len(e.problems)} of its chunks cannot be used, e.g. {e.problems[0]} (run `workbench store fsck`)"
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
    values: np.ndarray  # [probe, alpha, layer, head] (head axis of 1 for MLP sweeps)
    alphas: tuple[float, ...]
    probe_ids: tuple[str, ...]
    relations: tuple[str, ...]
    tasks: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape[2], self.values.shape[3]

    def alpha_index(self, alpha: float) -> int:
        for i, a in enumerate(self.alphas):
            if abs(a - float(alpha)) < 1e-12:
                return i
        raise WorkbenchError(f"sweep {self.key[:12]} has no α = {alpha:g}", f"choose one of {', '.join(f'{a:g}' for a in self.alphas)}")

    def mask(self, relation: str) -> np.ndarray:
        if relation in (None, "", ALL):
            return np.ones(len(self.probe_ids), dtype=bool)
        m = np.asarray([r == relation for r in self.relations])
        if not m.any():
            raise WorkbenchError(f"no probe of sweep {self.key[:12]} has relation {relation!r}",
                                 f"choose one of {', '.join(sorted(set(self.relations) - {''}))}")
        return m


def sweep_data(root: str | Path, key: str) -> SweepData:
    store = EffectStore(root)
    full = store.resolve(key)
    return _sweep_data(str(Path(root).resolve()), full, len(store.chunk_names(full)))


@lru_cache(maxsize=16)
def _sweep_data(root: str, key: str, n_chunks: int) -> SweepData:
    store = EffectStore(root)
    manifest = store.manifest(key)
    frame = store.read(key)  # refuses incomplete or corrupt sweeps
    alphas = tuple(manifest["spec"]["alphas"])
    probes = frame.drop_duplicates("probe_id")[["probe_id", "relation", "task"]]
    pidx = {p: i for i, p in enumerate(probes["probe_id"])}
    n_layers, n_heads = manifest["shape"]
    heads = n_heads if manifest["spec"]["target"] == "heads" else 1
    values = np.full((len(pidx), len(alphas), n_layers, heads), np.nan)
    aidx = {a: i for i, a in enumerate(alphas)}
    values[frame["probe_id"].map(pidx).to_numpy(), frame["alpha"].map(aidx).to_numpy(), frame["layer"].to_numpy(),
           np.maximum(frame["head"].to_numpy(), 0)] = frame["value"].to_numpy()
    return SweepData(key=key, manifest=manifest, values=values, alphas=alphas, probe_ids=tuple(probes["probe_id"]),
                     relations=tuple(probes["relation"]), tasks=tuple(probes["task"]))


def bootstrap(values: np.ndarray, n_boot: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) 95% percentile interval of the mean over axis 0, each shaped like ``values[0]``.

    Each resample is a vector of counts over probes, so all sites are resampled together in one
    ``[boot, probe] @ [probe, site]`` product."""
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n), rng.integers(0, n, n_boot * n)), 1.0)
    means = counts @ values.reshape(n, -1) / n
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    return low.reshape(values.shape[1:]), high.reshape(values.shape[1:])


@dataclass(frozen=True, eq=False)
class Matrix:
    mean: np.ndarray  # [layer, head]
    low: np.ndarray  # [layer, head]
    high: np.ndarray  # [layer, head]
    n_probes: int
    alpha: float
    relation: str
    metric: str


def matrix(root: str | Path, key: str, alpha: float, relation: str = ALL) -> Matrix:
    data = sweep_data(root, key)
    return _matrix(data, float(alpha), relation or ALL)


@lru_cache(maxsize=64)
def _matrix(data: SweepData, alpha: float, relation: str) -> Matrix:
    v = data.values[data.mask(relation), data.alpha_index(alpha)]  # [probe, layer, head]
    low, high = bootstrap(v)
    return Matrix(v.mean(0), low, high, int(v.shape[0]), alpha, relation, data.manifest["spec"]["metric"])


# ---------------------------------------------------------------- one head
def head_detail(root: str | Path, key: str, layer: int, head: int, top: int = 8, attention_probes: int = 4) -> dict:
    """Everything the head page draws, from the store: α-curve, per relation, most affected probes, attention."""
    data = sweep_data(root, key)
    n_layers, n_heads = data.shape
    h = 0 if data.manifest["spec"]["target"] == "mlp" else head
    if not (0 <= layer < n_layers and 0 <= h < n_heads):
        raise WorkbenchError(f"head L{layer}H{head} is outside this model's {n_layers} layers × {n_heads} heads",
                             "pick a head on the heatmap")
    v = data.values[:, :, layer, h]  # [probe, alpha]
    low, high = bootstrap(v)
    curve = [{"alpha": a, "mean": float(v[:, i].mean()), "low": float(low[i]), "high": float(high[i])} for i, a in enumerate(data.alphas)]
    if data.manifest["spec"]["metric"] != "kl" and 1.0 not in data.alphas:
        curve.append({"alpha": 1.0, "mean": 0.0, "low": 0.0, "high": 0.0, "identity": True})  # α = 1 is exactly the clean model
    curve.sort(key=lambda p: p["alpha"])
    relations = sorted(set(data.relations) - {""})
    per_relation = {r: [float(v[data.mask(r), i].mean()) for i in range(len(data.alphas))] for r in relations}
    first = 0  # rank probes by their effect at the sweep's first α (the ablation, where it was swept)
    order = np.argsort(-np.abs(v[:, first]), kind="stable")[:top]
    library = Library(root)
    try:
        probes = library.probes(data.manifest["probeset_hash"])
        by_id = {it.id: it for it in probes}
    except WorkbenchError:
        probes, by_id = None, {}
    affected = []
    for i in order:
        pid = data.probe_ids[i]
        it = by_id.get(pid)
        affected.append({"probe_id": pid, "effect": float(v[i, first]), "relation": data.relations[i], "task": data.tasks[i],
                         "question": it.question if it else "", "answer": it.answer if it else "",
                         "image": png_uri(probes.image(it)) if it else ""})
    attention = []
    maps = library.attention(data.manifest["model_fingerprint"], data.manifest["probeset_hash"])
    if maps is not None and probes is not None and maps.grid[0] > 1 and h == head:
        per_probe = maps.for_head(layer, head).numpy()
        for j, pid in enumerate(maps.probe_ids[:attention_probes]):
            if pid in by_id:
                attention.append({"probe_id": pid, "question": by_id[pid].question, "answer": by_id[pid].answer, "mass": float(per_probe[j].sum()),
                                  "image": png_uri(attention_overlay(probes.image(by_id[pid]), per_probe[j], size=192))})
    return {"key": data.key, "layer": layer, "head": head, "site": site_label(layer, head if data.manifest["spec"]["target"] == "heads"
                                                                               else -1),
            "metric": data.manifest["spec"]["metric"], "model": data.manifest["model"], "probes": data.manifest["probes"],
            "alphas": list(data.alphas), "curve": curve, "per_relation": per_relation, "affected": affected, "ablation_alpha": data.alphas[first],
            "attention": attention}


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
    """Saved scale vectors (``<store>/scales``) whose metadata reads, newest first, with their evaluation where the job
    recorded one (:func:`catalog_problems` names the others)."""
    rows = []
    for name, meta, st in Library(root).scale_vectors():
        metrics = _obj(meta, "metrics")
        ev = _obj(metrics, "eval")
        rows.append({"name": name, "path": str(st), "model": str(meta.get("model", "")), "mode": str(meta.get("mode", "")),
                     "s_max": meta.get("s_max"), "positions": meta.get("positions", ""), "layers": meta.get("layers"), "heads": meta.get("heads"),
                     "n_params": metrics.get("n_params"), "best_epoch": metrics.get("best_epoch"),
                     "before": _obj(ev, "before"), "after": _obj(ev, "after"), "eval_probes": ev.get("probes", ""),
                     "mtime": st.stat().st_mtime})
    return sorted(rows, key=lambda r: -r["mtime"])


def vector_matrix(root: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(effective attention scales ``[layer, head]``, MLP scales ``[layer]``) of a saved vector."""
    from workbench.app.exports import store_file  # (exports imports this module: imported here, when used)
    from workbench.scale.vector import ScaleVector

    vec = ScaleVector.load(store_file(root, "scales", name, ".safetensors", "vector"))  # a name from the browser: kept inside the store
    return vec.attn.numpy(), vec.mlp.numpy()
