"""GPU figures (issue 7, item 3) on the real architectures with random weights, on one CUDA GPU.

    HF_HUB_OFFLINE=1 python benchmarks/gpu.py                  # every part; writes docs/benchmarks.md
    HF_HUB_OFFLINE=1 python benchmarks/gpu.py --only sd --print
    python benchmarks/gpu.py --check                           # no GPU needed: build on the meta device, count parameters

Real weights cannot be downloaded on the benchmark machines, and speed does not depend on the weights'
values, so the models are built from their published configurations (written out below) with random
weights, saved with ``save_pretrained`` and loaded back through ``inpaint``'s own loaders:

- ``sd``: SD 1.5 Inpainting (UNet 9 -> 4 channels, VAE, CLIP ViT-L/14 text encoder, PNDM), 512 px,
  50 steps, guidance 7.5, fp16, batch 1 and 8, without and with ``--compile``; the ``sd`` method
  against a bare ``StableDiffusionInpaintPipeline.__call__`` on the same pipeline;
- ``ddpm``: ``google/ddpm-celebahq-256``'s UNet widened to 7 channels, 256 px, ancestral DDPM 25 steps
  (the ``ddpm`` method's default), fp16, batch 1 and 8, without and with ``--compile``;
- ``lora``: one ``train-lora`` step at batch 2, 512 px, fp16 mixed precision, rank 16 (the study's),
  with and without gradient checkpointing;
- ``levers``: SD batch 8 with channels-last, VAE slicing, attention slicing, model CPU offload:
  seconds per image and peak GPU memory.

Each part reports medians of ``--repeats`` timed runs after a warm-up (which, with ``--compile``,
includes the compilation; its time is reported apart), ``torch.cuda.synchronize`` around each, and
peak allocated GPU memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

#: google/ddpm-celebahq-256, config.json (UNet2DModel; 113.7 M parameters).
DDPM_CELEBAHQ_256 = dict(
    sample_size=256, in_channels=3, out_channels=3, center_input_sample=False, time_embedding_type="positional",
    freq_shift=1, flip_sin_to_cos=False, down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D",
                                                           "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    block_out_channels=(128, 128, 256, 256, 512, 512), layers_per_block=2, mid_block_scale_factor=1,
    downsample_padding=0, act_fn="silu", attention_head_dim=None, norm_num_groups=32, norm_eps=1e-6,
)
DDPM_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                      variance_type="fixed_small", clip_sample=True)
#: stable-diffusion-v1-5/stable-diffusion-inpainting, unet/config.json (859.5 M parameters).
SD15_INPAINT_UNET = dict(
    sample_size=64, in_channels=9, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8,
)
#: vae/config.json (AutoencoderKL; 83.7 M parameters).
SD15_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
)
#: text_encoder/config.json (CLIPTextModel of CLIP ViT-L/14; 123.1 M parameters).
SD15_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, projection_dim=768, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
#: scheduler/scheduler_config.json (PNDM, PLMS form).
SD15_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                      skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
PUBLISHED_MILLIONS = {"ddpm unet": 113.7, "sd unet": 859.5, "sd vae": 83.7, "sd text encoder": 123.1}
PROMPT = "a photo, high quality, realistic, sharp focus"


def _architectures():
    """(name, builder) of every model, with the configurations above."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    return [("ddpm unet", lambda: UNet2DModel(**DDPM_CELEBAHQ_256)),
            ("sd unet", lambda: UNet2DConditionModel(**SD15_INPAINT_UNET)),
            ("sd vae", lambda: AutoencoderKL(**SD15_VAE)),
            ("sd text encoder", lambda: CLIPTextModel(CLIPTextConfig(**SD15_TEXT)))]


def check() -> None:
    """Build every architecture on the meta device (no memory, no GPU) and compare parameter counts."""
    import torch

    for name, build in _architectures():
        with torch.device("meta"):
            millions = sum(p.numel() for p in build().parameters()) / 1e6
        print(f"{name}: {millions:.1f} M parameters (published: {PUBLISHED_MILLIONS[name]} M)")


# ---- building the models --------------------------------------------------------------------------


def build_sd(directory: Path) -> Path:
    """SD 1.5 Inpainting with random weights (fp16), saved as a pipeline folder."""
    import torch
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from tiny_models import tiny_clip_tokenizer  # token ids only: speed does not depend on the vocabulary

    torch.manual_seed(0)
    with torch.device("cuda"):
        parts = {name.split()[-1]: build().half() for name, build in _architectures() if name.startswith("sd")}
    pipe = StableDiffusionInpaintPipeline(
        unet=parts["unet"], vae=parts["vae"], text_encoder=parts["encoder"],
        tokenizer=tiny_clip_tokenizer(directory / "tok"), scheduler=PNDMScheduler(**SD15_SCHEDULER),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to("cpu").save_pretrained(directory / "sd")
    return directory / "sd"


def build_ddpm(directory: Path) -> Path:
    """ddpm-celebahq-256's UNet with random weights, widened to 7 channels (a train-ddpm output's shape)."""
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    UNet2DModel(**{**DDPM_CELEBAHQ_256, "in_channels": 7}).save_pretrained(directory / "ddpm")
    DDPMScheduler(**DDPM_SCHEDULER).save_pretrained(directory / "ddpm")
    return directory / "ddpm"


# ---- timing ----------------------------------------------------------------------------------------


def timed(fn, repeats: int) -> tuple[float, float, float]:
    """(first-call seconds, median seconds of ``repeats`` more calls, peak GPU GiB)."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    first = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return first, statistics.median(times), torch.cuda.max_memory_allocated() / 2**30


def _inputs(n: int, size: int):
    import torch

    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(n, 1, size, size)
    masks[:, :, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return images, masks


def _load(method: str, weights: Path, **options):
    import gc

    import torch

    from inpaint.models import load_inpainter
    from inpaint.models.base import MethodOptions

    gc.collect()
    torch.cuda.empty_cache()
    return load_inpainter(method, MethodOptions(weights=str(weights), device="cuda", **options))


def _row(label: str, n: int, first: float, median: float, peak: float, extra: str = "") -> str:
    return f"| {label} | {n} | {median:.3f} s | {median / n:.3f} s | {first:.1f} s | {peak:.1f} GiB |{extra}"


def sd_part(weights: Path, repeats: int, size: int = 512) -> str:
    import torch

    rows = []
    for compile_ in (False, True):
        inpainter = _load("sd", weights, prompt=PROMPT, compile=compile_)
        for n in (1, 8):
            images, masks = _inputs(n, size)
            first, median, peak = timed(lambda: inpainter(images, masks, list(range(n))), repeats)
            ratio = ""
            if not compile_:
                pipe = inpainter.pipe

                def bare():
                    with torch.inference_mode():
                        pipe(prompt=[PROMPT] * n, image=images, mask_image=masks, height=size, width=size,
                             num_inference_steps=50, guidance_scale=7.5, output_type="pt",
                             generator=[torch.Generator().manual_seed(i) for i in range(n)])

                _, bare_median, _ = timed(bare, repeats)
                ratio = f" {median / bare_median:.3f}x ({bare_median:.3f} s) |"
            else:
                ratio = " - |"
            rows.append(_row(f"sd {size} px, 50 steps, fp16{', compiled' if compile_ else ''}", n, first, median, peak,
                             ratio))
        inpainter = None  # free the GPU memory before the next configuration loads
    return ("| work | batch | s / call | s / image | first call | peak memory | ours / bare diffusers |\n"
            "|---|---:|---:|---:|---:|---:|---|\n" + "\n".join(rows))


def ddpm_part(weights: Path, repeats: int, size: int = 256) -> str:
    rows = []
    for compile_ in (False, True):
        inpainter = _load("ddpm", weights, compile=compile_)
        for n in (1, 8):
            images, masks = _inputs(n, size)
            first, median, peak = timed(lambda: inpainter(images, masks, list(range(n))), repeats)
            rows.append(_row(f"ddpm {size} px, DDPM 25 steps, fp16{', compiled' if compile_ else ''}", n, first,
                             median, peak))
        inpainter = None  # free the GPU memory before the next configuration loads
    return ("| work | batch | s / call | s / image | first call | peak memory |\n|---|---:|---:|---:|---:|---:|\n"
            + "\n".join(rows))


def levers_part(weights: Path, repeats: int, size: int = 512) -> str:
    rows = []
    for label, options in (("default", {}), ("--channels-last", {"channels_last": True}),
                           ("--vae-slicing", {"vae_slicing": True}), ("--attention-slicing", {"attention_slicing": True}),
                           ("--cpu-offload", {"cpu_offload": True})):
        inpainter = _load("sd", weights, prompt=PROMPT, **options)
        images, masks = _inputs(8, size)
        first, median, peak = timed(lambda: inpainter(images, masks, list(range(8))), repeats)
        rows.append(_row(f"sd batch 8, {label}", 8, first, median, peak))
        inpainter = None  # free the GPU memory before the next configuration loads
    return ("| work | batch | s / call | s / image | first call | peak memory |\n|---|---:|---:|---:|---:|---:|\n"
            + "\n".join(rows))


def lora_part(weights: Path, tmp: Path, steps: int = 12, size: int = 512) -> str:
    import torch
    from _fixtures import log_step_seconds, train_images

    from inpaint.config import TrainConfig
    from inpaint.training.lora_task import LoRAOptions, LoRATask
    from inpaint.training.loop import train

    data = train_images(tmp / "lora-data", 2 * steps, size)
    rows = []
    for checkpointing in (False, True):
        torch.cuda.reset_peak_memory_stats()
        output = tmp / f"lora-run-{checkpointing}"
        config = TrainConfig(method="lora", data=str(data), output=str(output), base=str(weights), resolution=size,
                             batch_size=2, lr=1e-4, max_steps=steps, save_every=10**6, val_images=0, ema_decay=0.0,
                             device="cuda", masks=["lama-thick"])
        train(LoRATask(str(weights), LoRAOptions(gradient_checkpointing=checkpointing)), config)
        step = log_step_seconds(output)
        peak = torch.cuda.max_memory_allocated() / 2**30
        label = f"train-lora step, batch 2, {size} px, fp16 mixed precision" + (
            ", --gradient-checkpointing" if checkpointing else "")
        rows.append(f"| {label} | {step:.3f} s | {peak:.1f} GiB |")
    return "| work | median step | peak memory |\n|---|---:|---:|\n" + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=("sd", "ddpm", "lora", "levers"), help="run just this part")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per row, after one warm-up call")
    parser.add_argument("--print", action="store_true", help="print instead of writing docs/benchmarks.md")
    parser.add_argument("--check", action="store_true", help="build on the meta device and count parameters only")
    args = parser.parse_args()
    if args.check:
        check()
        return
    import torch

    if not torch.cuda.is_available():
        print("error: benchmarks/gpu.py needs a CUDA GPU and this machine has none; run it on a GPU machine "
              "(python benchmarks/gpu.py --check works anywhere)", file=sys.stderr)
        raise SystemExit(2)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import machine, write_section

    parts = args.only or ["sd", "ddpm", "lora", "levers"]
    body = [f"**Machine.** {machine()}; {torch.cuda.get_device_name(0)}.",
            "**Rerun.** `python benchmarks/gpu.py` (see its docstring). Random weights, real architectures; "
            f"{args.repeats} timed calls after a warm-up call (\"first call\", which includes any compilation)."]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sd = build_sd(tmp) if {"sd", "lora", "levers"} & set(parts) else None
        for part in parts:
            print(f"running {part} …", file=sys.stderr, flush=True)
            if part == "sd":
                body.append(sd_part(sd, args.repeats))
            elif part == "ddpm":
                body.append(ddpm_part(build_ddpm(tmp), args.repeats))
            elif part == "lora":
                body.append(lora_part(sd, tmp))
            else:
                body.append(levers_part(sd, args.repeats))
    text = "## GPU figures\n\n" + "\n\n".join(body) + "\n\nParts run: " + json.dumps(parts) + "\n"
    if args.print:
        print(text)
    else:
        write_section("gpu", text)


if __name__ == "__main__":
    main()
