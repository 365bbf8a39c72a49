"""The image/mask pairs every method of a benchmark sees, and the hashes that pin them down.

``--masks`` is either a folder of masks matched to the images by file stem (as ``inpaint
complete`` matches them) or a mask preset name. A preset's masks are generated once per image,
at the image's size, named after the image's stem, into ``<output>/masks/`` with a
``manifest.json`` (:func:`inpaint.mask_sets.masks_for_images`), so the run can be inspected and
rerun with the very same files. Every image and mask file is hashed (SHA-256): the hashes go into
the protocol and decide whether a saved output may be reused on resume.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from inpaint.errors import InputError
from inpaint.names import name_bytes
from inpaint.provenance import file_sha256

MASKS_SUBDIR = "masks"
OUTPUTS_SUBDIR = "outputs"
UNSPECIFIED_PRESET = "(unspecified)"


@dataclass(frozen=True)
class BenchPair:
    """One test image and its mask; ``name`` (the stem) seeds the image and names its outputs."""

    name: str
    image: Path
    mask: Path
    preset: str
    image_sha256: str
    mask_sha256: str


@dataclass
class MaskSource:
    """Where the masks came from, for the protocol block."""

    kind: Literal["folder", "preset"]
    folder: Path
    preset: str | None
    manifest_sha256: str | None
    masks_sha256: str
    data_sha256: str
    ignored_files: list[str] = field(default_factory=list)
    #: Images that have no pair because their mask could not be made (preset masks: the image's
    #: header cannot be read), by name (stem) -> the error. Reported and skipped, like images
    #: that fail later.
    unreadable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.kind,
            "folder": str(self.folder),
            "preset": self.preset,
            "manifest_sha256": self.manifest_sha256,
            "masks_sha256": self.masks_sha256,
            "data_sha256": self.data_sha256,
            "polarity": "white (1) = fill",
        }


def set_sha256(entries: list[tuple[str, str]]) -> str:
    """One hash for a set of (name, file hash) pairs, independent of their order."""
    text = "".join(f"{name}\t{digest}\n" for name, digest in sorted(entries))
    return hashlib.sha256(name_bytes(text)).hexdigest()  # a name's own bytes, UTF-8 or not


def preset_masks(data: Path, output: Path, preset: str, seed: int) -> dict[str, str]:
    """Write ``preset`` masks for every image of ``data`` into ``output/masks`` unless they are there.

    ``preset`` is a preset name or a comma-separated mixture (each mask picks one of them, as
    ``make-masks -p a -p b`` does). Masks depend only on (presets, seed, stem, size), so existing
    files from the same presets and seed, made for images of the sizes found now, are kept;
    anything else is regenerated (an image replaced by one of another size gets a new mask, not a
    refusal or a stretched old one). An image whose header cannot be read gets no mask; returns
    those images, by stem, with the error. Call on one process.
    """
    from inpaint import atomic, io, mask_sets

    presets = preset_names(preset)
    if presets is None:
        raise InputError(f"--masks {preset}: not a mask preset")
    folder = output / MASKS_SUBDIR
    atomic.remove_stale_temporaries(folder)  # left by a killed run
    manifest = _read_manifest(folder)
    if manifest is not None and manifest.get("presets") == presets and manifest.get("seed") == seed:
        images, _ = io.list_images(data)
        entries = manifest.get("files", {})
        if all(
            _mask_fits(entries.get(f"{p.stem}.png", {}), p) and (folder / f"{p.stem}.png").is_file() for p in images
        ):
            return {}
    summary = mask_sets.masks_for_images(data, folder, presets=presets, seed=seed, overwrite=True, skip_unreadable=True)
    return {Path(name).stem: error for name, error in summary.unreadable.items()}


def _mask_fits(entry: dict[str, Any], image: Path) -> bool:
    """A manifest entry was made for this image file at its current size (header only)."""
    from inpaint import io

    if entry.get("image") != image.name:
        return False
    try:
        return (entry.get("width"), entry.get("height")) == io.image_size(image)
    except InputError:  # unreadable now: regenerate, which reports it
        return False


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def preset_names(masks: str) -> list[str] | None:
    """The presets ``--masks`` names (one, or a comma-separated mixture), or None for a path."""
    from inpaint import masks as mask_presets

    names = [name.strip() for name in masks.split(",") if name.strip()]
    if not names or Path(masks).exists() or not all(name in mask_presets.PRESETS for name in names):
        return None
    return names


def is_preset(masks: str) -> bool:
    """``--masks`` names a preset or a mixture of presets (not an existing path)."""
    return preset_names(masks) is not None


def collect_pairs(
    data: Path,
    mask_folder: Path,
    output: Path,
    *,
    kind: Literal["folder", "preset"],
    preset: str | None,
    unreadable: dict[str, str] | None = None,
) -> tuple[list[BenchPair], MaskSource]:
    """Match images to masks by stem, hash every file, and note each mask's preset.

    Pairs are sorted by name, so every process sees the same list in the same order. With preset
    masks (``kind="preset"``, written by :func:`preset_masks`), an image without its mask is one
    whose header could not be read: it is left out and listed in ``source.unreadable`` (with the
    error from ``unreadable`` when known).
    """
    from inpaint.completion import Pair, pair_folders

    missing: dict[str, str] = {}
    if kind == "preset":
        from inpaint import io

        images, others = io.list_images(data)
        pairs = []
        for image in images:
            mask = mask_folder / f"{image.stem}.png"
            if mask.is_file():
                pairs.append(
                    Pair(image=image, mask=mask, output=output / OUTPUTS_SUBDIR / f"{image.stem}.png", name=image.stem)
                )
            else:
                missing[image.stem] = (unreadable or {}).get(
                    image.stem, f"{image}: no mask could be made (its header cannot be read)"
                )
        ignored = [p.name for p in others]
    else:
        pairs, ignored = pair_folders(data, mask_folder, output / OUTPUTS_SUBDIR)
    manifest_path = mask_folder / "manifest.json"
    manifest = _read_manifest(mask_folder) or {}
    entries = manifest.get("files", {}) if isinstance(manifest.get("files"), dict) else {}
    result = []
    for pair in sorted(pairs, key=lambda p: p.name):
        entry = entries.get(pair.mask.name, {})
        result.append(
            BenchPair(
                name=pair.name,
                image=pair.image,
                mask=pair.mask,
                preset=str(entry.get("preset") or preset or UNSPECIFIED_PRESET),
                image_sha256=file_sha256(pair.image),
                mask_sha256=file_sha256(pair.mask),
            )
        )
    source = MaskSource(
        kind=kind,
        folder=mask_folder,
        preset=preset,
        manifest_sha256=file_sha256(manifest_path) if manifest_path.is_file() else None,
        masks_sha256=set_sha256([(p.name, p.mask_sha256) for p in result]),
        data_sha256=set_sha256([(p.name, p.image_sha256) for p in result]),
        ignored_files=list(ignored),
        unreadable=missing,
    )
    return result, source


def check_inputs(data: Path, masks: str, output: Path) -> None:
    """Fail early, with one line, on folders that do not exist or an output inside the inputs."""
    if not data.is_dir():
        problem = "is a file, not a folder of images" if data.exists() else "no such folder"
        raise InputError(f"--data {data}: {problem}")
    if not is_preset(masks) and Path(masks).is_file():
        raise InputError(
            f"--masks {masks}: is a file; give a folder of masks (matched to the images by file stem) "
            "or a mask preset or comma-separated mixture"
        )
    if not is_preset(masks) and not Path(masks).is_dir():
        from inpaint import masks as mask_presets

        raise InputError(
            f"--masks {masks}: neither a folder nor a mask preset or comma-separated mixture "
            f"({', '.join(mask_presets.preset_names())})"
        )
    if output.exists() and not output.is_dir():
        raise InputError(f"-o {output}: exists and is not a folder")
    for folder in [data] + ([] if is_preset(masks) else [Path(masks)]):
        if output.resolve() == folder.resolve():
            raise InputError(f"-o {output}: the output folder must differ from the input folders")
