"""The protocol block of ``results.json``: everything needed to know how the numbers were measured.

docs/method.md lists what the study left unstated (mask type and hole ratio, paste-back, whole image vs
hole, resolution, LPIPS backbone and version, FID implementation and resize rule); each of those
is a field here, with the versions of the packages and the git commit of the code.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

from inpaint.bench.config import BenchConfig
from inpaint.bench.data import MaskSource
from inpaint.bench.scoring import IMAGE_FILTER, MASK_FILTER, PSNR_CAP_DB, MetricSuite

PROTOCOL_PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "pillow",
    "scikit-image",
    "scipy",
    "lpips",
    "pytorch-fid",
    "diffusers",
    "accelerate",
)


def git_commit(path: Path | None = None) -> dict[str, Any] | None:
    """The commit of the git checkout holding ``path`` (this package by default), and whether it
    has uncommitted changes; None outside a checkout or without git. Read-only."""
    folder = path or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def sampler_meanings(methods: list[str]) -> dict[str, str]:
    """What each ``--sampler`` name of ``methods`` runs (the same for every method that takes it),
    e.g. ``"dpmpp": "DPM-Solver++: DPMSolverMultistepScheduler(algorithm_type=dpmsolver++, solver_order=2)"``."""
    from inpaint.samplers import SAMPLERS

    meanings = {}
    for name, spec in SAMPLERS.items():
        if set(spec.methods) & set(methods):
            settings = ", ".join(f"{key}={value}" for key, value in spec.kwargs.items())
            runs = f"{spec.scheduler}({settings})" if spec.scheduler else "its own loop (inpaint.repaint)"
            meanings[name] = f"{spec.title}: {runs}"
    return meanings


def _weights_entry(path: Path | None) -> dict[str, Any] | None:
    from inpaint.bench.data import file_sha256

    if path is None:
        return None
    return {"file": path.name, "path": str(path), "sha256": file_sha256(path)}


def protocol_block(
    config: BenchConfig, source: MaskSource, suite: MetricSuite, *, device: str, processes: int
) -> dict[str, Any]:
    """A JSON-ready description of the measurement."""
    from inpaint import __version__
    from inpaint.doctor import package_versions
    from inpaint.metrics import pixel
    from inpaint.metrics.features import FID_MIN_IMAGES
    from inpaint.metrics.perceptual import LPIPS_VERSION

    versions = package_versions(PROTOCOL_PACKAGES)
    return {
        "inpaint": __version__,
        "git": git_commit(),
        "scoring": config.scoring,
        "composite": "known pixels copied from the original at native resolution, then resized"
        if not config.raw
        else "none: raw method outputs are scored",
        "value_range": "images read as 8-bit RGB; methods get float [0, 1]; every metric scores "
        "8-bit-quantised images; LPIPS inputs scaled to [-1, 1]",
        "data_range": pixel.DATA_RANGE,
        "resolution": {
            "eval_size": [config.eval_size, config.eval_size],
            "image_resize": IMAGE_FILTER,
            "mask_resize": MASK_FILTER,
            "note": "methods run at their native size on the original image; outputs are saved "
            "at the image's size and resized for scoring; non-square images are "
            "resized, not cropped",
        },
        "psnr": "per image on 8-bit images, data range 255, capped at "
        f"{PSNR_CAP_DB:g} dB (an exact fill is +inf), then the mean over images; hole: MSE over "
        "hole pixels (all channels)",
        "ssim": {
            "implementation": "inpaint.metrics.ssim, equal to skimage structural_similarity",
            "window": "gaussian",
            "sigma": pixel.SSIM_SIGMA,
            "truncate": pixel.SSIM_TRUNCATE,
            "size": 2 * pixel.SSIM_RADIUS + 1,
            "k1": pixel.SSIM_K1,
            "k2": pixel.SSIM_K2,
            "use_sample_covariance": False,
            "channels": "RGB, averaged",
            "whole": "mean of the map at least 5 px from the border (skimage)",
            "hole": "mean of the full map over hole pixels",
        },
        "seam": {
            "width": config.seam_width,
            "band": "pixels within width (Chebyshev) of the hole boundary, both sides, at the evaluation size",
        },
        "lpips": None
        if suite.lpips is None
        else {
            "net": config.lpips_net,
            "linear_layers_version": LPIPS_VERSION,
            "package": versions.get("lpips"),
            "backbone": _weights_entry(suite.lpips_file),
            "hole": "spatial map upsampled to the image, averaged over hole pixels",
        },
        "fid": None
        if suite.inception is None
        else {
            "implementation": f"pytorch-fid {versions.get('pytorch-fid')} InceptionV3 pool3 (2048-d), inputs "
            "8-bit, bilinear resize to 299 inside the model",
            "weights": _weights_entry(suite.fid_file),
            "reference_set": "the original test images at the evaluation size",
            "min_images_for_unbiased": FID_MIN_IMAGES,
        },
        "kid": None
        if suite.inception is None
        else {
            "kernel": "(x.y / d + 1)^3",
            "estimator": "unbiased MMD^2",
            "subsets": config.kid_subsets,
            "subset_size": f"min({config.kid_subset_size}, N)"
            if config.kid_subset_size is not None
            else "1000, or N // 2 when N < 2000 (subsets that differ, so KID has a spread)",
            "seed": config.seed,
        },
        "implicit_choices": list(config.implicit_choices),
        "bootstrap": {
            "resamples": config.n_boot,
            "level": 0.95,
            "seed": config.seed,
            "method": "percentile, over images",
        },
        "masks": {**source.to_dict(), "inverted_on_read": config.invert_mask, "resized_to_image": config.resize_mask},
        "seeds": {"seed": config.seed, "per_image": "derive_seed(seed, image stem), the same for every method"},
        "samplers": sampler_meanings(config.models),
        "device": device,
        "processes": processes,
        "generation_batch_size": config.batch_size,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }
