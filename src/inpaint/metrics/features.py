"""FID and KID on pytorch-fid's InceptionV3 features (2048-d pool3).

- FID: Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium", NeurIPS 2017; computed by ``pytorch_fid.fid_score.calculate_frechet_distance``.
- KID: Bińkowski et al., "Demystifying MMD GANs", ICLR 2018; unbiased MMD^2 with the kernel
  k(x, y) = (x.y / d + 1)^3, averaged over random subsets (torchmetrics' sampling scheme).

The network is pytorch-fid's own ``InceptionV3([3])``: inputs in [0, 1], bilinear resize to 299x299
and scaling to [-1, 1] inside the model. Only its weights file is found locally instead of
downloaded (:mod:`inpaint.metrics.weights`). Images are rounded to 8 bits first, so features equal
those pytorch-fid computes from the saved PNG files.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union
from unittest import mock

import numpy as np
import torch

from inpaint.errors import InpaintError, InputError
from inpaint.metrics._tensors import check_image_batch, quantise_unit
from inpaint.metrics.stats import MetricValue
from inpaint.metrics.weights import FID_INCEPTION, load_state_dict, resolve_weights

if TYPE_CHECKING:  # pragma: no cover
    import os

    from pytorch_fid.inception import InceptionV3
    from torchvision.models import Inception3

FEATURE_DIMS = 2048
#: Below this many images the 2048x2048 feature covariance is singular and FID is biased.
FID_MIN_IMAGES = 2048

_PATCH_LOCK = threading.Lock()

Features = Union["FeatureAccumulator", np.ndarray, torch.Tensor]


def inception_backbone() -> Inception3:
    """pytorch-fid's FID Inception architecture with random weights (``fid_inception_v3`` minus the download).

    torchvision's Inception3 with 1008 classes and no auxiliary head, its Mixed blocks replaced by
    pytorch-fid's FID variants (TensorFlow's pooling behaviour). Load a state dict into it.
    """
    import torchvision
    from pytorch_fid import inception as pf

    # init_weights=False as pytorch-fid does: the weights are overwritten anyway and scipy's
    # truncated-normal init takes seconds.
    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net


def build_inception(weights: str | os.PathLike[str] | None = None) -> InceptionV3:
    """pytorch-fid's ``InceptionV3([3])`` (2048-d pool3, resize to 299, normalise), eval mode, CPU.

    Raises:
        MetricWeightsMissing: ``pt_inception-2015-12-05-6726825d.pth`` was not found.
        InputError: the file does not fit the architecture.
    """
    path = resolve_weights(FID_INCEPTION, weights)
    state = load_state_dict(path, FID_INCEPTION)
    backbone = inception_backbone()
    try:
        backbone.load_state_dict(state)
    except RuntimeError as e:
        first_line = str(e).strip().splitlines()[0]
        raise InputError(f"{path}: does not fit pytorch-fid's InceptionV3 ({first_line})") from None

    from pytorch_fid import inception as pf

    # InceptionV3.__init__ gets its backbone from fid_inception_v3(), which downloads. Handing it
    # ours keeps everything else (block split, resize, normalisation) pytorch-fid's own code.
    with _PATCH_LOCK, mock.patch.object(pf, "fid_inception_v3", lambda: backbone):
        model = pf.InceptionV3(
            [pf.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIMS]], resize_input=True, normalize_input=True
        )
    return model.eval()


class InceptionFeatures:
    """Images -> 2048-d Inception pool3 features, float64 on CPU."""

    dims = FEATURE_DIMS

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = build_inception(weights).to(self.device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Float (N, 3, H, W) in [0, 1], any size -> float64 (N, 2048)."""
        check_image_batch(images)
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            batch = quantise_unit(images[start : start + self.batch_size]).to(self.device)
            with torch.inference_mode():
                pooled = self.model(batch)[0]  # (n, 2048, 1, 1)
            out.append(pooled.flatten(1).to("cpu", torch.float64))
        return torch.cat(out) if out else torch.empty((0, self.dims), dtype=torch.float64)


class FeatureAccumulator:
    """Streams batches of images through an extractor and keeps only their features.

    Memory grows by 2048 float64 (16 KiB) per image, never by the images themselves.

    >>> acc = FeatureAccumulator(extractor)            # doctest: +SKIP
    >>> for pred, target in batches: acc.update(pred)  # doctest: +SKIP
    """

    def __init__(self, extractor: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.extractor = extractor
        self._chunks: list[torch.Tensor] = []

    def update(self, images: torch.Tensor) -> None:
        """Extract and keep the features of float (N, 3, H, W) images in [0, 1]."""
        if self.extractor is None:
            raise ValueError("this accumulator has no extractor; use add_features")
        self.add_features(self.extractor(images))

    def add_features(self, features: torch.Tensor | np.ndarray) -> None:
        """Keep precomputed features, (N, D)."""
        chunk = torch.as_tensor(features).detach().to("cpu", torch.float64)
        if chunk.ndim != 2 or (self._chunks and chunk.shape[1] != self._chunks[0].shape[1]):
            raise ValueError(f"features must be (N, D) with one D throughout, got {tuple(chunk.shape)}")
        self._chunks.append(chunk)

    def __len__(self) -> int:
        return sum(chunk.shape[0] for chunk in self._chunks)

    @property
    def features(self) -> np.ndarray:
        """All features so far, float64 (N, D)."""
        if not self._chunks:
            return np.empty((0, FEATURE_DIMS))
        return torch.cat(self._chunks).numpy()

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (D,) and covariance (D, D) of the features, as pytorch-fid computes them (np.cov, N-1)."""
        features = self.features
        if features.shape[0] < 2:
            raise ValueError(f"need at least 2 images for a covariance, have {features.shape[0]}")
        return features.mean(axis=0), np.cov(features, rowvar=False)


def fid(real: Features, fake: Features) -> MetricValue:
    """Fréchet Inception distance between two feature sets, as a :class:`MetricValue`.

    ``note`` carries the small-sample warning below 2048 images and any numerical fallback
    pytorch-fid took (it prints; we capture). There is no per-image bootstrap: ci is NaN.
    """
    from pytorch_fid.fid_score import calculate_frechet_distance

    real_acc, fake_acc = _accumulator(real), _accumulator(fake)
    mu1, sigma1 = real_acc.statistics()
    mu2, sigma2 = fake_acc.statistics()
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature sizes differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    n = min(len(real_acc), len(fake_acc))
    notes = []
    if n < FID_MIN_IMAGES:
        notes.append(f"FID on {n} < {FID_MIN_IMAGES} images is biased and not comparable with published numbers")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))
        except ValueError as e:
            raise InpaintError(
                f"FID: the covariance square root is not real ({e}); {n} images are too few, use KID"
            ) from None
    if printed.getvalue().strip():
        notes.append(printed.getvalue().strip())
    for message in dict.fromkeys(str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)):
        notes.append(f"scipy: {message}")
    return MetricValue(name="fid", value=value, ci_low=math.nan, ci_high=math.nan, n=n, note="; ".join(notes))


@dataclass(frozen=True)
class KIDValue:
    """Kernel Inception distance: mean and (population) standard deviation over subsets.

    ``std`` is NaN when every subset is both whole sets (N at most the subset size): the subsets
    are then the same set in another order, and a spread of 0 would only look like certainty.
    """

    mean: float
    std: float
    subsets: int
    subset_size: int
    n_real: int
    n_fake: int


#: KID's customary subset size (Bińkowski et al.; torchmetrics, clean-fid).
KID_SUBSET_SIZE = 1000


def kid_subset_size(n: int) -> int:
    """The default KID subset size for sets of ``n`` images: 1000, or ``n // 2`` (at least 2) below 2000.

    Subsets as large as the sets would all be the same set (no spread to report); halves give
    subsets that differ, so the standard deviation over subsets says how much KID moves with the
    draw: at the study's 500 test images, 100 subsets of 250.
    """
    return max(2, min(KID_SUBSET_SIZE, n // 2))


def kid(
    real: Features, fake: Features, *, subsets: int = 100, subset_size: int | None = None, seed: int = 0
) -> KIDValue:
    """Kernel Inception distance, unbiased MMD^2 with a cubic polynomial kernel.

    Each of ``subsets`` rounds draws ``m = min(subset_size, n_real, n_fake)`` real and m fake
    features without replacement (``torch.randperm`` of a generator seeded with ``seed``, real then
    fake: torchmetrics' scheme, so ``torch.manual_seed(seed)`` + torchmetrics gives the same numbers).
    ``subset_size=None`` takes :func:`kid_subset_size` of the smaller set.
    When m covers both sets whole, one subset is all there is: it is computed once, std is NaN.
    """
    x_all = torch.from_numpy(_accumulator(real).features)
    y_all = torch.from_numpy(_accumulator(fake).features)
    if subset_size is None:
        subset_size = kid_subset_size(min(x_all.shape[0], y_all.shape[0]))
    m = min(subset_size, x_all.shape[0], y_all.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 images per set, have {x_all.shape[0]} and {y_all.shape[0]}")
    if subsets < 1:
        raise ValueError(f"subsets must be positive, got {subsets}")
    if m == x_all.shape[0] == y_all.shape[0]:
        return KIDValue(
            mean=float(polynomial_mmd2(x_all, y_all)), std=math.nan, subsets=1, subset_size=m, n_real=m, n_fake=m
        )
    generator = torch.Generator().manual_seed(seed)
    scores = torch.empty(subsets, dtype=torch.float64)
    for i in range(subsets):
        x = x_all[torch.randperm(x_all.shape[0], generator=generator)[:m]]
        y = y_all[torch.randperm(y_all.shape[0], generator=generator)[:m]]
        scores[i] = polynomial_mmd2(x, y)
    return KIDValue(
        mean=float(scores.mean()),
        std=float(scores.std(unbiased=False)),
        subsets=subsets,
        subset_size=m,
        n_real=int(x_all.shape[0]),
        n_fake=int(y_all.shape[0]),
    )


def polynomial_mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 between (m, d) feature sets with k(a, b) = (a.b / d + 1)^3 (Bińkowski et al. eq. 4)."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    # The within-set sums leave out the diagonal (i = j): that is what makes the estimator unbiased.
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.sum() / (m * m)


def _accumulator(features: Features) -> FeatureAccumulator:
    if isinstance(features, FeatureAccumulator):
        return features
    accumulator = FeatureAccumulator()
    accumulator.add_features(features)
    return accumulator
