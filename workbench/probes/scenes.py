"""Controlled scenes: 2–3 flat-colored shapes on a plain canvas, with exact geometry.

Why synthetic scenes: a spatial probe is only useful if its label is *certainly* right and
everything but the probed relation can be held fixed. Here every object has a unique color within
its scene, is drawn without anti-aliasing, and never touches another object, so the label of every
question can be re-derived from the pixels alone (the test suite does exactly that).

A scene has a *key pair* (subject A, reference B) arranged along one axis:

    left / right : |x_A − x_B| ≥ size + gap, and |y_A − y_B| ≤ |x_A − x_B| / 3
    above / below: the same with x and y exchanged

so the relation of A to B is unambiguous both as a 4-way answer and as a yes/no check. An optional
third object is a distractor, placed anywhere it does not touch the others.

Placement is free (any integer center) or, with ``grid`` > 0, snapped to the centers of square
cells of ``grid`` pixels, one object per cell. With the cell equal to a vision tower's patch,
every object lies inside one patch at one offset: a small model trained from scratch then learns
*shape* from a handful of patch patterns instead of from every sub-patch offset, which is what
kept the organism's color/shape/count answers from generalising to unseen color–shape pairs.
The same relation rule holds either way (it is linear, so cells obey it as pixels do).

Coordinates are integer pixel centers; y grows downwards (image convention), so "above" means a
smaller y.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from workbench.errors import WorkbenchError

#: Color name → RGB. Far apart in RGB so that a processor's resampling cannot confuse them.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "green": (30, 190, 40),
    "blue": (40, 80, 240),
    "yellow": (245, 220, 20),
    "purple": (150, 40, 200),
    "cyan": (20, 210, 220),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
BACKGROUND: tuple[int, int, int] = (0, 0, 0)

#: The four relations of the subject A to the reference B, and each one's opposite.
RELATIONS: tuple[str, ...] = ("left", "right", "above", "below")
OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "above": "below", "below": "above"}
#: Unit direction from A to B for "A is <relation> B" (image coordinates, y down).
_DIRECTION: dict[str, tuple[int, int]] = {"left": (1, 0), "right": (-1, 0), "above": (0, 1), "below": (0, -1)}


@dataclass(frozen=True)
class SceneObject:
    """One shape: its color name, shape name, integer center (x, y) and bounding-box side."""

    color: str
    shape: str
    x: int
    y: int
    size: int

    @property
    def name(self) -> str:
        """How questions refer to it: "red circle" (colors are unique within a scene)."""
        return f"{self.color} {self.shape}"

    def box(self) -> tuple[int, int, int, int]:
        """Inclusive pixel box (x0, y0, x1, y1) of side ``size`` around the center."""
        x0, y0 = self.x - self.size // 2, self.y - self.size // 2
        return x0, y0, x0 + self.size - 1, y0 + self.size - 1


@dataclass(frozen=True)
class Scene:
    """Objects on a square canvas; ``subject`` and ``reference`` index the key pair (A, B)."""

    canvas: int
    objects: tuple[SceneObject, ...]
    subject: int
    reference: int

    @property
    def a(self) -> SceneObject:
        return self.objects[self.subject]

    @property
    def b(self) -> SceneObject:
        return self.objects[self.reference]

    def relation(self) -> str:
        """The relation of A to B, read from the object centers."""
        return relation_between(self.a.x, self.a.y, self.b.x, self.b.y)

    def swapped(self) -> Scene:
        """The minimal counterfactual: A and B exchange places, everything else is identical."""
        objs = list(self.objects)
        a, b = objs[self.subject], objs[self.reference]
        objs[self.subject] = replace(a, x=b.x, y=b.y)
        objs[self.reference] = replace(b, x=a.x, y=a.y)
        return replace(self, objects=tuple(objs))

    def to_json(self) -> dict:
        return {"canvas": self.canvas, "objects": [asdict(o) for o in self.objects],
                "subject": self.subject, "reference": self.reference}

    @classmethod
    def from_json(cls, d: dict) -> Scene:
        return cls(canvas=int(d["canvas"]), objects=tuple(SceneObject(**o) for o in d["objects"]),
                   subject=int(d["subject"]), reference=int(d["reference"]))

    def scene_id(self) -> str:
        """Content hash of the scene (objects and canvas); equal scenes share it."""
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def relation_between(xa: float, ya: float, xb: float, yb: float) -> str:
    """Dominant-axis relation of point A to point B (y grows downwards)."""
    dx, dy = xa - xb, ya - yb
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def _draw(draw: ImageDraw.ImageDraw, obj: SceneObject) -> None:
    x0, y0, x1, y1 = obj.box()
    rgb = PALETTE[obj.color]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if obj.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=rgb)
    elif obj.shape == "square":
        inset = max(1, obj.size // 8)
        draw.rectangle((x0 + inset, y0 + inset, x1 - inset, y1 - inset), fill=rgb)
    elif obj.shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=rgb)
    elif obj.shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=rgb)
    elif obj.shape == "cross":
        t = max(1, obj.size // 6)
        draw.rectangle((x0, round(cy) - t, x1, round(cy) + t), fill=rgb)
        draw.rectangle((round(cx) - t, y0, round(cx) + t, y1), fill=rgb)
    else:  # guarded by validate_attributes; kept as a loud failure for programming errors
        raise ValueError(f"unknown shape {obj.shape!r}")


def render(scene: Scene) -> Image.Image:
    """Draw the scene as an RGB image (no anti-aliasing: every pixel is background or one color)."""
    img = Image.new("RGB", (scene.canvas, scene.canvas), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        _draw(draw, obj)
    return img


def validate_attributes(colors: tuple[str, ...], shapes: tuple[str, ...], relations: tuple[str, ...]) -> None:
    """Refuse unknown names with the list of known ones."""
    for kind, given, known in (("color", colors, PALETTE), ("shape", shapes, SHAPES), ("relation", relations, RELATIONS)):
        bad = [g for g in given if g not in known]
        if bad:
            raise WorkbenchError(f"unknown {kind} {bad[0]!r}", f"choose from: {', '.join(known)}")
        if not given:
            raise WorkbenchError(f"no {kind}s given", f"choose at least one of: {', '.join(known)}")


def _touch(a: SceneObject, b: SceneObject, gap: int) -> bool:
    """True when the boxes of a and b come closer than ``gap`` pixels."""
    ax0, ay0, ax1, ay1 = a.box()
    bx0, by0, bx1, by1 = b.box()
    return not (ax1 + gap < bx0 or bx1 + gap < ax0 or ay1 + gap < by0 or by1 + gap < ay0)


@dataclass(frozen=True)
class SceneSpec:
    """How scenes are drawn: canvas side, object side, minimum gap between objects (pixels), and
    the placement grid's cell side (0: free placement)."""

    canvas: int = 48
    object_size: int = 0  # 0 → round(0.22 · canvas)
    gap: int = 2
    grid: int = 0

    @property
    def size(self) -> int:
        return self.object_size or max(5, round(0.22 * self.canvas))

    def validate(self) -> None:
        s = self.size
        if self.canvas < 16:
            raise WorkbenchError(f"canvas {self.canvas} px is too small", "use --canvas 16 or more")
        if self.grid:
            if self.grid < 0 or self.canvas % self.grid or self.canvas // self.grid < 3:
                raise WorkbenchError(f"grid cells of {self.grid} px do not tile a {self.canvas} px canvas at least 3 × 3",
                                     "use a --grid that divides --canvas into 3 or more cells a side, or 0")
            if s + self.gap > self.grid:
                raise WorkbenchError(f"objects of {s} px with a {self.gap} px gap do not fit in {self.grid} px cells",
                                     f"use --object-size {self.grid - self.gap} or less")
        elif 3 * s + 2 * self.gap + 2 > self.canvas:
            raise WorkbenchError(f"objects of {s} px do not fit three times on a {self.canvas} px canvas",
                                 "use a larger --canvas or a smaller --object-size")


def sample_scene(rng: np.random.Generator, spec: SceneSpec, relation: str, n_objects: int,
                 attributes: list[tuple[str, str]]) -> Scene:
    """A scene whose key pair (A, B) stands in ``relation``; ``attributes`` gives (color, shape)
    for each object, A first, B second. Colors must be distinct.

    The pair's main-axis distance d is uniform in [size + gap, room]; the off-axis offset is
    uniform in [−d/3, d/3]; the pair is placed uniformly where it fits. A distractor is rejection-
    sampled until it touches nothing (a fresh pair is drawn if that fails 50 times). With a grid
    the same is done in cells (see :func:`_sample_grid_scene`).
    """
    if spec.grid:
        return _sample_grid_scene(rng, spec, relation, n_objects, attributes)
    s, lo, hi = spec.size, spec.size // 2 + 1, spec.canvas - (spec.size - spec.size // 2) - 1
    ux, uy = _DIRECTION[relation]
    for _ in range(1000):
        d = int(rng.integers(s + spec.gap + 1, hi - lo + 1))
        off = int(rng.integers(-(d // 3), d // 3 + 1))
        dx, dy = (ux * d, off) if ux else (off, uy * d)  # B = A + (dx, dy)
        xa_lo, xa_hi = max(lo, lo - dx), min(hi, hi - dx)
        ya_lo, ya_hi = max(lo, lo - dy), min(hi, hi - dy)
        if xa_lo > xa_hi or ya_lo > ya_hi:
            continue
        xa, ya = int(rng.integers(xa_lo, xa_hi + 1)), int(rng.integers(ya_lo, ya_hi + 1))
        objs = [SceneObject(*attributes[0], xa, ya, s), SceneObject(*attributes[1], xa + dx, ya + dy, s)]
        ok = True
        for color, shape in attributes[2:n_objects]:
            for _ in range(50):
                cand = SceneObject(color, shape, int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1)), s)
                if not any(_touch(cand, o, spec.gap) for o in objs):
                    objs.append(cand)
                    break
            else:
                ok = False
        if ok:
            return _shuffled(rng, spec.canvas, objs)
    raise WorkbenchError(f"could not place {n_objects} objects of {s} px on a {spec.canvas} px canvas",
                         "use a larger --canvas or a smaller --object-size")


def _sample_grid_scene(rng: np.random.Generator, spec: SceneSpec, relation: str, n_objects: int,
                       attributes: list[tuple[str, str]]) -> Scene:
    """:func:`sample_scene` on a grid: the key pair's main-axis distance d is uniform in [1, cells − 1]
    cells, the off-axis offset uniform in [−d // 3, d // 3] cells, the pair placed uniformly where it
    fits; distractors take uniformly drawn free cells. Object centers are cell centers, so an
    object of side ≤ cell − gap lies inside its cell and never touches a neighbour."""
    s, g, cells = spec.size, spec.grid, spec.canvas // spec.grid
    ux, uy = _DIRECTION[relation]
    d = int(rng.integers(1, cells))
    off = int(rng.integers(-(d // 3), d // 3 + 1))
    dx, dy = (ux * d, off) if ux else (off, uy * d)
    ca = (int(rng.integers(max(0, -dx), min(cells, cells - dx))), int(rng.integers(max(0, -dy), min(cells, cells - dy))))
    taken = [ca, (ca[0] + dx, ca[1] + dy)]
    free = [(i, j) for j in range(cells) for i in range(cells) if (i, j) not in taken]
    taken += [free[int(k)] for k in rng.choice(len(free), n_objects - 2, replace=False)]
    center = g // 2  # cell pixel k·g … k·g + g − 1; an even side's box is [c − s//2, c + s − s//2 − 1]
    return _shuffled(rng, spec.canvas, [SceneObject(*attributes[i], cx * g + center, cy * g + center, s)
                                        for i, (cx, cy) in enumerate(taken)])


def _shuffled(rng: np.random.Generator, canvas: int, objs: list[SceneObject]) -> Scene:
    """The scene of ``objs`` (key pair A, B first) in a random draw order, so the key pair is not
    always first in the object list; subject and reference follow their objects."""
    order = rng.permutation(len(objs))
    inv = {int(j): i for i, j in enumerate(order)}
    return Scene(canvas, tuple(objs[i] for i in order), subject=inv[0], reference=inv[1])
