"""Deterministic randomness derived from (seed, identity).

Every random draw that concerns one item (a mask, an image's noise) comes from a generator seeded
by the user's seed *and* the item's identity (its file stem, say). Results therefore do not depend
on the order items are processed in, the batch size or the number of processes.
"""

from __future__ import annotations

import hashlib
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
