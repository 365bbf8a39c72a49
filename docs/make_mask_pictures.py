"""Render docs/images/masks/<preset>.png: four example masks per preset, 128 px, seed 0.

Run from anywhere: ``python docs/make_mask_pictures.py``. White = fill, as in the mask files; a
gray gutter separates the examples so that masks touching the border stay readable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from inpaint import masks

SIZE = 128
EXAMPLES = 4
GUTTER = 4
GUTTER_GRAY = 128
OUT_DIR = Path(__file__).resolve().parent / "images" / "masks"


def strip(preset: str, seed: int = 0) -> np.ndarray:
    """(SIZE, EXAMPLES * SIZE + gutters) uint8 strip of masks ``example_0`` … ``example_3``."""
    width = EXAMPLES * SIZE + (EXAMPLES - 1) * GUTTER
    canvas = np.full((SIZE, width), GUTTER_GRAY, np.uint8)
    for i in range(EXAMPLES):
        mask, _ = masks.make_mask(preset, seed=seed, name=f"example_{i}", height=SIZE, width=SIZE)
        left = i * (SIZE + GUTTER)
        canvas[:, left : left + SIZE] = mask.astype(np.uint8) * 255
    return canvas


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name in masks.preset_names():
        # Three gray levels fit a 2-bit palette, which keeps each file to a few kilobytes.
        image = Image.fromarray(strip(name), mode="L").quantize(colors=4)
        image.save(OUT_DIR / f"{name}.png", optimize=True, bits=2)
        print(OUT_DIR / f"{name}.png")


if __name__ == "__main__":
    main()
