"""No method sees the pixels under the hole: a benchmark must not leak its ground truth.

``bench`` hands every method the ground-truth image with a mask; the study's numbers are only
fair if what lies under the hole cannot change the result. Each method is run twice, once on
the photo and once with the hole filled with noise, and the two results must be identical,
including for a one-pixel-wide hole on an image the method resizes to its native size.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inpaint import io, models
from inpaint.models.base import MethodOptions


@pytest.fixture(scope="module")
def holes() -> torch.Tensor:
    """(2, 1, 64, 64): a square, and thin lines (1 px diagonal, 1 px row and column)."""
    masks = np.zeros((2, 64, 64), dtype=bool)
    masks[0, 20:40, 24:44] = True
    masks[1, np.arange(5, 60), np.arange(5, 60)] = True
    masks[1, 33, 8:56] = True
    masks[1, 10:50, 47] = True
    return io.mask_to_tensor(masks)


#: The tiny model (a fixture's name) each diffusion method runs here, and its steps.
_TINY = {
    "ddpm": ("tiny_unet7_dir", 3),
    "repaint": ("tiny_ddpm_dir", 3),
    "sd": ("tiny_sd_inpaint_dir", 2),
    "sdxl": ("tiny_sdxl_inpaint_dir", 2),
    "flux": ("tiny_flux_fill_dir", 2),
    "kandinsky": ("tiny_kandinsky_inpaint_dir", 2),
}


def _options(name, request) -> MethodOptions:
    """Method ``name``'s options on its tiny model (built only when a test of it runs)."""
    if name not in _TINY:
        return MethodOptions(device="cpu")
    fixture, steps = _TINY[name]
    extra = {"jump_length": 1, "jump_n_sample": 1} if name == "repaint" else {}
    return MethodOptions(device="cpu", weights=str(request.getfixturevalue(fixture)), steps=steps, **extra)


def _assert_blind(method, photo: np.ndarray, holes: torch.Tensor, label: str) -> None:
    size = holes.shape[-1]
    images = io.to_tensor(np.stack([photo[:size, :size], photo[::-1][:size, :size]]))
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(1))
    tampered = images.clone()  # keeps the memory format: conv kernels differ by 1e-6 across formats
    under = holes.bool().expand_as(images)
    tampered[under] = noise[under]
    assert not torch.equal(tampered, images)
    for paste_back in (True, False):
        out = method(images, holes, seeds=[0, 1], composite_known=paste_back)
        again = method(tampered, holes, seeds=[0, 1], composite_known=paste_back)
        assert torch.equal(out, again), f"{label} (paste_back={paste_back}) read the pixels under the hole"


# 64 px: the diffusion models' tiny native size is 32 (resized); 60 px is not a multiple of 8 (sd resizes).
@pytest.mark.parametrize("size", [64, 60])
@pytest.mark.parametrize("name", models.method_names())
def test_result_does_not_depend_on_the_pixels_under_the_hole(name, size, photo, holes, request):
    method = models.load_inpainter(name, _options(name, request))
    _assert_blind(method, photo, holes[..., :size, :size].contiguous(), f"{name} at {size} px")


@pytest.mark.parametrize("extra", [{"mask_blur": 4}, {"crop_padding": 4}, {"crop_padding": 4, "mask_blur": 4}])
def test_sd_feathering_and_cropping_stay_blind_to_the_hole(extra, photo, holes, tiny_sd_inpaint_dir):
    options = MethodOptions(device="cpu", weights=str(tiny_sd_inpaint_dir), steps=2, **extra)
    _assert_blind(models.load_inpainter("sd", options), photo, holes, f"sd {extra}")


def test_sd_below_strength_1_starts_from_the_input(photo, holes, tiny_sd_inpaint_dir):
    """SDEdit is the point of --strength < 1, so the hole's pixels must matter there (and bench refuses it)."""
    options = MethodOptions(device="cpu", weights=str(tiny_sd_inpaint_dir), steps=4, strength=0.5)
    with pytest.raises(AssertionError, match="read the pixels under the hole"):
        _assert_blind(models.load_inpainter("sd", options), photo, holes, "sd strength 0.5")


@pytest.mark.parametrize("size", [(32, 32), (96, 80)])
def test_resize_known_reads_only_known_pixels(size):
    """A flat known colour stays exactly that colour right up to the hole: neither the hole's own
    pixels nor a placeholder bleed into it, shrinking or enlarging; one-pixel holes survive."""
    from inpaint.models.base import resize_known

    colour = torch.tensor([0.2, 0.6, 0.9]).view(1, 3, 1, 1)
    images = colour.expand(1, 3, 64, 64).clone()
    masks = torch.zeros(1, 1, 64, 64)
    masks[..., 20:40, 24:44] = 1
    masks[..., 50, 5:60] = 1  # a one-pixel scratch
    images[masks.bool().expand_as(images)] = 1.0  # bright content under the hole
    small, small_masks = resize_known(images, masks, size)
    assert small.shape == (1, 3, *size) and small_masks.shape == (1, 1, *size)
    assert set(small_masks.unique().tolist()) <= {0.0, 1.0}
    known = ~small_masks.bool().expand_as(small)
    assert torch.allclose(small[known], colour.expand_as(small)[known], atol=1e-5)
    assert torch.all(small[~known] == 0.5)
    scratch_row = round(50.5 * size[0] / 64 - 0.5)
    assert small_masks[0, 0, scratch_row - 1 : scratch_row + 2].any(dim=0).sum() >= size[1] * 0.8
