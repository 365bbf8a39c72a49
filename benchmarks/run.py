"""Speed of `inpaint` against the bare libraries it wraps, measured in one run on one machine.

    HF_HUB_OFFLINE=1 python -m benchmarks.run [--only SECTION ...] [--threads N]

Sections (each replaces its own block of docs/benchmarks.md):

- ``startup``: wall time of ``inpaint --help`` and ``inpaint --version`` (target < 0.5 s);
- ``ddpm-overhead``: the ``ddpm`` method (DDIM, re-imposing the known region every step) against a
  bare diffusers DDIM loop on the same 7-channel UNet, steps and batch (target <= 1.03x);
- ``train-overhead``: one ``train-ddpm`` step of the shared loop against a minimal hand-written
  step doing the same work — same data loader, forward, weighted loss, backward, clipping, AdamW
  and EMA (target <= 1.05x);
- ``sd-overhead``: the ``sd`` method against a bare ``StableDiffusionInpaintPipeline.__call__`` on
  the same tiny SD weights, steps, size and guidance (target <= 1.03x);
- ``lora-overhead``: one ``train-lora`` step of the shared loop against a hand-written diffusers +
  peft step on the same tiny SD (target <= 1.05x);
- ``batched``: images per second of folder completion at batch size 1, 4 and 16 (ddpm, sd).

GPU figures (real architectures, fp16, compile) come from ``python -m benchmarks.gpu``, on a CUDA machine.

Models are random (speed does not depend on the weights): a 0.7 M-parameter UNet, between
diffusers' test model and the real 114 M-parameter ``google/ddpm-celebahq-256``, so that the
network, not Python, dominates as it does for real models.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Writing model shards" bars on stderr

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ._fixtures import SCHEDULER, UNET, completion_model, log_step_seconds, ratio_line, square_hole_inputs, train_images  # noqa: E402
from ._report import interleaved_medians, machine, write_section  # noqa: E402
from ._sd_sections import batched, lora_overhead, sd_overhead  # noqa: E402

# ---- startup --------------------------------------------------------------------------------------


def startup() -> str:
    runs = {}
    for args in (["--help"], ["--version"], ["complete", "--help"]):
        command = [sys.executable, "-m", "inpaint", *args]
        subprocess.run(command, capture_output=True, check=True)  # warm the file cache
        times = []
        for _ in range(10):
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            times.append(time.perf_counter() - started)
        runs["inpaint " + " ".join(args)] = float(np.median(times))
    rows = "\n".join(
        f"| `{name}` | {seconds:.3f} s | {'met' if seconds < 0.5 else '**not met**'} |"
        for name, seconds in runs.items()
    )
    return f"""## Start-up time

**Machine.** {machine()}.

**Rerun.** `python -m benchmarks.run --only startup`. Median of 10 runs of `python -m inpaint …`
(a fresh interpreter each time; the console script is the same code). Target: < 0.5 s.

| command | median wall time | target |
|---|---:|---|
{rows}

Heavy libraries (torch, diffusers, transformers, scikit-image, OpenCV) are imported inside the
commands that use them, so help and version never load them (a test checks this).
"""


# ---- the ddpm sampler against a bare diffusers loop -------------------------------------------------


def ddpm_overhead(size: int = 64, batch: int = 4, steps: int = 25) -> str:
    from diffusers import DDIMScheduler

    from inpaint.models import load_inpainter
    from inpaint.models.base import MethodOptions

    with tempfile.TemporaryDirectory() as tmp:
        weights = completion_model(Path(tmp) / "unet7", size)
        inpainter = load_inpainter(
            "ddpm", MethodOptions(weights=str(weights), sampler="ddim", steps=steps, device="cpu")
        )
    unet, config = inpainter.unet, inpainter.scheduler_config
    images, masks = square_hole_inputs(batch, size)
    seeds = list(range(batch))

    def ours() -> None:
        inpainter(images, masks, seeds)

    def bare() -> None:
        # What a user would write with diffusers alone: one generator, no re-imposition, no paste-back.
        scheduler = DDIMScheduler.from_config(config, set_alpha_to_one=True)
        scheduler.set_timesteps(steps)
        x0 = images * 2 - 1
        condition = torch.cat([x0 * (1 - masks), masks], dim=1)
        x = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            for t in scheduler.timesteps:
                eps = unet(torch.cat([condition, x], dim=1), t).sample
                x = scheduler.step(eps, t, x).prev_sample

    medians = interleaved_medians({"ours": ours, "bare": bare}, repeats=7)
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    return f"""## `ddpm` completion against a bare diffusers loop

**Machine.** {machine()}.

**Rerun.** `python -m benchmarks.run --only ddpm-overhead`. A {params:.2f} M-parameter 7-channel UNet
(random weights), {batch} images of {size} px, DDIM {steps} steps; medians of 7 interleaved runs.
*Ours* is the registered `ddpm` method called through the `Inpainter` interface: per-image
generators, the known region re-imposed after every step, clamping and the bit-exact paste-back.
*Bare* is the minimal diffusers loop (one generator, no re-imposition, no paste-back).

| work | ours | bare | ratio | target |
|---|---:|---:|---:|---|
{ratio_line(f"DDIM {steps} steps, batch {batch}", medians["ours"], medians["bare"], 1.03)}
"""


# ---- one training step against a hand-written one ---------------------------------------------------


def train_overhead(size: int = 64, batch: int = 8, steps: int = 24) -> str:
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    from inpaint.config import TrainConfig
    from inpaint.data import BatchPlan, CompletionDataset, MaskSource, PlannedBatches, collate
    from inpaint.losses import hole_weighted_mse
    from inpaint.models.pixel_unet import load_base, widen_conv_in
    from inpaint.samplers import completion_model_input
    from inpaint.training.ddpm_task import DDPMTask
    from inpaint.training.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = train_images(tmp / "data", batch * steps, size)
        base = tmp / "base"
        from diffusers import UNet2DModel

        torch.manual_seed(0)
        UNet2DModel(**UNET, sample_size=size, in_channels=3).save_pretrained(base)
        DDPMScheduler(**SCHEDULER).save_pretrained(base)
        masks = MaskSource(("lama-thick",))

        config = TrainConfig(
            method="ddpm",
            data=str(data),
            output=str(tmp / "run"),
            base=str(base),
            resolution=size,
            batch_size=batch,
            lr=1e-4,
            max_steps=steps,
            save_every=10**6,
            val_images=0,
            ema_decay=0.999,
            device="cpu",
            masks=["lama-thick"],
        )
        train(DDPMTask(str(base)), config)
        ours = log_step_seconds(tmp / "run")

        # The same work by hand: same data pipeline, model, loss, clipping, AdamW and EMA.
        unet, scheduler_config = load_base(base)
        widen_conv_in(unet)
        unet.train()
        noise_scheduler = DDPMScheduler.from_config(scheduler_config)
        params = [p for p in unet.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
        ema = EMAModel(params, decay=0.999)
        dataset = CompletionDataset(data, resolution=size, mask_source=masks, seed=0)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=PlannedBatches(BatchPlan(len(dataset), batch, 0), 0, steps), collate_fn=collate
        )
        stamps = []
        for item in loader:
            x0, m = item["pixels"], item["masks"]
            noise = torch.randn_like(x0)
            t = torch.randint(0, 1000, (x0.shape[0],))
            x_t = noise_scheduler.add_noise(x0, noise, t)
            loss = hole_weighted_mse(unet(completion_model_input(x_t, x0, m), t).sample, noise, m)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(params)
            stamps.append(time.perf_counter())
        bare = float(np.median(np.diff(stamps)[1:]))
    params_m = sum(p.numel() for p in params) / 1e6
    return f"""## One `train-ddpm` step against a hand-written step

**Machine.** {machine()}.

**Rerun.** `python -m benchmarks.run --only train-overhead`. A {params_m:.2f} M-parameter UNet widened
to 7 channels, batch {batch} at {size} px, lama-thick masks drawn on the fly, {steps} steps; median
step time (the first step and the last, which writes the final checkpoint, excluded). *Ours* is
`inpaint.training.loop.train` with the DDPM task: accelerate, per-image seeded noise, the step's RNG
reseeding, the loss gathered across processes, a `log.jsonl` line flushed to disk every step and
the progress callback. *Hand-written* does the same tensor work with the same data loader.

| work | ours | hand-written | ratio | target |
|---|---:|---:|---:|---|
{ratio_line(f"train step, batch {batch}, {size} px", ours, bare, 1.05)}
"""


SECTIONS = {
    "startup": startup,
    "ddpm-overhead": ddpm_overhead,
    "train-overhead": train_overhead,
    "sd-overhead": sd_overhead,
    "lora-overhead": lora_overhead,
    "batched": batched,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run just this section")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: steadier on a shared machine)"
    )
    parser.add_argument("--print", action="store_true", help="print the sections instead of writing docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.only or SECTIONS:
        print(f"running {name} …", file=sys.stderr, flush=True)
        body = SECTIONS[name]()
        if args.print:
            print(body)
        else:
            write_section(name, body)


if __name__ == "__main__":
    main()
