"""Random models and synthetic data shared by the sections of run.py (speed does not depend on weights)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

#: ~0.7 M parameters, attention at the lowest resolution (as in ddpm_samplers.py).
UNET = dict(block_out_channels=(16, 32, 64), layers_per_block=1, norm_num_groups=8, attention_head_dim=8,
            down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), out_channels=3)
SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)


def ratio_line(name: str, ours: float, bare: float, target: float) -> str:
    """A table row: both times, their ratio and whether it meets ``target``."""
    ratio = ours / bare
    verdict = "met" if ratio <= target else "**not met**"
    return f"| {name} | {ours * 1000:.1f} ms | {bare * 1000:.1f} ms | {ratio:.3f}x | <= {target:.2f}x: {verdict} |"


def completion_model(directory: Path, size: int) -> Path:
    """The 0.7 M-parameter 7-channel completion UNet with a DDPM schedule, saved like a train-ddpm output."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    UNet2DModel(**UNET, sample_size=size, in_channels=7).save_pretrained(directory)
    DDPMScheduler(**SCHEDULER).save_pretrained(directory)
    return directory


def tiny_sd(directory: Path) -> Path:
    """The tests' tiny Stable Diffusion inpainting pipeline (diffusers' fast-test components)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from inpaint.testing import save_tiny_sd_inpaint

    for logging in (diffusers_logging, transformers_logging):
        logging.set_verbosity_error()
        logging.disable_progress_bar()
    return save_tiny_sd_inpaint(directory)


def train_images(folder: Path, count: int, size: int) -> Path:
    """``count`` two-colour gradient PNGs of ``size`` px."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        y, x = np.mgrid[0:size, 0:size] / size
        colours = rng.uniform(0, 255, (2, 3))
        pixels = (x[..., None] * colours[0] + (1 - y[..., None]) * colours[1]) / 2
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    return folder


def log_step_seconds(run: Path) -> float:
    """Median step time from a training run's log.jsonl (the first step and the last, which writes
    the final checkpoint, excluded)."""
    import json

    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    stamps = [r["seconds"] for r in records if "loss" in r]
    return float(np.median(np.diff(stamps)[1:-1]))
