"""Questions about a scene: two spatial forms and four control tasks.

Each builder is a pure function of a :class:`~workbench.probes.scenes.Scene` (plus the choice the
schedule made for balance) and returns the question fields of a probe. Answers are single words so
that a model's answer is one token and effects can be read as logit differences at one position.

Spatial (about the key pair: subject A, reference B):
  relation  "Where is the red circle relative to the blue square?" → left / right / above / below.
            Counterfactual: the scene with A and B swapped (new image, opposite answer).
  verify    "Is the red circle to the left of the blue square?" → yes / no.
            Counterfactual: the opposite relation asked of the same image (the other answer).
Control (what an intervention on spatial heads must leave intact):
  color     "What color is the triangle?" (the shape is unique in the scene)
  shape     "What shape is the red object?"
  count     "How many circles are there?" → 0 / 1 / 2 / 3
  exists    "Is there a blue square?" → yes / no (the "no" objects share a color or a shape with
            one in the scene, so that neither word alone answers)
"""

from __future__ import annotations

from workbench.probes.scenes import OPPOSITE, RELATIONS, Scene

PHRASE: dict[str, str] = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
YES_NO: tuple[str, str] = ("yes", "no")
COUNTS: tuple[str, ...] = ("0", "1", "2", "3")


def relation_question(scene: Scene) -> dict:
    rel = scene.relation()
    q = f"Where is the {scene.a.name} relative to the {scene.b.name}?"
    return dict(task="relation", family="spatial", question=q, options=RELATIONS, answer=rel, relation=rel,
                cf_kind="swap_objects", cf_question=q, cf_answer=OPPOSITE[rel])


def verify_question(scene: Scene, asked_true: bool) -> dict:
    rel = scene.relation()
    asked = rel if asked_true else OPPOSITE[rel]

    def q(r: str) -> str:
        return f"Is the {scene.a.name} {PHRASE[r]} the {scene.b.name}?"

    answer = "yes" if asked_true else "no"
    return dict(task="verify", family="spatial", question=q(asked), options=YES_NO, answer=answer, relation=rel,
                query_relation=asked, cf_kind="opposite_relation", cf_question=q(OPPOSITE[asked]),
                cf_answer="no" if asked_true else "yes")


def color_question(scene: Scene, target: int, colors: tuple[str, ...]) -> dict:
    obj = scene.objects[target]
    assert sum(o.shape == obj.shape for o in scene.objects) == 1, "color questions need a unique shape"
    return dict(task="color", family="control", question=f"What color is the {obj.shape}?",
                options=colors, answer=obj.color)


def shape_question(scene: Scene, target: int, shapes: tuple[str, ...]) -> dict:
    obj = scene.objects[target]
    return dict(task="shape", family="control", question=f"What shape is the {obj.color} object?",
                options=shapes, answer=obj.shape)


def plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def count_question(scene: Scene, shape: str) -> dict:
    k = sum(o.shape == shape for o in scene.objects)
    return dict(task="count", family="control", question=f"How many {plural(shape)} are there?",
                options=COUNTS, answer=str(k))


def exists_question(scene: Scene, color: str, shape: str) -> dict:
    present = any(o.color == color and o.shape == shape for o in scene.objects)
    return dict(task="exists", family="control", question=f"Is there a {color} {shape}?",
                options=YES_NO, answer="yes" if present else "no")
