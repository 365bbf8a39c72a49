"""``inpaint train-ddpm``: fine-tune a pretrained pixel DDPM for completion (the study's Method 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from inpaint.cli import options
from inpaint.cli import train_options as t
from inpaint.training.ddpm_task import DDPMOptions

#: The study's Method 1 run, which every option defaults to (the library's defaults).
STUDY = t.study_run("ddpm")
STUDY_OPTIONS = DDPMOptions()


def train_ddpm(
    data: t.Data,
    output: t.Output = Path(STUDY.output),
    base: Annotated[
        str,
        typer.Option(
            "--base",
            help="Pretrained UNet2DModel: hub id or local folder (flat or "
            "pipeline layout); 3 channels are widened to 7.",
        ),
    ] = STUDY.base,
    revision: options.Revision = None,
    variant: options.Variant = None,
    resolution: t.Resolution = STUDY.resolution,
    batch_size: t.BatchSize = STUDY.batch_size,
    lr: t.Lr = STUDY.lr,
    epochs: t.Epochs = STUDY.epochs,
    max_steps: t.MaxSteps = STUDY.max_steps,
    save_every: t.SaveEvery = STUDY.save_every,
    keep_last: t.KeepLast = STUDY.keep_last,
    resume: t.Resume = True,
    seed: options.Seed = STUDY.seed,
    masks: t.Masks = None,
    grad_accum: t.GradAccum = STUDY.grad_accum,
    lr_schedule: t.LrSchedule = STUDY.lr_schedule,
    warmup_steps: t.WarmupSteps = STUDY.warmup_steps,
    clip_grad_norm: t.ClipGradNorm = STUDY.clip_grad_norm,
    mixed_precision: t.MixedPrecision = STUDY.mixed_precision,
    ema_decay: t.EmaDecay = STUDY.ema_decay,
    validate_every: t.ValidateEvery = STUDY.validate_every,
    val_images: t.ValImages = STUDY.val_images,
    val_data: t.ValData = None,
    val_steps: Annotated[int, typer.Option("--val-steps", help="Ancestral DDPM steps for validation samples.")] = (
        STUDY_OPTIONS.val_steps
    ),
    hole_weight: Annotated[
        float, typer.Option("--hole-weight", help="Loss weight of hole pixels.", callback=options.finite)
    ] = STUDY_OPTIONS.hole_weight,
    known_weight: Annotated[
        float, typer.Option("--known-weight", help="Loss weight of known pixels.", callback=options.finite)
    ] = STUDY_OPTIONS.known_weight,
    gradient_checkpointing: Annotated[
        bool,
        typer.Option(
            "--gradient-checkpointing/--no-gradient-checkpointing",
            help="Recompute UNet activations in the backward pass: less memory, ~30% slower; the same gradients.",
        ),
    ] = (STUDY_OPTIONS.gradient_checkpointing),
    flip: t.Flip = STUDY.flip,
    workers: t.Workers = STUDY.workers,
    device: options.Device = STUDY.device,
    json_output: options.Json = False,
    config: options.Config = None,
) -> None:
    """Fine-tune a pixel DDPM for completion: input concat(masked image, mask, noisy image).

    Every default is the study's Method 1 setting, shown with its option, and the library's too
    (TrainConfig(method="ddpm", ...)): AdamW, gradient clipping, mixed precision on GPU, an EMA of
    the weights (the run's result), hole and known pixels weighted in the loss. Interrupt at will:
    the same command continues from the latest checkpoint, exactly.

    Examples:

    ```
    inpaint train-ddpm faces/                  # -> runs/ddpm
    inpaint train-ddpm faces/ -o runs/ddpm-long --base ./ddpm-celebahq-256 --max-steps 20000
    ```
    """
    from inpaint.training.ddpm_task import DDPMTask

    task = DDPMTask(
        base,
        DDPMOptions(
            hole_weight=hole_weight,
            known_weight=known_weight,
            val_steps=val_steps,
            gradient_checkpointing=gradient_checkpointing,
        ),
        revision=revision,
        variant=variant,
    )
    config_ = t.build_config("ddpm", locals())
    t.run_training(task, config_, resume=resume, json_output=json_output)
