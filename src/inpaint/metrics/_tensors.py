"""Input checks and 8-bit quantisation shared by every metric.

All metrics score images *as they would be saved*: a float image in [0, 1] is rounded to 8 bits
exactly like :func:`inpaint.io.to_uint8` does (float32 ``clamp(0, 1) * 255`` then round half to
even), so a score computed on tensors equals the score of the PNG files written from them.
"""

from __future__ import annotations

import torch

#: Values this far outside [0, 1] still round into 0..255; anything further is a range bug
#: (a [-1, 1] model output passed by mistake, say) and is refused instead of clamped.
_RANGE_TOLERANCE = 0.5 / 255


def check_images(pred: torch.Tensor, target: torch.Tensor) -> None:
    """Raise ``ValueError`` unless both are float (N, 3, H, W) tensors of one shape in [0, 1]."""
    check_image_batch(pred, "pred")
    check_image_batch(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def check_image_batch(images: torch.Tensor, name: str = "images") -> None:
    """Raise ``ValueError`` unless ``images`` is (N, 3, H, W): float in [0, 1], or uint8 (0..255).

    uint8 images (pixels as saved) skip the range check and the rounding: the fast path for
    scoring files.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (N, 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return
    if not images.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor in [0, 1], got {images.dtype}")
    if images.numel():
        low, high = (float(v) for v in torch.aminmax(_memory_order(images)))
        if not (low >= -_RANGE_TOLERANCE and high <= 1 + _RANGE_TOLERANCE):
            raise ValueError(
                f"{name}: values must lie in [0, 1], found {low:.4g}..{high:.4g} "
                "(convert [-1, 1] model outputs with inpaint.io.from_model_range)"
            )


def _memory_order(tensor: torch.Tensor) -> torch.Tensor:
    """A view with dims in memory order: contiguous for any dense layout (channels-last included).

    Full reductions over a channels-last tensor copy all of it first (300 MB for 100 images of
    256 px, page faults included); over this view they stream through memory instead.
    """
    order = sorted(range(tensor.ndim), key=lambda d: -tensor.stride(d))
    view = tensor.permute(order)
    return view if view.is_contiguous() else tensor


def check_mask(mask: torch.Tensor, shape: torch.Size | tuple[int, ...], name: str = "mask") -> torch.Tensor:
    """Validate a (N, 1, H, W) mask in {0, 1} matching image ``shape``; return it as float32 on CPU.

    float32 holds 0 and 1 exactly at half the memory of float64; sum it with ``dtype=torch.float64``.
    """
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(mask).__name__}")
    expected = (shape[0], 1, shape[2], shape[3])
    if tuple(mask.shape) != expected:
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(mask.shape)}")
    values = mask.detach().to("cpu", torch.float32)
    # v * (v - 1) is 0 exactly for v in {0, 1} and nonzero for anything else, NaN included: one
    # pass instead of two comparisons and an "or" (3x faster on a batch of 50 masks of 256 px).
    if mask.dtype != torch.bool and torch.count_nonzero((values - 1).mul_(values)):
        raise ValueError(f"{name}: values must be 0 (keep) or 1 (hole); binarise the mask first")
    return values


def quantise_f32(images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Float (N, 3, H, W) in [0, 1] -> float32 CPU tensor of integers 0..255 (new, or ``out``).

    The arithmetic is float32 on purpose: it is what :func:`inpaint.io.to_uint8` does when saving,
    and rounding ``x * 255`` in float64 instead can land on the other side of a .5 boundary.
    """
    if images.dtype == torch.uint8:  # already 8-bit: no rounding to do
        return images.detach().to("cpu").to(torch.float32) if out is None else out.copy_(images)
    # clamp writes a new tensor (or `out`), so the in-place steps never touch the caller's images.
    clamped = torch.clamp(images.detach().to("cpu", torch.float32), 0, 1, out=out)
    return clamped.mul_(255.0).round_()


def quantise_unit(images: torch.Tensor) -> torch.Tensor:
    """Float (N, 3, H, W) in [0, 1] -> float32 in [0, 1] on the same device, on the 8-bit grid.

    This is what ``torchvision.transforms.ToTensor`` gives for the saved PNG, i.e. what LPIPS and
    pytorch-fid see when they read files.
    """
    if images.dtype == torch.uint8:
        return images.detach().to(torch.float32).div(255.0)
    return images.detach().to(torch.float32).clamp(0, 1).mul(255.0).round().div(255.0)
