"""What a training method plugs into the shared loop: its model, its loss, its artefacts.

The loop (:mod:`inpaint.training.loop`) owns everything that is the same for every method —
data order, optimiser, mixed precision, accumulation, clipping, EMA, checkpoints, resume,
validation, logs. A :class:`TrainingTask` owns only what differs: which module trains, which
parameters, one loss evaluation, and how the result is exported.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch


class TrainingTask(ABC):
    """One method's part of training. Methods receive the module the loop prepared (possibly
    wrapped for distributed training); use ``unwrap`` to reach the plain model."""

    #: ``ddpm`` or ``lora``: recorded in the config and checked on resume.
    name: str
    #: The pretrained weights :meth:`build` loads (a hub id or a folder), at the hub ``revision``
    #: and weights ``variant``: recorded in the config and checked on resume.
    base: str | None = None
    revision: str | None = None
    variant: str | None = None

    @abstractmethod
    def build(self, device: torch.device, mixed_precision: str) -> torch.nn.Module:
        """Load the base weights and return the module whose parameters train (on ``device``).

        ``mixed_precision`` is ``no``, ``fp16`` or ``bf16``: frozen parts (a VAE, a text encoder)
        may be cast to it; trainable parameters stay in fp32 (autocast handles the compute).
        """

    @abstractmethod
    def trainable_parameters(self, module: torch.nn.Module) -> list[torch.nn.Parameter]:
        """The parameters the optimiser updates (and EMA tracks)."""

    @abstractmethod
    def loss(
        self, module: torch.nn.Module, batch: dict[str, Any], generators: Sequence[torch.Generator]
    ) -> torch.Tensor:
        """The scalar training loss of one micro-batch.

        ``batch`` has ``pixels`` (N, 3, R, R) in [-1, 1], ``masks`` (N, 1, R, R) 1 = fill,
        ``names`` and ``captions``; ``generators`` hold one CPU generator per image, the only
        source of randomness allowed here (noise, timesteps, caption dropout).
        """

    @abstractmethod
    def trainable_state(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The trainable weights to checkpoint, by name."""

    @abstractmethod
    def load_trainable_state(self, module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Put checkpointed weights back."""

    @abstractmethod
    def complete(
        self, module: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, seeds: Sequence[int]
    ) -> torch.Tensor:
        """Validation samples: images (N, 3, R, R) in [0, 1], masks 1 = fill -> (N, 3, R, R) in [0, 1]."""

    @abstractmethod
    def export(
        self, module: torch.nn.Module, output: Path, config: dict[str, Any], ema_state: dict[str, torch.Tensor] | None
    ) -> list[Path]:
        """Write the final artefacts into ``output``; ``ema_state`` holds EMA weights by name.

        ``config`` is the run's record: ``{"train": TrainConfig fields, "data": fingerprint,
        "processes": N, "step": the last step}``.
        """

    def options(self) -> dict[str, Any]:
        """Method settings recorded in the configuration (and compared on resume)."""
        return {}

    def captions(self) -> dict[str, str] | None:
        """Captions by file name (or stem) for the data, if the method uses text; else ``None``."""
        return None
