"""Pixel metrics: PSNR and SSIM over the whole image, the hole, or a seam band around the hole.

Every function takes float tensors (N, 3, H, W) in [0, 1] and scores them after rounding to 8 bits
(as they would be saved; see :mod:`inpaint.metrics._tensors`), with data range 255. Results are
per image, float64 tensors of shape (N,), so callers can average, bootstrap or report per image.

SSIM follows Wang et al., "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 2004: an 11x11 Gaussian window (sigma 1.5, truncated at 3.5 sigma), population
(co)variances, K1 = 0.01, K2 = 0.03, computed per channel and averaged over RGB. The whole-image
value equals ``skimage.metrics.structural_similarity(a, b, channel_axis=-1, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255)`` on the uint8 images, including skimage's
choices of symmetric ("reflect") padding and of averaging only pixels at least 5 px from the border.

SSIM is computed in float64 on the CPU, one (H, W) plane per chunk, with the Gaussian filter as
banded matrix products and chunks spread over threads. :func:`psnr_regions` and
:func:`ssim_regions` score several masks (image, hole, seam) from one pass: the bench's PSNR and
SSIM over image and hole run 2.9-3.0x faster than a per-image skimage loop on one core (500
images of 256 px), 3.7x on two (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from inpaint.metrics._tensors import check_images, check_mask, quantise_f32

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: Filter radius as scipy.ndimage computes it: int(3.5 * 1.5 + 0.5) = 5, an 11-tap window.
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)

# The Gaussian filter runs as banded matrix products: each block of _BLOCK output rows is a
# (_BLOCK x _BLOCK+10) matrix times the input rows it depends on. 16 was the fastest block size
# from 8 to 64 on CPU (float64, one thread); a dense (H x H) product does ~10x the arithmetic,
# and per-tap shifted adds are memory bound and slower than skimage.
_BLOCK = 16
# Planes (image x channel) per chunk are chosen so a chunk holds about this many pixels: small
# enough that its four float64 maps (2 MiB) stay in cache, which made one 256 px image 2.4x
# faster than three channels at once; large enough to amortise per-call overhead on small images.
_CHUNK_PIXELS = 1 << 16


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image, on the 8-bit images (data range 255).

    Args:
        pred, target: (N, 3, H, W), float in [0, 1] or uint8.
        mask: optional (N, 1, H, W) in {0, 1}, 1 = hole. When given, the mean squared error is taken
            over the hole pixels only (all three channels); an empty hole gives NaN.

    Returns:
        float64 (N,). Identical images give ``inf`` (zero error), as skimage does; average PSNR
        over a set with :func:`numpy.nanmean` only after deciding how to treat ``inf``.
    """
    return psnr_regions(pred, target, [mask])[0]


def psnr_regions(
    pred: torch.Tensor, target: torch.Tensor, regions: Sequence[torch.Tensor | None]
) -> list[torch.Tensor]:
    """``[psnr(pred, target, mask) for mask in regions]``, squaring the errors once for all of them.

    ``regions`` holds (N, 1, H, W) masks in {0, 1}, or ``None`` for the whole image (the bench
    scores the image, the hole and the seam band of every pair). Returns float64 (N,) tensors.
    """
    check_images(pred, target)
    masks = [None if mask is None else check_mask(mask, pred.shape) for mask in regions]
    n, c, h, w = pred.shape
    # A few images at a time, so the temporaries stay in cache: 3x faster than the whole batch.
    step = max(1, (4 * _CHUNK_PIXELS) // (c * h * w))
    errors = [torch.empty(n, dtype=torch.float64) for _ in masks]  # sums of squared errors
    counts = [torch.full((n,), float(c * h * w), dtype=torch.float64) for _ in masks]
    for start in range(0, n, step):
        stop = min(n, start + step)
        # Squared differences of 8-bit values are integers <= 65025, exact in float32, and so are
        # their sums over three channels; the float64 sums over pixels are exact too: this equals
        # a float64 computation with half the traffic.
        squared = quantise_f32(pred[start:stop]).sub_(quantise_f32(target[start:stop])).square_()
        per_pixel = squared.sum(dim=1)  # (k, H, W)
        for mask, error, count in zip(masks, errors, counts):
            if mask is None:
                error[start:stop] = per_pixel.sum(dim=(1, 2), dtype=torch.float64)
            else:
                weights = mask[start:stop, 0]
                error[start:stop] = per_pixel.mul(weights).sum(dim=(1, 2), dtype=torch.float64)
                count[start:stop] = weights.sum(dim=(1, 2), dtype=torch.float64) * c
    # 0 / 0 = NaN for an empty hole: there is nothing to score, and NaN says so.
    return [10.0 * torch.log10(DATA_RANGE**2 / (error / count)) for error, count in zip(errors, counts)]


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), per image, on the 8-bit images.

    Args:
        pred, target: (N, 3, H, W), float in [0, 1] or uint8; H and W at least 11 (the window size).
        mask: optional (N, 1, H, W) in {0, 1}, 1 = hole.

    Returns:
        float64 (N,). Without a mask: skimage's value (the SSIM map averaged over pixels at least
        5 px from the border, then over channels). With a mask: the full, uncropped SSIM map
        averaged over hole pixels and channels; an empty hole gives NaN.
    """
    return ssim_regions(pred, target, [mask])[0]


def ssim_regions(
    pred: torch.Tensor, target: torch.Tensor, regions: Sequence[torch.Tensor | None]
) -> list[torch.Tensor]:
    """``[ssim(pred, target, mask) for mask in regions]`` from one SSIM map per image.

    ``regions`` holds (N, 1, H, W) masks in {0, 1}, or ``None`` for the whole-image value. Returns
    float64 (N,) tensors. The map is reduced chunk by chunk and never held whole: materialising
    it (:func:`ssim_map`) for a batch of 50 images of 256 px is 79 MB of float64 and cost 40 %
    more time than the whole SSIM.
    """
    check_images(pred, target)
    n, c = pred.shape[:2]
    # float64 up front, with each image's pixel count: converting per chunk (a float32 mask times
    # the float64 map) cost a copy in every product and every count, 10 % of the time.
    masks = [None if mask is None else check_mask(mask, pred.shape).to(torch.float64) for mask in regions]
    counts = [None if mask is None else mask.sum(dim=(1, 2, 3)) for mask in masks]  # (N,) each
    # The last mask may multiply the map in place: the whole-image value is taken before any mask.
    last_mask = max((i for i, mask in enumerate(masks) if mask is not None), default=-1)
    local = threading.local()
    r = SSIM_RADIUS

    def score(span: tuple[int, int]) -> torch.Tensor:
        start, stop = span
        s = _ssim_map_hnw(_planes(pred, span), _planes(target, span), _workspace(local))  # (H, k, 1, W)
        whole = s[r:-r, :, :, r:-r].mean(dim=(0, 3)).flatten() if any(m is None for m in masks) else None
        images = torch.arange(start, stop) // c  # plane p (image x channel) belongs to image p // c
        means = []
        for i, mask in enumerate(masks):
            if mask is None:
                means.append(whole)
                continue
            # A view when the chunk is one plane (images of 256 px and more), else a small copy.
            m = mask[start // c : start // c + 1] if stop - start == 1 else mask[images]
            m = m.permute(2, 0, 1, 3)  # (H, k, 1, W)
            weighted = s.mul_(m) if i == last_mask else s * m
            # 0 / 0 = NaN for an empty hole, as in psnr.
            means.append(weighted.sum(dim=(0, 3)).flatten() / counts[i][images])
        return torch.stack(means, dim=1)  # (k, regions)

    per_plane = _map_chunks(score, _chunks(pred.shape))
    if not per_plane:
        return [torch.empty(0, dtype=torch.float64) for _ in masks]
    means = torch.cat(per_plane).view(n, c, len(masks)).mean(dim=1)  # skimage: mean of the per-channel values
    return list(means.unbind(1))


def ssim_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The full SSIM map, float64 (N, 3, H, W): skimage's ``full=True`` map, per channel, uncropped."""
    check_images(pred, target)
    n, c, h, w = pred.shape
    local = threading.local()

    def full_map(span: tuple[int, int]) -> torch.Tensor:
        s = _ssim_map_hnw(_planes(pred, span), _planes(target, span), _workspace(local))
        return s.permute(1, 2, 0, 3).clone()  # out of the workspace, which the next chunk reuses

    maps = _map_chunks(full_map, _chunks(pred.shape))
    return torch.cat(maps).view(n, c, h, w) if maps else torch.empty(pred.shape, dtype=torch.float64)


def seam_band(masks: torch.Tensor, width: int = 8) -> torch.Tensor:
    """The ring of ``width`` pixels on both sides of the hole boundary, float32 (N, 1, H, W) in {0, 1}.

    It is the mask dilated by ``width`` minus the mask eroded by ``width`` (square neighbourhood,
    i.e. Chebyshev distance, via max-pooling). The image border is not a boundary: pixels outside
    the image count as neither hole nor known. An empty or full mask has an empty band.

    Args:
        masks: (N, 1, H, W) in {0, 1}, 1 = hole.
        width: pixels on each side, >= 1.
    """
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    if not isinstance(masks, torch.Tensor) or masks.ndim != 4 or masks.shape[1] != 1:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"masks: expected shape (N, 1, H, W), got {shape}")
    hole = check_mask(masks, (masks.shape[0], 3, masks.shape[2], masks.shape[3]), "masks")
    size = 2 * width + 1
    # max_pool2d pads with -inf, so pixels beyond the border never win the max: the border is
    # neither dilated into nor eroded from.
    dilated = F.max_pool2d(hole, size, stride=1, padding=width)
    eroded = -F.max_pool2d(-hole, size, stride=1, padding=width)
    return dilated - eroded


def seam_psnr(pred: torch.Tensor, target: torch.Tensor, masks: torch.Tensor, width: int = 8) -> torch.Tensor:
    """PSNR over :func:`seam_band` ``(masks, width)``: does the fill join its surroundings? (N,) float64."""
    return psnr(pred, target, seam_band(masks, width))


# ---- SSIM internals ----------------------------------------------------------------------------


def _planes(images: torch.Tensor, span: tuple[int, int]) -> torch.Tensor:
    """Planes ``span`` of images (N, C, H, W) seen as (N*C, 1, H, W), copying at most their images.

    Reshaping the whole batch would copy all of it when it is not contiguous, and
    :func:`inpaint.io.to_tensor` returns channels-last tensors.
    """
    start, stop = span
    c = images.shape[1]
    first, last = start // c, -(-stop // c)
    if last - first == 1:  # within one image (large images: a plane or two per chunk), a view
        return images[first, start - first * c : stop - first * c].unsqueeze(1)
    planes = images[first:last].reshape(-1, 1, *images.shape[2:])
    return planes[start - first * c : stop - first * c]


def _chunks(shape: torch.Size) -> list[tuple[int, int]]:
    """Spans of (H, W) planes (image x channel) scored together, about _CHUNK_PIXELS each."""
    n, c, h, w = shape
    if min(h, w) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * SSIM_RADIUS + 1}x{2 * SSIM_RADIUS + 1} px, got {w}x{h}")
    step = max(1, _CHUNK_PIXELS // (h * w))
    return [(start, min(n * c, start + step)) for start in range(0, n * c, step)]


def _map_chunks(fn: Callable[[tuple[int, int]], torch.Tensor], spans: list[tuple[int, int]]) -> list[torch.Tensor]:
    """``[fn(span) for span in spans]``, spread over torch.get_num_threads() Python threads.

    Each worker runs torch single-threaded. torch's own intra-op threading would synchronise all
    cores after every one of the ~40 small operations per chunk, and on a shared machine (a busy
    core) each of those barriers waits a scheduler time slice: we measured 10x slowdowns. Whole
    chunks per thread degrade gracefully instead. torch's thread setting is process-wide, so it is
    1 for the duration of the call and restored afterwards.
    """
    workers = min(torch.get_num_threads(), len(spans))
    if workers <= 1:
        return [fn(span) for span in spans]
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inpaint-ssim") as pool:
            return list(pool.map(fn, spans))
    finally:
        torch.set_num_threads(previous)


@functools.lru_cache(maxsize=16)
def _filter_blocks(n: int) -> tuple[tuple[int, int, int, int, torch.Tensor], ...]:
    """Banded pieces of the (n, n) matrix G with (G @ x) = scipy's gaussian_filter1d(x, 1.5, truncate=3.5).

    Returns (q0, q1, lo, hi, G[q0:q1, lo:hi]) for each block of output rows; mode 'reflect'
    (= symmetric padding, "d c b a | a b c d | d c b a") is folded into the edge rows.
    """
    # scipy.ndimage._gaussian_kernel1d, written the same way so the weights match to the last bit.
    x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1)
    phi = np.exp(-0.5 / (SSIM_SIGMA * SSIM_SIGMA) * x**2)
    phi /= phi.sum()
    idx = np.arange(n)[:, None] + x[None, :]
    idx = np.where(idx < 0, -idx - 1, idx)
    idx = np.where(idx >= n, 2 * n - idx - 1, idx)
    dense = np.zeros((n, n))
    np.add.at(dense, (np.repeat(np.arange(n), x.size), idx.ravel()), np.tile(phi, n))
    blocks = []
    for q0 in range(0, n, _BLOCK):
        q1 = min(n, q0 + _BLOCK)
        cols = np.flatnonzero(dense[q0:q1].any(axis=0))
        lo, hi = int(cols[0]), int(cols[-1]) + 1
        blocks.append((q0, q1, lo, hi, torch.from_numpy(dense[q0:q1, lo:hi].copy())))
    return tuple(blocks)


def _filter_plan(x: torch.Tensor, along_w: torch.Tensor, out: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """The matrix products that Gaussian-filter a float64 (H, R, W) stack ``x`` into ``out``.

    Along W, then along H; ``along_w`` is scratch space of the same shape, R counts independent
    maps. Each entry is ``(a, b, c)`` for ``torch.mm(a, b, out=c)``: views into the buffers, made
    once per workspace, because slicing afresh for every one of the 32 products per chunk was 7 %
    of the SSIM time.
    """
    h, r, w = x.shape
    x2, y2 = x.view(h * r, w), along_w.view(h * r, w)
    plan = [(x2[:, lo:hi], g.T, y2[:, q0:q1]) for q0, q1, lo, hi, g in _filter_blocks(w)]
    # With H leading, filtering along H is one plain (rows x H) @ (H x R*W) product per block.
    y3, z3 = along_w.view(h, r * w), out.view(h, r * w)
    plan += [(g, y3[lo:hi], z3[q0:q1]) for q0, q1, lo, hi, g in _filter_blocks(h)]
    return plan


class _Workspace:
    """One thread's reusable buffers for :func:`_ssim_map_hnw`, and the filter's plan over them.

    Allocating the ~2 MiB maps afresh for every chunk made the kernel map new pages each time:
    ~1,000 page faults per 256 px image, a quarter of the CPU time. Reusing them removes that.
    Two float64 buffers: the filter goes out to ``scratch`` along W and back along H, and the SSIM
    formula then uses ``scratch`` for its two temporaries.
    """

    def __init__(self) -> None:
        self._shape: tuple[int, ...] = ()
        self._buffers: tuple[torch.Tensor, ...] = ()
        self.filter_plan: list[tuple[torch.Tensor, ...]] = []

    def buffers(self, n: int, c: int, h: int, w: int) -> tuple[torch.Tensor, ...]:
        """(maps, scratch) float64 (H, 4, n, C, W) and two float32 (n, C, H, W).

        ``filter_plan`` filters ``maps`` (viewed as (H, 4nC, W)) in place, through ``scratch``.
        """
        if self._shape != (n, c, h, w):  # only the last, smaller chunk changes it
            self._shape = (n, c, h, w)
            maps, scratch = (torch.empty((h, 4, n, c, w), dtype=torch.float64) for _ in range(2))
            self._buffers = (maps, scratch) + tuple(torch.empty((n, c, h, w), dtype=torch.float32) for _ in range(2))
            r = 4 * n * c
            self.filter_plan = _filter_plan(maps.view(h, r, w), scratch.view(h, r, w), maps.view(h, r, w))
        return self._buffers


def _workspace(local: threading.local) -> _Workspace:
    if not hasattr(local, "workspace"):
        local.workspace = _Workspace()
    return local.workspace


def _ssim_map_hnw(pred: torch.Tensor, target: torch.Tensor, workspace: _Workspace) -> torch.Tensor:
    """SSIM map of float (n, C, H, W) images in [0, 1], scored on 0..255, in (H, n, C, W) layout.

    The result is a view into ``workspace``: reduce or copy it before the next call.
    """
    n, c, h, w = pred.shape
    maps, scratch, pred8, target8 = workspace.buffers(n, c, h, w)
    # Four maps, not five: only var_x + var_y is needed, so x^2 + y^2 is filtered as one map; and
    # 2xy rather than xy (scaling by 2 is exact), which saves an operation afterwards.
    x, y, sq, xy2 = maps.unbind(1)
    # Quantise straight into the float64 (H, n, C, W) slots: the permuted copy is the conversion
    # (8-bit images need no rounding, so they are copied in directly).
    x.copy_((pred if pred.dtype == torch.uint8 else quantise_f32(pred, out=pred8)).permute(2, 0, 1, 3))
    y.copy_((target if target.dtype == torch.uint8 else quantise_f32(target, out=target8)).permute(2, 0, 1, 3))
    c1 = (SSIM_K1 * DATA_RANGE) ** 2
    c2 = (SSIM_K2 * DATA_RANGE) ** 2
    # C1 + C2 rides along through the filter (its weights sum to 1, reflect padding keeps a
    # constant constant), which spares two passes over the maps below: each pass over these
    # maps costs about a tenth of the filter. It moves results by ~1e-16 relative.
    offset = torch.tensor(c1 + c2, dtype=torch.float64)
    torch.addcmul(offset, x, x, out=sq).addcmul_(y, y)  # x^2 + y^2 + C1 + C2
    torch.addcmul(offset, x, y, value=2, out=xy2)  # 2xy + C1 + C2
    for a, b, product in workspace.filter_plan:  # maps -> scratch (along W) -> maps (along H)
        torch.mm(a, b, out=product)
    mu_x, mu_y, mean_sq, mean_xy2 = maps.unbind(1)
    # In place, into buffers already mapped (scratch is free once filtered): every full-size
    # temporary would cost about as much as a filter pass. Rounding differs from skimage's order
    # of operations only at ~1e-16.
    free_a, free_b = scratch.unbind(1)[:2]
    c1_tensor = torch.tensor(c1, dtype=torch.float64)
    a1 = torch.addcmul(c1_tensor, mu_x, mu_y, value=2, out=free_a)  # 2 mu_x mu_y + C1
    a2 = mean_xy2.sub_(a1)  # 2 E[xy] + C1 + C2 - (2 mu_x mu_y + C1) = 2 cov_xy + C2
    b1 = torch.addcmul(c1_tensor, mu_x, mu_x, out=free_b).addcmul_(mu_y, mu_y)  # mu_x^2 + mu_y^2 + C1
    b2 = mean_sq.sub_(b1)  # E[x^2 + y^2] + C1 + C2 - b1 = var_x + var_y + C2
    return a1.mul_(a2).div_(b1.mul_(b2))
