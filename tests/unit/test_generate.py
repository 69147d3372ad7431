"""The generator: labels checked by pixel geometry, balance, counterfactuals, splits, determinism."""

from collections import Counter

import numpy as np
import pytest

from tests.conftest import cached_probes, pixels
from workbench.errors import WorkbenchError
from workbench.probes.generate import ProbeConfig, generate, heldout_pairs
from workbench.probes.probeset import manifest_bytes
from workbench.probes.scenes import OPPOSITE, PALETTE, SHAPES, Scene, relation_between, render
from workbench.probes.tasks import plural


def _centroids(img: np.ndarray, scene: Scene) -> list[tuple[float, float, int]]:
    out = []
    for o in scene.objects:
        ys, xs = np.nonzero((img == PALETTE[o.color]).all(-1))
        out.append((xs.mean(), ys.mean(), len(xs)))
    return out


def _check_pixel_relation(img: np.ndarray, scene: Scene, expected: str) -> None:
    (xa, ya, _), (xb, yb, _) = (_centroids(img, scene)[i] for i in (scene.subject, scene.reference))
    assert relation_between(xa, ya, xb, yb) == expected
    dx, dy = xa - xb, ya - yb
    main, off = (dx, dy) if expected in ("left", "right") else (dy, dx)
    assert abs(main) > abs(off), "the relation must be unambiguous (dominant axis)"
    assert (main < 0) == (expected in ("left", "above"))


@pytest.mark.slow
@pytest.mark.parametrize("geometry", [{}, {"canvas": 64, "grid": 16, "object_size": 14}], ids=["free", "grid"])
def test_labels_hold_in_rendered_pixels_over_5000_items(geometry):
    """Every stated relation is re-derived from each object's rendered pixel centroid; no object is
    occluded (its pixel count equals the count when drawn alone); no exception over 5,000 items.
    On a grid, every object's pixels also lie inside one cell (one vision patch of that side)."""
    ps = cached_probes(n=5000, seed=11, **geometry)
    checked = Counter()
    g = geometry.get("grid", 0)
    for it in ps:
        scene = Scene.from_json(it.scene)
        img = pixels(ps, it.image)
        if g:
            for o in scene.objects:
                ys, xs = np.nonzero((img == PALETTE[o.color]).all(-1))
                assert len({(x // g, y // g) for x, y in zip(xs, ys)}) == 1, f"{it.id}: {o.name} straddles grid cells"
        for o, (_, _, count) in zip(scene.objects, _centroids(img, scene)):
            alone = (np.asarray(render(Scene(scene.canvas, (o,), 0, 0))) == PALETTE[o.color]).all(-1).sum()
            assert count == alone > 0, f"{it.id}: {o.name} is occluded or missing"
        if it.task == "relation":
            _check_pixel_relation(img, scene, it.answer)
            _check_pixel_relation(pixels(ps, it.cf_image), scene.swapped(), it.cf_answer)
            assert it.cf_answer == OPPOSITE[it.answer]
        elif it.task == "verify":
            _check_pixel_relation(img, scene, it.relation)
            assert (it.answer == "yes") == (it.query_relation == it.relation)
            assert it.cf_image == it.image and it.cf_answer != it.answer
        elif it.task == "count":
            shape = next(s for s in SHAPES if f"How many {plural(s)} " in it.question)
            assert it.answer == str(sum(o.shape == shape for o in scene.objects))
        elif it.task == "exists":
            c, s = it.question.removeprefix("Is there a ").rstrip("?").split()
            assert (it.answer == "yes") == any(o.color == c and o.shape == s for o in scene.objects)
        elif it.task == "color":
            assert (pixels(ps, it.image) == PALETTE[it.answer]).all(-1).any()
        checked[it.task] += 1
    assert sum(checked.values()) == 5000 and set(checked) == {"relation", "verify", "color", "shape", "count", "exists"}


def test_tasks_relations_and_answers_are_balanced(small_probes):
    train = [it for it in small_probes if it.split == "train"]
    tasks = Counter(it.task for it in train)
    assert tasks["relation"] == tasks["verify"] == 2 * tasks["color"] == 2 * tasks["count"]
    rel = Counter(it.answer for it in train if it.task == "relation")
    assert len(set(rel.values())) == 1 and set(rel) == {"left", "right", "above", "below"}
    yn = Counter(it.answer for it in train if it.task == "verify")
    assert yn["yes"] == yn["no"]


def test_every_spatial_item_carries_options_and_a_counterfactual(small_probes):
    for it in small_probes:
        assert it.answer in it.options
        if it.family == "spatial":
            assert it.cf_kind in ("swap_objects", "opposite_relation")
            assert it.cf_answer in it.options and it.cf_answer != it.answer
            cf = it.counterfactual()
            assert cf.answer == it.cf_answer and cf.image == it.cf_image


def test_combo_split_is_disjoint_and_holds_out_pairs():
    ps = cached_probes(n=600, seed=5)
    held = heldout_pairs(ProbeConfig(n=600, seed=5))
    assert len(held) == 5 and len({c for c, _ in held}) == 5 and len({s for _, s in held}) == 5
    train = [it for it in ps if it.split == "train"]
    test = [it for it in ps if it.split == "test"]
    assert len(test) == 120 and len(train) == 480
    assert not {it.scene_id for it in train} & {it.scene_id for it in test}
    pairs = lambda it: {(o["color"], o["shape"]) for o in it.scene["objects"]}  # noqa: E731
    assert all(not (pairs(it) & held) for it in train)
    assert all(pairs(it) & held for it in test)


def test_seed_split_is_disjoint():
    ps = generate(ProbeConfig(n=300, seed=1, split_by="seed"))
    train = {it.scene_id for it in ps if it.split == "train"}
    test = {it.scene_id for it in ps if it.split == "test"}
    assert train and test and not train & test


def test_same_seed_same_bytes_other_seed_other_bytes():
    a, b = generate(ProbeConfig(n=120, seed=9)), generate(ProbeConfig(n=120, seed=9))
    assert manifest_bytes(a.items) == manifest_bytes(b.items)
    assert all(a.image_bytes(k) == b.image_bytes(k) for k in a.image_keys())
    assert a.hash == b.hash
    c = generate(ProbeConfig(n=120, seed=10))
    assert c.hash != a.hash and manifest_bytes(c.items) != manifest_bytes(a.items)


def test_restricted_tasks_and_relations():
    ps = generate(ProbeConfig(n=40, seed=0, tasks=("relation",), relations=("left", "above")))
    assert {it.task for it in ps} == {"relation"}
    assert {it.answer for it in ps} == {"left", "above"}
    assert {it.options for it in ps} == {("left", "right", "above", "below")}


@pytest.mark.parametrize("kw,msg", [
    ({"n": 0}, "n must be positive"),
    ({"n": -3}, "n must be positive"),
    ({"relations": ("left", "behind")}, "unknown relation 'behind'"),
    ({"tasks": ("colour",)}, "unknown task 'colour'"),
    ({"colors": ("red", "mauve")}, "unknown color 'mauve'"),
    ({"test_fraction": 1.0}, "test fraction"),
    ({"split_by": "random"}, "unknown split"),
    ({"colors": ("red", "blue")}, "cannot color 3"),
    ({"canvas": 64, "grid": 24}, "do not tile"),
    ({"canvas": 64, "grid": 32}, "at least 3"),
    ({"canvas": 64, "grid": 16, "object_size": 15}, "--object-size 14 or less"),
])
def test_bad_config_is_refused(kw, msg):
    with pytest.raises(WorkbenchError, match=msg):
        generate(ProbeConfig(**kw))
