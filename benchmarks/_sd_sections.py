"""The sections of ``benchmarks.run`` for Stable Diffusion, LoRA training and batched completion."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ._fixtures import PROMPT, completion_model, log_step_seconds, ratio_line, square_hole_inputs, tiny_sd, train_images
from ._report import interleaved_medians, machine


def _params(*modules: torch.nn.Module) -> float:
    return sum(p.numel() for m in modules for p in m.parameters()) / 1e6


# ---- the sd method against a bare pipeline call ------------------------------------------------


def sd_overhead(steps: int = 20, guidance: float = 7.5, repeats: int = 9) -> str:
    from inpaint.models import load_inpainter
    from inpaint.models.base import MethodOptions

    with tempfile.TemporaryDirectory() as tmp:
        weights = tiny_sd(Path(tmp) / "sd")
        inpainter = load_inpainter(
            "sd", MethodOptions(weights=str(weights), steps=steps, guidance=guidance, prompt=PROMPT, device="cpu")
        )
    pipe = inpainter.pipe
    rows = []
    for size, batch in ((128, 1), (64, 4)):
        images, masks = square_hole_inputs(batch, size)
        names = [f"image{i}" for i in range(batch)]

        def ours() -> None:
            inpainter(images, masks, list(range(batch)), names=names)

        def bare() -> None:
            # What a user would write with diffusers alone: the same pipeline, prompt, steps and
            # guidance, one generator per image, tensors in and out, no paste-back.
            with torch.inference_mode():
                pipe(
                    prompt=[PROMPT] * batch,
                    image=images,
                    mask_image=masks,
                    height=size,
                    width=size,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    output_type="pt",
                    generator=[torch.Generator().manual_seed(i) for i in range(batch)],
                )

        medians = interleaved_medians({"ours": ours, "bare": bare}, repeats=repeats)
        rows.append(ratio_line(f"{size} px, batch {batch}, {steps} steps", medians["ours"], medians["bare"], 1.03))
    table = "\n".join(rows)
    return f"""## `sd` completion against a bare diffusers pipeline call

**Machine.** {machine()}.

**Rerun.** `python -m benchmarks.run --only sd-overhead`. The tests' tiny Stable Diffusion inpainting
pipeline (`inpaint.testing.save_tiny_sd_inpaint`: UNet {_params(pipe.unet):.2f} M, VAE
{_params(pipe.vae):.2f} M, text encoder {_params(pipe.text_encoder):.2f} M parameters; random weights,
loaded back with `from_pretrained` as real weights are), its DDIM scheduler, {steps} steps, guidance
{guidance}, one fixed prompt; medians of {repeats} interleaved runs. *Ours* is the registered `sd`
method called through the `Inpainter` interface (what `inpaint complete --model sd` runs): checks,
per-image generators, the prompt lookup, the UNet-call counting hook, the progress callback and the
bit-exact paste-back. *Bare* is `StableDiffusionInpaintPipeline.__call__` on the same pipeline object.

| work | ours | bare | ratio | target |
|---|---:|---:|---:|---|
{table}
"""


# ---- one train-lora step against a hand-written diffusers + peft step ---------------------------------


def lora_overhead(size: int = 64, batch: int = 4, steps: int = 24) -> str:
    from inpaint.config import TrainConfig
    from inpaint.training.loop import train
    from inpaint.training.lora_task import LoRAOptions, LoRATask

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = train_images(tmp / "data", batch * steps, size)
        base = tiny_sd(tmp / "sd")
        config = TrainConfig(
            method="lora",
            data=str(data),
            output=str(tmp / "run"),
            base=str(base),
            resolution=size,
            batch_size=batch,
            lr=1e-4,
            max_steps=steps,
            save_every=10**6,
            val_images=0,
            ema_decay=0.0,
            device="cpu",
            masks=["lama-thick"],
        )
        options = LoRAOptions(prompt=PROMPT)  # the study's: rank 16, alpha 16, dropout 0.05, captions dropped 15 %
        train(LoRATask(str(base), options), config)
        ours = log_step_seconds(tmp / "run")
        bare, trainable = _hand_written_lora(base, data, size, batch, steps, options)
    return f"""## One `train-lora` step against a hand-written diffusers + peft step

**Machine.** {machine()}.

**Rerun.** `python -m benchmarks.run --only lora-overhead`. The tests' tiny SD inpainting pipeline,
a LoRA of rank {options.rank} (alpha {options.alpha:g}, dropout {options.dropout}) on
`to_q/to_k/to_v/to_out.0` ({trainable / 1e3:.0f} k trainable parameters), batch {batch} at {size} px,
lama-thick masks drawn on the fly, {steps} steps; median step time (the first step and the last, which
writes the final checkpoint, excluded). *Ours* is `inpaint.training.loop.train` with the LoRA task:
accelerate, per-image generators for caption dropout, latents, noise and timesteps, the step's RNG
reseeding, the loss gathered across processes and a `log.jsonl` line per step. *Hand-written* does
the same tensor work — text encoder, two VAE encodes (image and masked image), the 9-channel UNet
with the LoRA, MSE, backward, clipping, AdamW — with the same data loader, in the style of diffusers'
`train_dreambooth_lora` example. The two run one after the other, not interleaved, so load on a
shared machine moves the ratio by a few percent from run to run.

| work | ours | hand-written | ratio | target |
|---|---:|---:|---:|---|
{ratio_line(f"LoRA step, batch {batch}, {size} px", ours, bare, 1.05)}
"""


def _hand_written_lora(base: Path, data: Path, size: int, batch: int, steps: int, options) -> tuple[float, int]:
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionInpaintPipeline
    from peft import LoraConfig

    from inpaint.data import BatchPlan, CompletionDataset, MaskSource, PlannedBatches, collate

    pipe = StableDiffusionInpaintPipeline.from_pretrained(base, safety_checker=None, requires_safety_checker=False)
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    for part in (unet, vae, text_encoder):
        part.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(
            r=options.rank,
            lora_alpha=options.alpha,
            lora_dropout=options.dropout,
            init_lora_weights=True,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        )
    )
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    scale = vae.config.scaling_factor
    dataset = CompletionDataset(data, resolution=size, mask_source=MaskSource(("lama-thick",)), seed=0)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=PlannedBatches(BatchPlan(len(dataset), batch, 0), 0, steps), collate_fn=collate
    )
    stamps = []
    for item in loader:
        x0, masks = item["pixels"], item["masks"]
        prompts = ["" if torch.rand(()) < options.caption_dropout else PROMPT for _ in range(batch)]
        with torch.no_grad():
            z0 = vae.encode(x0).latent_dist.sample() * scale
            z_masked = vae.encode(x0 * (masks < 0.5)).latent_dist.sample() * scale
            mask_latent = F.adaptive_max_pool2d(masks, z0.shape[2:])  # as train-lora does
            ids = tokenizer(
                prompts,
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            text = text_encoder(ids)[0]
        noise = torch.randn_like(z0)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,))
        z_t = noise_scheduler.add_noise(z0, noise, t)
        prediction = unet(torch.cat([z_t, mask_latent, z_masked], dim=1), t, encoder_hidden_states=text).sample
        loss = F.mse_loss(prediction.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # the loop logs the loss every step: the same synchronisation
        stamps.append(time.perf_counter())
    return float(np.median(np.diff(stamps)[1:])), sum(p.numel() for p in params)


# ---- batched completion: images per second against the batch size ----------------------------------


def batched(count: int = 16, size: int = 64, sizes: tuple[int, ...] = (1, 4, 16), repeats: int = 3) -> str:
    from inpaint import completion, io
    from inpaint.models import load_inpainter
    from inpaint.models.base import MethodOptions

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = train_images(tmp / "images", count, size)
        masks = tmp / "masks"
        for i in range(count):
            mask = np.zeros((size, size), dtype=bool)
            mask[size // 4 + i % 8 : 3 * size // 4, size // 4 : 3 * size // 4 - i % 8] = True
            io.save_mask(mask, masks / f"{i:04d}.png")
        methods = {
            "ddpm": MethodOptions(weights=str(completion_model(tmp / "unet7", size)), device="cpu"),
            "sd": MethodOptions(weights=str(tiny_sd(tmp / "sd")), steps=20, device="cpu"),
        }
        for name, options in methods.items():
            inpainter = load_inpainter(name, options)
            pairs, _ = completion.pair_folders(images, masks, tmp / f"out-{name}")
            runs = {
                n: (lambda n=n: completion.complete_folder(inpainter, pairs, overwrite=True, batch_size=n))
                for n in sizes
            }
            medians = interleaved_medians(runs, repeats=repeats)
            base = medians[sizes[0]]
            for n in sizes:
                rows.append(
                    f"| `{name}` | {n} | {medians[n]:.2f} s | {count / medians[n]:.2f} | {base / medians[n]:.2f}x |"
                )
    table = "\n".join(rows)
    return f"""## Batched completion: images per second against `--batch-size`

**Machine.** {machine()}.

**Rerun.** `python -m benchmarks.run --only batched`. `inpaint.completion.complete_folder` (what
`inpaint complete images/ masks/ -o out/ --batch-size N` runs) over {count} PNG pairs of {size} px,
reading, completing and writing every file (`overwrite`); medians of {repeats} interleaved runs per
batch size. `ddpm`: the 0.7 M-parameter 7-channel UNet of the `ddpm-overhead` section, its default
sampler (ancestral DDPM, 25 steps); `sd`: the tests' tiny SD inpainting pipeline, 20 steps,
guidance 7.5. Results do not depend on the batch size (tests/test_performance_levers.py).

| method | batch size | seconds for {count} images | images / s | speed-up |
|---|---:|---:|---:|---:|
{table}

On one CPU thread a batch mostly saves per-call overhead: the network's arithmetic grows with the
batch either way. On a GPU, where a single 64-px image leaves most of the device idle, batching is the
main lever for throughput (the GPU section compares batch 1 and 8 there).
"""
