"""Set-level summaries of per-image scores: the mean with a percentile bootstrap interval."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Resampled means are drawn this many bootstrap replicates at a time, so memory stays bounded
# (n_boot * n indices at once would be 400 MB for 50k images); the result does not depend on it.
_BOOT_BATCH = 100


@dataclass(frozen=True)
class MetricValue:
    """One reported number.

    Attributes:
        name: metric name, e.g. ``"psnr_hole"``.
        value: the mean over images (NaN-ignoring), or a set-level value such as FID.
        ci_low, ci_high: bootstrap confidence interval of the mean; NaN where none applies (FID).
        n: number of images that contributed (NaNs excluded).
        note: caveats to print beside the number (``""`` when there are none).
    """

    name: str
    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    n: int = 0
    note: str = ""


def bootstrap_ci(
    values: np.ndarray | torch.Tensor | list[float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean over images (Efron & Tibshirani 1993).

    Images are resampled with replacement ``n_boot`` times with ``numpy.random.default_rng(seed)``,
    so the interval is deterministic. NaNs (an empty hole, say) are dropped first; ``inf`` (PSNR of
    identical images) is kept and makes the interval infinite or NaN, as it makes the mean.

    Args:
        values: per-image scores, shape (N,).
        n_boot: number of bootstrap resamples.
        seed: seed of the resampling.
        level: coverage, in (0, 1).

    Returns:
        (low, high); (nan, nan) when every value is NaN; (v, v) for a single value.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    data = _as_array(values)
    data = data[~np.isnan(data)]
    if data.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, _BOOT_BATCH):
        stop = min(n_boot, start + _BOOT_BATCH)
        means[start:stop] = data[rng.integers(0, data.size, size=(stop - start, data.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def summarise(
    name: str,
    values: np.ndarray | torch.Tensor | list[float],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    note: str = "",
) -> MetricValue:
    """Mean of per-image ``values`` (NaNs ignored) with its bootstrap interval, as a :class:`MetricValue`."""
    data = _as_array(values)
    finite = data[~np.isnan(data)]
    mean = float(finite.mean()) if finite.size else math.nan
    low, high = bootstrap_ci(finite, n_boot=n_boot, seed=seed, level=level)
    return MetricValue(name=name, value=mean, ci_low=low, ci_high=high, n=int(finite.size), note=note)


def _as_array(values: np.ndarray | torch.Tensor | list[float]) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1:
        raise ValueError(f"expected per-image values of shape (N,), got {data.shape}")
    return data
