"""The seeded probe generator: balanced tasks, balanced answers, disjoint train/test splits.

``generate(ProbeConfig(n=2000, seed=0))`` returns a :class:`ProbeSet` whose items carry a
``split``. Two ways to split, both guaranteeing that train and test never share a scene:

- ``split_by="combo"`` (default): some color–shape pairs are *held out*; train scenes never contain
  one and every test scene contains at least one. This tests compositional generalisation: a head
  that reads position should not care which colors and shapes it is reading.
- ``split_by="seed"``: train and test come from independent random streams of the same seed;
  any test scene that equals a train scene is redrawn.

Balance is by schedule, not by chance: tasks get their exact share, spatial items cycle through
the relations, yes/no answers alternate, counts cycle through 0–3, and the schedule is shuffled.
The same config always gives the same items and byte-identical images.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from workbench.errors import WorkbenchError
from workbench.probes.items import CONTROL_TASKS, SPATIAL_TASKS, TASKS, ProbeItem
from workbench.probes.probeset import ProbeSet
from workbench.probes.scenes import PALETTE, RELATIONS, SHAPES, Scene, SceneSpec, render, sample_scene, validate_attributes
from workbench.probes.tasks import (
    color_question,
    count_question,
    exists_question,
    relation_question,
    shape_question,
    verify_question,
)

SPLIT_STREAMS = {"train": 1, "test": 2}
# Size limits, checked before any work: a set is held in memory while it renders (about 1.5 kB a probe at
# 64 px), so an unbounded --n only grows memory until the machine gives out. They cover real use — the
# paper's sets are 2,000 probes, the organism's largest training set 500,000; VLM processors resize images
# to 224–896 px — and a bigger set is several seeds.
from workbench.names import MAX_CANVAS, MAX_PROBES  # noqa: E402,F401  (torch- and numpy-free: the CLI help reads them)


@dataclass(frozen=True)
class ProbeConfig:
    n: int = 2000
    seed: int = 0
    canvas: int = 64
    object_size: int = 0  # 0 → 22% of the canvas
    gap: int = 2
    colors: tuple[str, ...] = tuple(PALETTE)
    shapes: tuple[str, ...] = SHAPES
    relations: tuple[str, ...] = RELATIONS
    tasks: tuple[str, ...] = TASKS
    spatial_fraction: float = 0.5  # share of spatial items when both families are asked for
    test_fraction: float = 0.2
    split_by: str = "combo"
    heldout: int = 5  # held-out color–shape pairs (split_by="combo")
    max_objects: int = 3  # scenes have 2..max_objects objects
    grid: int = 0  # > 0: object centers snap to cells of this many px (see probes.scenes); 0: free placement

    def validate(self) -> None:
        if self.n <= 0:
            raise WorkbenchError(f"n must be positive, got {self.n}", "pass --n 1 or more")
        if self.n > MAX_PROBES:
            raise WorkbenchError(f"--n {self.n} is over the limit of {MAX_PROBES:,} probes",
                                 "make several sets with different --seed")
        if self.canvas > MAX_CANVAS:
            raise WorkbenchError(f"--canvas {self.canvas} px is over the limit of {MAX_CANVAS:,} px",
                                 f"use --canvas {MAX_CANVAS} or less")
        if self.object_size < 0:
            raise WorkbenchError(f"--object-size {self.object_size} is negative",
                                 "pass 0 (22% of the canvas) or a size in pixels")
        if self.seed < 0:
            raise WorkbenchError(f"--seed {self.seed} is negative", "pass a seed of 0 or more")
        validate_attributes(self.colors, self.shapes, self.relations)
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise WorkbenchError(f"unknown task {bad[0]!r}" if bad else "no tasks given", f"choose from: {', '.join(TASKS)}")
        if self.max_objects not in (2, 3):
            raise WorkbenchError(f"max_objects must be 2 or 3, got {self.max_objects}", "scenes hold 2 or 3 objects")
        if len(set(self.colors)) < self.max_objects:
            raise WorkbenchError(f"{len(set(self.colors))} colors cannot color {self.max_objects} distinct objects",
                                 f"give at least {self.max_objects} colors")
        if not 0 <= self.test_fraction < 1:
            raise WorkbenchError(f"test fraction must be in [0, 1), got {self.test_fraction}", "pass e.g. --test-fraction 0.2")
        if not 0 <= self.spatial_fraction <= 1:
            raise WorkbenchError(f"spatial fraction must be in [0, 1], got {self.spatial_fraction}", "pass e.g. 0.5")
        if self.split_by not in ("combo", "seed"):
            raise WorkbenchError(f"unknown split {self.split_by!r}", "choose --split-by combo or seed")
        if self.split_by == "combo" and not 1 <= self.heldout < len(self.colors) * len(self.shapes) // 2:
            raise WorkbenchError(f"cannot hold out {self.heldout} of {len(self.colors) * len(self.shapes)} color–shape pairs",
                                 "hold out at least 1 and under half of them")
        SceneSpec(self.canvas, self.object_size, self.gap, self.grid).validate()

    @property
    def name(self) -> str:
        return f"probes-n{self.n}-s{self.seed}"


def heldout_pairs(cfg: ProbeConfig) -> frozenset[tuple[str, str]]:
    """Held-out (color, shape) pairs: a seeded Latin-square pick, so every color and every shape
    still appears in training (only some of their combinations do not)."""
    if cfg.split_by != "combo":
        return frozenset()
    rng = np.random.default_rng([cfg.seed, 7])
    colors = [cfg.colors[i] for i in rng.permutation(len(cfg.colors))]
    shapes = [cfg.shapes[i] for i in rng.permutation(len(cfg.shapes))]
    n_c, n_s = len(colors), len(shapes)
    # walk the diagonals of the color × shape grid: pair k is (color k, shape k + k // n_c)
    diagonal = [(colors[k % n_c], shapes[(k + k // n_c) % n_s]) for k in range(n_c * n_s)]
    return frozenset(list(dict.fromkeys(diagonal))[: cfg.heldout])


def _schedule(cfg: ProbeConfig, n: int, rng: np.random.Generator) -> list[tuple[str, int]]:
    """(task, occurrence index) for n items, with exact task shares, shuffled."""
    spatial = [t for t in cfg.tasks if t in SPATIAL_TASKS]
    control = [t for t in cfg.tasks if t in CONTROL_TASKS]
    n_sp = n if not control else 0 if not spatial else round(n * cfg.spatial_fraction)
    tasks = [spatial[i % len(spatial)] for i in range(n_sp)] + [control[i % len(control)] for i in range(n - n_sp)]
    seen: dict[str, int] = {}
    out = []
    for t in tasks:
        out.append((t, seen.get(t, 0)))
        seen[t] = seen.get(t, 0) + 1
    return [out[i] for i in rng.permutation(len(out))]


class _Drawer:
    """Samples a scene and its question for one scheduled (task, occurrence), honouring the split."""

    def __init__(self, cfg: ProbeConfig, split: str, heldout: frozenset, rng: np.random.Generator):
        self.cfg, self.split, self.heldout, self.rng = cfg, split, heldout, rng
        self.spec = SceneSpec(cfg.canvas, cfg.object_size, cfg.gap, cfg.grid)

    def _allowed(self, pairs: list[tuple[str, str]]) -> bool:
        if not self.heldout:
            return True
        has = any(p in self.heldout for p in pairs)
        return has if self.split == "test" else not has

    def _attributes(self, n_obj: int) -> list[tuple[str, str]]:
        rng, cfg = self.rng, self.cfg
        colors = [cfg.colors[i] for i in rng.choice(len(cfg.colors), n_obj, replace=False)]
        return [(c, cfg.shapes[int(rng.integers(len(cfg.shapes)))]) for c in colors]

    def draw(self, task: str, k: int) -> tuple[Scene, dict]:
        cfg, rng = self.cfg, self.rng
        relation = cfg.relations[k % len(cfg.relations)]
        for _ in range(10_000):
            n_obj = int(rng.integers(2, cfg.max_objects + 1))
            target_count = k % (cfg.max_objects + 1) if task == "count" else None
            if target_count is not None:
                n_obj = max(n_obj, target_count)
            attrs = self._attributes(n_obj)
            if target_count is not None:  # set exactly target_count objects to the counted shape
                counted = cfg.shapes[int(rng.integers(len(cfg.shapes)))]
                others = [s for s in cfg.shapes if s != counted]
                if not others and target_count < n_obj:
                    continue
                idx = set(rng.choice(n_obj, target_count, replace=False).tolist())
                attrs = [(c, counted if i in idx else others[int(rng.integers(len(others)))]) for i, (c, _) in enumerate(attrs)]
            if not self._allowed(attrs):
                continue
            scene = sample_scene(rng, self.spec, relation, n_obj, attrs)
            q = self._question(task, k, scene, counted if target_count is not None else "")
            if q is not None:
                return scene, q
        raise WorkbenchError(f"could not draw a {self.split} scene for task {task!r} under the split constraints",
                             "give more colors or shapes, or hold out fewer pairs")

    def _question(self, task: str, k: int, scene: Scene, counted: str) -> dict | None:
        cfg, rng = self.cfg, self.rng
        objs = scene.objects
        if task == "relation":
            return relation_question(scene)
        if task == "verify":
            return verify_question(scene, asked_true=(k // len(cfg.relations)) % 2 == 0)
        if task == "color":
            unique = [i for i, o in enumerate(objs) if sum(p.shape == o.shape for p in objs) == 1]
            return color_question(scene, unique[int(rng.integers(len(unique)))], cfg.colors) if unique else None
        if task == "shape":
            return shape_question(scene, int(rng.integers(len(objs))), cfg.shapes)
        if task == "count":
            return count_question(scene, counted)
        if task == "exists":
            if k % 2 == 0:
                o = objs[int(rng.integers(len(objs)))]
                return exists_question(scene, o.color, o.shape)
            present = {(o.color, o.shape) for o in objs}
            near = sorted({(c, s) for c in cfg.colors for s in cfg.shapes
                           if (c, s) not in present and (c, s) not in self.heldout
                           and any(c == o.color or s == o.shape for o in objs)})
            if not near:
                return None
            c, s = near[int(rng.integers(len(near)))]
            return exists_question(scene, c, s)
        raise AssertionError(task)


def _draws(cfg: ProbeConfig, split: str, n: int, heldout: frozenset, rng: np.random.Generator):
    """(scene, question, redraw) for the n scheduled items of one split; ``redraw()`` draws the
    same scheduled (task, occurrence) again."""
    drawer = _Drawer(cfg, split, heldout, rng)
    for task, k in _schedule(cfg, n, rng):
        scene, q = drawer.draw(task, k)
        yield scene, q, (lambda task=task, k=k: drawer.draw(task, k))


def train_chunk(cfg: ProbeConfig, chunk: int, n: int) -> list[tuple[Scene, dict]]:
    """n training-split (scene, question) pairs from chunk ``chunk``'s own random stream of ``cfg.seed``.

    For training sets too large to render in one process (the organism's): chunks are independent,
    so any number of workers render them in any order and the concatenation is always the same.
    The held-out pairs are ``cfg``'s, so no chunk ever holds a scene of the test split. Scenes
    are not de-duplicated across chunks (nor against :func:`generate`'s train split), only
    against the test split, which they cannot meet by construction."""
    cfg.validate()
    rng = np.random.default_rng([cfg.seed, SPLIT_STREAMS["train"], 1_000 + chunk])
    return [(scene, q) for scene, q, _ in _draws(cfg, "train", n, heldout_pairs(cfg), rng)]


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def generate(cfg: ProbeConfig, progress: Callable[[int], None] | None = None) -> ProbeSet:
    """Generate ``cfg.n`` items (``round(n · test_fraction)`` of them test) as a ProbeSet.

    ``progress(k)`` is called after each k new items (for progress bars); it never changes output.
    """
    cfg.validate()
    heldout = heldout_pairs(cfg)
    n_test = round(cfg.n * cfg.test_fraction)
    plan = [("train", cfg.n - n_test), ("test", n_test)]
    items: list[ProbeItem] = []
    images: dict[str, bytes] = {}
    train_scenes: set[str] = set()
    for split, n_split in plan:
        rng = np.random.default_rng([cfg.seed, SPLIT_STREAMS[split]])
        for scene, q, redraw in _draws(cfg, split, n_split, heldout, rng):
            while split == "test" and scene.scene_id() in train_scenes:  # never share a scene
                scene, q = redraw()
            if split == "train":
                train_scenes.add(scene.scene_id())
            item_id = f"{len(items):06d}"
            key = f"images/{item_id}.png"
            images[key] = _png(render(scene))
            cf_image = ""
            if q.get("cf_kind") == "swap_objects":
                cf_image = f"images/{item_id}_cf.png"
                images[cf_image] = _png(render(scene.swapped()))
            elif q.get("cf_kind") == "opposite_relation":
                cf_image = key
            items.append(ProbeItem(id=item_id, image=key, split=split, scene=scene.to_json(), scene_id=scene.scene_id(),
                                   cf_image=cf_image, **{**q, "options": tuple(q["options"])}))
            if progress:
                progress(1)
    info = {"generator": "workbench.probes.generate", "config": _config_json(cfg), "heldout_pairs": sorted(map(list, heldout))}
    return ProbeSet(items, images, name=cfg.name, info=info)


def _config_json(cfg: ProbeConfig) -> dict:
    """The config as JSON; ``grid`` only when set, so sets made before it existed keep their content hash."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items() if k != "grid" or v}
