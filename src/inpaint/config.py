"""Typed, serialisable configurations, saved beside every checkpoint and result.

A configuration is a dataclass whose fields are the knobs of a run. It is written as JSON next to
what the run produced (``training_config.json``), so a checkpoint says how it was made and a
resumed run can check it is continuing the same experiment.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from inpaint.errors import InputError

LRSchedule = Literal["constant", "constant_with_warmup", "linear", "cosine"]
Precision = Literal["auto", "no", "fp16", "bf16"]


@dataclass
class TrainConfig:
    """Settings shared by ``train-ddpm`` and ``train-lora`` (method settings live in ``method_options``).

    The field defaults are Method 1's values with EMA off; each command fills the study's values
    for its method (shared/METHOD.md): ``train-lora`` sets 512 px, batch 2, lr 1e-4, 5 epochs.
    From Python, give those yourself (docs/sd.md shows how).
    ``epochs`` is used unless ``max_steps`` is set. ``batch_size`` is per process; the effective
    batch is ``batch_size * processes * grad_accum``. ``ema_decay = 0`` disables EMA.
    """

    method: str
    data: str
    output: str
    base: str
    #: The ``base``'s hub revision (branch, tag or commit) and weights variant (``fp16``), if chosen.
    revision: str | None = None
    variant: str | None = None
    resolution: int = 256
    batch_size: int = 8
    lr: float = 1e-5
    epochs: float = 10.0
    max_steps: int | None = None
    grad_accum: int = 1
    lr_schedule: LRSchedule = "constant"
    warmup_steps: int = 0
    weight_decay: float = 1e-2
    clip_grad_norm: float = 1.0
    mixed_precision: Precision = "auto"
    ema_decay: float = 0.0
    save_every: int = 500
    keep_last: int = 2
    validate_every: int = 0
    val_images: int = 4
    #: A folder of validation images; ``None`` holds ``val_images`` of the training folder out.
    val_data: str | None = None
    seed: int = 0
    masks: list[str] | str = field(default_factory=list)
    flip: bool = True
    workers: int = 0
    device: str = "auto"
    method_options: dict[str, Any] = field(default_factory=dict)

    #: Fields that shape the optimisation trajectory: a resumed run must not change them.
    #: ``val_images`` and ``val_data`` shape it only through the images they hold out of training:
    #: the loop compares those on resume (:mod:`inpaint.training.loop`).
    TRAJECTORY_FIELDS = (
        "method", "base", "revision", "variant", "resolution", "batch_size", "lr", "grad_accum", "lr_schedule",
        "warmup_steps", "weight_decay", "clip_grad_norm", "ema_decay", "seed", "masks", "flip", "method_options",
    )

    def validate(self) -> None:
        """Raise :class:`InputError` naming the option for out-of-range values."""
        checks = [
            ("--resolution", self.resolution >= 8 and self.resolution % 8 == 0, "a multiple of 8, at least 8"),
            ("--batch-size", self.batch_size >= 1, "at least 1"),
            ("--lr", math.isfinite(self.lr) and self.lr > 0, "a positive number"),
            ("--epochs", math.isfinite(self.epochs) and self.epochs > 0, "positive"),
            ("--max-steps", self.max_steps is None or self.max_steps >= 1, "at least 1"),
            ("--grad-accum", self.grad_accum >= 1, "at least 1"),
            ("--warmup-steps", self.warmup_steps >= 0, "0 or more"),
            ("--clip-grad-norm", math.isfinite(self.clip_grad_norm) and self.clip_grad_norm >= 0, "0 (off) or more"),
            ("--ema-decay", 0 <= self.ema_decay < 1, "in [0, 1)"),
            ("--save-every", self.save_every >= 1, "at least 1"),
            ("--keep-last", self.keep_last >= 1, "at least 1"),
            ("--validate-every", self.validate_every >= 0, "0 (at checkpoints only) or more"),
            ("--val-images", self.val_images >= 0, "0 (no validation) or more"),
            ("--workers", self.workers >= 0, "0 or more"),
        ]
        for option, ok, expected in checks:
            if not ok:
                raise InputError(f"{option} {getattr(self, _field_of(option))}: must be {expected}")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise InputError(f"--mixed-precision {self.mixed_precision}: choose auto, no, fp16 or bf16")
        if self.lr_schedule not in ("constant", "constant_with_warmup", "linear", "cosine"):
            raise InputError(f"--lr-schedule {self.lr_schedule}: choose constant, constant_with_warmup, linear or cosine")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def trajectory_differences(self, other: TrainConfig) -> list[str]:
        """Names of trajectory fields whose values differ between two configs.

        Method options are compared one by one and named; those of validation alone (``val_*``:
        the samples' steps and guidance) do not shape the trajectory and may change.
        """
        mine, theirs = self.to_dict(), other.to_dict()
        names = [name for name in self.TRAJECTORY_FIELDS
                 if name != "method_options" and _normalise(mine[name]) != _normalise(theirs[name])]
        a, b = mine["method_options"] or {}, theirs["method_options"] or {}
        names += sorted(k for k in set(a) | set(b) if not k.startswith("val_") and _normalise(a.get(k)) != _normalise(b.get(k)))
        return names


def _field_of(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def _normalise(value: Any) -> Any:
    """Compare JSON round-tripped values: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value
