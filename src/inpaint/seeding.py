"""Deterministic randomness derived from (seed, identity).

Every random draw that concerns one item (a mask, an image's noise) comes from a generator seeded
by the user's seed *and* the item's identity (its file stem, say). Results therefore do not depend
on the order items are processed in, the batch size or the number of processes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from inpaint.names import name_bytes

if TYPE_CHECKING:  # pragma: no cover
    import torch


def derive_seed(seed: int, *identity: object) -> int:
    """A 63-bit seed that depends only on ``seed`` and the identity parts (stable across runs).

    >>> derive_seed(0, "mask", "a.png") == derive_seed(0, "mask", "a.png")
    True
    """
    text = "\x1f".join([str(int(seed)), *(str(part) for part in identity)])
    # A name that is not valid UTF-8 is seeded by its own bytes; a valid one by its UTF-8 bytes,
    # as always, so its seeds never change.
    digest = hashlib.sha256(name_bytes(text)).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def numpy_random_state(seed: int, *identity: object) -> np.random.RandomState:
    """A legacy ``RandomState`` for (seed, identity).

    We use ``RandomState`` on purpose: NumPy freezes its streams across versions, so masks drawn
    today are byte-identical next year, and its ``randint`` is what LaMa's generators call.
    """
    digest = hashlib.sha256(str(derive_seed(seed, *identity)).encode()).digest()
    return np.random.RandomState(np.frombuffer(digest, dtype="<u4"))  # little-endian: the same on every machine


def torch_generator(seed: int, *identity: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded from (seed, identity)."""
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, *identity))
    return generator


def per_image_randn(
    generators: Sequence[torch.Generator],
    shape: Sequence[int],
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Standard normal noise (len(generators), *shape); row i is drawn from ``generators[i]`` alone.

    ``shape`` is one image's (C, H, W, or any other per-item shape). Each row is drawn in fp32 on
    its generator's device, then moved to ``device`` and cast to ``dtype`` (default: where and as
    drawn), so a batch gets the same numbers as its images drawn one by one, whatever the batch
    size or the device the model runs on.
    """
    import torch

    if not generators:
        raise ValueError("per_image_randn: no generators (one per image is needed)")
    draws = [torch.randn(tuple(shape), generator=g, device=g.device, dtype=torch.float32) for g in generators]
    noise = torch.stack([d.to(device) for d in draws]) if device is not None else torch.stack(draws)
    return noise if dtype is None else noise.to(dtype)
