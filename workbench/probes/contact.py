"""Contact sheet: a grid of sample probes with their question and answer, for a human to check.

Samples are spread over tasks (round-robin over the tasks present, in a seeded order) so that one
glance shows every kind of question. Small images are upscaled with nearest-neighbour so pixels stay
crisp; for items with a swapped-object counterfactual the partner image is drawn beside it.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from workbench.probes.probeset import ProbeSet

TILE = 144  # pixel side of one probe image on the sheet


def contact_sheet(ps: ProbeSet, n: int = 24, cols: int = 6, seed: int = 0) -> Image.Image:
    """Render up to ``n`` probes of ``ps`` in a grid of ``cols`` columns."""
    rng = np.random.default_rng(seed)
    by_task: dict[str, list] = defaultdict(list)
    for it in ps.items:
        by_task[it.task].append(it)
    queues = {t: [its[i] for i in rng.permutation(len(its))] for t, its in sorted(by_task.items())}
    picked = []
    while len(picked) < min(n, len(ps)):
        for q in queues.values():
            if q and len(picked) < n:
                picked.append(q.pop())
    font = ImageFont.load_default(size=12)
    cell_w, text_h = 2 * TILE + 12, 64
    rows = max(1, -(-len(picked) // cols))
    sheet = Image.new("RGB", (cols * cell_w, rows * (TILE + text_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, it in enumerate(picked):
        x, y = (k % cols) * cell_w, (k // cols) * (TILE + text_h)
        sheet.paste(_tile(ps.image(it)), (x + 4, y + 4))
        if it.cf_kind == "swap_objects":
            sheet.paste(_tile(ps.image(it.cf_image)), (x + TILE + 8, y + 4))
            draw.text((x + TILE + 10, y + 6), f"cf: {it.cf_answer}", fill=(255, 255, 255), font=font)
        lines = textwrap.wrap(f"[{it.split}/{it.task}] {it.question}", width=44)[:3] + [f"answer: {it.answer}"]
        draw.multiline_text((x + 4, y + TILE + 6), "\n".join(lines), fill=(0, 0, 0), font=font, spacing=1)
    return sheet


def _tile(img: Image.Image) -> Image.Image:
    w, h = img.size
    scale = TILE / max(w, h)
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)
