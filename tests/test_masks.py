"""Mask generators and presets: LaMa's published behaviour, exact geometry, determinism, bounds."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest

from inpaint import masks
from inpaint.errors import InputError

LAMA_PRESETS = ("lama-thin", "lama-medium", "lama-thick", "repaint-thin", "repaint-thick")


class RecordingRandomState(np.random.RandomState):
    """A RandomState that logs each ``randint`` call as (args, result)."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.calls: list[tuple[tuple, int]] = []

    def randint(self, *args, **kwargs):  # type: ignore[override]
        value = super().randint(*args, **kwargs)
        self.calls.append((args, value))
        return value


@pytest.fixture
def lines(monkeypatch):
    """Record every cv2.line call as (start, end, thickness) and still draw it."""
    recorded: list[tuple[tuple[int, int], tuple[int, int], int]] = []
    real_line = cv2.line

    def record(img, pt1, pt2, color, thickness):
        recorded.append((tuple(pt1), tuple(pt2), thickness))
        return real_line(img, pt1, pt2, color, thickness)

    monkeypatch.setattr(cv2, "line", record)
    return recorded


# ---- presets as published ------------------------------------------------------------------------


def test_lama_presets_have_the_published_256_configs():
    thin = masks.get_preset("lama-thin").params_dict()
    assert thin["irregular_proba"] == 1 and thin["box_proba"] == 0
    assert thin["irregular_kwargs"] == {"min_times": 4, "max_times": 50, "max_width": 10, "max_angle": 4, "max_len": 40}
    medium = masks.get_preset("lama-medium").params_dict()
    assert medium["irregular_kwargs"] == {
        "min_times": 4,
        "max_times": 5,
        "max_width": 50,
        "max_angle": 4,
        "max_len": 100,
    }
    assert medium["box_proba"] == 0.3
    assert medium["box_kwargs"] == {
        "margin": 0,
        "bbox_min_size": 10,
        "bbox_max_size": 50,
        "min_times": 1,
        "max_times": 5,
    }
    thick = masks.get_preset("lama-thick").params_dict()
    assert thick["irregular_kwargs"] == {
        "min_times": 1,
        "max_times": 5,
        "max_width": 100,
        "max_angle": 4,
        "max_len": 200,
    }
    assert thick["box_proba"] == 0.3
    assert thick["box_kwargs"] == {
        "margin": 10,
        "bbox_min_size": 30,
        "bbox_max_size": 150,
        "min_times": 1,
        "max_times": 3,
    }
    for name in LAMA_PRESETS:
        preset = masks.get_preset(name)
        assert preset.max_ratio == 0.5 and preset.params["reference_short_side"] == 256 and preset.random
    assert masks.get_preset("repaint-thin").params == masks.get_preset("lama-thin").params
    assert masks.get_preset("repaint-thick").params == masks.get_preset("lama-thick").params


def test_presets_are_read_only():
    with pytest.raises(TypeError):
        masks.get_preset("lama-thin").params["box_proba"] = 1.0  # type: ignore[index]


def test_unknown_preset_lists_the_names():
    with pytest.raises(InputError, match="lama-thin.*box-random"):
        masks.get_preset("lama-huge")
    assert masks.preset_names()[:3] == ["lama-thin", "lama-medium", "lama-thick"]


# ---- LaMa's generators -------------------------------------------------------------------------------


def test_strokes_follow_lamas_wrapper_counts_widths_and_lengths(lines):
    params = masks.get_preset("lama-thin").params_dict()
    stroke = params["irregular_kwargs"]
    counts = []
    for seed in range(400):
        rng = RecordingRandomState(seed)
        lines.clear()
        masks.lama_mixed(rng, 256, 256, **params)
        # LaMa's wrapper passes max_times + 1, so randint's exclusive high is max_times + 2.
        (first_args, times), segments = rng.calls[0], [c for c in rng.calls if c[0] == (5,)]
        assert first_args == (stroke["min_times"], stroke["max_times"] + 2)
        counts.append(times)
        assert len(lines) == sum(1 + n for _, n in segments)
        for start, end, thickness in lines:
            assert 5 <= thickness <= stroke["max_width"] + 4
            length = math.dist(start, end)
            assert length <= stroke["max_len"] + 9 + 1.5
            if 0 < end[0] < 256 and 0 < end[1] < 256:  # not shortened by the clip at the border
                assert length >= 10 - 1.5
    assert min(counts) >= stroke["min_times"] and max(counts) == stroke["max_times"] + 1


def test_segments_of_a_stroke_are_chained(lines):
    masks.irregular_strokes(np.random.RandomState(3), 64, 64, min_times=1, max_times=1, max_len=20)
    for (_, end), (start, _) in zip([(a, b) for a, b, _ in lines[:-1]], [(a, b) for a, b, _ in lines[1:]]):
        assert start == end


def test_box_sides_reach_min_and_max_inclusive():
    params = {
        "irregular_proba": 0.0,
        "irregular_kwargs": {},
        "box_proba": 1.0,
        "box_kwargs": {"margin": 3, "bbox_min_size": 10, "bbox_max_size": 14, "min_times": 1, "max_times": 1},
    }
    sides = set()
    for seed in range(200):
        mask = masks.lama_mixed(np.random.RandomState(seed), 256, 256, **params)
        rows, cols = np.nonzero(mask)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert mask.sum() == height * width  # one solid box
        assert rows.min() >= 3 and cols.min() >= 3 and rows.max() < 253 and cols.max() < 253
        sides |= {int(height), int(width)}
    assert sides == {10, 11, 12, 13, 14}


def test_mixture_picks_one_generator_boxes_about_23_percent(monkeypatch):
    picked: list[str] = []

    def fake(kind):
        def generator(rng, height, width, **params):
            picked.append(kind)
            return np.zeros((height, width), bool)

        return generator

    monkeypatch.setattr(masks, "irregular_strokes", fake("strokes"))
    monkeypatch.setattr(masks, "random_boxes", fake("boxes"))
    rng = np.random.RandomState(0)
    params = masks.get_preset("lama-medium").params
    for _ in range(4000):
        masks.lama_mixed(rng, 256, 256, **params)
    assert len(picked) == 4000  # exactly one generator per mask, never both
    assert abs(picked.count("boxes") / 4000 - 0.3 / 1.3) < 0.03


@pytest.mark.parametrize("name", LAMA_PRESETS)
def test_lama_masks_at_256_never_exceed_half(name):
    ratios = [
        masks.hole_ratio(masks.make_mask(name, seed=1, name=str(i), height=256, width=256)[0]) for i in range(150)
    ]
    assert 0 < min(ratios) and max(ratios) <= 0.5


def test_lama_presets_draw_on_a_256_short_side_canvas():
    assert masks.reference_canvas(512, 1024) == (256, 512)
    assert masks.reference_canvas(100, 150) == (256, 384)
    params = masks.get_preset("lama-thick").params
    small = masks.lama_mixed(np.random.RandomState(5), 128, 192, **params)
    big = masks.lama_mixed(np.random.RandomState(5), 256, 384, **params)
    # PIL nearest samples source pixel floor((i + 0.5) * 2) = 2i + 1.
    assert np.array_equal(small, big[1::2, 1::2])


# ---- RePaint's families and boxes ------------------------------------------------------------------


def draw(name: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    return masks.get_preset(name).draw(np.random.RandomState(seed), height, width)


def test_alternating_lines():
    mask = draw("repaint-ev2li", 6, 4)
    assert mask[1::2].all() and not mask[0::2].any()


def test_superres_grid():
    mask = draw("repaint-nn2", 256, 256)
    ys, xs = np.mgrid[:256, :256]
    assert np.array_equal(~mask, (ys % 2 == 0) & (xs % 2 == 0))
    assert masks.hole_ratio(mask) == 0.75


def test_expand_border():
    mask = draw("repaint-ex64", 256, 256)
    assert not mask[64:192, 64:192].any() and mask.sum() == 256 * 256 - 128 * 128
    assert masks.hole_ratio(mask) == 0.75
    wide = draw("repaint-ex64", 100, 200)
    assert not wide[25:75, 50:150].any() and wide.sum() == 100 * 200 - 50 * 100


def test_half_image_sides_and_random_choice():
    left = masks.half_image(None, 4, 5, side="left")  # type: ignore[arg-type]
    assert left[:, :2].all() and not left[:, 2:].any()
    right = masks.half_image(None, 4, 5, side="right")  # type: ignore[arg-type]
    assert right[:, 3:].all() and not right[:, :3].any()
    top = masks.half_image(None, 4, 6, side="top")  # type: ignore[arg-type]
    assert top[:2].all() and not top[2:].any()
    bottom = masks.half_image(None, 4, 6, side="bottom")  # type: ignore[arg-type]
    assert bottom[2:].all() and not bottom[:2].any()
    seen = {draw("repaint-genhalf", 8, 8, seed).tobytes() for seed in range(40)}
    assert len(seen) == 4
    assert all(masks.hole_ratio(draw("repaint-genhalf", 256, 256, s)) == 0.5 for s in range(8))


def test_center_box():
    mask = draw("box-center", 256, 256)
    assert mask[64:192, 64:192].all() and mask.sum() == 128 * 128
    rect = draw("box-center", 100, 200)
    assert rect[25:75, 50:150].all() and rect.sum() == 50 * 100


def test_random_box_area_and_aspect():
    for seed in range(200):
        mask = draw("box-random", 256, 256, seed)
        rows, cols = np.nonzero(mask)
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert mask.sum() == height * width
        assert 0.1 - 0.01 <= masks.hole_ratio(mask) <= 0.4 + 0.01
        assert 0.5 - 0.02 <= width / height <= 2 + 0.05


def test_deterministic_presets_ignore_the_rng():
    for name in masks.preset_names():
        preset = masks.get_preset(name)
        if not preset.random:
            assert np.array_equal(draw(name, 32, 48, 0), draw(name, 32, 48, 1))


@pytest.mark.parametrize("name", masks.preset_names())
@pytest.mark.parametrize(("height", "width"), [(100, 150), (300, 200), (256, 256)])
def test_every_preset_gives_the_requested_shape(name, height, width):
    mask, used = masks.make_mask(name, seed=0, name="x", height=height, width=width, max_ratio=1.0)
    assert mask.shape == (height, width) and mask.dtype == np.bool_ and used == name


# ---- make_mask: determinism and bounds -----------------------------------------------------------------


def test_same_arguments_same_mask_in_any_order():
    args = {"seed": 3, "height": 64, "width": 96}
    a1, _ = masks.make_mask("lama-thick", name="a", **args)
    b1, _ = masks.make_mask("lama-thick", name="b", **args)
    b2, _ = masks.make_mask("lama-thick", name="b", **args)
    a2, _ = masks.make_mask("lama-thick", name="a", **args)
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2) and not np.array_equal(a1, b1)
    other_seed, _ = masks.make_mask("lama-thick", name="a", **{**args, "seed": 4})
    assert not np.array_equal(a1, other_seed)


def test_same_mask_in_another_process():
    code = (
        "import hashlib; from inpaint.masks import make_mask; "
        "m, _ = make_mask('lama-medium', seed=7, name='img', height=80, width=120); "
        "print(hashlib.sha256(m.tobytes()).hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    mask, _ = masks.make_mask("lama-medium", seed=7, name="img", height=80, width=120)
    assert out.strip() == hashlib.sha256(mask.tobytes()).hexdigest()


def test_mixture_picks_each_preset():
    used = [
        masks.make_mask(["repaint-nn2", "box-center"], seed=0, name=str(i), height=16, width=16)[1] for i in range(200)
    ]
    assert 60 < used.count("box-center") < 140 and set(used) == {"repaint-nn2", "box-center"}


def test_ratio_bounds_are_honoured():
    for i in range(30):
        mask, _ = masks.make_mask("lama-thin", seed=0, name=str(i), height=128, width=128, min_ratio=0.2, max_ratio=0.3)
        assert 0.2 <= masks.hole_ratio(mask) <= 0.3


def test_user_bounds_replace_the_presets_own():
    for i in range(10):
        mask, _ = masks.make_mask(
            "lama-thick", seed=0, name=str(i), height=256, width=256, min_ratio=0.55, max_ratio=1.0
        )
        assert masks.hole_ratio(mask) >= 0.55  # beyond LaMa's 0.5 cap


def test_impossible_bounds_raise():
    with pytest.raises(InputError, match="repaint-nn2.*0.750"):
        masks.make_mask("repaint-nn2", seed=0, name="x", height=64, width=64, max_ratio=0.5)
    with pytest.raises(InputError, match="after 5 attempts"):
        masks.make_mask(
            "lama-thin", seed=0, name="x", height=64, width=64, min_ratio=0.49, max_ratio=0.5, max_attempts=5
        )
    with pytest.raises(InputError, match="--max-ratio"):
        masks.make_mask("lama-thin", seed=0, name="x", height=64, width=64, max_ratio=1.5)
    with pytest.raises(InputError, match="--min-ratio"):
        masks.make_mask("lama-thin", seed=0, name="x", height=64, width=64, min_ratio=-0.1)
    with pytest.raises(InputError, match="--min-ratio 0.6 is larger than --max-ratio 0.4"):
        masks.make_mask("lama-thin", seed=0, name="x", height=64, width=64, min_ratio=0.6, max_ratio=0.4)
    with pytest.raises(InputError, match="lama-thin.*--max-ratio"):  # 0.6 above LaMa's own 0.5
        masks.make_mask("lama-thin", seed=0, name="x", height=64, width=64, min_ratio=0.6)
    with pytest.raises(InputError, match="no mask preset"):
        masks.make_mask([], seed=0, name="x", height=64, width=64)


def test_hole_ratio_and_area_bins():
    mask = np.zeros((10, 10), bool)
    mask[:3] = True
    assert masks.hole_ratio(mask) == 0.3 and masks.area_bin(0.3) == 3
    assert [masks.area_bin(r) for r in (0.0, 0.05, 0.1, 0.55, 0.999, 1.0)] == [0, 0, 1, 5, 9, 9]
    assert len(masks.LAMA_AREA_BINS) == 10 and masks.LAMA_AREA_BINS[9] == (0.9, 1.0)
    with pytest.raises(ValueError):
        masks.area_bin(1.5)
