"""Mask generators and the named presets built from them.

A mask is ``np.ndarray`` of dtype ``bool`` and shape (H, W); **True = the region to fill**.
Every generator is a pure function ``generator(rng, height, width, **params) -> mask`` of a legacy
``np.random.RandomState``, so the same (seed, identity) always gives the same mask
(:func:`inpaint.seeding.numpy_random_state`).

The LaMa generators follow the published code of LaMa (Suvorov et al., "Resolution-robust Large
Mask Inpainting with Fourier Convolutions", WACV 2022; ``saicinpainting/training/data/masks.py``)
draw for draw: ``rng.randint`` and ``rng.choice`` stand where LaMa calls ``np.random.randint`` and
``np.random.choice``, and OpenCV draws the strokes. The RePaint presets (Lugmayr et al., "RePaint:
Inpainting using Denoising Diffusion Probabilistic Models", CVPR 2022) regenerate the mask
families that RePaint ships as files. See docs/masks.md for pictures and the definitions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np
from PIL import Image

from inpaint.errors import InputError
from inpaint.seeding import numpy_random_state

#: LaMa's ten hole-area bins (fractions of the image): [0, 0.1), [0.1, 0.2), ..., [0.9, 1.0].
LAMA_AREA_BINS: tuple[tuple[float, float], ...] = tuple((i / 10, (i + 1) / 10) for i in range(10))

#: LaMa rescales every image so that its short side is 256 before drawing (configs/data_gen/*_256).
REFERENCE_SHORT_SIDE = 256


def hole_ratio(mask: np.ndarray) -> float:
    """Fraction of pixels to fill (True) in an (H, W) bool mask, in [0, 1]."""
    return float(np.count_nonzero(mask)) / mask.size


def area_bin(ratio: float) -> int:
    """Index 0..9 of the LaMa area bin holding ``ratio`` (bins are 10 % wide; 1.0 goes to bin 9)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"hole ratio must lie in [0, 1], got {ratio}")
    # Hole ratios are k / (H * W); the tiny epsilon keeps 0.3 (stored as 0.29999…) in bin 3.
    return min(int(ratio * 10 + 1e-9), len(LAMA_AREA_BINS) - 1)


# ---- LaMa's generators --------------------------------------------------------------------------


def irregular_strokes(
    rng: np.random.RandomState,
    height: int,
    width: int,
    *,
    max_angle: int = 4,
    max_len: int = 60,
    max_width: int = 20,
    min_times: int = 0,
    max_times: int = 10,
) -> np.ndarray:
    """LaMa's ``make_random_irregular_mask``: ``randint(min_times, max_times + 1)`` polylines.

    Each polyline has 1..5 segments of length 10..max_len+9 and brush width 5..max_width+4,
    drawn with ``cv2.line`` on a float32 canvas as LaMa does. Returns (height, width) bool.
    """
    canvas = np.zeros((height, width), np.float32)
    times = rng.randint(min_times, max_times + 1)
    for i in range(times):
        start_x = rng.randint(width)
        start_y = rng.randint(height)
        for _ in range(1 + rng.randint(5)):
            angle = 0.01 + rng.randint(max_angle)
            if i % 2 == 0:
                # LaMa's own value of 2*pi (3.1415926), kept so that endpoints match its masks.
                angle = 2 * 3.1415926 - angle
            length = 10 + rng.randint(max_len)
            brush_w = 5 + rng.randint(max_width)
            # int() truncates toward zero like LaMa's astype(np.int32); the clip keeps `width`
            # itself (not width - 1), as LaMa does, and cv2 clips the drawing.
            end_x = min(max(int(start_x + length * np.sin(angle)), 0), width)
            end_y = min(max(int(start_y + length * np.cos(angle)), 0), height)
            cv2.line(canvas, (start_x, start_y), (end_x, end_y), 1.0, brush_w)
            start_x, start_y = end_x, end_y
    return canvas > 0


def random_boxes(
    rng: np.random.RandomState,
    height: int,
    width: int,
    *,
    margin: int = 10,
    bbox_min_size: int = 30,
    bbox_max_size: int = 100,
    min_times: int = 0,
    max_times: int = 3,
) -> np.ndarray:
    """LaMa's ``make_random_rectangle_mask``: ``randint(min_times, max_times + 1)`` boxes.

    Box sides are ``randint(bbox_min_size, bbox_max_size)`` (upper bound exclusive), with
    ``bbox_max_size`` first capped by the image minus the margins. Returns (height, width) bool.
    """
    mask = np.zeros((height, width), bool)
    bbox_max_size = min(bbox_max_size, height - margin * 2, width - margin * 2)
    for _ in range(rng.randint(min_times, max_times + 1)):
        box_width = rng.randint(bbox_min_size, bbox_max_size)
        box_height = rng.randint(bbox_min_size, bbox_max_size)
        start_x = rng.randint(margin, width - margin - box_width + 1)
        start_y = rng.randint(margin, height - margin - box_height + 1)
        mask[start_y : start_y + box_height, start_x : start_x + box_width] = True
    return mask


def reference_canvas(height: int, width: int, short_side: int = REFERENCE_SHORT_SIDE) -> tuple[int, int]:
    """(height, width) scaled so that the short side is ``short_side``, the long side rounded."""
    scale = short_side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an (h, w) bool mask to (height, width) with nearest-neighbour sampling (PIL)."""
    if mask.shape == (height, width):
        return mask
    image = Image.fromarray(mask.astype(np.uint8) * 255, mode="L").resize((width, height), Image.NEAREST)
    return np.asarray(image) > 127


def lama_mixed(
    rng: np.random.RandomState,
    height: int,
    width: int,
    *,
    irregular_proba: float,
    irregular_kwargs: Mapping[str, int],
    box_proba: float,
    box_kwargs: Mapping[str, int],
    reference_short_side: int = REFERENCE_SHORT_SIDE,
) -> np.ndarray:
    """LaMa's ``MixedMaskGenerator`` as used by ``bin/gen_mask_dataset.py`` (test-time, ramp = 1).

    It picks **one** generator per mask, strokes or boxes, with probabilities
    ``irregular_proba : box_proba`` normalised (1 : 0.3 gives boxes 0.3 / 1.3 = 23 % of the
    time); it does not add boxes to strokes. LaMa's wrappers pass ``max_times + 1`` to the stroke
    generator and ``bbox_max_size + 1`` to the box generator, so a config's ``max_times: 5``
    means up to 6 strokes and box sides reach ``bbox_max_size`` inclusive; we keep that.

    The mask is drawn on a canvas whose short side is ``reference_short_side`` (LaMa draws on
    images rescaled to a 256 short side) and resized to (height, width) with nearest neighbour.
    """
    canvas_h, canvas_w = reference_canvas(height, width, reference_short_side)
    # Same order, same float32 normalisation and same rng.choice call as LaMa, so the draws match
    # (LaMa calls choice even when only one generator is enabled).
    kinds = [kind for kind, proba in (("irregular", irregular_proba), ("box", box_proba)) if proba > 0]
    probas = np.array([p for p in (irregular_proba, box_proba) if p > 0], dtype=np.float32)
    probas /= probas.sum()
    kind = kinds[rng.choice(len(probas), p=probas)]
    if kind == "irregular":
        params = dict(irregular_kwargs)
        params["max_times"] = params.get("max_times", 10) + 1
        mask = irregular_strokes(rng, canvas_h, canvas_w, **params)
    else:
        params = dict(box_kwargs)
        params["bbox_max_size"] = params.get("bbox_max_size", 100) + 1
        mask = random_boxes(rng, canvas_h, canvas_w, **params)
    return resize_nearest(mask, height, width)


# ---- RePaint's mask families and simple boxes ---------------------------------------------------


def alternating_lines(rng: np.random.RandomState, height: int, width: int) -> np.ndarray:
    """RePaint "ev2li": every second row is filled (rows 1, 3, 5, …); rows 0, 2, … are kept."""
    mask = np.zeros((height, width), bool)
    mask[1::2] = True
    return mask


def superres_grid(rng: np.random.RandomState, height: int, width: int, *, scale: int = 2) -> np.ndarray:
    """RePaint "nn2": keep pixels with ``y % scale == 0 and x % scale == 0``, fill the rest.

    ``scale = 2`` fills 75 % of the image: completing it is ×2 super-resolution.
    """
    mask = np.ones((height, width), bool)
    mask[::scale, ::scale] = False
    return mask


def expand_border(rng: np.random.RandomState, height: int, width: int, *, border: float = 0.25) -> np.ndarray:
    """RePaint "ex64": keep a centred crop, fill a border of ``border`` × each side.

    At 256 × 256 the default fills a 64-pixel border around a kept 128 × 128 centre (75 % hole).
    """
    if not 0.0 <= border < 0.5:
        raise ValueError(f"border must lie in [0, 0.5), got {border}")
    top, left = round(border * height), round(border * width)
    mask = np.ones((height, width), bool)
    mask[top : height - top, left : width - left] = False
    return mask


HALF_SIDES = ("left", "right", "top", "bottom")


def half_image(rng: np.random.RandomState, height: int, width: int, *, side: str = "random") -> np.ndarray:
    """RePaint "genhalf": fill one half of the image.

    ``side`` is one of left, right, top, bottom, or ``random`` (``rng.randint(4)`` picks one per
    mask). The filled half is ``floor(side / 2)`` pixels wide, so odd sizes stay symmetric.
    """
    if side == "random":
        side = HALF_SIDES[rng.randint(len(HALF_SIDES))]
    mask = np.zeros((height, width), bool)
    if side == "left":
        mask[:, : width // 2] = True
    elif side == "right":
        mask[:, width - width // 2 :] = True
    elif side == "top":
        mask[: height // 2] = True
    elif side == "bottom":
        mask[height - height // 2 :] = True
    else:
        raise ValueError(f"side must be one of random, {', '.join(HALF_SIDES)}; got {side!r}")
    return mask


def center_box(rng: np.random.RandomState, height: int, width: int, *, ratio: float = 0.25) -> np.ndarray:
    """A centred box covering ``ratio`` of the image: each side is ``sqrt(ratio)`` of the image's.

    Square images get a square; others the rectangle with the same side fraction on both axes.
    """
    fraction = math.sqrt(ratio)
    box_h, box_w = round(fraction * height), round(fraction * width)
    top, left = (height - box_h) // 2, (width - box_w) // 2
    mask = np.zeros((height, width), bool)
    mask[top : top + box_h, left : left + box_w] = True
    return mask


def random_box(
    rng: np.random.RandomState,
    height: int,
    width: int,
    *,
    min_area: float = 0.1,
    max_area: float = 0.4,
    max_aspect: float = 2.0,
) -> np.ndarray:
    """One axis-aligned box: area ratio ~ U[min_area, max_area], aspect w/h log-uniform in
    [1/max_aspect, max_aspect], sides rounded and clipped to the image, position uniform."""
    area = rng.uniform(min_area, max_area) * height * width
    aspect = math.exp(rng.uniform(-math.log(max_aspect), math.log(max_aspect)))
    box_w = min(max(round(math.sqrt(area * aspect)), 1), width)
    box_h = min(max(round(math.sqrt(area / aspect)), 1), height)
    left = rng.randint(0, width - box_w + 1)
    top = rng.randint(0, height - box_h + 1)
    mask = np.zeros((height, width), bool)
    mask[top : top + box_h, left : left + box_w] = True
    return mask


# ---- presets ----------------------------------------------------------------------------------


def _frozen(params: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only (recursively) view of ``params``, so presets cannot be edited by accident."""
    return MappingProxyType({k: _frozen(v) if isinstance(v, Mapping) else v for k, v in params.items()})


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in params.items()}


@dataclass(frozen=True)
class MaskPreset:
    """A named generator with its parameters and the hole-ratio bounds it is accepted within.

    ``random`` is False for presets whose mask depends only on the size (not on the rng).
    """

    name: str
    summary: str
    reference: str
    params: Mapping[str, Any] = field(repr=False)
    generator: Callable[..., np.ndarray] = field(repr=False)
    min_ratio: float = 0.0
    max_ratio: float = 1.0
    random: bool = True

    def draw(self, rng: np.random.RandomState, height: int, width: int) -> np.ndarray:
        """One (height, width) bool mask, True = fill (no hole-ratio check)."""
        return self.generator(rng, height, width, **self.params)

    def params_dict(self) -> dict[str, Any]:
        """The parameters as plain (JSON-ready) dicts."""
        return _plain(self.params)


def _lama_params(irregular: Mapping[str, int], box_proba: float, box: Mapping[str, int]) -> Mapping[str, Any]:
    return _frozen(
        {
            "irregular_proba": 1.0,
            "irregular_kwargs": irregular,
            "box_proba": box_proba,
            "box_kwargs": box,
            "reference_short_side": REFERENCE_SHORT_SIDE,
        }
    )


_THIN = _lama_params({"min_times": 4, "max_times": 50, "max_width": 10, "max_angle": 4, "max_len": 40}, 0.0, {})
_MEDIUM = _lama_params(
    {"min_times": 4, "max_times": 5, "max_width": 50, "max_angle": 4, "max_len": 100},
    0.3,
    {"margin": 0, "bbox_min_size": 10, "bbox_max_size": 50, "min_times": 1, "max_times": 5},
)
_THICK = _lama_params(
    {"min_times": 1, "max_times": 5, "max_width": 100, "max_angle": 4, "max_len": 200},
    0.3,
    {"margin": 10, "bbox_min_size": 30, "bbox_max_size": 150, "min_times": 1, "max_times": 3},
)
_LAMA = "LaMa (Suvorov et al., WACV 2022), configs/data_gen/random_{}_256.yaml"
_REPAINT = "RePaint (Lugmayr et al., CVPR 2022), {} test masks"


def _preset(
    name: str,
    summary: str,
    reference: str,
    generator: Callable[..., np.ndarray],
    params: Mapping[str, Any] | None = None,
    **options: Any,
) -> MaskPreset:
    return MaskPreset(name, summary, reference, _frozen(params or {}), generator, **options)


PRESETS: dict[str, MaskPreset] = {
    p.name: p
    for p in (
        # LaMa's test sets reject masks covering more than half the image (max_tamper_area 0.5).
        _preset("lama-thin", "LaMa narrow strokes", _LAMA.format("thin"), lama_mixed, _THIN, max_ratio=0.5),
        _preset(
            "lama-medium",
            "LaMa medium strokes, or boxes (23 %)",
            _LAMA.format("medium"),
            lama_mixed,
            _MEDIUM,
            max_ratio=0.5,
        ),
        _preset(
            "lama-thick", "LaMa wide strokes, or boxes (23 %)", _LAMA.format("thick"), lama_mixed, _THICK, max_ratio=0.5
        ),
        _preset(
            "repaint-thin", "RePaint 'thin' (= LaMa thin)", _REPAINT.format("'thin'"), lama_mixed, _THIN, max_ratio=0.5
        ),
        _preset(
            "repaint-thick",
            "RePaint 'thick' / wide (= LaMa thick)",
            _REPAINT.format("'thick'"),
            lama_mixed,
            _THICK,
            max_ratio=0.5,
        ),
        _preset(
            "repaint-ev2li",
            "every second row filled",
            _REPAINT.format("'ev2li' (alternating lines)"),
            alternating_lines,
            random=False,
        ),
        _preset(
            "repaint-nn2",
            "super-resolution x2: 3 of 4 pixels filled",
            _REPAINT.format("'nn2' (super-res)"),
            superres_grid,
            {"scale": 2},
            random=False,
        ),
        _preset(
            "repaint-ex64",
            "expand: border of 1/4 of each side filled",
            _REPAINT.format("'ex64' (expand)"),
            expand_border,
            {"border": 0.25},
            random=False,
        ),
        _preset(
            "repaint-genhalf",
            "one half filled (random side)",
            _REPAINT.format("'genhalf' (half)"),
            half_image,
            {"side": "random"},
        ),
        _preset(
            "box-center",
            "centred box, 25 % of the image",
            "inpaint (common centre-hole benchmark)",
            center_box,
            {"ratio": 0.25},
            random=False,
        ),
        _preset(
            "box-random",
            "one random box, 10-40 % of the image",
            "inpaint",
            random_box,
            {"min_area": 0.1, "max_area": 0.4, "max_aspect": 2.0},
        ),
    )
}


def preset_names() -> list[str]:
    """Names of the presets, in documentation order."""
    return list(PRESETS)


def get_preset(name: str) -> MaskPreset:
    """The preset called ``name``; :class:`InputError` listing the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown mask preset {name!r}; choose from {', '.join(PRESETS)}") from None


def validate_ratio_bounds(min_ratio: float | None, max_ratio: float | None) -> None:
    """Check user hole-ratio bounds: each in [0, 1] and min <= max (``InputError`` otherwise)."""
    for option, value in (("--min-ratio", min_ratio), ("--max-ratio", max_ratio)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise InputError(f"{option} {value}: must lie between 0 and 1")
    if min_ratio is not None and max_ratio is not None and min_ratio > max_ratio:
        raise InputError(f"--min-ratio {min_ratio} is larger than --max-ratio {max_ratio}")


def _bounds(preset: MaskPreset, min_ratio: float | None, max_ratio: float | None) -> tuple[float, float]:
    """The accepted hole-ratio range for ``preset``: user bounds replace the preset's own."""
    low = preset.min_ratio if min_ratio is None else min_ratio
    high = preset.max_ratio if max_ratio is None else max_ratio
    if low > high:
        raise InputError(
            f"hole ratio range [{low}, {high}] is empty for preset {preset.name} (its own range is "
            f"[{preset.min_ratio}, {preset.max_ratio}]); give both --min-ratio and --max-ratio"
        )
    return low, high


def resolve_presets(
    presets: str | Sequence[str], min_ratio: float | None = None, max_ratio: float | None = None
) -> list[MaskPreset]:
    """Look up ``presets`` and check the ratio bounds against each; ``InputError`` on any problem."""
    names = [presets] if isinstance(presets, str) else list(presets)
    if not names:
        raise InputError(f"no mask preset given; choose from {', '.join(PRESETS)}")
    resolved = [get_preset(name) for name in names]
    validate_ratio_bounds(min_ratio, max_ratio)
    for preset in resolved:
        _bounds(preset, min_ratio, max_ratio)
    return resolved


def check_fixed_presets(
    presets: str | Sequence[str],
    sizes: Iterable[tuple[int, int]],
    min_ratio: float | None = None,
    max_ratio: float | None = None,
) -> None:
    """InputError if a deterministic preset among ``presets`` misses the ratio bounds at a (width, height).

    Such a preset (``repaint-nn2``, ``box-center``…) fills the same fraction every time, so in a
    mixture it would fail whenever a mask picked it: a set would stop part-way. Checked before the
    first mask is written.
    """
    for preset in resolve_presets(presets, min_ratio, max_ratio):
        if preset.random:
            continue
        low, high = _bounds(preset, min_ratio, max_ratio)
        for width, height in sorted(set(sizes)):
            ratio = hole_ratio(preset.draw(np.random.RandomState(0), height, width))
            if not low <= ratio <= high:
                raise InputError(_fixed_ratio_message(preset, ratio, width, height, low, high))


def _fixed_ratio_message(preset: MaskPreset, ratio: float, width: int, height: int, low: float, high: float) -> str:
    return (
        f"preset {preset.name} always fills {ratio:.3f} of a {width}x{height} image, outside "
        f"--min-ratio/--max-ratio [{low}, {high}]"
    )


def make_mask(
    presets: str | Sequence[str],
    *,
    seed: int,
    name: str,
    height: int,
    width: int,
    min_ratio: float | None = None,
    max_ratio: float | None = None,
    max_attempts: int = 1000,
) -> tuple[np.ndarray, str]:
    """The mask for item ``name``: (height, width) bool (True = fill) and the preset it came from.

    The rng is derived from (seed, presets, name, width, height) only, so the result does not
    depend on call order or process. With several presets one is picked per mask (uniformly;
    repeat a name to weight it). Masks are redrawn from the same rng until the hole ratio lies in
    [min_ratio, max_ratio]; an unset bound falls back to the preset's own (LaMa: at most 0.5).
    """
    resolved = resolve_presets(presets, min_ratio, max_ratio)
    if height < 1 or width < 1:
        raise InputError(f"mask size must be positive, got {width}x{height}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    rng = numpy_random_state(seed, "mask", "+".join(p.name for p in resolved), name, width, height)
    preset = resolved[rng.randint(len(resolved))] if len(resolved) > 1 else resolved[0]
    low, high = _bounds(preset, min_ratio, max_ratio)
    # A deterministic preset gives the same mask every time: one draw settles it.
    for _ in range(max_attempts if preset.random else 1):
        mask = preset.draw(rng, height, width)
        ratio = hole_ratio(mask)
        if low <= ratio <= high:
            return mask, preset.name
    if not preset.random:
        raise InputError(_fixed_ratio_message(preset, ratio, width, height, low, high))
    raise InputError(
        f"no {preset.name} mask for {name!r} ({width}x{height}) had a hole ratio in [{low}, {high}] after "
        f"{max_attempts} attempts; widen --min-ratio/--max-ratio"
    )
