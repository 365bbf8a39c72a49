"""Completing image files: one pair, or folders of images and masks matched by file stem.

The library behind ``inpaint complete``. It reads and checks inputs (through :mod:`inpaint.io`),
runs an :class:`~inpaint.models.base.Inpainter` with one seed per image derived from the user's
seed and the image's stem, and writes results atomically. Folders resume: outputs that already
exist are skipped unless ``overwrite``; an image that fails (a corrupt file, say) is reported and
the rest go on.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inpaint import atomic, io
from inpaint.errors import InputError
from inpaint.models.base import Inpainter
from inpaint.progress import NullProgress, Progress
from inpaint.seeding import derive_seed

log = logging.getLogger(__name__)

#: Mask files may carry a suffix after the image's stem: ``a.png`` <- ``a_mask.png`` or LaMa's
#: ``a_mask000.png``.
_MASK_SUFFIX = re.compile(r"_mask\d*$")
#: Hole colour in the "masked" panel of ``--concat`` images.
MASKED_FILL = (255, 255, 255)


@dataclass(frozen=True)
class Pair:
    """One image, its mask and where its result goes. ``name`` (the stem) seeds the image."""

    image: Path
    mask: Path
    output: Path
    name: str


@dataclass
class CompletionReport:
    """What a run did. ``failed`` maps a name to its one-line error."""

    method: str
    seed: int
    written: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    unchanged_empty_mask: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    ignored_files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "seed": self.seed,
            "written": self.written,
            "skipped_existing": self.skipped_existing,
            "unchanged_empty_mask": self.unchanged_empty_mask,
            "failed": self.failed,
            "ignored_files": self.ignored_files,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Completed:
    """The result of one image: (H, W, 3) uint8 arrays, and whether the mask was empty."""

    result: np.ndarray
    image: np.ndarray
    mask: np.ndarray
    empty_mask: bool

    def concat(self) -> np.ndarray:
        """input | masked | result side by side, (H, 3W + 4, 3) uint8 with 2-px white gaps."""
        masked = self.image.copy()
        masked[self.mask] = MASKED_FILL
        gap = np.full((self.image.shape[0], 2, 3), 255, dtype=np.uint8)
        return np.concatenate([self.image, gap, masked, gap, self.result], axis=1)


def complete_arrays(
    inpainter: Inpainter,
    image: np.ndarray,
    mask: np.ndarray,
    *,
    seed: int,
    name: str,
    paste_back: bool = True,
) -> Completed:
    """Complete one (H, W, 3) uint8 image where the (H, W) bool mask is True.

    The image's seed is ``derive_seed(seed, name)``. An empty mask returns the image unchanged.
    ``paste_back=False`` keeps the method's raw output outside the hole too (a VAE shifts it).
    """
    if not mask.any():
        return Completed(result=image.copy(), image=image, mask=mask, empty_mask=True)
    images = io.to_tensor(image)
    masks = io.mask_to_tensor(mask)
    filled = inpainter(images, masks, [derive_seed(seed, name)], composite_known=paste_back, names=[name])
    # Known pixels are k/255 floats copied exactly by the composite, and round(k/255*255) == k
    # for every 8-bit k, so they come back bit-exact on disk.
    result = io.to_uint8(filled)[0]
    return Completed(result=result, image=image, mask=mask, empty_mask=False)


def complete_file(
    inpainter: Inpainter,
    image: io.ImageSource,
    mask: io.ImageSource,
    *,
    seed: int = 0,
    name: str | None = None,
    image_label: str | None = None,
    mask_label: str | None = None,
    invert_mask: bool = False,
    resize_mask: bool = False,
    paste_back: bool = True,
) -> Completed:
    """Read an image and its mask (paths, bytes or streams), check them, and complete.

    ``name`` seeds the image (default: the image file's stem). Raises :class:`InputError` for
    unreadable files and mismatched sizes.
    """
    image_label = image_label or str(image if isinstance(image, (str, os.PathLike)) else "<stream>")
    mask_label = mask_label or str(mask if isinstance(mask, (str, os.PathLike)) else "<stream>")
    if name is None:
        name = Path(image).stem if isinstance(image, (str, os.PathLike)) else "stdin"
    pixels = io.read_image(image, name=image_label)
    holes = io.read_mask(mask, name=mask_label, invert=invert_mask)
    holes = io.fit_mask(holes, pixels.shape, resize=resize_mask, mask_name=mask_label, image_name=image_label)
    completed = complete_arrays(inpainter, pixels, holes, seed=seed, name=name, paste_back=paste_back)
    if completed.empty_mask:
        log.warning(f"{mask_label}: empty mask, the image is returned unchanged")
    return completed


def concat_path(output: Path) -> Path:
    """Where ``--concat`` writes for a single output file: ``out.png`` -> ``out_concat.png``."""
    return output.with_name(f"{output.stem}_concat{output.suffix}")


def check_distinct(output: Path, *inputs: Path) -> None:
    """Refuse an output path that is one of the inputs (we would destroy the input)."""
    for source in inputs:
        if output.resolve() == source.resolve():
            raise InputError(f"{output}: the output would overwrite the input {source}")


def pair_folders(images_dir: Path, masks_dir: Path, output_dir: Path, suffix: str = ".png") -> tuple[list[Pair], list[str]]:
    """Match images to masks by file stem; returns the pairs and the non-image files ignored.

    A mask for ``a.jpg`` is ``a.*``, ``a_mask.*`` or ``a_maskNNN.*`` in ``masks_dir`` (which may
    be ``images_dir`` itself, LaMa's layout). Images without a mask, or with several candidate
    masks, are an error: a partial match usually means the wrong folder.
    """
    images_dir, masks_dir, output_dir = Path(images_dir), Path(masks_dir), Path(output_dir)
    for folder in (images_dir, masks_dir):
        if output_dir.resolve() == folder.resolve():
            raise InputError(f"{output_dir}: the output folder must differ from the input folders")
    images, others = io.list_images(images_dir)
    masks, _ = io.list_images(masks_dir)
    if images_dir.resolve() == masks_dir.resolve():
        images = [p for p in images if not _MASK_SUFFIX.search(p.stem)]
    if not images:
        raise InputError(f"{images_dir}: no images found (looked for {', '.join(io.IMAGE_SUFFIXES)})")
    masks_by_stem: dict[str, list[Path]] = {}
    for mask in masks:
        masks_by_stem.setdefault(_MASK_SUFFIX.sub("", mask.stem), []).append(mask)
    pairs, missing = [], []
    seen_stems: dict[str, Path] = {}
    for image in images:
        stem = image.stem
        if stem in seen_stems:
            raise InputError(f"{image}: same name as {seen_stems[stem]}; outputs would collide")
        seen_stems[stem] = image
        candidates = [m for m in masks_by_stem.get(stem, []) if m.resolve() != image.resolve()]
        if not candidates:
            missing.append(image.name)
            continue
        if len(candidates) > 1:
            names = ", ".join(m.name for m in candidates)
            raise InputError(f"{image}: several masks match ({names}); keep one per image")
        pairs.append(Pair(image=image, mask=candidates[0], output=output_dir / f"{stem}{suffix}", name=stem))
    if missing:
        raise InputError(
            f"{masks_dir}: no mask for {len(missing)} of {len(images)} images (first: {missing[0]}); "
            "masks are matched by file stem (a.png <- a.png, a_mask.png or a_mask000.png)"
        )
    return pairs, [p.name for p in others]


def complete_folder(
    inpainter: Inpainter,
    pairs: Sequence[Pair],
    *,
    seed: int = 0,
    overwrite: bool = False,
    concat: bool = False,
    invert_mask: bool = False,
    resize_mask: bool = False,
    paste_back: bool = True,
    progress: Progress | None = None,
) -> CompletionReport:
    """Complete every pair, skipping outputs that exist unless ``overwrite``.

    A pair that fails with an :class:`InputError` (unreadable image, wrong mask size) is recorded
    in ``report.failed`` and the others go on. ``concat`` also writes ``<output>/concat/<name>.png``.
    """
    progress = progress or NullProgress()
    report = CompletionReport(method=inpainter.name, seed=seed)
    for folder in {pair.output.parent for pair in pairs} | {pair.output.parent / "concat" for pair in pairs}:
        atomic.remove_stale_temporaries(folder)  # left by a killed run; this run now owns the folder
    started = time.perf_counter()
    progress.start(f"Completing with {inpainter.name}", len(pairs))
    for pair in pairs:
        if pair.output.exists() and not overwrite:
            report.skipped_existing.append(pair.name)
            progress.advance(1)
            continue
        try:
            completed = complete_file(
                inpainter,
                pair.image,
                pair.mask,
                seed=seed,
                name=pair.name,
                invert_mask=invert_mask,
                resize_mask=resize_mask,
                paste_back=paste_back,
            )
        except InputError as e:
            report.failed[pair.name] = str(e)
            log.warning(str(e))
            progress.advance(1)
            continue
        if concat:
            io.save_image(completed.concat(), pair.output.parent / "concat" / f"{pair.name}.png")
        io.save_image(completed.result, pair.output)
        report.written.append(pair.name)
        if completed.empty_mask:
            report.unchanged_empty_mask.append(pair.name)
        progress.advance(1, file=pair.name)
    progress.finish()
    report.seconds = time.perf_counter() - started
    return report
