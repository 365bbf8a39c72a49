"""``inpaint demo``: real photos, several mask presets, every method available offline.

Takes photos shipped with scikit-image (no download), makes one mask per photo from a different
preset, completes them with every method that can run here, and writes a comparison grid and a
small PSNR/SSIM table (whole image and hole). Everything is deterministic for a given seed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from inpaint import atomic, io
from inpaint.errors import InputError
from inpaint.progress import NullProgress, Progress

#: scikit-image photo -> the mask preset it is shown with.
DEMO_PHOTOS: dict[str, str] = {
    "astronaut": "lama-thick",
    "chelsea": "lama-medium",
    "coffee": "box-center",
    "rocket": "lama-thin",
}


@dataclass(frozen=True)
class MethodScores:
    """Means over the demo photos; metrics on 8-bit images with known pixels pasted back."""

    method: str
    psnr: float
    psnr_hole: float
    ssim: float
    ssim_hole: float
    seconds_per_image: float


@dataclass
class DemoResult:
    """Where the demo wrote its files, and the scores it printed."""

    out_dir: Path
    grid: Path
    table: Path
    scores: list[MethodScores] = field(default_factory=list)
    photos: list[str] = field(default_factory=list)
    seconds: float = 0.0


def demo_photo(name: str, size: int) -> np.ndarray:
    """A scikit-image photo, centre-cropped to a square and resized to ``size``: (size, size, 3) uint8."""
    from PIL import Image
    from skimage import data

    if name not in DEMO_PHOTOS:
        raise InputError(f"unknown demo photo {name!r}; choose from {', '.join(DEMO_PHOTOS)}")
    pixels = getattr(data, name)()
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(pixels[top : top + side, left : left + side])
    return np.asarray(square.convert("RGB").resize((size, size), Image.LANCZOS))


def available_methods(include_heavy: bool | None = None) -> list[str]:
    """Registered methods whose weights are on this machine, best first.

    Diffusion methods (``heavy``) take minutes per image on a CPU, so by default they are
    included only when a GPU is present; name them with ``--model`` to run them anyway.
    """
    from inpaint import models
    from inpaint.models.base import MethodOptions

    if include_heavy is None:
        include_heavy = _gpu_present()
    options = MethodOptions(local_only=True)
    return [
        name
        for name in models.method_names()
        if (include_heavy or not models.get_method(name).heavy) and models.get_method(name).unavailable(options) is None
    ]


def check_choices(photos: Sequence[str] | None = None, methods: Sequence[str] | None = None) -> None:
    """Refuse an unknown photo or method, or one that cannot run here, before anything is written.

    The demo runs every method with its default weights (it has no ``--weights``), so a method
    whose own weights are missing is refused with the command that runs it on others.
    """
    from inpaint import models
    from inpaint.models.base import MethodOptions

    for name in photos or []:
        if name not in DEMO_PHOTOS:
            raise InputError(f"--photo {name!r}: unknown demo photo; choose from {', '.join(DEMO_PHOTOS)}")
    for name in methods or []:
        reason = models.get_method(name).why_unavailable(MethodOptions())
        if reason is not None:
            advice = ""
            if reason.kind == "weights":
                advice = (
                    "; the demo runs each method with its default weights only, so use `inpaint complete "
                    f"-m {name} --weights ...` for yours"
                )
            raise InputError(f"--model {name}: {reason.message}{advice}")


def _gpu_present() -> bool:
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available()


def run_demo(
    out_dir: Path,
    *,
    size: int = 256,
    photos: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> DemoResult:
    """Run the demo into ``out_dir``; returns the paths written and the per-method means."""
    from inpaint import masks as mask_presets
    from inpaint import metrics, models
    from inpaint.completion import complete_arrays
    from inpaint.grid import image_grid
    from inpaint.models.base import MethodOptions

    progress = progress or NullProgress()
    started = time.perf_counter()
    # A name given twice is one photo (or method), not a duplicate row.
    photos = list(dict.fromkeys(photos or DEMO_PHOTOS))
    methods = list(dict.fromkeys(methods or available_methods()))
    check_choices(photos, methods)
    if size < 32:
        raise InputError(f"--size {size}: the demo needs at least 32 pixels")
    # Before anything of that size is allocated: each photo, and the grid of them all.
    io.check_image_size(size, size, f"--size {size}")
    io.check_image_size(
        size * (2 + len(methods)),
        size * len(photos),
        f"--size {size} (a grid of {len(photos)} photos by {2 + len(methods)} columns)",
    )
    out_dir = Path(out_dir)
    result = DemoResult(out_dir=out_dir, grid=out_dir / "grid.png", table=out_dir / "metrics.md", photos=photos)

    originals = {name: demo_photo(name, size) for name in photos}
    holes = {
        name: mask_presets.make_mask(DEMO_PHOTOS[name], seed=seed, name=name, height=size, width=size)[0]
        for name in photos
    }
    for name in photos:
        io.save_image(originals[name], out_dir / "photos" / f"{name}.png")
        io.save_mask(holes[name], out_dir / "masks" / f"{name}.png")

    outputs: dict[str, dict[str, np.ndarray]] = {}
    progress.start("Demo", len(methods) * len(photos))
    for method in methods:
        inpainter = models.load_inpainter(method, MethodOptions())
        outputs[method] = {}
        tic = time.perf_counter()
        for name in photos:
            completed = complete_arrays(inpainter, originals[name], holes[name], seed=seed, name=name)
            outputs[method][name] = completed.result
            io.save_image(completed.result, out_dir / method / f"{name}.png")
            progress.advance(1, method=method)
        per_image = (time.perf_counter() - tic) / len(photos)
        target = io.to_tensor([originals[n] for n in photos])
        pred = io.to_tensor([outputs[method][n] for n in photos])
        hole = io.mask_to_tensor([holes[n] for n in photos])
        psnr, psnr_hole = metrics.psnr_regions(pred, target, [None, hole])
        ssim, ssim_hole = metrics.ssim_regions(pred, target, [None, hole])
        result.scores.append(
            MethodScores(
                method=method,
                psnr=float(psnr.mean()),
                psnr_hole=float(psnr_hole.mean()),
                ssim=float(ssim.mean()),
                ssim_hole=float(ssim_hole.mean()),
                seconds_per_image=per_image,
            )
        )
    progress.finish()

    rows = []
    for name in photos:
        masked = originals[name].copy()
        masked[holes[name]] = 255
        rows.append([originals[name], masked, *(outputs[m][name] for m in methods)])
    grid = image_grid(rows, column_labels=["original", "masked", *methods])
    io.save_image(grid, result.grid)
    result.seconds = time.perf_counter() - started
    atomic.write_text(result.table, scores_markdown(result.scores, photos, size, seed))
    atomic.write_json(
        out_dir / "metrics.json",
        {
            "photos": {n: DEMO_PHOTOS[n] for n in photos},
            "size": size,
            "seed": seed,
            "scores": [asdict(s) for s in result.scores],
        },
    )
    return result


def scores_markdown(scores: Sequence[MethodScores], photos: Sequence[str], size: int, seed: int) -> str:
    """The demo's table as Markdown, with the protocol it was measured under."""
    lines = [
        f"# inpaint demo — {len(photos)} photos at {size} px, seed {seed}",
        "",
        "| method | PSNR (dB) | PSNR hole (dB) | SSIM | SSIM hole | s / image |",
        "|---|---|---|---|---|---|",
    ]
    for s in scores:
        lines.append(
            f"| {s.method} | {s.psnr:.2f} | {s.psnr_hole:.2f} | {s.ssim:.4f} | {s.ssim_hole:.4f} "
            f"| {s.seconds_per_image:.3f} |"
        )
    presets = ", ".join(f"{n}: {DEMO_PHOTOS[n]}" for n in photos)
    lines += [
        "",
        f"Photos and masks: {presets}. Metrics are means over the photos, on 8-bit images with the",
        "known pixels pasted back; PSNR with data range 255; SSIM with Wang et al.'s settings",
        "(Gaussian window, sigma 1.5, RGB averaged); 'hole' scores only the filled pixels.",
        "",
    ]
    return "\n".join(lines)
