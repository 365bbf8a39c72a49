"""``inpaint train-lora``: a LoRA on Stable Diffusion 1.5 Inpainting (the study's Method 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from inpaint.cli import console, options, stopping
from inpaint.cli import train_options as t

from inpaint import project
from inpaint.captions import DEFAULT_CAPTION_MODEL
from inpaint.models.sd import DEFAULT_PROMPT
from inpaint.models.sd_weights import DEFAULT_SD_BASE as DEFAULT_BASE


def train_lora(
    data: t.Data,
    output: t.Output = project.LORA_RUN,
    base: Annotated[str, typer.Option("--base", help="Stable Diffusion inpainting pipeline (9-channel UNet): hub "
                                      "id or local folder.")] = DEFAULT_BASE,
    revision: options.Revision = None,
    variant: options.Variant = None,
    captions: Annotated[Optional[Path], typer.Option("--captions", help="Captions JSON {file name: caption} from "
                                                     "'inpaint caption' (default: DATA/captions.json, made or "
                                                     "completed with BLIP first when BLIP is available).",
                                                     dir_okay=False)] = None,
    caption_model: Annotated[str, typer.Option("--caption-model", help="BLIP model that captions DATA when it has "
                                               "no captions file: hub id or local folder.")] = DEFAULT_CAPTION_MODEL,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="One prompt for every image instead of captions "
                                                  f"(default when BLIP is unavailable: {DEFAULT_PROMPT!r}).",
                                                  show_default=False)] = None,
    rank: Annotated[int, typer.Option("--rank", help="LoRA rank.")] = 16,
    alpha: Annotated[float, typer.Option("--alpha", help="LoRA alpha (scale = alpha / rank).",
                                         callback=options.finite)] = 16.0,
    lora_dropout: Annotated[float, typer.Option("--lora-dropout", help="Dropout on the LoRA path.",
                                                callback=options.finite)] = 0.05,
    caption_dropout: Annotated[float, typer.Option("--caption-dropout", help="Probability of training an image "
                                                   "with the empty prompt (for classifier-free guidance).",
                                                   callback=options.finite)] = 0.15,
    noise_offset: Annotated[float, typer.Option("--noise-offset", help="Per-channel noise offset (0: off; "
                                                "0.05-0.1 helps very dark or bright images).",
                                                callback=options.finite)] = 0.0,
    snr_gamma: Annotated[float, typer.Option("--snr-gamma", help="Min-SNR-gamma loss weighting (0: off; 5 is "
                                             "the paper's).",
                                             callback=options.finite)] = 0.0,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute UNet "
                                                         "activations in the backward pass: less memory, "
                                                         "~30% slower.")] = False,
    cache_latents: Annotated[bool, typer.Option("--cache-latents/--no-cache-latents", help="Keep each image's VAE posterior in "
                                                "memory (a flipped image is a second entry); the masked-image "
                                                "latents are still encoded every step.")] = False,
    resolution: t.Resolution = 512,
    batch_size: t.BatchSize = 2,
    lr: t.Lr = 1e-4,
    epochs: t.Epochs = 5.0,
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
    ema_decay: t.EmaDecay = 0.0,
    validate_every: t.ValidateEvery = 0,
    val_images: t.ValImages = 4,
    val_data: t.ValData = None,
    val_steps: Annotated[int, typer.Option("--val-steps", help="DPM-Solver++ steps for validation samples.")] = 20,
    flip: t.Flip = True,
    workers: t.Workers = 0,
    device: options.Device = "auto",
    json_output: options.Json = False,
    config: options.Config = None,
) -> None:
    """Train a LoRA on SD 1.5 Inpainting's UNet (to_q, to_k, to_v, to_out.0) for completion.

    Defaults are the study's: 512 px, batch 2, AdamW lr 1e-4, 5 epochs, rank 16, alpha 16,
    dropout 0.05, BLIP captions (made first, into DATA/captions.json, when missing) dropped 15% of
    the time, fp16 with a grad scaler on GPU. The result, OUTPUT/pytorch_lora_weights.safetensors,
    loads in stock diffusers and in 'inpaint complete --model sd' (found in runs/lora by default).
    Interrupt at will: the same command resumes.

    Examples:

    ```
    inpaint train-lora faces/                  # captions faces/ with BLIP, then trains -> runs/lora
    inpaint train-lora faces/ -o runs/lora-5k --base ./sd-inpainting --max-steps 5000
    inpaint train-lora faces/ --prompt "a photo of a face"   # one prompt, no captions
    ```
    """
    from inpaint.data import check_readable, list_folder_images
    from inpaint.training.lora_task import LoRAOptions, LoRATask

    lora_options = LoRAOptions(rank=rank, alpha=alpha, dropout=lora_dropout, caption_dropout=caption_dropout,
                               prompt=DEFAULT_PROMPT if prompt is None else prompt, noise_offset=noise_offset,
                               snr_gamma=snr_gamma,
                               gradient_checkpointing=gradient_checkpointing, cache_latents=cache_latents,
                               val_steps=val_steps)
    config_ = t.build_config("lora", locals())
    # Bad values, data and a base that cannot load fail before any captioning (BLIP takes minutes).
    lora_options.validate()
    config_.validate()
    check_readable(list_folder_images(data, warn=False))  # the training run warns about stray files itself
    _check_base(base, revision, variant)
    # One stop request for both phases: a signal while captioning does not let training start.
    with stopping.graceful_stop("this batch of captions (the captions made so far are saved)") as stop:
        captions_data = None if prompt is not None and captions is None else _captions(
            data, captions, output, caption_model, device, quiet=json_output, stop=stop)
        task = LoRATask(base, lora_options, captions=captions_data, seed=seed, revision=revision, variant=variant)
        t.run_training(task, config_, resume=resume, json_output=json_output, stop=stop)


def _check_base(base: str, revision: str | None, variant: str | None) -> None:
    """The cheap check the sd method makes: an inpainting pipeline on disk, cached or downloadable."""
    from inpaint.errors import InputError
    from inpaint.models.base import MethodOptions
    from inpaint.models.sd import sd_unavailable

    reason = sd_unavailable(MethodOptions(weights=base, revision=revision, variant=variant))
    if reason is not None:
        raise InputError(f"--base {reason}")


def _captions(data: Path, captions: Path | None, output: Path, caption_model: str, device: str,
              quiet: bool, stop: stopping.StopRequest) -> dict[str, str] | None:
    """The captions to train with (BLIP-made when missing and possible), or None for one prompt."""
    from inpaint.captions import captions_for_training
    from inpaint.cli.progress import RichProgress

    with RichProgress(disable=quiet) as progress:
        found = captions_for_training(data, captions, fallback_folder=output, model=caption_model, device=device,
                                      progress=progress, stop_requested=stop)
    if found.stopped:
        raise stopping.stopped(stop, f"while captioning {data}, before training ({found.captioned} captioned, "
                                     f"saved in {found.source})")
    if stop():  # the signal came as the last batch was captioned (or before): training does not start
        done = f" ({found.captioned} captioned, saved in {found.source})" if found.captioned else ""
        raise stopping.stopped(stop, f"before training{done}")
    if found.captions is None:
        console.warn(f"{data} has no captions, so every image trains on the prompt {DEFAULT_PROMPT!r}: BLIP "
                     f"cannot caption here ({found.reason}); for the study's captions run `inpaint caption "
                     f"{data}` where BLIP is available, or choose the prompt with --prompt")
        return None
    if found.captioned:
        console.info(f"captioned {found.captioned} image(s) with {caption_model} -> {found.source}")
    console.info(f"training with the captions in {found.source}")
    return found.captions
