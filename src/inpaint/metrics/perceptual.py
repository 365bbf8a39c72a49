"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
CVPR 2018), through the ``lpips`` package, version 0.1 linear layers, AlexNet by default.

The linear layers ship inside the lpips package; the ImageNet backbone does not, and lpips would
download it. We build ``lpips.LPIPS(pretrained=True, pnet_rand=True)`` (random backbone, no
download) and load the backbone from a local file found by :mod:`inpaint.metrics.weights`, mapped
onto lpips' layer slices exactly as its own pretrained path does. The numbers are therefore lpips'
own; see :class:`LPIPSMetric` for the whole-image and hole variants.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import TYPE_CHECKING, Literal

import torch

from inpaint.errors import InputError
from inpaint.metrics._tensors import check_images, check_mask, quantise_unit
from inpaint.metrics.pixel import seam_band
from inpaint.metrics.weights import LPIPS_ALEX, LPIPS_VGG, WeightFile, load_state_dict, resolve_weights

if TYPE_CHECKING:  # pragma: no cover
    import lpips as lpips_package

LpipsNet = Literal["alex", "vgg"]
LPIPS_VERSION = "0.1"
_WEIGHT_FILES: dict[str, WeightFile] = {"alex": LPIPS_ALEX, "vgg": LPIPS_VGG}

PathLike = str | os.PathLike


def build_lpips(net: LpipsNet = "alex", weights: PathLike | None = None) -> lpips_package.LPIPS:
    """An ``lpips.LPIPS`` model (v0.1, eval mode, CPU) with its backbone loaded from a local file.

    Args:
        net: ``"alex"`` (the default of lpips and of most inpainting papers) or ``"vgg"``.
        weights: torchvision's ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``; found by
            :func:`~inpaint.metrics.weights.resolve_weights` when None.

    Raises:
        MetricWeightsMissing: no weights file was found.
        InputError: the file is not torchvision's AlexNet/VGG16 state dict.
    """
    if net not in _WEIGHT_FILES:
        raise ValueError(f"net must be one of {sorted(_WEIGHT_FILES)}, got {net!r}")
    weight_file = _WEIGHT_FILES[net]
    path = resolve_weights(weight_file, weights)
    state = load_state_dict(path, weight_file)

    import lpips as lpips_package

    with warnings.catch_warnings():
        # lpips builds torchvision's backbone with the deprecated `pretrained=` argument.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\..*")
        model = lpips_package.LPIPS(pretrained=True, net=net, version=LPIPS_VERSION, pnet_rand=True, verbose=False)

    backbone = model.net
    expected = backbone.state_dict()
    mapped = {}
    for key, tensor in expected.items():
        # lpips cuts torchvision's `features` Sequential into slice1..slice5 and keeps the layer
        # indices as module names: "slice3.6.weight" is torchvision's "features.6.weight".
        _, index, param = key.split(".", 2)
        source = f"features.{index}.{param}"
        if source not in state:
            raise InputError(f"{path}: has no {source!r}, so it is not torchvision's {weight_file.filename}")
        if state[source].shape != tensor.shape:
            raise InputError(
                f"{path}: {source} has shape {tuple(state[source].shape)}, expected {tuple(tensor.shape)} "
                f"({weight_file.filename}; AlexNet and VGG16 files are not interchangeable)"
            )
        mapped[key] = state[source]
    backbone.load_state_dict(mapped)
    return model.eval()


class LPIPSMetric:
    """LPIPS distance per image; build once, call on many batches.

    Inputs are rounded to 8 bits (as saved) and scaled to [-1, 1], lpips' input range.

    - Whole image (``mask=None``): lpips' standard value, the spatial average of each layer's
      distance map (what papers report).
    - Hole (``mask`` given): lpips' ``spatial=True`` map, upsampled to the image size, averaged over
      hole pixels. With an all-ones mask this differs slightly from the whole-image value, because
      bilinear upsampling does not preserve the mean exactly.
    """

    def __init__(
        self,
        net: LpipsNet = "alex",
        weights: PathLike | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.net = net
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = build_lpips(net, weights).to(self.device)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """LPIPS of float (N, 3, H, W) in [0, 1]; optional hole mask (N, 1, H, W). Returns float64 (N,).

        Lower is more similar. An empty hole gives NaN.
        """
        check_images(pred, target)
        hole = None if mask is None else check_mask(mask, pred.shape)
        values = []
        for start in range(0, pred.shape[0], self.batch_size):
            stop = start + self.batch_size
            x0 = quantise_unit(pred[start:stop]).to(self.device).mul_(2).sub_(1)
            x1 = quantise_unit(target[start:stop]).to(self.device).mul_(2).sub_(1)
            # lpips reads `spatial` at call time; we own this model, so switching it is safe.
            self.model.spatial = hole is not None
            with torch.inference_mode():
                distance = self.model(x0, x1).to("cpu", torch.float64)  # (n, 1, 1, 1) or (n, 1, H, W)
            if hole is None:
                values.append(distance.flatten())
            else:
                m = hole[start:stop]
                values.append((distance * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3), dtype=torch.float64))
        return torch.cat(values) if values else torch.empty(0, dtype=torch.float64)


def lpips(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    net: LpipsNet = "alex",
    weights: PathLike | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """LPIPS per image, float64 (N,), over the whole image or the hole; see :class:`LPIPSMetric`.

    The model is built on first use and cached per (net, weights file, device).
    """
    if net not in _WEIGHT_FILES:
        raise ValueError(f"net must be one of {sorted(_WEIGHT_FILES)}, got {net!r}")
    # Resolve before the cache lookup, so a changed environment variable picks up its new file.
    path = resolve_weights(_WEIGHT_FILES[net], weights)
    return _cached_metric(net, str(path), str(torch.device(device)))(pred, target, mask)


def seam_lpips(
    pred: torch.Tensor,
    target: torch.Tensor,
    masks: torch.Tensor,
    width: int = 8,
    *,
    net: LpipsNet = "alex",
    weights: PathLike | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """LPIPS averaged over :func:`~inpaint.metrics.pixel.seam_band` ``(masks, width)``, float64 (N,)."""
    return lpips(pred, target, seam_band(masks, width), net=net, weights=weights, device=device)


@functools.lru_cache(maxsize=4)
def _cached_metric(net: LpipsNet, weights: str, device: str) -> LPIPSMetric:
    return LPIPSMetric(net, weights, device)
