"""Scene geometry and rendering, against hand-computed boxes and pixels."""

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.probes.scenes import (
    BACKGROUND,
    OPPOSITE,
    PALETTE,
    RELATIONS,
    Scene,
    SceneObject,
    SceneSpec,
    relation_between,
    render,
    sample_scene,
    validate_attributes,
)


def test_box_is_inclusive_and_centred():
    assert SceneObject("red", "square", 10, 20, 6).box() == (7, 17, 12, 22)
    assert SceneObject("red", "square", 10, 20, 5).box() == (8, 18, 12, 22)


@pytest.mark.parametrize("dx,dy,rel", [(-5, 0, "left"), (5, 1, "right"), (1, -5, "above"), (0, 4, "below"), (-3, 3, "left")])
def test_relation_between_hand_cases(dx, dy, rel):
    assert relation_between(dx, dy, 0, 0) == rel


def test_render_square_pixels_exact():
    scene = Scene(16, (SceneObject("blue", "square", 8, 8, 8),), 0, 0)
    img = np.asarray(render(scene))
    mask = (img == PALETTE["blue"]).all(-1)
    # box (4,4)-(11,11), inset 1 → filled (5,5)-(10,10): 6 × 6 pixels
    assert mask.sum() == 36 and mask[5:11, 5:11].all()
    assert (img[~mask] == BACKGROUND).all()


def test_swapped_exchanges_only_the_key_pair():
    a, b, c = (SceneObject("red", "circle", 10, 20, 8), SceneObject("blue", "cross", 30, 22, 8),
               SceneObject("green", "square", 20, 40, 8))
    s = Scene(48, (c, a, b), subject=1, reference=2)
    t = s.swapped()
    assert (t.a.x, t.a.y, t.b.x, t.b.y) == (30, 22, 10, 20)
    assert t.objects[0] == c and t.a.color == "red" and t.b.shape == "cross"
    assert s.relation() == "left" and t.relation() == OPPOSITE["left"]


@pytest.mark.parametrize("relation", RELATIONS)
def test_sample_scene_has_requested_relation_and_no_contact(relation):
    rng = np.random.default_rng(0)
    spec = SceneSpec(canvas=48)
    for _ in range(200):
        s = sample_scene(rng, spec, relation, 3, [("red", "circle"), ("blue", "square"), ("green", "cross")])
        assert s.relation() == relation
        assert s.a.color == "red" and s.b.color == "blue"
        for i, o in enumerate(s.objects):
            x0, y0, x1, y1 = o.box()
            assert 0 <= x0 and 0 <= y0 and x1 < 48 and y1 < 48
            for p in s.objects[i + 1:]:
                px0, py0, px1, py1 = p.box()
                assert x1 + spec.gap < px0 or px1 + spec.gap < x0 or y1 + spec.gap < py0 or py1 + spec.gap < y0


@pytest.mark.parametrize("relation", RELATIONS)
def test_grid_scene_centres_objects_in_distinct_cells(relation):
    """Grid placement: centers are cell centers (cell k of 16 px → pixel 16k + 8), one object a cell, each
    box inside its cell, and the key pair still satisfies the relation rule (|main| ≥ size + gap, |off| ≤ |main| / 3)."""
    rng = np.random.default_rng(1)
    spec = SceneSpec(canvas=64, object_size=14, grid=16)
    seen = set()
    for _ in range(300):
        s = sample_scene(rng, spec, relation, 3, [("red", "circle"), ("blue", "square"), ("green", "cross")])
        assert s.relation() == relation and s.a.color == "red" and s.b.color == "blue"
        cells = [(o.x // 16, o.y // 16) for o in s.objects]
        assert len(set(cells)) == 3 and all(o.x % 16 == 8 and o.y % 16 == 8 for o in s.objects)
        for o, (cx, cy) in zip(s.objects, cells):
            x0, y0, x1, y1 = o.box()
            assert (x0, y0, x1, y1) == (16 * cx + 1, 16 * cy + 1, 16 * cx + 14, 16 * cy + 14)
        main, off = (s.a.x - s.b.x, s.a.y - s.b.y) if relation in ("left", "right") else (s.a.y - s.b.y, s.a.x - s.b.x)
        assert abs(main) >= 14 + 2 and 3 * abs(off) <= abs(main)
        seen.add((s.a.x - s.b.x, s.a.y - s.b.y))
    assert len(seen) >= 3  # distances of 1, 2 and 3 cells all occur


def test_validation_messages_name_the_fix():
    with pytest.raises(WorkbenchError, match="unknown relation 'behind'.*left, right, above, below"):
        validate_attributes(("red",), ("circle",), ("behind",))
    with pytest.raises(WorkbenchError, match="too small"):
        SceneSpec(canvas=8).validate()
    with pytest.raises(WorkbenchError, match="do not fit"):
        SceneSpec(canvas=32, object_size=12).validate()
