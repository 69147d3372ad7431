"""Static figures with Pillow alone: a ``[layer, head]`` heatmap as a PNG.

The Dash app draws interactive heatmaps with plotly; reports and the CLI need a file that any
viewer opens and that needs no browser engine (plotly's PNG export needs kaleido and Chrome).
Diverging colours (blue < 0 < red) scaled to the largest magnitude, or sequential (white → red)
for non-negative maps; a value in every cell, layers as rows and heads as columns.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from workbench.fileio import atomic_write


def _colour(v: float, scale: float, diverging: bool) -> tuple[int, int, int]:
    t = 0.0 if scale == 0 else max(-1.0, min(1.0, v / scale))
    if not diverging:
        t = abs(t)
    if t >= 0:
        return (255, int(255 * (1 - t) + 40 * t), int(255 * (1 - t) + 40 * t))
    t = -t
    return (int(255 * (1 - t) + 40 * t), int(255 * (1 - t) + 90 * t), 255)


def heatmap_png(values: torch.Tensor | np.ndarray, path: str | os.PathLike, title: str = "", cell: int = 44,
                marked: set[tuple[int, int]] | None = None, center: float = 0.0) -> Path:
    """Write ``values [layer, head]`` as a PNG heatmap; cells in ``marked`` get a black frame.
    Colours show ``value − center`` (``center=1`` for scale vectors: 1 is white, the identity)."""
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    n_layers, n_heads = v.shape
    shifted = v - center
    diverging = bool((shifted < 0).any())
    scale = float(np.nanmax(np.abs(shifted))) if v.size else 0.0
    font = ImageFont.load_default(size=max(9, cell // 4))
    left, top = 70, 44 if title else 24
    width = max(left + n_heads * cell + 10, left + 8 * len(title) + 10)
    img = Image.new("RGB", (width, top + n_layers * cell + 30), "white")
    d = ImageDraw.Draw(img)
    if title:
        d.text((left, 6), title, fill="black", font=ImageFont.load_default(size=14))
    for h in range(n_heads):
        d.text((left + h * cell + cell // 3, top - 18), f"h{h}", fill="black", font=font)
    for layer in range(n_layers):
        d.text((8, top + layer * cell + cell // 3), f"L{layer}", fill="black", font=font)
        for h in range(n_heads):
            x0, y0 = left + h * cell, top + layer * cell
            d.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=_colour(float(shifted[layer, h]), scale, diverging),
                        outline="black" if marked and (layer, h) in marked else "white", width=3 if marked and (layer, h) in marked else 1)
            d.text((x0 + 3, y0 + cell // 3), f"{v[layer, h]:.2f}", fill="black", font=font)
    legend = (f"colour: value - {center:g}, " if center else "colour: ") + (f"±{scale:.3g} (blue < 0 < red)" if diverging else f"0 to {scale:.3g}")
    d.text((left, top + n_layers * cell + 8), legend, fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def attention_overlay(image: Image.Image, weights: np.ndarray, size: int = 256, strength: float = 0.75) -> Image.Image:
    """``image`` with ``weights [rows, cols]`` drawn over it as a red heat layer (max weight = ``strength`` opacity)."""
    base = image.convert("RGB").resize((size, size), Image.NEAREST)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.max() if w.max() > 0 else w
    heat = Image.fromarray(np.uint8(255 * w)).resize((size, size), Image.NEAREST)
    red = Image.new("RGB", (size, size), (220, 20, 60))
    alpha = heat.point(lambda v: int(v * strength))
    return Image.composite(red, base, alpha)
