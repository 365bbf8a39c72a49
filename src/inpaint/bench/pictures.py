"""grid.png (a fixed sample, one column per method) and the worst-k gallery of each method.

Pictures show exactly what was scored: images at the evaluation size, composited or raw as the
run was. They are built at the end from the files on disk, a handful of images at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inpaint import io
from inpaint.bench.config import BenchConfig
from inpaint.bench.data import BenchPair
from inpaint.bench.runner import read_pair
from inpaint.bench.scoring import evaluated_output, resize_image, resize_mask
from inpaint.completion import MASKED_FILL

#: Panels smaller than this (pixels) are shown enlarged by a whole factor.
MIN_DISPLAY = 96


def _panels(config: BenchConfig, pair: BenchPair, models: Sequence[str]) -> list[np.ndarray]:
    """original | masked | one output per method, all (eval_size, eval_size, 3) uint8."""
    image, mask = read_pair(pair, config)
    original = resize_image(image, config.eval_size)
    masked = original.copy()
    masked[resize_mask(mask, config.eval_size)] = MASKED_FILL
    panels = [original, masked, *(evaluated_output(pair, image, mask, config, m) for m in models)]
    # Small evaluation sizes are enlarged (whole pixels, nearest) so that the pictures and their
    # labels stay readable; the pixels are the scored ones.
    factor = -(-MIN_DISPLAY // config.eval_size)
    return [p.repeat(factor, axis=0).repeat(factor, axis=1) for p in panels] if factor > 1 else panels


def write_grid(path: Path, config: BenchConfig, pairs: Sequence[BenchPair]) -> Path:
    """One row per pair: original, masked, then each method's scored output."""
    from inpaint.grid import image_grid

    rows = [_panels(config, pair, config.models) for pair in pairs]
    return io.save_image(image_grid(rows, column_labels=["original", "masked", *config.models]), path)


def write_gallery(path: Path, config: BenchConfig, model: str, pairs: Sequence[BenchPair]) -> Path:
    """The worst images of ``model``, worst first: original, masked, output."""
    from inpaint.grid import image_grid

    rows = [_panels(config, pair, [model]) for pair in pairs]
    return io.save_image(image_grid(rows, column_labels=["original", "masked", model]), path)
