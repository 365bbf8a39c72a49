"""Typed, serialisable configurations, saved beside every checkpoint and result.

A configuration is a dataclass whose fields are the knobs of a run. It is written as JSON next to
what the run produced (``training_config.json``), so a checkpoint says how it was made and a
resumed run can check it is continuing the same experiment.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from inpaint import project
from inpaint.errors import InputError
from inpaint.models.pixel_unet import DEFAULT_BASE as DEFAULT_DDPM_BASE
from inpaint.models.sd_weights import DEFAULT_SD_BASE

LRSchedule = Literal["constant", "constant_with_warmup", "linear", "cosine"]
Precision = Literal["auto", "no", "fp16", "bf16"]


@dataclass(frozen=True)
class MethodDefaults:
    """The study's settings of one training method, where the two methods differ.

    Method-specific settings (loss weights, LoRA rank, …) are the defaults of the task's own
    options (:class:`~inpaint.training.ddpm_task.DDPMOptions`,
    :class:`~inpaint.training.lora_task.LoRAOptions`).
    """

    #: The pretrained weights the study started from (a hub id): the train command's ``--base``.
    base: str
    resolution: int
    batch_size: int
    lr: float
    epochs: float
    ema_decay: float
    #: The project's run folder (:mod:`inpaint.project`): where the train command writes without ``-o``.
    #: The library writes only where :attr:`TrainConfig.output` says.
    run: Path


#: Method 1 (a pixel DDPM fine-tuned for completion) and Method 2 (a LoRA on SD 1.5 Inpainting)
#: as the study ran them: what ``TrainConfig(method=...)`` fills in, and what ``train-ddpm`` and
#: ``train-lora`` show as their defaults.
METHOD_DEFAULTS: dict[str, MethodDefaults] = {
    "ddpm": MethodDefaults(
        base=DEFAULT_DDPM_BASE,
        resolution=256,
        batch_size=8,
        lr=1e-5,
        epochs=10.0,
        ema_decay=0.999,
        run=project.DDPM_RUN,
    ),
    "lora": MethodDefaults(
        base=DEFAULT_SD_BASE, resolution=512, batch_size=2, lr=1e-4, epochs=5.0, ema_decay=0.0, run=project.LORA_RUN
    ),
}


def native_resolution(base: str, revision: str | None = None) -> int:
    """The size an inpainting base was trained at, when its ``model_index.json`` is on this machine
    (a folder, or the hub cache; nothing is downloaded to find out): 1024 for SDXL, else the
    study's 512 (SD 1.5's)."""
    from inpaint.models.sd_weights import local_family

    family = local_family(base, revision)
    return 1024 if family is not None and family.method == "sdxl" else METHOD_DEFAULTS["lora"].resolution


#: The :class:`TrainConfig` fields that :data:`METHOD_DEFAULTS` fills when they are left ``None``.
PER_METHOD_FIELDS = ("resolution", "batch_size", "lr", "epochs", "ema_decay")


@dataclass
class TrainConfig:
    """Settings shared by ``train-ddpm`` and ``train-lora`` (method settings live in ``method_options``).

    ``TrainConfig(method="ddpm", data=..., output=...)`` is the study's run of that method: the
    fields left ``None`` here (``resolution``, ``batch_size``, ``lr``, ``epochs``, ``ema_decay``)
    take ``method``'s values from :data:`METHOD_DEFAULTS`, the table the train commands take their
    defaults from too (a LoRA's resolution: its base's native size, :func:`native_resolution`);
    the other defaults are the same for both methods. ``base``, ``revision``
    and ``variant`` are the task's (it loads them): :func:`~inpaint.training.loop.train` records
    them here, and refuses a config that names others.
    ``epochs`` is used unless ``max_steps`` is set. ``batch_size`` is per process; the effective
    batch is ``batch_size * processes * grad_accum``. ``ema_decay = 0`` disables EMA.
    """

    method: str
    data: str
    output: str
    #: The pretrained weights the task starts from: a hub id or a local folder.
    base: str | None = None
    #: The ``base``'s hub revision (branch, tag or commit) and weights variant (``fp16``), if chosen.
    revision: str | None = None
    variant: str | None = None
    resolution: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    epochs: float | None = None
    max_steps: int | None = None
    grad_accum: int = 1
    lr_schedule: LRSchedule = "constant"
    warmup_steps: int = 0
    weight_decay: float = 1e-2
    clip_grad_norm: float = 1.0
    mixed_precision: Precision = "auto"
    ema_decay: float | None = None
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
        "method",
        "base",
        "revision",
        "variant",
        "resolution",
        "batch_size",
        "lr",
        "grad_accum",
        "lr_schedule",
        "warmup_steps",
        "weight_decay",
        "clip_grad_norm",
        "ema_decay",
        "seed",
        "masks",
        "flip",
        "method_options",
    )

    def __post_init__(self) -> None:
        unset = [name for name in PER_METHOD_FIELDS if getattr(self, name) is None]
        if not unset:
            return
        if self.method not in METHOD_DEFAULTS:
            raise InputError(
                f"method {self.method!r}: has no default settings (choose {' or '.join(METHOD_DEFAULTS)}, "
                f"or give {', '.join(unset)})"
            )
        for name in unset:
            setattr(self, name, getattr(METHOD_DEFAULTS[self.method], name))
        if "resolution" in unset and self.method == "lora":
            self.resolution = native_resolution(self.base or METHOD_DEFAULTS["lora"].base, self.revision)

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
            raise InputError(
                f"--lr-schedule {self.lr_schedule}: choose constant, constant_with_warmup, linear or cosine"
            )

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
        names = [
            name
            for name in self.TRAJECTORY_FIELDS
            if name != "method_options" and _normalise(mine[name]) != _normalise(theirs[name])
        ]
        a, b = mine["method_options"] or {}, theirs["method_options"] or {}
        names += sorted(
            k for k in set(a) | set(b) if not k.startswith("val_") and _normalise(a.get(k)) != _normalise(b.get(k))
        )
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
