"""The weight-free methods behind the Inpainter interface, and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inpaint import io, models
from inpaint.errors import InputError
from inpaint.models.base import MethodOptions


@pytest.mark.parametrize("name", ["biharmonic", "telea", "navier-stokes"])
def test_fills_the_hole_and_keeps_known_pixels_bit_exact(name, photo, center_mask):
    inpainter = models.load_inpainter(name)
    images, masks = io.to_tensor(photo), io.mask_to_tensor(center_mask)
    out = inpainter(images, masks, [0])
    assert out.shape == images.shape and out.dtype == torch.float32
    known = masks.expand_as(images) == 0
    assert torch.equal(out[known], images[known])
    result = io.to_uint8(out)[0]
    assert np.array_equal(result[~center_mask], photo[~center_mask])


@pytest.mark.parametrize("name", ["biharmonic", "telea", "navier-stokes"])
def test_smooth_images_are_reconstructed(name, center_mask):
    # A smooth colour ramp: every classical method should continue it across the hole.
    y, x = np.mgrid[0:64, 0:64]
    ramp = np.stack([x * 3, y * 3, 255 - (x + y) * 1.5], axis=-1).clip(0, 255).astype(np.uint8)
    out = io.to_uint8(models.load_inpainter(name)(io.to_tensor(ramp), io.mask_to_tensor(center_mask), [0]))[0]
    hole_error = np.abs(out[center_mask].astype(int) - ramp[center_mask]).mean()
    blank_error = np.abs(128 - ramp[center_mask].astype(int)).mean()
    assert hole_error < 0.3 * blank_error  # telea ~0.21, navier-stokes ~0.17, biharmonic ~0


def test_raw_output_is_available_without_paste_back(photo, center_mask):
    inpainter = models.load_inpainter("telea")
    raw = inpainter(io.to_tensor(photo), io.mask_to_tensor(center_mask), [0], composite_known=False)
    # OpenCV works at 8 bits, so the raw output equals the quantised input outside the hole.
    assert np.array_equal(io.to_uint8(raw)[0][~center_mask], photo[~center_mask])


def test_batch_equals_single_images(photo, center_mask):
    inpainter = models.load_inpainter("biharmonic")
    flipped = np.ascontiguousarray(photo[::-1])
    other_mask = np.zeros_like(center_mask)
    other_mask[5:15, 30:60] = True
    batch = inpainter(io.to_tensor([photo, flipped]), io.mask_to_tensor([center_mask, other_mask]), [1, 2])
    first = inpainter(io.to_tensor(photo), io.mask_to_tensor(center_mask), [1])
    second = inpainter(io.to_tensor(flipped), io.mask_to_tensor(other_mask), [2])
    assert torch.allclose(batch, torch.cat([first, second]), atol=1e-6)


def test_empty_mask_returns_the_input_and_full_mask_is_refused(photo):
    inpainter = models.load_inpainter("biharmonic")
    images = io.to_tensor(photo)
    empty = io.mask_to_tensor(np.zeros((64, 64), bool))
    assert torch.equal(inpainter(images, empty, [0]), images)
    with pytest.raises(InputError, match="needs some known pixels"):
        inpainter(images, io.mask_to_tensor(np.ones((64, 64), bool)), [0])


def test_bad_tensors_are_programming_errors(photo, center_mask):
    inpainter = models.load_inpainter("telea")
    with pytest.raises(ValueError, match="masks must hold only 0"):
        inpainter(io.to_tensor(photo), io.mask_to_tensor(center_mask) * 0.5, [0])
    with pytest.raises(ValueError, match="one seed per image"):
        inpainter(io.to_tensor([photo, photo]), io.mask_to_tensor([center_mask, center_mask]), 0)


def test_registry_names_and_unknown_method():
    classical = [n for n in models.method_names() if n in ("biharmonic", "telea", "navier-stokes")]
    assert classical == ["biharmonic", "telea", "navier-stokes"]  # best first
    assert models.best_available(MethodOptions()).name in models.method_names()
    with pytest.raises(InputError, match="unknown method 'lama'; choose from .*biharmonic"):
        models.get_method("lama")
