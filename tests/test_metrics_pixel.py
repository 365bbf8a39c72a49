"""PSNR, SSIM and the seam band against scikit-image, the reference we promise to equal."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from inpaint import io
from inpaint.metrics import pixel, psnr, psnr_regions, seam_band, seam_psnr, ssim, ssim_map, ssim_regions

WANG = dict(channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)


def sk_ssim(a: np.ndarray, b: np.ndarray, full: bool = False):
    """skimage SSIM with Wang et al. settings on float64 copies of uint8 (H, W, 3) images."""
    return structural_similarity(a.astype(np.float64), b.astype(np.float64), full=full, **WANG)


def random_pairs(n: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    noise = rng.integers(-40, 41, a.shape)
    return a, np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)


def degraded(photo: np.ndarray, seed: int = 0) -> np.ndarray:
    """The photo with noise and a shifted patch: a plausible, imperfect completion."""
    rng = np.random.default_rng(seed)
    out = photo.astype(int) + rng.normal(0, 12, photo.shape).round().astype(int)
    out[20:44, 20:44] = photo[22:46, 18:42]
    return np.clip(out, 0, 255).astype(np.uint8)


def masks_tensor(masks: np.ndarray) -> torch.Tensor:
    return io.mask_to_tensor(masks)


# ---- PSNR ------------------------------------------------------------------------------------


def test_psnr_equals_skimage_on_random_and_real_images(photo):
    a, b = random_pairs(3, 40, 52)
    ours = psnr(io.to_tensor(a), io.to_tensor(b))
    ref = [peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b)]
    assert ours.dtype == torch.float64 and ours.shape == (3,)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-9)

    fake = degraded(photo)
    ours = psnr(io.to_tensor(fake), io.to_tensor(photo))
    assert ours.item() == pytest.approx(peak_signal_noise_ratio(photo, fake, data_range=255), abs=1e-9)


def test_psnr_scores_the_8bit_images_as_saved():
    """Off-grid floats are rounded exactly as io.to_uint8 rounds them before saving."""
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    saved_pred, saved_target = io.to_uint8(pred), io.to_uint8(target)
    ref = [peak_signal_noise_ratio(t, p, data_range=255) for p, t in zip(saved_pred, saved_target)]
    np.testing.assert_allclose(psnr(pred, target).numpy(), ref, rtol=0, atol=1e-9)


def test_psnr_hole_equals_direct_computation(photo, center_mask):
    fake = degraded(photo)
    ours = psnr(io.to_tensor(fake), io.to_tensor(photo), masks_tensor(center_mask)).item()
    diff = fake.astype(np.float64) - photo.astype(np.float64)
    mse = np.mean(diff[center_mask] ** 2)  # hole pixels x 3 channels
    assert ours == pytest.approx(10 * np.log10(255.0**2 / mse), abs=1e-9)
    # The known region is untouched here except by noise, so the hole must score worse.
    assert ours < psnr(io.to_tensor(fake), io.to_tensor(photo)).item()


def test_psnr_identical_is_inf_and_empty_hole_is_nan(photo):
    x = io.to_tensor(photo)
    assert psnr(x, x).item() == math.inf
    empty = torch.zeros(1, 1, 64, 64)
    assert math.isnan(psnr(io.to_tensor(degraded(photo)), x, empty).item())
    assert math.isnan(ssim(io.to_tensor(degraded(photo)), x, empty).item())
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-12)


# ---- SSIM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 64, 64), (2, 37, 50), (1, 11, 11)])
def test_ssim_equals_skimage_on_random_images(shape):
    a, b = random_pairs(*shape, seed=sum(shape))
    ours = ssim(io.to_tensor(a), io.to_tensor(b))
    ref = [sk_ssim(x, y) for x, y in zip(a, b)]
    assert ours.dtype == torch.float64 and ours.shape == (shape[0],)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-9)


def test_ssim_equals_skimage_on_a_real_photo(photo):
    fake = degraded(photo)
    assert ssim(io.to_tensor(fake), io.to_tensor(photo)).item() == pytest.approx(sk_ssim(photo, fake), abs=1e-9)


def test_ssim_map_equals_skimage_full_map(photo):
    fake = degraded(photo)
    _, ref = sk_ssim(photo, fake, full=True)  # (H, W, 3), uncropped
    ours = ssim_map(io.to_tensor(fake), io.to_tensor(photo))
    assert ours.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), ref, rtol=0, atol=1e-9)


def test_ssim_hole_is_mean_of_full_map_over_hole(photo, center_mask):
    fakes = np.stack([degraded(photo, seed=1), degraded(photo, seed=2)])
    masks = np.stack([center_mask, np.roll(center_mask, 17, axis=1)])
    ours = ssim(io.to_tensor(fakes), io.to_tensor(np.stack([photo, photo])), masks_tensor(masks))
    for i in range(2):
        _, full = sk_ssim(photo, fakes[i], full=True)
        ref = np.mean([full[..., c][masks[i]].mean() for c in range(3)])
        assert ours[i].item() == pytest.approx(ref, abs=1e-9)


@pytest.mark.parametrize("chunk_pixels", [1, 1 << 16])
def test_ssim_regions_equal_skimage_whole_value_and_map_means(photo, center_mask, monkeypatch, chunk_pixels):
    # Chunks of one plane (the path of images of 256 px and more) and of several images at once.
    monkeypatch.setattr(pixel, "_CHUNK_PIXELS", chunk_pixels)
    fakes = np.stack([degraded(photo, seed=s) for s in range(3)])
    holes = np.stack([center_mask, np.roll(center_mask, 17, axis=1), np.zeros_like(center_mask)])
    bands = seam_band(masks_tensor(holes), 4).numpy()[:, 0].astype(bool)
    hole, whole, band = ssim_regions(
        io.to_uint8_tensor(fakes),
        io.to_uint8_tensor(np.stack([photo] * 3)),
        [masks_tensor(holes), None, masks_tensor(bands)],
    )
    for i in range(3):
        value, full = sk_ssim(photo, fakes[i], full=True)
        assert whole[i].item() == pytest.approx(value, abs=1e-9)
        for ours, region in ((hole, holes[i]), (band, bands[i])):
            if region.any():
                ref = np.mean([full[..., c][region].mean() for c in range(3)])
                assert ours[i].item() == pytest.approx(ref, abs=1e-9)
            else:
                assert math.isnan(ours[i].item())  # an empty region has nothing to score
    assert not holes[2].any() and bands[0].any()


def test_psnr_regions_equal_psnr_by_hand_per_region(photo, center_mask):
    fakes = np.stack([degraded(photo, seed=s) for s in range(3)])
    holes = masks_tensor(np.stack([center_mask, np.roll(center_mask, 9, axis=0), np.zeros_like(center_mask)]))
    regions = [None, holes, seam_band(holes, 3)]
    error = (fakes.astype(float) - photo.astype(float)) ** 2  # (N, H, W, 3)
    for pred, target in (
        (io.to_uint8_tensor(fakes), io.to_uint8_tensor(np.stack([photo] * 3))),
        (io.to_tensor(fakes), io.to_tensor(np.stack([photo] * 3)).contiguous()),
    ):
        for ours, region in zip(psnr_regions(pred, target, regions), regions):
            masks = np.ones((3, 64, 64), bool) if region is None else region.numpy()[:, 0].astype(bool)
            ref = [10 * np.log10(255.0**2 / e[m].mean()) if m.any() else np.nan for e, m in zip(error, masks)]
            np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-9)  # NaN where the region is empty


def test_batch_equals_per_image_across_chunks_and_threads(monkeypatch):
    a, b = random_pairs(5, 32, 48, seed=3)
    pred, target = io.to_tensor(a), io.to_tensor(b)
    mask = torch.zeros(5, 1, 32, 48)
    mask[:, :, 8:20, 10:30] = 1
    whole, hole = ssim(pred, target), ssim(pred, target, mask)
    # One image per chunk: the chunks then run on the thread pool.
    monkeypatch.setattr(pixel, "_CHUNK_PIXELS", 1)
    threads = torch.get_num_threads()
    np.testing.assert_allclose(ssim(pred, target).numpy(), whole.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ssim(pred, target, mask).numpy(), hole.numpy(), rtol=0, atol=1e-12)
    assert torch.get_num_threads() == threads  # restored after the pool
    for i in range(5):
        one = slice(i, i + 1)
        assert ssim(pred[one], target[one]).item() == pytest.approx(whole[i].item(), abs=1e-12)
        assert psnr(pred[one], target[one], mask[one]).item() == psnr(pred, target, mask)[i].item()


def test_inputs_are_validated():
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="from_model_range"):
        psnr(x * 2 - 1, x)
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(x, torch.rand(1, 3, 32, 31))
    with pytest.raises(ValueError, match="0 \\(keep\\) or 1 \\(hole\\)"):
        psnr(x, x, torch.full((1, 1, 32, 32), 0.5))
    for bad in (float("nan"), -1.0, 2.0, 1e-30):
        mask = torch.zeros(1, 1, 32, 32)
        mask[0, 0, 5, 5] = bad
        with pytest.raises(ValueError, match="binarise"):
            ssim(x, x, mask)
    assert ssim(x, x, torch.ones(1, 1, 32, 32, dtype=torch.bool)).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="expected shape \\(1, 1, 32, 32\\)"):
        ssim(x, x, torch.ones(1, 3, 32, 32))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 3, 10, 32), torch.rand(1, 3, 10, 32))


# ---- seam band -------------------------------------------------------------------------------


def test_seam_band_is_a_ring_on_both_sides_of_the_boundary(center_mask):
    band = seam_band(masks_tensor(center_mask), width=4)[0, 0].numpy().astype(bool)
    expected = np.zeros((64, 64), dtype=bool)
    expected[16:48, 16:48] = True  # 4 px outside the 20..43 hole, corners included (square)
    expected[24:40, 24:40] = False  # minus the hole shrunk by 4 px
    np.testing.assert_array_equal(band, expected)


def test_seam_band_ignores_the_image_border():
    mask = np.zeros((32, 32), dtype=bool)
    mask[:10] = True  # a strip along the top edge: its only boundary is row 9 / row 10
    band = seam_band(masks_tensor(mask), width=3)[0, 0].numpy().astype(bool)
    expected = np.zeros((32, 32), dtype=bool)
    expected[7:13] = True
    np.testing.assert_array_equal(band, expected)
    full, empty = torch.ones(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    assert seam_band(full).sum() == 0 and seam_band(empty).sum() == 0
    with pytest.raises(ValueError, match="positive integer"):
        seam_band(full, width=0)


def test_seam_psnr_is_psnr_over_the_band(photo, center_mask):
    fake, masks = io.to_tensor(degraded(photo)), masks_tensor(center_mask)
    band = seam_band(masks, width=8)
    assert seam_psnr(fake, io.to_tensor(photo), masks).item() == psnr(fake, io.to_tensor(photo), band).item()
    diff = degraded(photo).astype(np.float64) - photo.astype(np.float64)
    mse = np.mean(diff[band[0, 0].numpy().astype(bool)] ** 2)
    assert seam_psnr(fake, io.to_tensor(photo), masks).item() == pytest.approx(10 * np.log10(255.0**2 / mse), abs=1e-9)


def test_uint8_inputs_score_exactly_like_the_float_images_they_come_from():
    from inpaint import io

    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (3, 40, 48, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    mask = torch.zeros(3, 1, 40, 48)
    mask[:, :, 10:30, 5:20] = 1
    floats, bytes_ = (io.to_tensor(a), io.to_tensor(b)), (io.to_uint8_tensor(a), io.to_uint8_tensor(b))
    for metric in (psnr, ssim):
        assert torch.equal(metric(*floats), metric(*bytes_))
        assert torch.equal(metric(*floats, mask), metric(*bytes_, mask))
