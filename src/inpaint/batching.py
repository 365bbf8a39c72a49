"""Completing a stream of image/mask pairs in batches: the one engine behind folder ``complete`` and ``bench``.

What it guarantees (docs/performance.md, "Batched completion"):

- **results equal batch size 1**: image i draws all its randomness from ``derive_seed(seed, name)``,
  whatever batch it lands in (diffusion methods: up to float summation order, below 1e-4);
- up to ``batch_size`` *consecutive* pairs of one image size go through the method together; a
  pair of another size closes the batch in hand;
- pairs are read one by one as the batch fills, so memory holds one batch, never the whole list;
- a pair that cannot be read fails alone, before batching; a batch the method refuses (an
  :class:`~inpaint.errors.InputError`: a mask covering everything, for a classical method) is
  retried one image at a time, so only the refused image fails.

Callers decide what a result means (``complete`` writes it with its colour profile and records
it; ``bench`` writes the raw output and logs its cost): :func:`complete_batches` yields one
:class:`Outcome` per pair, in the order the batches finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import numpy as np

from inpaint import io
from inpaint.errors import InputError, Stopped
from inpaint.progress import Progress
from inpaint.seeding import derive_seed

if TYPE_CHECKING:  # pragma: no cover
    from inpaint.models.base import Inpainter

#: Hole colour in the "masked" panel of ``--concat`` images.
MASKED_FILL = (255, 255, 255)


@dataclass(frozen=True)
class Completed:
    """The result of one image: (H, W, 3) uint8 arrays, and whether the mask was empty.

    ``icc_profile``: the colour profile the image's (and so the result's) values are in, kept
    from the input file (:func:`inpaint.io.read_pair` with ``keep_profile``) to be written into
    the outputs; ``None`` for sRGB.
    """

    result: np.ndarray
    image: np.ndarray
    mask: np.ndarray
    empty_mask: bool
    icc_profile: bytes | None = None

    def concat(self) -> np.ndarray:
        """input | masked | result side by side, (H, 3W + 4, 3) uint8 with 2-px white gaps."""
        masked = self.image.copy()
        masked[self.mask] = MASKED_FILL
        gap = np.full((self.image.shape[0], 2, 3), 255, dtype=np.uint8)
        return np.concatenate([self.image, gap, masked, gap, self.result], axis=1)


def complete_batch(
    inpainter: Inpainter,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    seed: int,
    names: Sequence[str],
    paste_back: bool = True,
    progress: Progress | None = None,
) -> list[Completed]:
    """Complete same-size (H, W, 3) uint8 images and (H, W) bool masks in one inpainter call.

    Image i draws its randomness from ``derive_seed(seed, names[i])`` alone, so each result is
    the one a batch of one gives for it (up to float summation order in batched convolutions,
    below 1e-4 in [0, 1]); empty masks come back unchanged (the inpainter skips them).
    ``progress`` receives the method's steps (a diffusion sampler's, say).
    """
    # Known pixels are k/255 floats copied exactly by the composite, and round(k/255*255) == k
    # for every 8-bit k, so they come back bit-exact on disk.
    filled = inpainter(
        io.to_tensor(list(images)),
        io.mask_to_tensor(list(masks)),
        [derive_seed(seed, name) for name in names],
        composite_known=paste_back,
        names=list(names),
        progress=progress,
    )
    return [
        Completed(result=result, image=image, mask=mask, empty_mask=not mask.any())
        for result, image, mask in zip(io.to_uint8(filled), images, masks)
    ]


class PairLike(Protocol):
    """What the engine needs of a pair: its files and its name (the stem, which seeds it)."""

    @property
    def name(self) -> str: ...

    @property
    def image(self) -> Path: ...

    @property
    def mask(self) -> Path: ...


P = TypeVar("P", bound=PairLike)


@dataclass(frozen=True)
class Outcome(Generic[P]):
    """What became of one pair: ``completed``, or ``error`` (one line naming the image file).

    ``unreadable``: the error came from reading the files (the method never saw the pair), not
    from the method refusing it. ``seconds``: this image's share of the method call that made it.
    ``nfe``: the network evaluations of that call as the method reports them (``last_nfe``;
    0 for an empty mask or a method without a network, ``None`` when a network method does not say).
    """

    pair: P
    completed: Completed | None = None
    error: InputError | None = None
    unreadable: bool = False
    seconds: float = 0.0
    nfe: int | None = 0


def complete_batches(
    inpainter: Inpainter,
    pairs: Iterable[P],
    *,
    seed: int,
    batch_size: int = 1,
    paste_back: bool = True,
    invert_mask: bool = False,
    resize_mask: bool = False,
    keep_profile: bool = False,
    step_progress: Progress | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> Iterator[Outcome[P]]:
    """Complete ``pairs`` ``batch_size`` at a time, yielding an :class:`Outcome` for each.

    ``pairs`` is consumed lazily: the next pair is taken (and its files read,
    :func:`inpaint.io.read_pair`) only when the batch in hand has room, so a generator that
    skips finished work or hashes the files about to be read runs in step with the reads.
    ``step_progress`` receives each method call's steps. ``stop_requested()`` is asked before
    every method call; True raises :class:`~inpaint.errors.Stopped` with the pairs read but not
    started left undone (every outcome yielded before is complete).
    """
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    pending: list[tuple[P, io.ImagePair]] = []

    def run() -> list[Outcome[P]]:
        if not pending:
            return []
        if stop_requested is not None and stop_requested():
            raise Stopped(f"with {len(pending)} image(s) read but not started")
        batch = list(pending)
        pending.clear()
        return _complete_isolated(inpainter, batch, seed, paste_back, step_progress)

    for pair in pairs:
        try:
            read = io.read_pair(
                pair.image,
                pair.mask,
                image_name=str(pair.image),
                mask_name=str(pair.mask),
                invert_mask=invert_mask,
                resize_mask=resize_mask,
                keep_profile=keep_profile,
            )
        except InputError as e:  # before batching: a bad file fails alone
            yield Outcome(pair, error=e, unreadable=True)
            continue
        if pending and pending[0][1].image.shape != read.image.shape:  # a new size closes the batch
            yield from run()
        pending.append((pair, read))
        if len(pending) == batch_size:
            yield from run()
    yield from run()


def _complete_isolated(
    inpainter: Inpainter,
    batch: list[tuple[P, io.ImagePair]],
    seed: int,
    paste_back: bool,
    step_progress: Progress | None,
) -> list[Outcome[P]]:
    """Complete a batch; if the method refuses it, run its images one by one so only the bad one fails."""
    started = time.perf_counter()
    try:
        completed = complete_batch(
            inpainter,
            [read.image for _, read in batch],
            [read.mask for _, read in batch],
            seed=seed,
            names=[pair.name for pair, _ in batch],
            paste_back=paste_back,
            progress=step_progress,
        )
    except InputError as e:
        if len(batch) > 1:
            return [
                outcome
                for item in batch
                for outcome in _complete_isolated(inpainter, [item], seed, paste_back, step_progress)
            ]
        # Name the file: the method's message is about the mask, not the file.
        where = str(batch[0][0].image)
        return [Outcome(batch[0][0], error=e if str(e).startswith(where) else InputError(f"{where}: {e}"))]
    seconds = (time.perf_counter() - started) / len(batch)
    nfe = getattr(inpainter, "last_nfe", 0)
    return [
        Outcome(
            pair,
            completed=replace(done, icc_profile=read.icc_profile),
            seconds=seconds,
            nfe=0 if done.empty_mask else (None if nfe is None else int(nfe)),
        )
        for (pair, read), done in zip(batch, completed)
    ]
