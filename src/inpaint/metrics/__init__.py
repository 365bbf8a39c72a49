"""Image-completion metrics: tensors in, numbers out.

Images are float tensors (N, 3, H, W) in [0, 1]; masks (N, 1, H, W) in {0, 1}, 1 = hole. Every
metric scores the images rounded to 8 bits, as they would be saved. Per-image metrics return
float64 tensors of shape (N,); pass ``mask`` to score the hole only, or use the ``seam_*``
variants for a band around the hole boundary.

========================  ==================================================================
:func:`psnr`              dB, data range 255; ``inf`` for identical images, NaN for an empty hole
:func:`ssim`              Wang et al. 2004 settings, equal to skimage's (see :mod:`.pixel`)
:func:`psnr_regions`      PSNR over several masks (image, hole, seam) in one pass
:func:`ssim_regions`      SSIM over several masks from one SSIM map per image
:func:`lpips`             lpips v0.1, AlexNet (or VGG); backbone file found locally
:func:`fid`, :func:`kid`  pytorch-fid InceptionV3 features, via :class:`FeatureAccumulator`
:func:`bootstrap_ci`      percentile bootstrap of the mean over images
========================  ==================================================================

LPIPS and FID need backbone weights that cannot be downloaded offline; see :mod:`.weights`.
lpips, pytorch-fid and torchvision are imported only when those metrics are built.
"""

from __future__ import annotations

from inpaint.metrics.features import (
    FeatureAccumulator,
    InceptionFeatures,
    KIDValue,
    build_inception,
    fid,
    kid,
    polynomial_mmd2,
)
from inpaint.metrics.perceptual import LPIPSMetric, build_lpips, lpips, seam_lpips
from inpaint.metrics.pixel import psnr, psnr_regions, seam_band, seam_psnr, ssim, ssim_map, ssim_regions
from inpaint.metrics.stats import MetricValue, bootstrap_ci, summarise
from inpaint.metrics.weights import (
    FID_INCEPTION,
    LPIPS_ALEX,
    LPIPS_VGG,
    MetricWeightsMissing,
    WeightFile,
    resolve_weights,
)

__all__ = [
    "FID_INCEPTION",
    "LPIPS_ALEX",
    "LPIPS_VGG",
    "FeatureAccumulator",
    "InceptionFeatures",
    "KIDValue",
    "LPIPSMetric",
    "MetricValue",
    "MetricWeightsMissing",
    "WeightFile",
    "bootstrap_ci",
    "build_inception",
    "build_lpips",
    "fid",
    "kid",
    "lpips",
    "polynomial_mmd2",
    "psnr",
    "psnr_regions",
    "resolve_weights",
    "seam_band",
    "seam_lpips",
    "seam_psnr",
    "ssim",
    "ssim_map",
    "ssim_regions",
    "summarise",
]
