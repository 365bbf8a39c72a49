"""Scoring saved outputs against the originals at one evaluation resolution, streaming.

For every pair, at the image's native size, the output is composited (known pixels copied from
the original; skipped with ``raw``), then original, output and mask are resized to the square
evaluation size: images with Pillow's bicubic filter (antialiased when shrinking), masks with
nearest neighbour. Per image and method we score PSNR and SSIM over the whole image and the hole,
PSNR over the seam band, and LPIPS whole / hole / seam when its weights are present; Inception
features of originals and outputs are accumulated for FID and KID. Images are read a batch at a
time and dropped; only numbers and 2048-d features stay in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inpaint import io
from inpaint.bench.config import BenchConfig
from inpaint.bench.data import BenchPair
from inpaint.bench.runner import output_dir, read_pair
from inpaint.errors import InpaintError, InputError, Stopped
from inpaint.progress import NullProgress, Progress

#: PSNR of an exact fill is +inf, and one such image would make a method's mean infinite (and its
#: interval meaningless); the bench caps every PSNR here. Below it every finite value stays as it
#: is: at 256 px the smallest error, one 8-bit level in one channel of one pixel, scores 101 dB.
PSNR_CAP_DB = 100.0
#: Per-image metrics, in report order.
PER_IMAGE_METRICS = ("psnr", "ssim", "lpips", "psnr_hole", "ssim_hole", "lpips_hole", "psnr_seam", "lpips_seam")
LPIPS_METRICS = ("lpips", "lpips_hole", "lpips_seam")
#: The Pillow filters of the documented resize rule.
IMAGE_FILTER = "PIL bicubic (antialiased when shrinking)"
MASK_FILTER = "PIL nearest"
REAL = "real"


@dataclass
class MetricSuite:
    """The learned metrics this run can compute; ``unavailable`` maps a metric to the reason."""

    lpips: object | None = None
    inception: object | None = None
    lpips_file: Path | None = None
    fid_file: Path | None = None
    unavailable: dict[str, str] = field(default_factory=dict)


def build_suite(config: BenchConfig, device: str) -> MetricSuite:
    """Load LPIPS and Inception if enabled and their weights are found.

    Missing weights make the metric unavailable with :class:`MetricWeightsMissing`'s one-line
    reason, or, with ``config.strict``, raise it (exit 2) before any method runs.
    """
    from inpaint.metrics import FID_INCEPTION, LPIPS_ALEX, LPIPS_VGG, MetricWeightsMissing, resolve_weights

    suite = MetricSuite()
    if not config.lpips:
        suite.unavailable.update(dict.fromkeys(LPIPS_METRICS, "disabled (--no-lpips)"))
    else:
        try:
            from inpaint.metrics import LPIPSMetric

            suite.lpips_file = resolve_weights(
                LPIPS_ALEX if config.lpips_net == "alex" else LPIPS_VGG, config.lpips_weights
            )
            suite.lpips = LPIPSMetric(
                config.lpips_net, suite.lpips_file, device=device, batch_size=config.score_batch_size
            )
        except MetricWeightsMissing as e:
            if config.strict:
                raise
            suite.unavailable.update(dict.fromkeys(LPIPS_METRICS, str(e)))
    if not config.fid:
        suite.unavailable.update({"fid": "disabled (--no-fid)", "kid": "disabled (--no-fid)"})
    else:
        try:
            from inpaint.metrics import InceptionFeatures

            suite.fid_file = resolve_weights(FID_INCEPTION, config.fid_weights)
            suite.inception = InceptionFeatures(suite.fid_file, device=device, batch_size=config.score_batch_size)
        except MetricWeightsMissing as e:
            if config.strict:
                raise
            suite.unavailable.update({"fid": str(e), "kid": str(e)})
    return suite


@dataclass(frozen=True)
class Record:
    """The scores of one image under one method; NaN where a metric is unavailable or undefined."""

    name: str
    model: str
    preset: str
    hole_ratio: float
    area_bin: int
    values: dict[str, float]


@dataclass
class ScoreShard:
    """What one process scored: records, and per set (``real`` or a method) names and features."""

    records: list[Record] = field(default_factory=list)
    feature_names: dict[str, list[str]] = field(default_factory=dict)
    features: dict[str, list[np.ndarray]] = field(default_factory=dict)
    empty_masks: list[str] = field(default_factory=list)
    #: Images that could not be read (corrupt file, mask of the wrong size): name -> the error.
    failed: dict[str, str] = field(default_factory=dict)

    def add_features(self, key: str, names: Sequence[str], features) -> None:
        self.feature_names.setdefault(key, []).extend(names)
        self.features.setdefault(key, []).append(np.asarray(features, dtype=np.float64))


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 with Pillow's bicubic filter (unchanged if already so)."""
    from PIL import Image

    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """(H, W) bool -> (size, size) bool, nearest neighbour."""
    from inpaint.masks import resize_nearest

    return resize_nearest(mask, size, size)


def evaluated_output(
    pair: BenchPair, image: np.ndarray, mask: np.ndarray, config: BenchConfig, model: str
) -> np.ndarray:
    """A method's saved output as scored: composited at native size unless raw, then resized."""
    path = output_dir(config, model) / f"{pair.name}.png"
    output = io.read_image(path)
    if output.shape != image.shape:
        raise InpaintError(
            f"{path}: is {output.shape[1]}x{output.shape[0]} but {pair.image} is "
            f"{image.shape[1]}x{image.shape[0]}; delete it to regenerate"
        )
    if not config.raw:
        output = np.where(mask[..., None], output, image)
    return resize_image(output, config.eval_size)


def pixel_scores(pred, target, hole, seam=None) -> dict:
    """PSNR and SSIM over the whole image and the hole (and PSNR over ``seam``), float64 (N,) each.

    PSNR is capped at :data:`PSNR_CAP_DB` (an exact fill would be +inf).

    pred, target: (N, 3, H, W), uint8 or float in [0, 1]; hole, seam: (N, 1, H, W) in {0, 1}. The SSIM map is
    computed once and reduced twice: the whole-image value exactly as :func:`inpaint.metrics.ssim`
    (skimage's 5 px border crop, then the mean over channels), the hole value as the map's mean over
    hole pixels and channels (NaN for an empty hole).
    """
    from inpaint import metrics

    regions = [None, hole] if seam is None else [None, hole, seam]
    psnrs = [value.clamp(max=PSNR_CAP_DB) for value in metrics.psnr_regions(pred, target, regions)]  # NaN stays
    ssim, ssim_hole = metrics.ssim_regions(pred, target, [None, hole])
    scores = {"psnr": psnrs[0], "ssim": ssim, "psnr_hole": psnrs[1], "ssim_hole": ssim_hole}
    if seam is not None:
        scores["psnr_seam"] = psnrs[2]
    return scores


def score_pairs(
    config: BenchConfig,
    pairs: Sequence[BenchPair],
    suite: MetricSuite,
    progress: Progress | None = None,
    skip: dict[str, str] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> ScoreShard:
    """Score every method's outputs for ``pairs``, ``config.score_batch_size`` images at a time.

    Pairs in ``skip`` (name -> error: a method refused them) and pairs that cannot be read are
    recorded in ``shard.failed`` and not scored. ``stop_requested()`` returning True after a
    batch raises :class:`~inpaint.errors.Stopped` (scores are not kept: a rerun scores again).
    """
    from inpaint.masks import area_bin, hole_ratio

    progress = progress or NullProgress()
    shard = ScoreShard()
    progress.start("scoring", len(pairs))
    for start in range(0, len(pairs), config.score_batch_size):
        if stop_requested is not None and stop_requested():
            raise Stopped("while scoring (every output is made; a rerun scores them)")
        batch, images, masks = [], [], []
        for pair in pairs[start : start + config.score_batch_size]:
            if skip and pair.name in skip:
                shard.failed[pair.name] = skip[pair.name]
                continue
            try:
                image, mask = read_pair(pair, config)
            except InputError as e:  # a bad file is reported and skipped; the others are scored
                shard.failed[pair.name] = str(e)
                continue
            if not mask.any():
                shard.empty_masks.append(pair.name)
                continue
            batch.append(pair)
            images.append(image)
            masks.append(mask)
        if batch:
            ratios = [(hole_ratio(m), area_bin(hole_ratio(m))) for m in masks]
            _score_batch(config, suite, shard, batch, images, masks, ratios)
        progress.advance(len(pairs[start : start + config.score_batch_size]))
    progress.finish()
    return shard


def _score_batch(
    config: BenchConfig,
    suite: MetricSuite,
    shard: ScoreShard,
    batch: list[BenchPair],
    images: list[np.ndarray],
    masks: list[np.ndarray],
    ratios: list[tuple[float, int]],
) -> None:
    from inpaint import metrics

    size = config.eval_size
    names = [p.name for p in batch]
    # uint8 tensors: the metrics' fast path (the pixels are already the saved 8-bit values).
    target = io.to_uint8_tensor([resize_image(image, size) for image in images])
    hole = io.mask_to_tensor([resize_mask(mask, size) for mask in masks])
    seam = metrics.seam_band(hole, config.seam_width)
    if suite.inception is not None:
        shard.add_features(REAL, names, suite.inception(target))
    for model in config.models:
        pred = io.to_uint8_tensor([evaluated_output(p, i, m, config, model) for p, i, m in zip(batch, images, masks)])
        columns = pixel_scores(pred, target, hole, seam)
        if suite.lpips is not None:
            columns["lpips"] = suite.lpips(pred, target)
            columns["lpips_hole"] = suite.lpips(pred, target, hole)
            columns["lpips_seam"] = suite.lpips(pred, target, seam)
        if suite.inception is not None:
            shard.add_features(model, names, suite.inception(pred))
        for i, pair in enumerate(batch):
            values = {m: float(columns[m][i]) if m in columns else float("nan") for m in PER_IMAGE_METRICS}
            shard.records.append(Record(pair.name, model, pair.preset, ratios[i][0], ratios[i][1], values))
