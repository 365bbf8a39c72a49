"""Completing image files: one pair, or folders of images and masks matched by file stem.

The library behind ``inpaint complete``. It reads and checks inputs (through :mod:`inpaint.io`),
runs an :class:`~inpaint.models.base.Inpainter` with one seed per image derived from the user's
seed and the image's stem, and writes results atomically. Folders resume: an output already
made by these settings from the same input bytes is skipped unless ``overwrite``, as a record
beside the outputs says (:mod:`inpaint.folder_record`); other settings are refused; an image
that fails (a corrupt file, say) is reported and the rest go on. Folders are completed
``batch_size`` images at a time by :mod:`inpaint.batching`, the engine ``bench`` uses too:
consecutive images of one size go through the inpainter together, each with its own seed, so
the results are those of one image at a time; at most one batch of images is held in memory.
The checks of an output file or folder (:func:`check_output_file`, :func:`check_output_folder`)
run before any slow work. A folder can be split over the processes of ``accelerate launch`` or
``torchrun`` (:func:`complete_folder`'s ``dist``): the results are the same files, since each
image's seed comes from its stem, not from the process that completes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inpaint import atomic, folder_record, io

# MASKED_FILL, Completed, complete_batch and derive_seed are part of this module's API too.
from inpaint.batching import MASKED_FILL, Completed, complete_batch, complete_batches  # noqa: F401
from inpaint.distributed import Dist
from inpaint.errors import InputError, Stopped
from inpaint.models.base import Inpainter
from inpaint.progress import NullProgress, Progress
from inpaint.seeding import derive_seed  # noqa: F401

log = logging.getLogger(__name__)

#: Mask files may carry a suffix after the image's stem: ``a.png`` <- ``a_mask.png`` or LaMa's
#: ``a_mask000.png``.
_MASK_SUFFIX = re.compile(r"_mask\d*$")


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
    #: Of ``written``: outputs that existed, redone because their image or mask file changed
    #: (``redone_inputs_changed``) or because the folder's record has no line for them (a kill
    #: between the file and its line, say: ``redone_unrecorded``).
    redone_inputs_changed: list[str] = field(default_factory=list)
    redone_unrecorded: list[str] = field(default_factory=list)
    #: Of ``skipped_existing``: outputs of an earlier version, which kept no record, taken as done.
    skipped_unverified: list[str] = field(default_factory=list)
    unchanged_empty_mask: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    ignored_files: list[str] = field(default_factory=list)
    seconds: float = 0.0
    batch_size: int = 1
    #: True when ``stop_requested`` ended the run before every pair was done.
    stopped: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "written": self.written,
            "skipped_existing": self.skipped_existing,
            "skipped_unverified": self.skipped_unverified,
            "redone_inputs_changed": self.redone_inputs_changed,
            "redone_unrecorded": self.redone_unrecorded,
            "unchanged_empty_mask": self.unchanged_empty_mask,
            "failed": self.failed,
            "ignored_files": self.ignored_files,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def merged(cls, reports: Sequence[CompletionReport], names: Sequence[str]) -> CompletionReport:
        """The reports of the processes of a split run as one, as a single process would have
        written it: every list (and ``failed``) in the order of ``names`` (the pairs'), the
        slowest process's ``seconds``, ``stopped`` if any process stopped."""
        order = {name: i for i, name in enumerate(names)}
        first = reports[0]
        merged = cls(method=first.method, seed=first.seed, batch_size=first.batch_size)
        for f in dataclasses.fields(cls):
            values = [getattr(report, f.name) for report in reports]
            if f.name == "ignored_files":  # the folder's, not a process's
                continue
            if isinstance(values[0], list):
                setattr(merged, f.name, sorted((v for value in values for v in value), key=order.get))
            elif isinstance(values[0], dict):
                items = sorted((item for value in values for item in value.items()), key=lambda kv: order[kv[0]])
                setattr(merged, f.name, dict(items))
        merged.ignored_files = list(first.ignored_files)
        merged.seconds = max(report.seconds for report in reports)
        merged.stopped = any(report.stopped for report in reports)
        return merged


def complete_arrays(
    inpainter: Inpainter,
    image: np.ndarray,
    mask: np.ndarray,
    *,
    seed: int,
    name: str,
    paste_back: bool = True,
    progress: Progress | None = None,
) -> Completed:
    """Complete one (H, W, 3) uint8 image where the (H, W) bool mask is True.

    The image's seed is ``derive_seed(seed, name)``. An empty mask returns the image unchanged.
    ``paste_back=False`` keeps the method's raw output outside the hole too (a VAE shifts it).
    ``progress`` receives the method's steps (a diffusion sampler's).
    """
    return complete_batch(
        inpainter, [image], [mask], seed=seed, names=[name], paste_back=paste_back, progress=progress
    )[0]


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
    progress: Progress | None = None,
) -> Completed:
    """Read an image and its mask (paths, bytes or streams), check them, and complete.

    ``name`` seeds the image (default: the image file's stem). Raises :class:`InputError` for
    unreadable files and mismatched sizes. The image's colour profile is kept and returned with the
    result (``icc_profile``), for the outputs to embed. ``progress`` receives the method's steps:
    a diffusion method on a CPU can take minutes for one image.
    """
    if name is None:
        name = Path(image).stem if isinstance(image, (str, os.PathLike)) else "stdin"
    pixels, holes, profile = io.read_pair(
        image,
        mask,
        image_name=image_label,
        mask_name=mask_label,
        invert_mask=invert_mask,
        resize_mask=resize_mask,
        keep_profile=True,
    )
    completed = complete_arrays(
        inpainter, pixels, holes, seed=seed, name=name, paste_back=paste_back, progress=progress
    )
    completed = dataclasses.replace(completed, icc_profile=profile)
    if completed.empty_mask:
        label = mask_label or (str(mask) if isinstance(mask, (str, os.PathLike)) else "<stream>")
        log.warning(f"{label}: empty mask, the image is returned unchanged")
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


def check_output_file(
    output: str | os.PathLike[str], *inputs: str | os.PathLike[str], overwrite: bool = False, concat: bool = False
) -> list[Path]:
    """Refuse, before any slow work, a result file that cannot or must not be written (one InputError line).

    The checks ``inpaint complete IMAGE MASK -o OUTPUT`` makes before the model loads (minutes for
    sd on a CPU), for the result and, with ``concat``, its side-by-side image
    (:func:`concat_path`), which obeys the same rules: a suffix :func:`inpaint.io.save_image`
    knows (none means PNG), not a folder, none of ``inputs``, not an existing file unless
    ``overwrite``, and a folder that can be written (:func:`check_writable`). A lossy format
    (JPEG, WebP) is allowed with a warning, since it changes the known pixels.

    Returns the files :func:`write_result` will write, the concat image first.
    """
    output = Path(output)
    io.format_for(output)
    if output.is_dir():
        raise InputError(f"{output}: is a folder; give an output file name for a single image")
    targets = [output]
    if concat:
        side_by_side = concat_path(output)
        if side_by_side.is_dir():
            raise InputError(f"{side_by_side}: is a folder, but --concat writes its image there")
        targets.append(side_by_side)
    for target in targets:
        check_distinct(target, *(Path(p) for p in inputs))
        if target.exists() and not overwrite:
            raise InputError(f"{target}: already exists (use --overwrite to replace it)")
    # The concat file goes to the same folder, so one probe answers for both.
    check_writable(output)
    warn_if_lossy(output)
    return targets[::-1]


def warn_if_lossy(output: str | os.PathLike[str]) -> None:
    """Warn (once per call) that a JPEG or WebP result does not keep the known pixels bit for bit."""
    if io.is_lossy(output):
        log.warning(
            f"{output}: {io.format_for(output)} is lossy, so the known pixels will not be kept bit-exactly; "
            "write a .png to keep them"
        )


def write_result(completed: Completed, output: str | os.PathLike[str], *, concat: bool = False) -> list[Path]:
    """Write a result (and with ``concat`` its side-by-side image, :func:`concat_path`) atomically,
    in the input's colour profile; returns the files written, the concat image first."""
    output = Path(output)
    written = []
    if concat:
        written.append(io.save_image(completed.concat(), concat_path(output), icc_profile=completed.icc_profile))
    written.append(io.save_image(completed.result, output, icc_profile=completed.icc_profile))
    return written


def check_output_folder(pairs: Sequence[Pair], *, concat: bool = False) -> None:
    """Refuse, before any slow work, output folders that cannot be written (one InputError line):
    a ``concat`` folder holding inputs (:func:`check_concat_folders`), or a folder (or its concat
    folder) where no file can be created (:func:`check_writable`). ``pairs`` from :func:`pair_folders`."""
    if not pairs:
        return
    if concat:
        check_concat_folders(pairs)
    for folder in dict.fromkeys(pair.output.parent for pair in pairs):
        first = next(pair for pair in pairs if pair.output.parent == folder)
        check_writable(first.output)
        if concat:
            check_writable(concat_folder(folder) / f"{first.name}.png")


def concat_folder(output_dir: Path) -> Path:
    """Where ``--concat`` writes for an output folder: ``out/`` -> ``out/concat/``."""
    return Path(output_dir) / "concat"


def check_concat_folders(pairs: Sequence[Pair]) -> None:
    """Refuse a ``--concat`` folder that holds inputs: its ``<name>.png`` files would replace them."""
    inputs = {path.parent.resolve() for pair in pairs for path in (pair.image, pair.mask)}
    for folder in {concat_folder(pair.output.parent) for pair in pairs}:
        if folder.resolve() in inputs:
            raise InputError(
                f"{folder}: --concat writes its images here, but it holds input files; choose another output folder"
            )


def pair_folders(
    images_dir: Path, masks_dir: Path, output_dir: Path, suffix: str = ".png"
) -> tuple[list[Pair], list[str]]:
    """Match images to masks by file stem; returns the pairs and the non-image files ignored.

    A mask for ``a.jpg`` is ``a.*``, ``a_mask.*`` or ``a_maskNNN.*`` in ``masks_dir`` (which may
    be ``images_dir`` itself, LaMa's layout). Images without a mask, or with several candidate
    masks, are an error: a partial match usually means the wrong folder.
    """
    images_dir, masks_dir, output_dir = Path(images_dir), Path(masks_dir), Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{output_dir}: exists and is not a folder")
    for folder in (images_dir, masks_dir):
        if output_dir.resolve() == folder.resolve():
            raise InputError(f"{output_dir}: the output folder must differ from the input folders")
    images, others = io.list_images(images_dir)
    masks, _ = io.list_images(masks_dir)
    if images_dir.resolve() == masks_dir.resolve():
        images = [p for p in images if not _MASK_SUFFIX.search(p.stem)]
    if not images:
        raise InputError(io.no_images_message(images_dir, others))
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
    batch_size: int = 1,
    progress: Progress | None = None,
    settings: dict | None = None,
    stop_requested: Callable[[], bool] | None = None,
    step_progress: Progress | None = None,
    dist: Dist | None = None,
) -> CompletionReport:
    """Complete every pair, skipping outputs that this run would make again unless ``overwrite``.

    Pairs are completed by :func:`inpaint.batching.complete_batches`: read one by one as they are
    reached, up to ``batch_size`` consecutive pairs of one image size in one call, so the results
    do not depend on ``batch_size`` and memory holds one batch. ``progress`` counts images,
    ``step_progress`` the method's steps within each call. A pair that fails with an
    :class:`InputError` (unreadable image, wrong mask size, a mask the method cannot fill) is
    recorded in ``report.failed`` and the others go on. ``concat`` also writes
    ``<output>/concat/<name>.png``, with its pair: the result marks a pair done, so a pair redone
    (its result missing, its inputs changed, or ``overwrite``) replaces its concat file too; a
    concat folder that holds inputs is refused (:func:`check_concat_folders`).

    Each output folder keeps a record of what made its outputs (:mod:`inpaint.folder_record`):
    ``settings`` (default: :func:`~inpaint.folder_record.folder_settings` of the inpainter's
    options and these arguments) other than those recorded are refused with an InputError
    before anything is written; an existing output is skipped only when the record says it was
    made from the same image and mask bytes, else redone (``report.redone_*``). A redone pair's
    existing concat file is rewritten too, with or without ``concat``: it would show an old result.

    ``stop_requested()`` returning True ends the run after the image or batch in hand
    (``report.stopped``): what is written is complete and recorded, and a rerun does the rest.

    ``dist`` splits the run over the processes of a launcher (:class:`~inpaint.distributed.Dist`;
    default: this process alone). Every process calls this with the same ``pairs`` and its own
    ``inpainter``: the main process checks and opens the records while the others wait (a
    refusal there is every process's, :meth:`~inpaint.distributed.Dist.agree`), each process
    completes its share (every N-th pair), writing its record lines to its own part of the log,
    and the main process folds the parts in once all are done. Every process returns the merged
    report, which equals a single process's (``progress`` counts this process's share).
    """
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    dist = dist or Dist()
    suffixes = {pair.output.suffix.lower() for pair in pairs}
    records = {  # their settings matter to the main process only, which checks and opens them
        folder: folder_record.FolderRecord(folder, {}, suffixes, rank=dist.rank)
        for folder in dict.fromkeys(pair.output.parent for pair in pairs)
    }
    adopted: set[str] = set()
    with dist.agree():
        if dist.is_main:
            if settings is None:
                settings = folder_record.folder_settings(
                    inpainter.name,
                    getattr(inpainter, "options", None),
                    seed=seed,
                    paste_back=paste_back,
                    invert_mask=invert_mask,
                    resize_mask=resize_mask,
                )
            for record in records.values():
                record.settings = settings
            adopted = _open_records(pairs, records, concat=concat, overwrite=overwrite)
    if dist.world > 1:
        adopted = dist.broadcast(adopted)
        if not dist.is_main:
            for record in records.values():
                record.load()  # as the main process opened it
    follow_concat = set() if concat else _concat_files_to_follow(pairs)
    pairs_in_order, pairs = pairs, dist.share(list(pairs))
    progress = progress or NullProgress()
    report = CompletionReport(method=inpainter.name, seed=seed, batch_size=batch_size)
    redo: dict[str, list[str]] = {}  # name -> the report's list of why an existing output is redone
    started = time.perf_counter()
    progress.start(f"Completing with {inpainter.name}", len(pairs))

    def todo():
        """The pairs left to do, taken lazily by the engine: skipping and hashing keep pace with reading."""
        for pair in pairs:
            if stop_requested is not None and stop_requested():
                raise Stopped("before the next image")
            record = records[pair.output.parent]
            if pair.output.exists() and not overwrite:
                status = record.status(pair)
                if status == "done":
                    report.skipped_existing.append(pair.name)
                    if pair.name in adopted:
                        report.skipped_unverified.append(pair.name)
                    progress.advance(1)
                    continue
                redo[pair.name] = report.redone_inputs_changed if status == "changed" else report.redone_unrecorded
            record.hashes(pair)  # of the bytes about to be read (FolderRecord.hashes)
            yield pair

    outcomes = complete_batches(
        inpainter,
        todo(),
        seed=seed,
        batch_size=batch_size,
        paste_back=paste_back,
        invert_mask=invert_mask,
        resize_mask=resize_mask,
        keep_profile=True,
        step_progress=step_progress,
        stop_requested=stop_requested,
    )
    # An error no image explains (a failing GPU, a full disk) ends every process, not just its own.
    with dist.agree():
        try:
            for outcome in outcomes:
                pair = outcome.pair
                _record(
                    pair, outcome.completed or outcome.error, report, concat or pair.name in follow_concat, progress
                )
                if outcome.completed is not None:  # recorded once its files are written
                    records[pair.output.parent].add(pair)
                    redone = redo.pop(pair.name, None)
                    if redone is not None:
                        redone.append(pair.name)
        except Stopped:  # images read but not started are left to the rerun
            report.stopped = True
    progress.finish()
    report.seconds = time.perf_counter() - started
    if dist.world == 1:
        return report
    reports = dist.gather(report)  # also: every process has written its last output and line
    if dist.is_main:
        for record in records.values():
            record.merge_parts()
    # Leave together: a process that tore down its end of the group while the main process was
    # still folding the record could abort at exit ("terminate called without an active exception").
    dist.barrier()
    return CompletionReport.merged(reports, [pair.name for pair in pairs_in_order])


def _open_records(
    pairs: Sequence[Pair], records: dict[Path, folder_record.FolderRecord], *, concat: bool, overwrite: bool
) -> set[str]:
    """Before a folder run writes: check its output folders and their records (every folder
    before any is touched), remove the temporary files a killed run left (this run now owns the
    folders) and open the records; returns the outputs of an earlier version taken as done."""
    check_output_folder(pairs, concat=concat)
    for record in records.values():
        record.check(overwrite=overwrite)
    for folder in {pair.output.parent for pair in pairs} | {concat_folder(pair.output.parent) for pair in pairs}:
        atomic.remove_stale_temporaries(folder)
    return {
        name
        for folder, record in records.items()
        for name in record.open([p for p in pairs if p.output.parent == folder], overwrite=overwrite)
    }


def _concat_files_to_follow(pairs: Sequence[Pair]) -> set[str]:
    """Names whose concat file exists, from an earlier ``--concat`` run, in a folder that holds no
    inputs: a run without ``concat`` rewrites it when it redoes the result, so it never shows an
    old result beside a new one."""
    inputs = {path.parent.resolve() for pair in pairs for path in (pair.image, pair.mask)}
    follow = set()
    for pair in pairs:
        folder = concat_folder(pair.output.parent)
        if (folder / f"{pair.name}.png").is_file() and folder.resolve() not in inputs:
            follow.add(pair.name)
    return follow


def _record(
    pair: Pair, outcome: Completed | InputError, report: CompletionReport, concat: bool, progress: Progress
) -> None:
    """Write one result (or note its failure) and advance the progress."""
    if isinstance(outcome, InputError):
        report.failed[pair.name] = str(outcome)
        log.warning(str(outcome))
        progress.advance(1)
        return
    if concat:
        io.save_image(
            outcome.concat(), concat_folder(pair.output.parent) / f"{pair.name}.png", icc_profile=outcome.icc_profile
        )
    io.save_image(outcome.result, pair.output, icc_profile=outcome.icc_profile)
    report.written.append(pair.name)
    if outcome.empty_mask:
        report.unchanged_empty_mask.append(pair.name)
        log.warning(f"{pair.mask}: empty mask, the image is returned unchanged")
    progress.advance(1, file=pair.name)
