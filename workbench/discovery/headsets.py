"""Head sets: the heads a discovery method picked, with scores, bound to one model by its fingerprint.

JSON::

    {"format": "workbench-headset", "version": 1, "model": "organism", "model_fingerprint": "…",
     "method": "sweep:logit_diff@alpha=0", "heads": [[3, 5], [2, 1]], "scores": [1.52, 0.87], "created": "…"}

CSV: one row per head with columns ``layer, head, score, method, model, model_fingerprint, created``.

``method`` says how the heads were ranked (:func:`sweep_ranking`): ``sweep:logit_diff@alpha=0:<key>`` — a scale
sweep, heads whose scaling to α lowers the metric most, score = −mean Δ; ``patch:noising@last:<key>`` — a
patching sweep, heads by normalized effect, largest first (a head carrying the whole answer-vs-foil difference
scores near 1), score = the mean normalized effect; ``temperature-edges:logit_diff@temperature=0.5:<key>`` — a
family or kind other than scale-on-heads names both.
Loading either checks the format; :meth:`HeadSet.check_model` refuses a set made for another model
(a different fingerprint), since head indices mean nothing across models.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.fileio import atomic_write

FORMAT, VERSION = "workbench-headset", 1
CSV_COLUMNS = ("layer", "head", "score", "method", "model", "model_fingerprint", "created")


@dataclass(frozen=True)
class HeadSet:
    model: str
    model_fingerprint: str
    method: str
    heads: tuple[tuple[int, int], ...]
    scores: tuple[float, ...]
    created: str

    def __post_init__(self) -> None:
        if len(self.heads) != len(self.scores):
            raise WorkbenchError("a head set needs one score per head", "check the file")
        if len(set(self.heads)) != len(self.heads):
            raise WorkbenchError("a head set lists a head twice", "check the file")

    def check_model(self, fingerprint: str, name: str = "this model") -> None:
        if fingerprint != self.model_fingerprint:
            raise WorkbenchError(f"this head set was made for {self.model!r} (fingerprint {self.model_fingerprint[:12]}…), "
                                 f"not for {name} ({fingerprint[:12]}…)",
                                 "discover heads on this model, or load the model it was made for")

    # ------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        if path.suffix.lower() not in (".json", ".csv"):
            raise WorkbenchError(f"unknown head-set format {path.suffix!r}", "use a .json or .csv file name")
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as f:
                if path.suffix.lower() == ".json":
                    json.dump({"format": FORMAT, "version": VERSION, "model": self.model,
                               "model_fingerprint": self.model_fingerprint,
                               "method": self.method, "heads": [list(h) for h in self.heads], "scores": list(self.scores),
                               "created": self.created}, f, indent=1)
                else:
                    w = csv.writer(f)
                    w.writerow(CSV_COLUMNS)
                    for (layer, head), score in zip(self.heads, self.scores):
                        w.writerow([layer, head, repr(score), self.method, self.model, self.model_fingerprint, self.created])

        atomic_write(path, write)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> HeadSet:
        path = Path(path)
        if not path.is_file():
            raise WorkbenchError(f"head set {path} does not exist", "check the path")
        try:
            if path.suffix.lower() == ".json":
                d = json.loads(path.read_text())
                if not isinstance(d, dict) or d.get("format") != FORMAT:
                    raise ValueError("not a workbench head set")
                return cls(d["model"], d["model_fingerprint"], d["method"], tuple((int(a), int(b)) for a, b in d["heads"]),
                           tuple(float(s) for s in d["scores"]), d["created"])
            if path.suffix.lower() == ".csv":
                rows = list(csv.DictReader(path.open(newline="")))
                if not rows or set(CSV_COLUMNS) - set(rows[0]):
                    raise ValueError(f"expected columns {', '.join(CSV_COLUMNS)}")
                first = rows[0]
                if any((r["model_fingerprint"], r["method"]) != (first["model_fingerprint"], first["method"]) for r in rows):
                    raise ValueError("rows from different models or methods")
                return cls(first["model"], first["model_fingerprint"], first["method"],
                           tuple((int(r["layer"]), int(r["head"])) for r in rows), tuple(float(r["score"]) for r in rows),
                           first["created"])
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
            raise WorkbenchError(f"{path} is not a valid head set ({e})", "export it again with `workbench heads export`") from e
        raise WorkbenchError(f"unknown head-set format {path.suffix!r}", "use a .json or .csv file")


def top_heads(scores, k: int, model: str, fingerprint: str, method: str) -> HeadSet:
    """The ``k`` highest-scoring heads of a ``[layer, head]`` score map (a torch tensor or a numpy array).

    Highest first; ties go to the lower flat index (layer-major), and a NaN score (a head no probe could
    measure) ranks below every number, so it is picked only when k asks for more heads than have scores."""
    values = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
    if values.ndim != 2:
        raise WorkbenchError(f"head scores must be a [layer, head] map, got shape {tuple(values.shape)}",
                             "pass one score per (layer, head)")
    n_layers, n_heads = values.shape
    if not 1 <= k <= values.size:
        raise WorkbenchError(f"k = {k} is out of range for {n_layers}×{n_heads} heads", f"pick 1 ≤ k ≤ {values.size}")
    flat = values.ravel()
    order = np.lexsort((np.arange(flat.size), -np.nan_to_num(flat, nan=-np.inf), np.isnan(flat)))[:k]
    heads = tuple((int(i) // n_heads, int(i) % n_heads) for i in order)
    return HeadSet(model, fingerprint, method, heads, tuple(float(flat[i]) for i in order),
                   datetime.now(timezone.utc).isoformat(timespec="seconds"))


def sweep_ranking(spec: dict, alpha: float, key: str, relation: str = "") -> tuple[float, str]:
    """(sign, method) of ranking a sweep's ``[layer, head]`` mean effects: the head set's scores are ``sign × mean``,
    highest first, and ``method`` names the rule (module docstring).

    A patching sweep ranks by normalized effect descending (sign +1: the heads that carry the difference score near
    1); every Δ-metric family by the most negative mean (sign −1: the heads whose intervention hurts most). Refuses a
    per-layer kind: a head set holds heads."""
    from workbench import axis

    kind, fam = axis.kind(spec["target"]), axis.family(spec.get("intervention", "scale"))
    if not kind.per_head:
        raise WorkbenchError(f"sweep {key[:12]} intervened on {kind.title}, not heads", "choose a sweep of heads")
    rel = "" if relation in ("", "all", None) else f":{relation}"
    if fam.needs_pairs:
        return 1.0, f"{fam.name}:{spec.get('direction', '')}@{spec['positions']}{rel}:{key[:12]}"
    what = "sweep" if (fam, kind) == (axis.SCALE, axis.HEADS) else f"{fam.name}-{kind.name}"
    return -1.0, f"{what}:{spec['metric']}@{'alpha' if fam.name == 'scale' else fam.alpha_name}={alpha:g}{rel}:{key[:12]}"


def recall_at_k(found: HeadSet, truth: list[tuple[int, int]]) -> float:
    """Share of the true heads among the found ones (k = number of true heads is the caller's choice)."""
    return len(set(found.heads) & {tuple(h) for h in truth}) / len(truth)
