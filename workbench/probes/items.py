"""One probe: an image, a question, its answer options and answer, and its counterfactual.

A :class:`ProbeItem` is plain data (it round-trips through one JSON line). The model-side code
turns it into a prompt and reads the logits of ``options`` at the answer position; the sweep
engine groups results by ``task`` and ``relation``.

Fields that matter for interpretability work:

- ``family``: ``"spatial"`` (the probed skill) or ``"control"`` (skills that must survive an
  intervention: color, shape, count, existence).
- ``relation``: for spatial items, the true relation of the subject A to the reference B.
  ``query_relation`` is the relation a yes/no question asks about (the true one or its opposite).
- ``cf_*``: the counterfactual minimal pair. ``cf_kind == "swap_objects"``: the same scene with A
  and B exchanged (a new image, same question, opposite answer). ``cf_kind == "opposite_relation"``:
  the same image, the opposite relation asked (the other yes/no answer). Empty for control items
  and for benchmark items that have none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from workbench.errors import WorkbenchError
from workbench.names import CONTROL_TASKS, SPATIAL_TASKS, TASKS  # noqa: F401  (re-exported)
from workbench.probes.scenes import OPPOSITE


@dataclass(frozen=True)
class ProbeItem:
    id: str
    task: str
    family: str
    question: str
    options: tuple[str, ...]
    answer: str
    image: str  # key of the image inside its ProbeSet, e.g. "images/000017.png"
    split: str = "test"
    relation: str = ""
    query_relation: str = ""
    scene: dict | None = None  # Scene.to_json() for generated items, None for benchmark items
    scene_id: str = ""
    cf_kind: str = ""
    cf_image: str = ""
    cf_question: str = ""
    cf_answer: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.answer not in self.options:
            raise WorkbenchError(f"probe {self.id!r}: answer {self.answer!r} is not one of its options {list(self.options)}",
                                 "fix the answer or the options in the source data")
        if self.cf_answer and self.cf_answer not in self.options:
            raise WorkbenchError(f"probe {self.id!r}: counterfactual answer {self.cf_answer!r} is not an option",
                                 "fix the counterfactual in the source data")

    @property
    def answer_index(self) -> int:
        return self.options.index(self.answer)

    @property
    def has_counterfactual(self) -> bool:
        return bool(self.cf_kind)

    def counterfactual(self) -> ProbeItem:
        """The minimal-pair partner as an item of its own (id suffixed ``-cf``)."""
        if not self.cf_kind:
            raise WorkbenchError(f"probe {self.id!r} has no counterfactual", "use spatial items of a generated probe set")
        return ProbeItem(id=f"{self.id}-cf", task=self.task, family=self.family, question=self.cf_question,
                         options=self.options, answer=self.cf_answer, image=self.cf_image, split=self.split,
                         relation=self.relation if self.cf_kind == "opposite_relation" else _flip(self.relation),
                         query_relation=_flip(self.query_relation) if self.cf_kind == "opposite_relation"
                         else self.query_relation,
                         scene_id=self.scene_id, meta={"counterfactual_of": self.id})

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = list(self.options)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProbeItem:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise WorkbenchError(f"unknown probe fields {sorted(unknown)}", "the manifest was written by another tool or version")
        missing = {"id", "task", "family", "question", "options", "answer", "image"} - set(d)
        if missing:
            raise WorkbenchError(f"probe record lacks fields {sorted(missing)}", "regenerate the probe set")
        return cls(**{**d, "options": tuple(d["options"])})


def _flip(relation: str) -> str:
    return OPPOSITE.get(relation, relation)
