"""Completing image files: one pair, or folders of images and masks matched by file stem.

The library behind ``inpaint complete``. It reads and checks inputs (through :mod:`inpaint.io`),
runs an :class:`~inpaint.models.base.Inpainter` with one seed per image derived from the user's
seed and the image's stem, and writes results atomically. Folders resume: outputs that already
exist are skipped unless ``overwrite``; an image that fails (a corrupt file, say) is reported and
the rest go on. Folders are completed ``batch_size`` images at a time: consecutive images of one
size go through the inpainter together, each with its own seed, so the results are those of one
image at a time; at most one batch of images is held in memory.
"""

from __future__ import annotations

import contextlib
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
    batch_size: int = 1

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "seed": self.seed,
            "batch_size": self.batch_size,
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
    return complete_batch(inpainter, [image], [mask], seed=seed, names=[name], paste_back=paste_back)[0]


def complete_batch(
    inpainter: Inpainter,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    seed: int,
    names: Sequence[str],
    paste_back: bool = True,
) -> list[Completed]:
    """Complete same-size (H, W, 3) uint8 images and (H, W) bool masks in one inpainter call.

    Image i draws its randomness from ``derive_seed(seed, names[i])`` alone, so each result is
    the one :func:`complete_arrays` gives for it (up to float summation order in batched
    convolutions, below 1e-4 in [0, 1]); empty masks come back unchanged (the inpainter skips them).
    """
    # Known pixels are k/255 floats copied exactly by the composite, and round(k/255*255) == k
    # for every 8-bit k, so they come back bit-exact on disk.
    filled = inpainter(io.to_tensor(list(images)), io.mask_to_tensor(list(masks)),
                       [derive_seed(seed, name) for name in names], composite_known=paste_back, names=list(names))
    return [Completed(result=result, image=image, mask=mask, empty_mask=not mask.any())
            for result, image, mask in zip(io.to_uint8(filled), images, masks)]


def read_pair(image: io.ImageSource, mask: io.ImageSource, *, image_label: str, mask_label: str,
              invert_mask: bool = False, resize_mask: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read and check an image and its mask: (H, W, 3) uint8 and (H, W) bool; InputError if bad."""
    pixels = io.read_image(image, name=image_label)
    holes = io.read_mask(mask, name=mask_label, invert=invert_mask)
    return pixels, io.fit_mask(holes, pixels.shape, resize=resize_mask, mask_name=mask_label, image_name=image_label)


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
    pixels, holes = read_pair(image, mask, image_label=image_label, mask_label=mask_label, invert_mask=invert_mask,
                              resize_mask=resize_mask)
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


class _Probed(Exception):
    """Raised inside :func:`atomic.atomic_path` so that it discards its temporary file."""


def check_writable(output: Path) -> None:
    """Refuse an output file that cannot be written, before any slow work (one InputError line).

    Creates the output's folder and a temporary file in it exactly as the final write will
    (:func:`atomic.atomic_path`), then discards the temporary file and the folders it had to
    create: an existing ``output`` is left untouched, and a run refused later (a bad option, an
    unreadable image) leaves nothing behind. Catches a path under a regular file, a read-only
    folder, a virtual one (``/proc``).
    """
    output = Path(output)
    created = [folder for folder in [output.parent, *output.parent.parents] if not folder.exists()]
    try:
        with atomic.atomic_path(output):
            raise _Probed
    except _Probed:
        pass
    finally:
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()


def concat_folder(output_dir: Path) -> Path:
    """Where ``--concat`` writes for an output folder: ``out/`` -> ``out/concat/``."""
    return Path(output_dir) / "concat"


def check_concat_folders(pairs: Sequence[Pair]) -> None:
    """Refuse a ``--concat`` folder that holds inputs: its ``<name>.png`` files would replace them."""
    inputs = {path.parent.resolve() for pair in pairs for path in (pair.image, pair.mask)}
    for folder in {concat_folder(pair.output.parent) for pair in pairs}:
        if folder.resolve() in inputs:
            raise InputError(f"{folder}: --concat writes its images here, but it holds input files; "
                             "choose another output folder")


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


@dataclass
class _Read:
    """A pair whose files were read and checked, waiting for its batch."""

    pair: Pair
    image: np.ndarray
    mask: np.ndarray


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
    batch_size: int = 1,
    progress: Progress | None = None,
) -> CompletionReport:
    """Complete every pair, skipping outputs that exist unless ``overwrite``.

    Pairs are read one by one as they are reached; up to ``batch_size`` consecutive pairs of one
    image size are then completed in one call (:func:`complete_batch`), so the results do not
    depend on ``batch_size`` and memory holds one batch. A pair that fails with an
    :class:`InputError` (unreadable image, wrong mask size, a mask the method cannot fill) is
    recorded in ``report.failed`` and the others go on. ``concat`` also writes
    ``<output>/concat/<name>.png``, with its pair: the result file marks a pair done, so a pair
    redone (its result missing, or ``overwrite``) replaces its concat file too; a concat folder
    that holds inputs is refused (:func:`check_concat_folders`).
    """
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    if concat:
        check_concat_folders(pairs)
    progress = progress or NullProgress()
    report = CompletionReport(method=inpainter.name, seed=seed, batch_size=batch_size)
    for folder in {pair.output.parent for pair in pairs} | {concat_folder(pair.output.parent) for pair in pairs}:
        atomic.remove_stale_temporaries(folder)  # left by a killed run; this run now owns the folder
    started = time.perf_counter()
    progress.start(f"Completing with {inpainter.name}", len(pairs))
    pending: list[_Read] = []

    def flush() -> None:
        for item, outcome in zip(pending, _complete_isolated(inpainter, pending, seed, paste_back)):
            _record(item.pair, outcome, report, concat, progress)
        pending.clear()

    for pair in pairs:
        if pair.output.exists() and not overwrite:
            report.skipped_existing.append(pair.name)
            progress.advance(1)
            continue
        try:  # read before batching, so that a bad file fails alone
            image, mask = read_pair(pair.image, pair.mask, image_label=str(pair.image), mask_label=str(pair.mask),
                                    invert_mask=invert_mask, resize_mask=resize_mask)
        except InputError as e:
            _record(pair, e, report, concat, progress)
            continue
        if pending and pending[0].image.shape != image.shape:
            flush()
        pending.append(_Read(pair, image, mask))
        if len(pending) == batch_size:
            flush()
    flush()
    progress.finish()
    report.seconds = time.perf_counter() - started
    return report


def _complete_isolated(inpainter: Inpainter, items: Sequence[_Read], seed: int,
                       paste_back: bool) -> list[Completed | InputError]:
    """Complete a batch; if the method refuses it, run its images one by one so only the bad one fails."""
    if not items:
        return []
    try:
        return list(complete_batch(inpainter, [i.image for i in items], [i.mask for i in items], seed=seed,
                                   names=[i.pair.name for i in items], paste_back=paste_back))
    except InputError as e:
        if len(items) == 1:  # name the file: the method's message is about the mask, not the file
            where = str(items[0].pair.image)
            return [e if str(e).startswith(where) else InputError(f"{where}: {e}")]
    return [outcome for item in items for outcome in _complete_isolated(inpainter, [item], seed, paste_back)]


def _record(pair: Pair, outcome: Completed | InputError, report: CompletionReport, concat: bool,
            progress: Progress) -> None:
    """Write one result (or note its failure) and advance the progress."""
    if isinstance(outcome, InputError):
        report.failed[pair.name] = str(outcome)
        log.warning(str(outcome))
        progress.advance(1)
        return
    if concat:
        io.save_image(outcome.concat(), concat_folder(pair.output.parent) / f"{pair.name}.png")
    io.save_image(outcome.result, pair.output)
    report.written.append(pair.name)
    if outcome.empty_mask:
        report.unchanged_empty_mask.append(pair.name)
        log.warning(f"{pair.mask}: empty mask, the image is returned unchanged")
    progress.advance(1, file=pair.name)
