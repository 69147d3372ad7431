"""The Pillow heatmap: the app's orientation (layer 0 at the bottom) and colours (plotly's RdBu: below the centre
red, above it blue), hand-computed cell colours, frames that mark heads, a minus sign that renders, atomic writes."""

import numpy as np
from PIL import Image

from workbench.figures import RDBU, _font, _has_glyph, _printable, heatmap_png

CELL, LEFT, TOP = 44, 70, 24  # heatmap_png's geometry without a title


def _cell_colour(img, row, head):
    """A pixel inside the cell drawn in image row ``row`` (0 = top), clear of its outline and its text."""
    return img.getpixel((LEFT + head * CELL + 2, TOP + row * CELL + 36))


def test_diverging_around_the_centre_in_the_apps_colours(tmp_path):
    path = heatmap_png(np.array([[0.0, 1.0, 2.0, 1.5]]), tmp_path / "h.png", center=1.0)
    img = Image.open(path).convert("RGB")
    assert _cell_colour(img, 0, 0) == (103, 0, 31)  # value − centre = −max: RdBu's low end, dark red
    assert _cell_colour(img, 0, 1) == (247, 247, 247)  # the centre: RdBu's middle
    assert _cell_colour(img, 0, 2) == (5, 48, 97)  # +max: RdBu's high end, dark blue
    # +max/2 sits at position 0.75 of the scale, halfway between the stops at 0.7 and 0.8
    assert _cell_colour(img, 0, 3) == tuple(round((a + b) / 2) for a, b in zip(RDBU[7][1], RDBU[8][1]))


def test_layer_zero_is_the_bottom_row_and_sign_picks_the_side(tmp_path):
    values = np.array([[-2.0, 0.0], [0.0, 2.0], [0.0, 0.0]])  # L0H0 negative, L1H1 positive, L2 all zero
    img = Image.open(heatmap_png(values, tmp_path / "h.png")).convert("RGB")
    assert _cell_colour(img, 2, 0) == (103, 0, 31)  # L0 is the last (bottom) image row; negative is red
    assert _cell_colour(img, 1, 1) == (5, 48, 97)  # L1 in the middle row; positive is blue
    assert _cell_colour(img, 0, 0) == _cell_colour(img, 0, 1) == (247, 247, 247)  # L2 on top, all zero


def test_one_span_puts_several_maps_on_one_scale(tmp_path):
    img = Image.open(heatmap_png(np.array([[1.0]]), tmp_path / "h.png", span=2.0)).convert("RGB")
    # 1 on a ±2 scale sits at position 0.75, halfway between the stops at 0.7 and 0.8 (alone it would be the end)
    assert _cell_colour(img, 0, 0) == tuple(round((a + b) / 2) for a, b in zip(RDBU[7][1], RDBU[8][1]))


def test_marked_cells_are_framed_and_nothing_is_left_behind(tmp_path):
    path = heatmap_png(np.ones((2, 2)) * 3, tmp_path / "h.png", marked={(1, 0)})
    img = Image.open(path).convert("RGB")
    assert img.getpixel((LEFT, TOP)) == (0, 0, 0)  # the frame's corner of cell (1, 0): layer 1 is the top row of two
    assert img.getpixel((LEFT, TOP + CELL)) != (0, 0, 0)  # (0, 0), below it, is not framed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png"]


def test_text_never_draws_a_missing_glyph():
    from PIL import ImageFont

    font = _font(11)
    for text in ("attention scale: b \u2212 a", "\u00b12", "\u0394 logit_diff, \u03b1 = 0"):
        assert all(_has_glyph(font, ch) for ch in _printable(text, font))
    assert _printable("a \U0010fffd b", font) == "a ? b"  # a character no font draws becomes "?", never a box
    bare = ImageFont.load_default(size=11)  # Pillow's own font, the fallback where no system font is found
    expected = "b \u2212 a" if _has_glyph(bare, "\u2212") else "b - a"
    assert _printable("b \u2212 a", bare) == expected
