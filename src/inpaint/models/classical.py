"""Classical, weight-free completion: baselines that run anywhere in milliseconds.

- ``biharmonic``: scikit-image's biharmonic inpainting (Damelin & Hoang 2018), a smooth
  interpolation of the known pixels.
- ``telea``: OpenCV's fast marching method (Telea, 2004).
- ``navier-stokes``: OpenCV's fluid-dynamics method (Bertalmio, Bertozzi & Sapiro, 2001).

They are deterministic: the per-image generators are accepted and unused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from inpaint.models.base import Inpainter, MethodOptions
from inpaint.progress import Progress

if TYPE_CHECKING:  # pragma: no cover
    import torch


class _PerImage(Inpainter):
    """A method that fills one (H, W, 3) float64 image at a time."""

    def __init__(self, options: MethodOptions | None = None) -> None:
        self.options = options or MethodOptions()

    def fill_one(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """image: (H, W, 3) float64 in [0, 1]; mask: (H, W) bool, True = fill. Returns (H, W, 3)."""
        raise NotImplementedError

    def fill(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        generators: list[torch.Generator],
        progress: Progress,
    ) -> torch.Tensor:
        import torch

        out = []
        for image, mask in zip(images, masks):
            hwc = image.permute(1, 2, 0).double().numpy()
            filled = self.fill_one(hwc, mask[0].numpy() > 0.5)
            out.append(torch.from_numpy(np.ascontiguousarray(filled)).permute(2, 0, 1))
        return torch.stack(out).float().clamp(0, 1)


class Biharmonic(_PerImage):
    """scikit-image's ``inpaint_biharmonic``, each RGB channel solved independently."""

    name: ClassVar[str] = "biharmonic"

    def fill_one(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from skimage.restoration import inpaint_biharmonic

        return inpaint_biharmonic(image, mask, channel_axis=-1)


class _OpenCV(_PerImage):
    """OpenCV's ``cv2.inpaint`` on the 8-bit image (the only depth it accepts)."""

    flag_name: ClassVar[str]
    #: Neighbourhood radius in pixels; 3 is OpenCV's documented example value.
    radius: ClassVar[int] = 3

    def fill_one(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import cv2

        image8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
        # OpenCV's Navier-Stokes reads some pixels inside the hole (tests/test_hole_independence.py
        # caught it): blank them, so a benchmark's ground truth cannot leak into the result.
        image8[mask.astype(bool)] = 0
        filled = cv2.inpaint(image8, mask.astype(np.uint8) * 255, self.radius, getattr(cv2, self.flag_name))
        return filled.astype(np.float64) / 255.0


class Telea(_OpenCV):
    """Telea's fast marching method."""

    name: ClassVar[str] = "telea"
    flag_name: ClassVar[str] = "INPAINT_TELEA"


class NavierStokes(_OpenCV):
    """Bertalmio et al.'s Navier-Stokes method."""

    name: ClassVar[str] = "navier-stokes"
    flag_name: ClassVar[str] = "INPAINT_NS"
