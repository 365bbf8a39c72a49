"""From per-image records (gathered from every process) to the numbers a report shows.

Everything is ordered by image name before it is reduced, so means, bootstrap intervals, FID and
KID do not depend on how images were split over processes or in what order they were scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inpaint.bench.config import BenchConfig
from inpaint.bench.runner import ImageLog
from inpaint.bench.scoring import PER_IMAGE_METRICS, REAL, Record, ScoreShard
from inpaint.masks import LAMA_AREA_BINS

#: Worst-k galleries rank images by this metric when LPIPS is available (higher is worse) ...
RANK_BY_LPIPS = "lpips_hole"
#: ... and by this one otherwise (lower is worse).
RANK_BY_PSNR = "psnr_hole"


@dataclass
class ModelSummary:
    """One method's results. ``metrics`` holds per-image means (with intervals) and FID."""

    model: str
    metrics: dict = field(default_factory=dict)  # name -> MetricValue
    kid: object | None = None  # KIDValue
    seconds_per_image: float | None = None
    nfe_per_image: float | None = None
    peak_memory_bytes: int | None = None
    memory_kind: str = ""
    by_preset: dict = field(default_factory=dict)  # preset -> {metric: MetricValue}
    by_area_bin: dict = field(default_factory=dict)  # "0-10%" -> {metric: MetricValue}
    worst: list[tuple[str, float]] = field(default_factory=list)
    rank_metric: str = RANK_BY_PSNR


def merge(shards: Sequence[ScoreShard]) -> ScoreShard:
    """One shard from many, records and features sorted by image name."""
    merged = ScoreShard()
    merged.records = sorted((r for s in shards for r in s.records), key=lambda r: r.name)
    merged.empty_masks = sorted(n for s in shards for n in s.empty_masks)
    merged.failed = dict(sorted((n, e) for s in shards for n, e in s.failed.items()))
    keys = dict.fromkeys(k for s in shards for k in s.features)
    for key in keys:
        names = [n for s in shards for n in s.feature_names.get(key, [])]
        chunks = [c for s in shards for c in s.features.get(key, [])]
        features = np.concatenate(chunks) if chunks else np.empty((0, 2048))
        order = np.argsort(np.asarray(names, dtype=object), kind="stable")
        merged.feature_names[key] = [names[i] for i in order]
        merged.features[key] = [features[order]]
    return merged


def bin_label(index: int) -> str:
    low, high = LAMA_AREA_BINS[index]
    return f"{round(low * 100)}-{round(high * 100)}%"


def _group_summary(records: Sequence[Record], metrics: Sequence[str], config: BenchConfig) -> dict:
    from inpaint.metrics import summarise

    return {m: summarise(m, [r.values[m] for r in records], n_boot=config.n_boot, seed=config.seed) for m in metrics}


def summarise_model(
    config: BenchConfig,
    model: str,
    records: Sequence[Record],
    unavailable: dict[str, str],
    logs: dict[str, ImageLog],
) -> ModelSummary:
    """Per-image means with bootstrap intervals, breakdowns, cost figures and the worst images."""
    available = [m for m in PER_IMAGE_METRICS if m not in unavailable]
    summary = ModelSummary(model=model)
    summary.metrics = _group_summary(records, available, config)
    presets = sorted({r.preset for r in records})
    summary.by_preset = {p: _group_summary([r for r in records if r.preset == p], available, config) for p in presets}
    for index in sorted({r.area_bin for r in records}):
        group = [r for r in records if r.area_bin == index]
        summary.by_area_bin[bin_label(index)] = _group_summary(group, available, config)
    used = [logs[r.name] for r in records if r.name in logs]
    if used:
        summary.seconds_per_image = float(np.mean([e.seconds for e in used]))
        nfes = [e.nfe for e in used if e.nfe is not None]
        summary.nfe_per_image = float(np.mean(nfes)) if nfes else None
        peaks = [e.peak_bytes for e in used if e.peak_bytes is not None]
        summary.peak_memory_bytes = max(peaks) if peaks else None
    summary.rank_metric = RANK_BY_LPIPS if RANK_BY_LPIPS in available else RANK_BY_PSNR
    scored = [(r.name, r.values[summary.rank_metric]) for r in records if not math.isnan(r.values[summary.rank_metric])]
    worst_first = sorted(
        scored, key=lambda item: (-item[1], item[0]) if summary.rank_metric == RANK_BY_LPIPS else (item[1], item[0])
    )
    summary.worst = worst_first[: config.worst_k]
    return summary


def add_distribution_metrics(
    config: BenchConfig, summary: ModelSummary, merged: ScoreShard, unavailable: dict[str, str], warnings: list[str]
) -> None:
    """FID and KID of one method's outputs against the originals, from the gathered features."""
    from inpaint.errors import InpaintError
    from inpaint.metrics import FeatureAccumulator, MetricValue, fid, kid

    if "fid" in unavailable or REAL not in merged.features:
        return
    real = FeatureAccumulator()
    real.add_features(merged.features[REAL][0])
    fake = FeatureAccumulator()
    fake.add_features(merged.features[summary.model][0])
    if len(real) < 2:
        unavailable.setdefault("fid", "needs at least 2 images")
        unavailable.setdefault("kid", "needs at least 2 images")
        return
    try:
        value = fid(real, fake)
    except InpaintError as e:  # a numerically hopeless covariance: report it, keep the rest
        value = MetricValue(name="fid", value=math.nan, n=len(fake), note=str(e))
    summary.metrics["fid"] = value
    if value.note and value.note not in warnings:
        warnings.append(value.note)
    summary.kid = kid(real, fake, subsets=config.kid_subsets, subset_size=config.kid_subset_size, seed=config.seed)


def grid_names(names: Sequence[str], count: int, seed: int) -> list[str]:
    """A fixed sample of ``count`` names, drawn by hashing (seed, name): independent of order."""
    from inpaint.seeding import derive_seed

    return sorted(sorted(names, key=lambda n: derive_seed(seed, "grid", n))[:count])
