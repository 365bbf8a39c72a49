"""Folders of masks with a manifest: the library behind ``inpaint make-masks``.

Two ways to make a set: one mask per image of a folder (same stem, the image's size, EXIF
orientation applied), or ``count`` standalone masks of one size. Every mask is an 8-bit gray PNG,
255 (white) = fill, written atomically; ``manifest.json`` is written last, so a folder with a
manifest is complete. A mask depends only on (presets, seed, name, size), where the name is the
image's stem or the standalone file's stem: reruns give byte-identical files, in any order.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inpaint import __version__, atomic, io
from inpaint.errors import InputError
from inpaint.masks import (
    LAMA_AREA_BINS,
    area_bin,
    check_fixed_presets,
    get_preset,
    hole_ratio,
    make_mask,
    resolve_presets,
)
from inpaint.progress import NullProgress, Progress

MANIFEST_NAME = "manifest.json"
POLARITY = "white (255) = fill, black (0) = keep"
#: The most standalone masks in one set. Its manifest lists every mask (about 250 bytes each,
#: held in memory while it is written, and by every reader), so a set must stay a size a
#: manifest can describe: 100,000 is twice the largest common evaluation set (ImageNet's 50,000
#: validation images) and what the default names ``mask_00000``… count to. More masks are refused
#: before anything is allocated; make several sets (another ``-o`` and ``--seed``) instead.
MAX_STANDALONE_MASKS = 100_000


@dataclass
class MaskSetSummary:
    """What a run wrote: hole-ratio statistics (fractions in [0, 1]), LaMa's 10 area bins,
    masks per preset, the files and the manifest. ``skipped`` counts non-image files ignored."""

    count: int
    mean: float
    min: float
    max: float
    bins: list[int]
    files: list[Path]
    manifest: Path
    skipped: int = 0
    presets: dict[str, int] = field(default_factory=dict)
    #: Images left out because their header could not be read (``skip_unreadable``): name -> error.
    unreadable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings), for ``--json`` output."""
        return {
            "count": self.count,
            "skipped": self.skipped,
            "hole_ratio": {"mean": self.mean, "min": self.min, "max": self.max},
            "bins": list(self.bins),
            "presets": dict(self.presets),
            "files": [str(path) for path in self.files],
            "manifest": str(self.manifest),
        }


@dataclass(frozen=True)
class _Job:
    """One mask to write: its identity name, size and, for image folders, the source file."""

    name: str
    width: int
    height: int
    image: str | None = None


def masks_for_images(
    image_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    presets: str | Sequence[str],
    seed: int = 0,
    min_ratio: float | None = None,
    max_ratio: float | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    skip_unreadable: bool = False,
) -> MaskSetSummary:
    """One mask per image in ``image_dir``, written to ``out_dir/<stem>.png`` at the image's size.

    Sizes come from the image headers with EXIF orientation applied (what :func:`io.read_image`
    returns). Non-image files are skipped and counted. Raises :class:`InputError` before writing
    anything for an empty folder, two images with the same stem, existing outputs, or an image
    whose header cannot be read — unless ``skip_unreadable``: such images then get no mask and
    are listed in ``summary.unreadable`` (``inpaint bench`` reports and skips them).
    """
    image_dir, out_dir = Path(image_dir), Path(out_dir)
    resolve_presets(presets, min_ratio, max_ratio)
    images, others = io.list_images(image_dir)
    if not images:
        raise InputError(io.no_images_message(image_dir, others))
    if out_dir.resolve() == image_dir.resolve():
        raise InputError(f"{out_dir}: the output folder is the image folder; masks would replace images")
    seen: dict[str, Path] = {}
    for path in images:
        if path.stem in seen:
            raise InputError(
                f"{seen[path.stem].name} and {path.name} would both get the mask {path.stem}.png; rename one"
            )
        seen[path.stem] = path
    # Every header is read before anything is written, so a broken image stops the run cleanly.
    jobs, unreadable = [], {}
    for path in images:
        try:
            width, height = io.image_size(path)
        except InputError as e:
            if not skip_unreadable:
                raise
            unreadable[path.name] = str(e)
            continue
        jobs.append(_Job(path.stem, width, height, path.name))
    if not jobs:
        raise InputError(
            f"{image_dir}: none of its {len(images)} images can be read (first: {next(iter(unreadable.values()))})"
        )
    summary = _write_set(jobs, out_dir, presets, seed, min_ratio, max_ratio, overwrite, progress, len(others))
    summary.unreadable = unreadable
    return summary


def standalone_masks(
    out_dir: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    count: int,
    presets: str | Sequence[str],
    seed: int = 0,
    min_ratio: float | None = None,
    max_ratio: float | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    name_format: str = "mask_{:05d}",
) -> MaskSetSummary:
    """``count`` masks of ``width`` x ``height`` named ``name_format.format(i)`` + ``.png``.

    ``count`` is at most :data:`MAX_STANDALONE_MASKS` and the size within the readers' pixel limit
    (:func:`inpaint.io.check_image_size`): both are checked before anything is allocated.
    """
    resolve_presets(presets, min_ratio, max_ratio)
    if count < 1:
        raise InputError(f"--count {count}: must be at least 1")
    if count > MAX_STANDALONE_MASKS:
        raise InputError(
            f"--count {count}: at most {MAX_STANDALONE_MASKS:,} masks in one set (its manifest.json "
            "lists every mask); make several sets with other -o folders and seeds"
        )
    if width < 1 or height < 1:
        raise InputError(f"--size {width}x{height}: sides must be positive")
    io.check_image_size(width, height, f"--size {width}x{height}")
    names = [name_format.format(i) for i in range(count)]
    if len(set(names)) != count:
        raise InputError(f"name format {name_format!r} does not give {count} different names")
    jobs = [_Job(name, width, height) for name in names]
    return _write_set(jobs, Path(out_dir), presets, seed, min_ratio, max_ratio, overwrite, progress, 0)


def _check_targets(out_dir: Path, jobs: Sequence[_Job], overwrite: bool) -> None:
    """Refuse to replace existing files unless asked to (checked before anything is written)."""
    if overwrite:
        return
    targets = [out_dir / f"{job.name}.png" for job in jobs] + [out_dir / MANIFEST_NAME]
    existing = [path for path in targets if path.exists()]
    if existing:
        raise InputError(
            f"{out_dir}: {len(existing)} of the output files already exist (e.g. {existing[0].name}); "
            "pass --overwrite to replace them"
        )


def _write_set(
    jobs: Sequence[_Job],
    out_dir: Path,
    presets: str | Sequence[str],
    seed: int,
    min_ratio: float | None,
    max_ratio: float | None,
    overwrite: bool,
    progress: Progress | None,
    skipped: int,
) -> MaskSetSummary:
    """Draw, write and hash every mask, then write the manifest; return the summary."""
    preset_list = [p.name for p in resolve_presets(presets, min_ratio, max_ratio)]
    check_fixed_presets(preset_list, [(job.width, job.height) for job in jobs], min_ratio, max_ratio)
    _check_targets(out_dir, jobs, overwrite)
    created = [folder for folder in [out_dir, *out_dir.parents] if not folder.exists()]
    atomic.ensure_folder(out_dir)  # an output folder that cannot be made fails before any progress is shown
    # A manifest vouches for a complete set: the old one goes before the first mask is replaced,
    # so a run stopped part-way cannot leave it describing files it no longer matches. The masks
    # it listed that the new set does not make go with it (a smaller --count, fewer images): left,
    # they would sit beside the new manifest as if they belonged to it.
    _remove_old_set(out_dir, {f"{job.name}.png" for job in jobs})
    try:
        return _write_masks(jobs, out_dir, preset_list, seed, min_ratio, max_ratio, progress, skipped)
    except InputError:
        # A mask that cannot be drawn (hole-ratio bounds no mask meets): a folder this run created
        # is removed again, with the masks it wrote, so a refused run leaves nothing behind.
        if created:
            for job in jobs:
                with contextlib.suppress(OSError):
                    (out_dir / f"{job.name}.png").unlink()
            atomic.remove_stale_temporaries(out_dir)
            for folder in created:  # deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise


def _remove_old_set(out_dir: Path, keep: set[str]) -> None:
    """Delete the manifest in ``out_dir`` and the masks it lists that are not in ``keep``.

    Only files the old manifest names, directly in ``out_dir``, are touched: never a user's other
    files. A manifest that cannot be read is deleted alone.
    """
    import json

    manifest = out_dir / MANIFEST_NAME
    try:
        listed = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError):
        listed = {}
    with contextlib.suppress(FileNotFoundError):
        manifest.unlink()
    for name in listed if isinstance(listed, dict) else ():
        if (
            isinstance(name, str)
            and name not in keep
            and name == Path(name).name
            and name.endswith(".png")
            and name != MANIFEST_NAME
        ):
            with contextlib.suppress(OSError):
                (out_dir / name).unlink()


def _write_masks(
    jobs: Sequence[_Job],
    out_dir: Path,
    preset_list: list[str],
    seed: int,
    min_ratio: float | None,
    max_ratio: float | None,
    progress: Progress | None,
    skipped: int,
) -> MaskSetSummary:
    """Draw, write and hash every mask into ``out_dir`` (which exists), then write the manifest."""
    progress = progress or NullProgress()
    progress.start("Making masks", len(jobs))
    entries: dict[str, dict[str, Any]] = {}
    files: list[Path] = []
    ratios: list[float] = []
    used: Counter[str] = Counter()
    for job in jobs:
        mask, preset = make_mask(
            preset_list,
            seed=seed,
            name=job.name,
            height=job.height,
            width=job.width,
            min_ratio=min_ratio,
            max_ratio=max_ratio,
        )
        path = io.save_mask(mask, out_dir / f"{job.name}.png")
        ratio = hole_ratio(mask)
        entry: dict[str, Any] = {
            # Hash the bytes as written, so the manifest can verify the files later.
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "hole_ratio": ratio,
            "preset": preset,
            "width": job.width,
            "height": job.height,
        }
        if job.image is not None:
            entry["image"] = job.image
        entries[path.name] = entry
        files.append(path)
        ratios.append(ratio)
        used[preset] += 1
        progress.advance(1, file=path.name)
    progress.finish()
    manifest = out_dir / MANIFEST_NAME
    atomic.write_json(
        manifest,
        {
            "tool": f"inpaint {__version__}",
            "kind": "masks",
            "presets": preset_list,
            "params": {name: get_preset(name).params_dict() for name in dict.fromkeys(preset_list)},
            "seed": seed,
            "min_ratio": min_ratio,
            "max_ratio": max_ratio,
            "polarity": POLARITY,
            "files": entries,
        },
    )
    bins = [0] * len(LAMA_AREA_BINS)
    for ratio in ratios:
        bins[area_bin(ratio)] += 1
    return MaskSetSummary(
        count=len(files),
        mean=sum(ratios) / len(ratios),
        min=min(ratios),
        max=max(ratios),
        bins=bins,
        files=files,
        manifest=manifest,
        skipped=skipped,
        presets=dict(used),
    )
