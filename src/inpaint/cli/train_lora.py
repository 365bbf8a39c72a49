"""``inpaint train-lora``: a LoRA on Stable Diffusion 1.5 Inpainting (the study's Method 2)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from inpaint.captions import DEFAULT_CAPTION_MODEL, TrainingCaptions
from inpaint.cli import console, options, stopping
from inpaint.cli import train_options as t
from inpaint.training.lora_task import LoRAOptions

#: The study's Method 2 run, which every option defaults to (the library's defaults).
STUDY = t.study_run("lora")
STUDY_OPTIONS = LoRAOptions()


def train_lora(
    data: t.Data,
    output: t.Output = Path(STUDY.output),
    base: Annotated[
        str,
        typer.Option("--base", help="Stable Diffusion inpainting pipeline (9-channel UNet): hub id or local folder."),
    ] = STUDY.base,
    revision: options.Revision = None,
    variant: options.Variant = None,
    captions: Annotated[
        Path | None,
        typer.Option(
            "--captions",
            help="Captions JSON {file name: caption} from "
            "'inpaint caption' (default: DATA/captions.json, made or "
            "completed with BLIP first when BLIP is available).",
            dir_okay=False,
        ),
    ] = None,
    caption_model: Annotated[
        str,
        typer.Option(
            "--caption-model",
            help="BLIP model that captions DATA when it has no captions file: hub id or local folder.",
        ),
    ] = DEFAULT_CAPTION_MODEL,
    prompt: Annotated[
        str | None,
        typer.Option(
            "--prompt",
            help="One prompt for every image instead of captions "
            f"(default when BLIP is unavailable: {STUDY_OPTIONS.prompt!r}).",
            show_default=False,
        ),
    ] = None,
    rank: Annotated[int, typer.Option("--rank", help="LoRA rank.")] = STUDY_OPTIONS.rank,
    alpha: Annotated[
        float, typer.Option("--alpha", help="LoRA alpha (scale = alpha / rank).", callback=options.finite)
    ] = STUDY_OPTIONS.alpha,
    lora_dropout: Annotated[
        float, typer.Option("--lora-dropout", help="Dropout on the LoRA path.", callback=options.finite)
    ] = STUDY_OPTIONS.dropout,
    caption_dropout: Annotated[
        float,
        typer.Option(
            "--caption-dropout",
            help="Probability of training an image with the empty prompt (for classifier-free guidance).",
            callback=options.finite,
        ),
    ] = STUDY_OPTIONS.caption_dropout,
    noise_offset: Annotated[
        float,
        typer.Option(
            "--noise-offset",
            help="Per-channel noise offset (0: off; 0.05-0.1 helps very dark or bright images).",
            callback=options.finite,
        ),
    ] = STUDY_OPTIONS.noise_offset,
    snr_gamma: Annotated[
        float,
        typer.Option(
            "--snr-gamma", help="Min-SNR-gamma loss weighting (0: off; 5 is the paper's).", callback=options.finite
        ),
    ] = STUDY_OPTIONS.snr_gamma,
    gradient_checkpointing: Annotated[
        bool,
        typer.Option(
            "--gradient-checkpointing/--no-gradient-checkpointing",
            help="Recompute UNet activations in the backward pass: less memory, ~30% slower.",
        ),
    ] = STUDY_OPTIONS.gradient_checkpointing,
    cache_latents: Annotated[
        bool,
        typer.Option(
            "--cache-latents/--no-cache-latents",
            help="Keep each image's VAE posterior in "
            "memory (a flipped image is a second entry); the masked-image "
            "latents are still encoded every step.",
        ),
    ] = STUDY_OPTIONS.cache_latents,
    resolution: Annotated[
        int | None,
        typer.Option(
            "--resolution",
            help=f"Training size: images are resized (short side) and centre-cropped to a square of this side "
            f"(default: the base's native size, {STUDY.resolution} for SD 1.5, 1024 for SDXL).",
            show_default=False,
        ),
    ] = None,
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
    val_steps: Annotated[int, typer.Option("--val-steps", help="DPM-Solver++ steps for validation samples.")] = (
        STUDY_OPTIONS.val_steps
    ),
    flip: t.Flip = STUDY.flip,
    workers: t.Workers = STUDY.workers,
    device: options.Device = STUDY.device,
    json_output: options.Json = False,
    config: options.Config = None,
) -> None:
    """Train a LoRA on SD 1.5 Inpainting's UNet (to_q, to_k, to_v, to_out.0) for completion (or on
    another SD 1.x/2.x or SDXL inpainting base's).

    Every default is the study's Method 2 setting, shown with its option, and the library's too
    (TrainConfig(method="lora", ...), LoRAOptions()): AdamW, BLIP captions (made first, into
    DATA/captions.json, when missing) dropped part of the time, fp16 with a grad scaler on GPU.
    The result, OUTPUT/pytorch_lora_weights.safetensors, loads in stock diffusers and in 'inpaint
    complete --model sd' (found in runs/lora by default). Interrupt at will: the same command
    resumes.

    Examples:

    ```
    inpaint train-lora faces/                  # captions faces/ with BLIP, then trains -> runs/lora
    inpaint train-lora faces/ -o runs/lora-5k --base ./sd-inpainting --max-steps 5000
    inpaint train-lora faces/ --prompt "a photo of a face"   # one prompt, no captions
    ```
    """
    from inpaint.data import check_readable, list_folder_images
    from inpaint.training.lora_task import LoRATask

    lora_options = LoRAOptions(
        rank=rank,
        alpha=alpha,
        dropout=lora_dropout,
        caption_dropout=caption_dropout,
        noise_offset=noise_offset,
        snr_gamma=snr_gamma,
        gradient_checkpointing=gradient_checkpointing,
        cache_latents=cache_latents,
        val_steps=val_steps,
    )
    config_ = t.build_config("lora", locals())  # no --resolution: the base's native size
    # Bad values, data and a base that cannot load fail before any captioning (BLIP takes minutes).
    lora_options.validate()
    config_.validate()
    check_readable(list_folder_images(data, warn=False))  # the training run warns about stray files itself
    _check_base(base, revision, variant)
    # One stop request for both phases: a signal while captioning does not let training start.
    with stopping.graceful_stop("this batch of captions (the captions made so far are saved)") as stop:
        found = _captions(data, captions, prompt, output, caption_model, device, quiet=json_output, stop=stop)
        task = LoRATask(
            base,
            dataclasses.replace(lora_options, prompt=found.prompt),
            captions=found.captions,
            seed=seed,
            revision=revision,
            variant=variant,
        )
        t.run_training(task, config_, resume=resume, json_output=json_output, stop=stop)


def _check_base(base: str, revision: str | None, variant: str | None) -> None:
    """The cheap check the sd method makes: an inpainting pipeline on disk, cached or downloadable."""
    from inpaint.errors import InputError
    from inpaint.models.base import MethodOptions
    from inpaint.models.sd_weights import sd_unavailable

    reason = sd_unavailable(MethodOptions(weights=base, revision=revision, variant=variant))
    if reason is not None:
        raise InputError(f"--base {reason}")


def _captions(
    data: Path,
    captions: Path | None,
    prompt: str | None,
    output: Path,
    caption_model: str,
    device: str,
    quiet: bool,
    stop: stopping.StopRequest,
) -> TrainingCaptions:
    """What the library finds to train with (:func:`~inpaint.captions.captions_for_training`), with a
    progress bar while it captions; a stop request before training starts ends the command."""
    from inpaint.captions import captions_for_training
    from inpaint.cli.progress import RichProgress

    with RichProgress(disable=quiet) as progress:
        found = captions_for_training(
            data,
            captions,
            prompt=prompt,
            fallback_folder=output,
            model=caption_model,
            device=device,
            progress=progress,
            stop_requested=stop,
        )
    if found.stopped:
        raise stopping.stopped(
            stop, f"while captioning {data}, before training ({found.captioned} captioned, saved in {found.source})"
        )
    if stop():  # the signal came as the last batch was captioned (or before): training does not start
        done = f" ({found.captioned} captioned, saved in {found.source})" if found.captioned else ""
        raise stopping.stopped(stop, f"before training{done}")
    if found.captioned:
        console.info(f"captioned {found.captioned} image(s) with {caption_model} -> {found.source}")
    if found.captions is not None:
        console.info(f"training with the captions in {found.source}")
    return found
