"""``inpaint train-ddpm``: fine-tune a pretrained pixel DDPM for completion (the study's Method 1)."""

from __future__ import annotations

from typing import Annotated

import typer

from inpaint import project
from inpaint.cli import options
from inpaint.cli import train_options as t

DEFAULT_BASE = "google/ddpm-celebahq-256"


def train_ddpm(
    data: t.Data,
    output: t.Output = project.DDPM_RUN,
    base: Annotated[str, typer.Option("--base", help="Pretrained UNet2DModel: hub id or local folder (flat or "
                                      "pipeline layout); 3 channels are widened to 7.")] = DEFAULT_BASE,
    revision: options.Revision = None,
    variant: options.Variant = None,
    resolution: t.Resolution = 256,
    batch_size: t.BatchSize = 8,
    lr: t.Lr = 1e-5,
    epochs: t.Epochs = 10.0,
    max_steps: t.MaxSteps = None,
    save_every: t.SaveEvery = 500,
    keep_last: t.KeepLast = 2,
    resume: t.Resume = True,
    seed: options.Seed = 0,
    masks: t.Masks = None,
    grad_accum: t.GradAccum = 1,
    lr_schedule: t.LrSchedule = "constant",
    warmup_steps: t.WarmupSteps = 0,
    clip_grad_norm: t.ClipGradNorm = 1.0,
    mixed_precision: t.MixedPrecision = "auto",
    ema_decay: t.EmaDecay = 0.999,
    validate_every: t.ValidateEvery = 0,
    val_images: t.ValImages = 4,
    val_data: t.ValData = None,
    val_steps: Annotated[int, typer.Option("--val-steps", help="Ancestral DDPM steps for validation samples.")] = 25,
    hole_weight: Annotated[float, typer.Option("--hole-weight", help="Loss weight of hole pixels.",
                                               callback=options.finite)] = 1.0,
    known_weight: Annotated[float, typer.Option("--known-weight", help="Loss weight of known pixels.",
                                                callback=options.finite)] = 0.05,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute UNet "
                                                         "activations in the backward pass: less memory, ~30% "
                                                         "slower; the same gradients.")] = False,
    flip: t.Flip = True,
    workers: t.Workers = 0,
    device: options.Device = "auto",
    json_output: options.Json = False,
    config: options.Config = None,
) -> None:
    """Fine-tune a pixel DDPM for completion: input concat(masked image, mask, noisy image).

    Defaults are the study's: 256 px, batch 8, AdamW lr 1e-5, 10 epochs, gradient clipping 1.0,
    mixed precision on GPU, EMA 0.999, hole/known loss weights 1.0/0.05. Interrupt at will: the
    same command continues from the latest checkpoint, exactly.

    Examples:

    ```
    inpaint train-ddpm faces/                  # -> runs/ddpm
    inpaint train-ddpm faces/ -o runs/ddpm-long --base ./ddpm-celebahq-256 --max-steps 20000
    ```
    """
    from inpaint.training.ddpm_task import DDPMOptions, DDPMTask

    task = DDPMTask(base, DDPMOptions(hole_weight=hole_weight, known_weight=known_weight, val_steps=val_steps,
                                      gradient_checkpointing=gradient_checkpointing), revision=revision,
                     variant=variant)
    config_ = t.build_config("ddpm", locals())
    t.run_training(task, config_, resume=resume, json_output=json_output)
