"""The Pillow heatmap: colours are the hand-computed ends of the scale, frames mark heads, writes are atomic."""

import numpy as np
from PIL import Image

from workbench.figures import heatmap_png


def _cell_colour(img, layer, head, cell=44, left=70, top=24):
    return img.getpixel((left + head * cell + 2, top + layer * cell + 36))


def test_diverging_around_the_centre(tmp_path):
    path = heatmap_png(np.array([[0.0, 1.0, 2.0]]), tmp_path / "h.png", center=1.0)
    img = Image.open(path).convert("RGB")
    assert _cell_colour(img, 0, 0) == (40, 90, 255)  # value − centre = −max: full blue
    assert _cell_colour(img, 0, 1) == (255, 255, 255)  # the centre: white
    assert _cell_colour(img, 0, 2) == (255, 40, 40)  # +max: full red


def test_marked_cells_are_framed_and_nothing_is_left_behind(tmp_path):
    path = heatmap_png(np.ones((2, 2)) * 3, tmp_path / "h.png", marked={(1, 0)})
    img = Image.open(path).convert("RGB")
    assert img.getpixel((70, 24 + 44)) == (0, 0, 0)  # the frame's corner of cell (1, 0)
    assert img.getpixel((70 + 44, 24)) != (0, 0, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png"]
