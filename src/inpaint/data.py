"""Training data: (image, mask, caption) triplets from a folder, deterministic per (seed, epoch, item).

Every random choice about an item — its horizontal flip, its generated mask — is drawn from a
generator seeded by (seed, epoch, file stem), and the order of an epoch is a permutation seeded
by (seed, epoch). So the batch at any position of a run is a pure function of the position:
resuming at step k needs no saved sampler state, and results do not depend on the number of
data-loading workers.

Images are resized so their short side is ``resolution`` (bicubic, antialiased) and centre-cropped
to a square; masks from a folder get the same geometry with nearest neighbour. Pixels are in
[-1, 1] as diffusion models expect; masks are 1 = fill (the study's training triplet is
``(x_gt, x_masked, mask)``; the masked image is derived by the method's step function).

:func:`split_validation` sets the validation images apart: chosen from the folder by a seeded
order and held out of training, or taken from a folder of their own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inpaint import io, masks
from inpaint.errors import InputError
from inpaint.names import name_bytes
from inpaint.seeding import derive_seed, numpy_random_state

log = logging.getLogger(__name__)

#: The study's training masks: a mix of LaMa's three test configurations.
DEFAULT_TRAIN_MASKS = ("lama-thin", "lama-medium", "lama-thick")


@dataclass(frozen=True)
class MaskSource:
    """Where training masks come from: named presets (a mixture) or a folder matched by stem."""

    presets: tuple[str, ...] = DEFAULT_TRAIN_MASKS
    folder: Path | None = None

    @classmethod
    def parse(cls, specs: Sequence[str] | None) -> MaskSource:
        """``["lama-thin", "lama-thick"]``, ``["lama-thin,lama-thick"]`` or ``["masks/"]`` (a folder)."""
        if not specs:
            return cls()
        names = [name.strip() for spec in specs for name in spec.split(",") if name.strip()]
        if len(names) == 1 and Path(names[0]).is_file():
            raise InputError(
                f"--masks {names[0]}: is a file; give a folder of masks (matched to the images by "
                "file stem) or a mask preset"
            )
        if len(names) == 1 and (Path(names[0]).is_dir() or "/" in names[0]):
            folder = Path(names[0])
            if not folder.is_dir():
                raise InputError(f"--masks {folder}: no such folder")
            return cls(presets=(), folder=folder)
        for name in names:
            masks.get_preset(name)
        return cls(presets=tuple(names))

    def describe(self) -> str | list[str]:
        """JSON-ready description, recorded in training configs."""
        return str(self.folder) if self.folder is not None else list(self.presets)


def fit_square(image: Image.Image, resolution: int, resample: int) -> Image.Image:
    """Resize so the short side is ``resolution``, then centre-crop to ``resolution`` squared."""
    width, height = image.size
    scale = resolution / min(width, height)
    new_size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    resized = image.resize(new_size, resample, reducing_gap=None if resample == Image.NEAREST else 3.0)
    left, top = (new_size[0] - resolution) // 2, (new_size[1] - resolution) // 2
    return resized.crop((left, top, left + resolution, top + resolution))


class CompletionDataset:
    """Items ``(epoch, index)`` -> dict with ``pixels`` (3, R, R) in [-1, 1], ``masks`` (1, R, R)
    in {0, 1} (1 = fill), ``name`` (file stem) and ``caption`` (str, "" when none).

    Indexable by a pair so that an item's randomness can depend on the epoch; works with a
    ``torch.utils.data.DataLoader`` whose batch sampler yields lists of such pairs.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        resolution: int,
        mask_source: MaskSource = MaskSource(),
        seed: int = 0,
        flip: bool = True,
        captions: dict[str, str] | None = None,
        images: Sequence[Path] | None = None,
    ) -> None:
        self.folder = Path(folder)
        # ``images``: a part of the folder (:func:`split_validation`), already listed.
        images = list(images) if images is not None else list_folder_images(self.folder)
        check_readable(images)
        stems = [p.stem for p in images]
        duplicate = next((s for s in stems if stems.count(s) > 1), None)
        if duplicate is not None:
            raise InputError(f"{self.folder}: several images are named {duplicate!r}; stems must be unique")
        self.paths = images
        self.resolution = resolution
        self.mask_source = mask_source
        self.seed = seed
        self.flip = flip
        self.captions = captions or {}
        self.mask_paths: dict[str, Path] = {}
        if mask_source.folder is not None:
            found = {p.stem: p for p in io.list_images(mask_source.folder)[0]}
            missing = [s for s in stems if s not in found]
            if missing:
                raise InputError(
                    f"--masks {mask_source.folder}: no mask for {len(missing)} of {len(stems)} images "
                    f"(first: {missing[0]}); masks are matched by file stem"
                )
            self.mask_paths = {s: found[s] for s in stems}
            # Image and mask are each fitted to the square on their own: the same geometry only
            # if they have the same shape. A mask of another aspect ratio would move the hole,
            # silently; a scaled one (same shape, up to rounding) lands where it should. Headers only.
            for image in images:
                mask = self.mask_paths[image.stem]
                (mw, mh), (iw, ih) = io.image_size(mask), io.image_size(image)
                if abs(mw * ih - mh * iw) > (iw + ih) / 2:
                    raise InputError(
                        f"--masks {mask}: is {mw}x{mh} but {image.name} is {iw}x{ih}; a training mask "
                        "needs its image's shape (each is fitted to the square on its own, so another "
                        "aspect ratio would move the hole)"
                    )

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        """A short hash of the file names and sizes: recorded so a resumed run can check its data."""
        digest = hashlib.sha256()
        for path in self.paths:
            digest.update(name_bytes(f"{path.name}:{path.stat().st_size}\n"))  # a name's own bytes, UTF-8 or not
        return digest.hexdigest()[:16]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, object]:
        import torch

        epoch, index = key
        path = self.paths[index]
        name = path.stem
        pixels = Image.fromarray(io.read_image(path))
        pixels = fit_square(pixels, self.resolution, Image.BICUBIC)
        if self.mask_source.folder is not None:
            hole = io.read_mask(self.mask_paths[name])
            mask_image = Image.fromarray(hole.astype(np.uint8) * 255)
            hole = np.asarray(fit_square(mask_image, self.resolution, Image.NEAREST)) > 127
        else:
            hole, _ = masks.make_mask(
                list(self.mask_source.presets),
                seed=self.seed,
                name=f"{name}@{epoch}",
                height=self.resolution,
                width=self.resolution,
            )
        array = np.asarray(pixels)
        if self.flip and numpy_random_state(self.seed, "flip", epoch, name).randint(2):
            array, hole = array[:, ::-1], hole[:, ::-1]
        return {
            "pixels": io.to_model_range(io.to_tensor(np.ascontiguousarray(array))[0]),
            "masks": torch.from_numpy(np.ascontiguousarray(hole)).float()[None],
            "name": name,
            "caption": self.captions.get(path.name, self.captions.get(name, "")),
        }


def list_folder_images(
    folder: Path, label: str | None = None, purpose: str = "training", warn: bool = True
) -> list[Path]:
    """The images of a data folder, sorted; :class:`InputError` if there are none.

    Non-image files are skipped with a warning (``warn``), except ``.json`` side files such as the
    captions.json ``inpaint caption`` writes there.
    """
    folder = Path(folder)
    label = label or str(folder)
    images, skipped = io.list_images(folder)
    if not images:
        raise InputError(io.no_images_message(label, skipped, purpose=purpose))
    unsupported, strays = io.split_unsupported([p for p in skipped if p.suffix.lower() != ".json"])
    if unsupported and warn:
        log.warning(io.unsupported_message(label, unsupported))
    if strays and warn:
        log.warning(f"{label}: skipped {len(strays)} non-image file(s), e.g. {strays[0]}")
    return images


#: The training folder must hold this many times ``--val-images`` for them to be held out: so
#: at most a fifth of the data leaves training. Smaller folders validate on training images.
HOLD_OUT_FACTOR = 5


@dataclass(frozen=True)
class ValidationSplit:
    """Which images train and which validate a run.

    ``source`` is ``held-out`` (``val`` was chosen from the training folder and left out of
    ``train``), ``val-data`` (``val`` comes from another folder), ``training`` (``val`` are
    training images: the folder is too small to spare them, so validation measures fit, not
    generalisation) or ``none`` (no validation).
    """

    source: str
    train: tuple[Path, ...]
    val: tuple[Path, ...]

    @property
    def held_out(self) -> list[str]:
        """File names left out of training (what shapes the trajectory)."""
        return [p.name for p in self.val] if self.source == "held-out" else []


def choose_validation(paths: Sequence[Path], count: int, seed: int) -> list[Path]:
    """``count`` of ``paths`` (all when fewer), sorted by name: a pure function of seed and file names.

    The order is a seeded permutation that ranks each file by a hash of (seed, its name), so
    adding images to the folder changes the choice only when a new one ranks among the first
    ``count``; a folder sorted by name (by identity, by date) is not sampled from one end.
    """
    ranked = sorted(paths, key=lambda p: (derive_seed(seed, "validation", p.name), p.name))
    return sorted(ranked[:count], key=lambda p: p.name)


def split_validation(
    images: Sequence[Path], count: int, seed: int, val_folder: str | Path | None = None, *, held_out: bool = True
) -> ValidationSplit:
    """Split a training folder's ``images`` into training and validation images.

    With ``val_folder``, ``count`` of its images validate (:func:`choose_validation`) and every
    image of ``images`` trains. Without it, ``count`` of ``images`` are held out of training when
    the folder has at least :data:`HOLD_OUT_FACTOR` times ``count`` (``held_out=False`` never
    holds out: runs started before hold-out existed); otherwise they validate while training.
    ``count = 0``: no validation.
    """
    images = tuple(images)
    if count == 0:
        return ValidationSplit("none", images, ())
    if val_folder is not None:
        found = list_folder_images(Path(val_folder), f"--val-data {val_folder}", "validation")
        val = choose_validation(found, count, seed)
        return ValidationSplit("val-data", images, tuple(val))
    val = choose_validation(images, count, seed)
    if not held_out or len(images) < HOLD_OUT_FACTOR * count:
        return ValidationSplit("training", images, tuple(val))
    names = {p.name for p in val}
    return ValidationSplit("held-out", tuple(p for p in images if p.name not in names), tuple(val))


def check_readable(paths: Sequence[Path], purpose: str = "training") -> None:
    """Refuse a data folder with unreadable images before the work starts, not hours into it.

    :func:`inpaint.io.check_image_file` checks PNG chunk checksums without decompressing and
    decodes JPEG at 1/8 scale, so this costs little even for thousands of images; it catches
    empty, non-image, truncated and corrupt files and decompression bombs.
    """
    bad = []
    for path in paths:
        try:
            io.check_image_file(path, name=path.name)
        except InputError as e:
            bad.append(str(e))
    if bad:
        raise InputError(
            f"{paths[0].parent}: {len(bad)} of {len(paths)} images cannot be read (first: {bad[0]}); "
            f"remove or replace them before {purpose}"
        )


def collate(items: Sequence[dict[str, object]]) -> dict[str, object]:
    """Stack tensors, keep names and captions as lists."""
    import torch

    return {
        "pixels": torch.stack([item["pixels"] for item in items]),
        "masks": torch.stack([item["masks"] for item in items]),
        "names": [item["name"] for item in items],
        "captions": [item["caption"] for item in items],
    }


@dataclass(frozen=True)
class BatchPlan:
    """Which items form each micro-batch, for ``num_items`` items, seen by process ``rank``.

    A global micro-batch takes ``batch_size * num_processes`` items of the epoch's permutation
    (the last, incomplete one is dropped so every process gets full batches); process ``rank``
    takes its slice. ``position`` counts global micro-batches from the start of training.
    """

    num_items: int
    batch_size: int
    seed: int
    num_processes: int = 1
    rank: int = 0

    def __post_init__(self) -> None:
        if self.micro_batches_per_epoch < 1:
            raise InputError(
                f"{self.num_items} training images cannot fill one batch of {self.batch_size}"
                + (f" x {self.num_processes} processes" if self.num_processes > 1 else "")
                + "; lower --batch-size or add images"
            )

    @property
    def micro_batches_per_epoch(self) -> int:
        return self.num_items // (self.batch_size * self.num_processes)

    def permutation(self, epoch: int) -> list[int]:
        """The order of epoch ``epoch`` (a pure function of seed and epoch)."""
        rng = np.random.RandomState(derive_seed(self.seed, "order", epoch) % 2**32)
        return rng.permutation(self.num_items).tolist()

    def batch(self, position: int) -> list[tuple[int, int]]:
        """The (epoch, index) keys of this process's share of global micro-batch ``position``."""
        epoch, j = divmod(position, self.micro_batches_per_epoch)
        order = self.permutation(epoch)
        start = j * self.batch_size * self.num_processes + self.rank * self.batch_size
        return [(epoch, i) for i in order[start : start + self.batch_size]]

    def batches(self, start: int, stop: int) -> Iterator[list[tuple[int, int]]]:
        """Micro-batches ``start`` .. ``stop - 1`` (a batch sampler for ``DataLoader``)."""
        for position in range(start, stop):
            yield self.batch(position)


class PlannedBatches:
    """A ``DataLoader`` batch sampler over ``BatchPlan`` positions [start, stop)."""

    def __init__(self, plan: BatchPlan, start: int, stop: int) -> None:
        self.plan, self.start, self.stop = plan, start, stop

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return self.plan.batches(self.start, self.stop)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def load_captions(path: str | Path) -> dict[str, str]:
    """A captions JSON file ``{file name: caption}``; ``InputError`` when malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such captions file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not a valid captions JSON file ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise InputError(f"{path}: captions must be a JSON object of {{file name: caption}} strings")
    return data


def epochs_to_steps(epochs: float, micro_batches_per_epoch: int, grad_accum: int) -> int:
    """Optimizer steps in ``epochs`` epochs (at least 1)."""
    return max(1, math.floor(epochs * micro_batches_per_epoch / grad_accum))
