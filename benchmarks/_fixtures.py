"""Small random models and synthetic data for the benchmarks (speed does not depend on the weights' values).

The published architectures (ddpm-celebahq-256, SD 1.5 Inpainting, BLIP) and the test suite's tiny
models come from :mod:`inpaint.testing`; what is here is sized for timing on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from inpaint.models.sd import DEFAULT_PROMPT
from inpaint.testing import DDPM_SCHEDULER

#: The prompt of every SD benchmark: the study's caption suffix, as `inpaint complete -m sd` uses it.
PROMPT = DEFAULT_PROMPT
#: A pixel UNet of ~0.7 M parameters, attention at the lowest resolution: between diffusers' test model
#: and the real 114 M-parameter ddpm-celebahq-256, so that the network, not Python, dominates the time,
#: as it does for real models, while a CPU still trains it in minutes. ``sample_size`` and
#: ``in_channels`` are given where it is built.
UNET = dict(
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    norm_num_groups=8,
    attention_head_dim=8,
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    out_channels=3,
)
#: Its noise schedule: ddpm-celebahq-256's (1000 linear betas, x0 clipped).
SCHEDULER = DDPM_SCHEDULER


def ratio_line(name: str, ours: float, bare: float, target: float) -> str:
    """A table row: both times, their ratio and whether it meets ``target``."""
    ratio = ours / bare
    verdict = "met" if ratio <= target else "**not met**"
    return f"| {name} | {ours * 1000:.1f} ms | {bare * 1000:.1f} ms | {ratio:.3f}x | <= {target:.2f}x: {verdict} |"


def square_hole_inputs(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random images in [0, 1] (fixed seed) and masks whose hole is the central square of half the side."""
    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(n, 1, size, size)
    masks[:, :, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return images, masks


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
