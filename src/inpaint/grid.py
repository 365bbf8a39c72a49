"""Comparison grids: rows of equally sized images with column labels, as one uint8 array."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Height of the label strip above the grid, in pixels.
LABEL_HEIGHT = 18


def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    *,
    column_labels: Sequence[str] | None = None,
    gap: int = 4,
    background: int = 255,
) -> np.ndarray:
    """Lay out (H, W, 3) uint8 images in rows; every cell is resized to the first image's size.

    Returns an (rows*H + gaps [+ label strip], cols*W + gaps, 3) uint8 array. Column labels are
    drawn above the first row with Pillow's default font.
    """
    if not rows or not rows[0]:
        raise ValueError("image_grid needs at least one image")
    height, width = rows[0][0].shape[:2]
    n_cols = max(len(r) for r in rows)
    top = LABEL_HEIGHT if column_labels else 0
    canvas = Image.new(
        "RGB",
        (n_cols * width + (n_cols + 1) * gap, top + len(rows) * height + (len(rows) + 1) * gap),
        (background,) * 3,
    )
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            tile = Image.fromarray(cell)
            if tile.size != (width, height):
                tile = tile.resize((width, height), Image.BICUBIC)
            canvas.paste(tile.convert("RGB"), (gap + c * (width + gap), top + gap + r * (height + gap)))
    if column_labels:
        draw = ImageDraw.Draw(canvas)
        font = ImageFont.load_default()
        for c, label in enumerate(column_labels):
            draw.text((gap + c * (width + gap) + 2, 3), label, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)
