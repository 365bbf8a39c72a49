"""The files a benchmark leaves behind: results.json, per_image.csv, report.md, metrics.png.

All are written atomically. Numbers that are not finite (an undefined hole metric, PSNR of an
exact copy) are written as JSON ``null`` / an empty CSV cell.
"""

from __future__ import annotations

import csv
import datetime
import io as textio
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inpaint import atomic
from inpaint.bench.config import BenchConfig
from inpaint.bench.runner import ImageLog
from inpaint.bench.scoring import PER_IMAGE_METRICS, Record
from inpaint.bench.summary import RANK_BY_LPIPS, ModelSummary

#: Column titles in reports.
TITLES = {
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "lpips": "LPIPS",
    "fid": "FID",
    "kid": "KID x1000",
    "psnr_hole": "PSNR hole",
    "ssim_hole": "SSIM hole",
    "lpips_hole": "LPIPS hole",
    "psnr_seam": "PSNR seam",
    "lpips_seam": "LPIPS seam",
}
_DIGITS = {"psnr": 2, "ssim": 4, "lpips": 4, "fid": 2}
HOLE_COLUMNS = ("psnr_hole", "ssim_hole", "lpips_hole", "psnr_seam", "lpips_seam", "kid")


def number(value: float | None) -> float | None:
    """A JSON-safe float: None for NaN and infinities."""
    return None if value is None or not math.isfinite(value) else float(value)


def fmt(metric: str, value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a" if value is None or math.isnan(value) else str(value)
    return f"{value:.{_DIGITS.get(metric.split('_')[0], 4)}f}"


def metric_json(value) -> dict[str, Any]:
    return {
        "value": number(value.value),
        "ci95": None if math.isnan(value.ci_low) else [number(value.ci_low), number(value.ci_high)],
        "n": value.n,
        "note": value.note,
    }


def _group_json(group: dict) -> dict[str, Any]:
    n = max((v.n for v in group.values()), default=0)
    return {"n": n, **{m: metric_json(v) for m, v in group.items()}}


def model_json(summary: ModelSummary, unavailable: dict[str, str]) -> dict[str, Any]:
    metrics: dict[str, Any] = {m: metric_json(v) for m, v in summary.metrics.items()}
    if summary.kid is not None:
        kid = summary.kid
        note = (
            ""
            if not math.isnan(kid.std)
            else (f"all {kid.n_fake} images fit in one subset, so every subset is the whole set: no spread to report")
        )
        metrics["kid"] = {
            "value": number(kid.mean),
            "std": number(kid.std),
            "ci95": None,
            "n": kid.n_fake,
            "subsets": kid.subsets,
            "subset_size": kid.subset_size,
            "note": note,
        }
    for metric, reason in unavailable.items():
        metrics[metric] = {"status": "unavailable", "reason": reason}
    return {
        "metrics": metrics,
        "seconds_per_image": number(summary.seconds_per_image),
        "nfe_per_image": number(summary.nfe_per_image),
        "peak_memory_mib": None if summary.peak_memory_bytes is None else round(summary.peak_memory_bytes / 2**20, 1),
        "peak_memory_kind": summary.memory_kind,
        "by_preset": {p: _group_json(g) for p, g in summary.by_preset.items()},
        "by_area_bin": {b: _group_json(g) for b, g in summary.by_area_bin.items()},
        "worst": {
            "metric": summary.rank_metric,
            "images": [{"image": n, "value": number(v)} for n, v in summary.worst],
        },
    }


def results_json(
    config: BenchConfig,
    summaries: Sequence[ModelSummary],
    *,
    n_images: int,
    empty_masks: list[str],
    unavailable: dict[str, str],
    warnings: list[str],
    protocol: dict[str, Any],
    options: dict[str, Any],
    failed: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "tool": f"inpaint {protocol.get('inpaint')}",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "n_images": n_images,
        "skipped_empty_masks": empty_masks,
        "failed_images": dict(failed or {}),
        "models": {s.model: {"options": options[s.model], **model_json(s, unavailable)} for s in summaries},
        "unavailable": unavailable,
        "warnings": warnings,
        "protocol": protocol,
    }


def write_per_image_csv(
    path: Path, records: Sequence[Record], logs: dict[str, dict[str, ImageLog]], unavailable: dict[str, str]
) -> None:
    """One row per (image, method): identity, mask statistics, every available metric, cost."""
    metrics = [m for m in PER_IMAGE_METRICS if m not in unavailable]
    buffer = textio.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "model", "preset", "hole_ratio", "area_bin", *metrics, "seconds", "nfe"])
    for r in records:
        log = logs.get(r.model, {}).get(r.name)
        values = ["" if number(r.values[m]) is None else repr(r.values[m]) for m in metrics]
        seconds = "" if log is None else f"{log.seconds:.6f}"
        nfe = "" if log is None or log.nfe is None else log.nfe
        writer.writerow([r.name, r.model, r.preset, f"{r.hole_ratio:.6f}", r.area_bin, *values, seconds, nfe])
    atomic.write_text(path, buffer.getvalue())


def format_cell(summary: ModelSummary, metric: str, unavailable: dict[str, str], interval: bool = True) -> str:
    """One table cell: the value (with its 95 % interval unless ``interval`` is False), or why not."""
    if metric in unavailable:
        return "unavailable"
    if metric == "kid":
        kid = summary.kid
        if kid is None:
            return "n/a"
        spread = interval and not math.isnan(kid.std)  # NaN: one subset, the whole set (no spread)
        return f"{kid.mean * 1000:.2f} ± {kid.std * 1000:.2f}" if spread else f"{kid.mean * 1000:.2f}"
    value = summary.metrics.get(metric)
    if value is None:
        return "n/a"
    text = fmt(metric, value.value)
    if interval and not math.isnan(value.ci_low):
        text += f" [{fmt(metric, value.ci_low)}, {fmt(metric, value.ci_high)}]"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _breakdown(summaries: Sequence[ModelSummary], attribute: str, label: str, unavailable: dict[str, str]) -> list[str]:
    metrics = [m for m in ("psnr", "ssim", "lpips", "psnr_hole", "ssim_hole", "lpips_hole") if m not in unavailable]
    rows = []
    for s in summaries:
        for key, group in getattr(s, attribute).items():
            n = max((v.n for v in group.values()), default=0)
            rows.append([s.model, key, str(n), *(fmt(m, group[m].value) for m in metrics)])
    return _table(["model", label, "N", *(TITLES[m] for m in metrics)], rows)


def report_markdown(
    config: BenchConfig,
    results: dict[str, Any],
    summaries: Sequence[ModelSummary],
    unavailable: dict[str, str],
    files: dict[str, Path],
) -> str:
    """report.md: the study's table, hole and seam metrics, cost, breakdowns, worst images, protocol."""
    protocol = results["protocol"]
    masks = protocol["masks"]
    mask_text = f"preset `{masks['preset']}`" if masks["source"] == "preset" else f"folder `{masks['folder']}`"
    lines = [
        f"# inpaint bench: {results['n_images']} images at {config.eval_size} px, {config.scoring}",
        "",
        f"Data `{config.data}` (sha256 {masks['data_sha256'][:12]}), masks: {mask_text} "
        f"(sha256 {masks['masks_sha256'][:12]}), seed {config.seed}, device {protocol['device']}. "
        f"Means over images with bootstrap 95 % intervals; "
        + ("known pixels pasted back before scoring." if not config.raw else "raw outputs, nothing pasted back."),
        "",
        "## Results",
        "",
        *_table(
            ["model", "PSNR (dB)", "SSIM", "LPIPS", "FID"],
            [[s.model, *(format_cell(s, m, unavailable) for m in ("psnr", "ssim", "lpips", "fid"))] for s in summaries],
        ),
        "",
        "## Hole and seam",
        "",
        *_table(
            ["model", *(TITLES[m] for m in HOLE_COLUMNS)],
            [[s.model, *(format_cell(s, m, unavailable) for m in HOLE_COLUMNS)] for s in summaries],
        ),
        "",
        "## Cost",
        "",
        *_table(
            ["model", "s / image", "NFE / image", "peak memory (MiB)"],
            [
                [
                    s.model,
                    fmt("t", s.seconds_per_image) if s.seconds_per_image is not None else "n/a",
                    "n/a" if s.nfe_per_image is None else f"{s.nfe_per_image:g}",
                    "n/a" if s.peak_memory_bytes is None else f"{s.peak_memory_bytes / 2**20:.0f}",
                ]
                for s in summaries
            ],
        ),
        "",
        "## By mask preset",
        "",
        *_breakdown(summaries, "by_preset", "preset", unavailable),
        "",
        "## By hole area (LaMa's 10 bins)",
        "",
        *_breakdown(summaries, "by_area_bin", "hole area", unavailable),
        "",
    ]
    if any(s.worst for s in summaries):
        lines += ["## Worst images", ""]
        for s in summaries:
            order = "highest" if s.rank_metric == RANK_BY_LPIPS else "lowest"
            lines.append(
                f"**{s.model}**, by {TITLES[s.rank_metric]} ({order} first): "
                + ", ".join(f"{n} ({fmt(s.rank_metric, v)})" for n, v in s.worst)
            )
            if f"worst-{s.model}" in files:
                lines += ["", f"![worst {s.model}]({files[f'worst-{s.model}'].relative_to(config.output).as_posix()})"]
            lines.append("")
    notes = [f"- `{m}` unavailable: {reason}" for m, reason in unavailable.items() if m in ("lpips", "fid")]
    notes += [f"- warning: {w}" for w in results["warnings"]]
    if results["skipped_empty_masks"]:
        notes.append(f"- {len(results['skipped_empty_masks'])} image(s) with an empty mask were not scored")
    for name, error in results.get("failed_images", {}).items():
        notes.append(f"- failed, not scored: {name}: {error}")
    if notes:
        lines += ["## Notes", "", *notes, ""]
    lines += ["## Pictures", ""]
    lines += [f"![{key}]({path.name})" for key, path in files.items() if key in ("plot", "grid")]
    lines += [
        "",
        "The full protocol (filters, SSIM settings, LPIPS and FID versions and weights, hashes, "
        "versions, commit) is in `results.json` under `protocol`; per-image scores in `per_image.csv`.",
        "",
    ]
    return "\n".join(lines)


def write_plot(path: Path, summaries: Sequence[ModelSummary], unavailable: dict[str, str]) -> Path:
    """metrics.png: one panel per metric, one bar per method, 95 % intervals as error bars."""
    # A Figure of its own, never pyplot: pyplot's global state (and matplotlib.use) would switch
    # the backend of a notebook that runs the bench from Python.
    from matplotlib.figure import Figure

    metrics = [
        m
        for m in ("psnr", "ssim", "lpips", "fid", "psnr_hole", "ssim_hole", "lpips_hole", "psnr_seam")
        if m not in unavailable and any(m in s.metrics for s in summaries)
    ]
    columns = min(4, len(metrics)) or 1
    rows = -(-len(metrics) // columns) or 1
    figure = Figure(figsize=(3.2 * columns, 2.8 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    names = [s.model for s in summaries]
    for ax, metric in zip(axes.flat, metrics):
        values = [s.metrics[metric].value if metric in s.metrics else math.nan for s in summaries]
        lows = [s.metrics[metric].ci_low if metric in s.metrics else math.nan for s in summaries]
        highs = [s.metrics[metric].ci_high if metric in s.metrics else math.nan for s in summaries]
        low = [0.0 if math.isnan(lo) else max(0.0, v - lo) for v, lo in zip(values, lows)]
        high = [0.0 if math.isnan(hi) else max(0.0, hi - v) for v, hi in zip(values, highs)]
        finite = [v if math.isfinite(v) else 0.0 for v in values]
        ax.bar(range(len(names)), finite, yerr=[low, high], capsize=4, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        better = "lower is better" if metric.startswith(("lpips", "fid")) else "higher is better"
        ax.set_title(f"{TITLES[metric]} ({better})", fontsize=9)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    figure.tight_layout()
    with atomic.atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    return path
