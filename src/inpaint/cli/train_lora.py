"""``inpaint train-lora``: a LoRA on Stable Diffusion 1.5 Inpainting (the study's Method 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from inpaint.cli import console, options
from inpaint.cli import train_options as t

from inpaint.models.sd import DEFAULT_PROMPT
from inpaint.models.sd_weights import DEFAULT_SD_BASE as DEFAULT_BASE


def train_lora(
    data: t.Data,
    output: t.Output,
    base: Annotated[str, typer.Option("--base", help="Stable Diffusion inpainting pipeline (9-channel UNet): hub "
                                      "id or local folder.")] = DEFAULT_BASE,
    captions: Annotated[Optional[Path], typer.Option("--captions", help="Captions JSON {file name: caption} from "
                                                     "'inpaint caption' (default: DATA/captions.json when present, "
                                                     "else --prompt for every image).", dir_okay=False)] = None,
    prompt: Annotated[str, typer.Option("--prompt", help="Prompt of every image when there are no captions.")] = (
        DEFAULT_PROMPT
    ),
    rank: Annotated[int, typer.Option("--rank", help="LoRA rank.")] = 16,
    alpha: Annotated[float, typer.Option("--alpha", help="LoRA alpha (scale = alpha / rank).")] = 16.0,
    lora_dropout: Annotated[float, typer.Option("--lora-dropout", help="Dropout on the LoRA path.")] = 0.05,
    caption_dropout: Annotated[float, typer.Option("--caption-dropout", help="Probability of training an image "
                                                   "with the empty prompt (for classifier-free guidance).")] = 0.15,
    noise_offset: Annotated[float, typer.Option("--noise-offset", help="Per-channel noise offset (0: off; "
                                                "0.05-0.1 helps very dark or bright images).")] = 0.0,
    snr_gamma: Annotated[float, typer.Option("--snr-gamma", help="Min-SNR-gamma loss weighting (0: off; 5 is "
                                             "the paper's).")] = 0.0,
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
    val_steps: Annotated[int, typer.Option("--val-steps", help="DPM-Solver++ steps for validation samples.")] = 20,
    flip: t.Flip = True,
    workers: t.Workers = 0,
    device: options.Device = "auto",
    json_output: options.Json = False,
    config: options.Config = None,
) -> None:
    """Train a LoRA on SD 1.5 Inpainting's UNet (to_q, to_k, to_v, to_out.0) for completion.

    Defaults are the study's: 512 px, batch 2, AdamW lr 1e-4, 5 epochs, rank 16, alpha 16,
    dropout 0.05, captions dropped 15% of the time, fp16 with a grad scaler on GPU. The result,
    OUTPUT/pytorch_lora_weights.safetensors, loads in stock diffusers and in
    'inpaint complete --model sd --lora OUTPUT'. Interrupt at will: the same command resumes.

    Examples:

    ```
    inpaint caption faces/ && inpaint train-lora faces/ -o runs/lora
    inpaint train-lora faces/ -o runs/lora --base ./sd-inpainting --max-steps 5000
    ```
    """
    from inpaint.training.lora_task import LoRAOptions, LoRATask

    captions_data = _captions(data, captions)
    lora_options = LoRAOptions(rank=rank, alpha=alpha, dropout=lora_dropout, caption_dropout=caption_dropout,
                               prompt=prompt, noise_offset=noise_offset, snr_gamma=snr_gamma,
                               gradient_checkpointing=gradient_checkpointing, cache_latents=cache_latents,
                               val_steps=val_steps)
    task = LoRATask(base, lora_options, captions=captions_data, seed=seed)
    config_ = t.build_config("lora", locals())
    t.run_training(task, config_, resume=resume, json_output=json_output)


def _captions(data: Path, captions: Path | None) -> dict[str, str] | None:
    """The captions to train with: the given file, else DATA/captions.json if present, else None."""
    from inpaint.captions import CAPTIONS_NAME, missing_captions
    from inpaint.data import load_captions
    from inpaint.errors import InputError

    if captions is None:
        if not (data / CAPTIONS_NAME).is_file():
            return None
        captions = data / CAPTIONS_NAME
        console.info(f"training with the captions in {captions}")
    loaded = load_captions(captions)
    missing = missing_captions(loaded, data)
    if missing:
        raise InputError(f"{captions}: no caption for {len(missing)} image(s) of {data} (first: {missing[0]}); "
                         f"run `inpaint caption {data} -o {captions}` to add them")
    return loaded
