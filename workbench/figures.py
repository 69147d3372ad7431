"""Static figures with Pillow alone: a ``[layer, head]`` heatmap as a PNG.

The Dash app draws interactive heatmaps with plotly; reports and the CLI need a file that any
viewer opens and that needs no browser engine (plotly's PNG export needs kaleido and Chrome).
The heatmap is drawn as the app draws it (``workbench.app.components.heatmap``): heads as columns, layers
as rows with layer 0 at the bottom, and the app's diverging scale (plotly's ``RdBu``: below the centre red,
above it blue, the centre near-white), symmetric about the centre; a value in every cell.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from workbench.fileio import atomic_write

# plotly's "RdBu" as the app's heatmaps resolve it (go.Heatmap(colorscale="RdBu").colorscale): position → RGB
RDBU: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (103, 0, 31)), (0.1, (178, 24, 43)), (0.2, (214, 96, 77)), (0.3, (244, 165, 130)), (0.4, (253, 219, 199)),
    (0.5, (247, 247, 247)), (0.6, (209, 229, 240)), (0.7, (146, 197, 222)), (0.8, (67, 147, 195)), (0.9, (33, 102, 172)),
    (1.0, (5, 48, 97)))
NAN_COLOUR = (200, 200, 200)
FONT_FILES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf",
              "/usr/share/fonts/dejavu/DejaVuSans.ttf", "/Library/Fonts/Arial Unicode.ttf", "C:/Windows/Fonts/arial.ttf")
ASCII = {"\u2212": "-", "\u00d7": "x", "\u00b1": "+/-", "\u03b1": "alpha", "\u0394": "delta", "\u2264": "<=", "\u2265": ">=",
         "\u2026": "...", "\u2013": "-", "\u2014": "-", "\u2192": "->"}


def _colour(v: float, scale: float) -> tuple[int, int, int]:
    """The app's colour of ``v`` (already minus the centre) on a scale symmetric about 0 with ends ``±scale``:
    linear in RGB between the stops of :data:`RDBU`, ``-scale`` → (103, 0, 31), 0 → (247, 247, 247),
    ``+scale`` → (5, 48, 97); values beyond the ends take the end colour, NaN is grey."""
    if v != v:
        return NAN_COLOUR
    t = 0.0 if scale <= 0 else max(-1.0, min(1.0, v / scale))
    pos = (t + 1.0) / 2.0
    for (p0, c0), (p1, c1) in zip(RDBU, RDBU[1:]):
        if pos <= p1:
            f = (pos - p0) / (p1 - p0)
            return tuple(int(round(a + f * (b - a))) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return RDBU[-1][1]


def _font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans (or another font with U+2212 and Greek) where the system has one, else Pillow's default."""
    for f in FONT_FILES:
        if os.path.isfile(f):
            try:
                return ImageFont.truetype(f, size)
            except OSError:
                continue
    return ImageFont.load_default(size=size)


def _has_glyph(font, ch: str) -> bool:
    """Whether ``font`` draws ``ch`` with a glyph of its own (not the box it draws for characters it lacks)."""
    def mask(c: str) -> tuple:
        m = font.getmask(c)
        return m.size, bytes(m)

    return ch.isspace() or mask(ch) != mask("\uffff")


def _printable(text: str, font) -> str:
    """``text`` with every character ``font`` lacks spelled in ASCII (:data:`ASCII`; "?" otherwise), so no box is drawn."""
    return "".join(ch if ord(ch) < 128 or _has_glyph(font, ch) else ASCII.get(ch, "?") for ch in text)


def heatmap_png(values, path: str | os.PathLike, title: str = "", cell: int = 44,
                marked: set[tuple[int, int]] | None = None, center: float = 0.0, span: float | None = None) -> Path:
    """Write ``values [layer, head]`` (``[layer]`` is one column) as a PNG heatmap, oriented and coloured as the app's
    heatmap: layer 0 in the bottom row, head 0 in the left column; colours show ``value − center`` on plotly's
    ``RdBu`` (below the centre red, above it blue; ``center=1`` for scale vectors: 1, the identity, is white),
    symmetric with ends ``±span`` (default: the largest ``|value − center|``; pass one ``span`` to several figures
    to compare them on one scale). Every cell prints its value; cells in ``marked`` get a black frame; a legend
    under the grid states the centre, the span and the sign. Negative numbers use U+2212 where the font has it,
    ASCII '-' otherwise (never a missing-glyph box)."""
    v = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64)  # torch.Tensor or array
    if v.ndim == 1:
        v = v[:, None]
    n_layers, n_heads = v.shape
    shifted = v - center
    finite = shifted[np.isfinite(shifted)]
    scale = float(span) if span is not None else float(np.abs(finite).max()) if finite.size else 0.0
    font, title_font = _font(max(9, cell // 4)), _font(14)
    minus = "\u2212" if _has_glyph(font, "\u2212") else "-"
    left, top = 70, 44 if title else 24
    title = _printable(title, title_font)
    pm = "\u00b1" if _has_glyph(font, "\u00b1") else "+/-"
    what = f"value {minus} {center:g}" if center else "value"
    legend = _printable(f"colour: {what}, red < 0 < blue, ends {pm}{scale:.3g}; layer 0 at the bottom", font)
    width = int(max(left + n_heads * cell + 10, left + title_font.getlength(title) + 10, left + font.getlength(legend) + 10))
    img = Image.new("RGB", (width, top + n_layers * cell + 30), "white")
    d = ImageDraw.Draw(img)
    if title:
        d.text((left, 6), title, fill="black", font=title_font)
    for h in range(n_heads):
        d.text((left + h * cell + cell // 3, top - 18), f"h{h}", fill="black", font=font)
    for layer in range(n_layers):
        y0 = top + (n_layers - 1 - layer) * cell  # layer 0 at the bottom, as in the app
        d.text((8, y0 + cell // 3), f"L{layer}", fill="black", font=font)
        for h in range(n_heads):
            x0 = left + h * cell
            frame = bool(marked) and (layer, h) in marked
            colour = _colour(float(shifted[layer, h]), scale)
            d.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=colour, outline="black" if frame else "white",
                        width=3 if frame else 1)
            ink = "white" if sum(colour) < 3 * 128 else "black"
            d.text((x0 + 3, y0 + cell // 3), f"{v[layer, h]:.2f}".replace("-", minus), fill=ink, font=font)
    d.text((left, top + n_layers * cell + 8), legend, fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


ATTENTION_INK = (255, 255, 255)  # the frame / wash colour of attention maps: in no object's palette, bright on a dark scene


def attention_overlay(image: Image.Image, weights: np.ndarray, *, scale_max: float, size: int = 256, fill: float = 0.3,
                      frame: int | None = None, ink: tuple[int, int, int] = ATTENTION_INK) -> Image.Image:
    """``image`` with the attention shares ``weights [rows, cols]`` (one per image patch) drawn so the scene's colours stay
    readable: every patch gets a frame of ``ink`` whose opacity is ``t = share / scale_max`` (clipped to [0, 1]) and a
    wash of ``ink`` at opacity ``fill · t`` inside. So a pixel of a patch with no attention keeps its exact colour, and
    one inside the most attended patch is ``(1 − fill) · colour + fill · ink``: the object's hue survives.

    ``scale_max`` is the share that gets full opacity; pages pass one value to every map they show side by side (an
    absolute scale: a head with almost no attention on the image draws almost nothing). ``frame``: its width in pixels
    (default an eighth of a patch, at least 1). Returns a ``size × size`` RGB image."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights must be [rows, cols], got shape {w.shape}")
    if not (np.isfinite(w).all() and (w >= 0).all() and np.isfinite(scale_max) and scale_max >= 0):
        raise ValueError("attention shares and their scale must be finite and ≥ 0")
    rows, cols = w.shape
    base = np.asarray(image.convert("RGB").resize((size, size), Image.NEAREST), dtype=np.float64)
    t = np.clip(w / scale_max, 0.0, 1.0) if scale_max > 0 else np.zeros_like(w)
    r = np.arange(size) * rows // size  # the patch row of each pixel row
    c = np.arange(size) * cols // size
    per_pixel = t[r[:, None], c[None, :]]  # [size, size]
    width = frame if frame is not None else max(1, size // max(rows, cols) // 8)

    def edge(idx: np.ndarray) -> np.ndarray:  # pixels within ``width`` of their patch's first or last pixel
        pos = np.arange(size)
        first = np.searchsorted(idx, idx, side="left")
        last = np.searchsorted(idx, idx, side="right") - 1
        return (pos - first < width) | (last - pos < width)

    on_frame = edge(r)[:, None] | edge(c)[None, :]
    opacity = np.where(on_frame, per_pixel, fill * per_pixel)[..., None]
    out = base * (1.0 - opacity) + np.asarray(ink, dtype=np.float64) * opacity
    return Image.fromarray(np.uint8(np.rint(out)), "RGB")
