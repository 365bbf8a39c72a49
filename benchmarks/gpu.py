"""GPU figures on the real architectures with random weights, on one CUDA GPU.

    HF_HUB_OFFLINE=1 python -m benchmarks.gpu                  # every part; writes docs/benchmarks.md
    HF_HUB_OFFLINE=1 python -m benchmarks.gpu --only sd --print
    python -m benchmarks.gpu --check                           # no GPU needed: build on the meta device, count
    HF_HUB_OFFLINE=1 python -m benchmarks.gpu --smoke          # no GPU needed: every part on tiny models, on the CPU

Speed does not depend on the weights' values, so the models are built from their published
configurations (``inpaint.testing``) with random weights, which needs no download and no network,
saved with ``save_pretrained`` and loaded back through ``inpaint``'s own loaders:

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
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from inpaint.testing import (  # the published configurations, written out once
    DDPM_CELEBAHQ_256,
    DDPM_SCHEDULER,
    PUBLISHED_MILLIONS,
    SD15_INPAINT_UNET,
    SD15_SCHEDULER,
    SD15_TEXT,
    SD15_VAE,
)

from ._fixtures import PROMPT, square_hole_inputs

#: References for one 50-step guided 512 px SD-1.5 inpainting image: diffusers on an A100 in fp16
#: (about 22 it/s), compiled, and the compute floor on an H100.
A100_SECONDS, A100_SECONDS_COMPILED, H100_FLOOR_SECONDS = 2.2, 1.0, 0.085


def _architectures():
    """(name, builder) of every model, with the configurations above."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    return [
        ("ddpm unet", lambda: UNet2DModel(**DDPM_CELEBAHQ_256)),
        ("sd unet", lambda: UNet2DConditionModel(**SD15_INPAINT_UNET)),
        ("sd vae", lambda: AutoencoderKL(**SD15_VAE)),
        ("sd text encoder", lambda: CLIPTextModel(CLIPTextConfig(**SD15_TEXT))),
    ]


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

    from inpaint.testing import tiny_clip_tokenizer  # token ids only: speed does not depend on the vocabulary

    torch.manual_seed(0)
    with torch.device("cuda"):
        parts = {name.split()[-1]: build().half() for name, build in _architectures() if name.startswith("sd")}
    pipe = StableDiffusionInpaintPipeline(
        unet=parts["unet"],
        vae=parts["vae"],
        text_encoder=parts["encoder"],
        tokenizer=tiny_clip_tokenizer(directory / "tok"),
        scheduler=PNDMScheduler(**SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
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


@dataclass(frozen=True)
class Setup:
    """Where and how big: the real figures (CUDA, fp16, the published sizes) or a CPU smoke run."""

    device: str = "cuda"
    sd_size: int = 512
    ddpm_size: int = 256
    sd_steps: int = 50
    ddpm_steps: int = 25
    batches: tuple[int, ...] = (1, 8)
    compile: tuple[bool, ...] = (False, True)
    lora_steps: int = 12
    dtype: str = "fp16"

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


#: ``--smoke``: every part on the CPU with the test suite's tiny models, to check the script itself
#: before GPU time is spent on it (no compile: it would take minutes on a CPU).
SMOKE = Setup(
    device="cpu",
    sd_size=64,
    ddpm_size=32,
    sd_steps=2,
    ddpm_steps=2,
    batches=(1, 2),
    compile=(False,),
    lora_steps=4,
    dtype="fp32",
)


def _synchronize(setup: Setup) -> None:
    import torch

    if setup.cuda:
        torch.cuda.synchronize()


def _peak_gib(setup: Setup) -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if setup.cuda else float("nan")


def _reset_peak(setup: Setup) -> None:
    import gc

    import torch

    gc.collect()
    if setup.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def timed(fn, repeats: int, setup: Setup) -> tuple[float, float, float]:
    """(first-call seconds, median seconds of ``repeats`` more calls, peak GPU GiB; NaN on the CPU)."""
    _synchronize(setup)
    _reset_peak(setup)
    started = time.perf_counter()
    fn()
    _synchronize(setup)
    first = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        _synchronize(setup)
        times.append(time.perf_counter() - started)
    return first, statistics.median(times), _peak_gib(setup)


def _load(method: str, weights: Path, setup: Setup, **options):
    from inpaint.models import load_inpainter
    from inpaint.models.base import MethodOptions

    _reset_peak(setup)
    return load_inpainter(
        method, MethodOptions(weights=str(weights), device=setup.device, dtype=setup.dtype, **options)
    )


def _row(label: str, n: int, first: float, median: float, peak: float, extra: str = "") -> str:
    memory = "-" if math.isnan(peak) else f"{peak:.1f} GiB"
    return f"| {label} | {n} | {median:.3f} s | {median / n:.3f} s | {first:.1f} s | {memory} |{extra}"


def sd_part(weights: Path, repeats: int, setup: Setup) -> tuple[str, dict[tuple[int, bool], float]]:
    """The table, and seconds per image by (batch, compiled)."""
    import torch

    size, steps = setup.sd_size, setup.sd_steps
    rows, per_image = [], {}
    for compile_ in setup.compile:
        inpainter = _load("sd", weights, setup, prompt=PROMPT, steps=steps, compile=compile_)
        for n in setup.batches:
            images, masks = square_hole_inputs(n, size)
            first, median, peak = timed(lambda: inpainter(images, masks, list(range(n))), repeats, setup)
            per_image[n, compile_] = median / n
            ratio = " - |"
            if not compile_:
                pipe = inpainter.pipe

                def bare():
                    with torch.inference_mode():
                        pipe(
                            prompt=[PROMPT] * n,
                            image=images,
                            mask_image=masks,
                            height=size,
                            width=size,
                            num_inference_steps=steps,
                            guidance_scale=7.5,
                            output_type="pt",
                            generator=[torch.Generator().manual_seed(i) for i in range(n)],
                        )

                _, bare_median, _ = timed(bare, repeats, setup)
                ratio = f" {median / bare_median:.3f}x ({bare_median:.3f} s) |"
            rows.append(
                _row(
                    f"sd {size} px, {steps} steps, {setup.dtype}{', compiled' if compile_ else ''}",
                    n,
                    first,
                    median,
                    peak,
                    ratio,
                )
            )
        # Free the GPU memory before the next configuration loads: `pipe` and the `bare` closure
        # hold the pipeline too, and would add its weights to the next rows' peak memory.
        inpainter = pipe = bare = None
    table = (
        "| work | batch | s / call | s / image | first call | peak memory | ours / bare diffusers |\n"
        "|---|---:|---:|---:|---:|---:|---|\n" + "\n".join(rows)
    )
    return table, per_image


def compare_with_references(per_image: dict[tuple[int, bool], float]) -> str:
    """Our SD seconds per image beside the references (A100 fp16, and the H100 compute floor).

    The A100 figures are for one image per call, so batch 1 is the like-for-like row; larger
    batches are listed too, marked as such.
    """
    lines = []
    for (n, compiled), seconds in sorted(per_image.items()):
        reference = A100_SECONDS_COMPILED if compiled else A100_SECONDS
        lines.append(
            f"batch {n}{', compiled' if compiled else ''}{'' if n == 1 else ' (not like for like)'}: "
            f"{seconds:.3f} s per image, "
            f"{seconds / reference:.2f}x diffusers' {reference} s on an A100, "
            f"{seconds / H100_FLOOR_SECONDS:.1f}x the H100 compute floor ({H100_FLOOR_SECONDS} s)"
        )
    return (
        "**Against the references** (50-step guided 512 px images): " + "; ".join(lines) + ". The compiled "
        "model serves batch 1, then batch 8: a second shape, for which torch.compile makes a dynamic graph, so "
        "the compiled batch-8 row may understate a static batch-8 graph (a folder of one size gets that)."
    )


def ddpm_part(weights: Path, repeats: int, setup: Setup) -> str:
    size, steps = setup.ddpm_size, setup.ddpm_steps
    rows = []
    for compile_ in setup.compile:
        inpainter = _load("ddpm", weights, setup, steps=steps, compile=compile_)
        for n in setup.batches:
            images, masks = square_hole_inputs(n, size)
            first, median, peak = timed(lambda: inpainter(images, masks, list(range(n))), repeats, setup)
            rows.append(
                _row(
                    f"ddpm {size} px, DDPM {steps} steps, {setup.dtype}{', compiled' if compile_ else ''}",
                    n,
                    first,
                    median,
                    peak,
                )
            )
        inpainter = None  # free the GPU memory before the next configuration loads
    return (
        "| work | batch | s / call | s / image | first call | peak memory |\n|---|---:|---:|---:|---:|---:|\n"
        + "\n".join(rows)
    )


def levers_part(weights: Path, repeats: int, setup: Setup) -> str:
    n = max(setup.batches)
    levers = [
        ("default", {}),
        ("--channels-last", {"channels_last": True}),
        ("--vae-slicing", {"vae_slicing": True}),
        ("--attention-slicing", {"attention_slicing": True}),
    ]
    if setup.cuda:  # offloading moves models between the CPU and a GPU: nothing to measure without one
        levers.append(("--cpu-offload", {"cpu_offload": True}))
    rows = []
    for label, options in levers:
        inpainter = _load("sd", weights, setup, prompt=PROMPT, steps=setup.sd_steps, **options)
        images, masks = square_hole_inputs(n, setup.sd_size)
        first, median, peak = timed(lambda: inpainter(images, masks, list(range(n))), repeats, setup)
        rows.append(_row(f"sd batch {n}, {label}", n, first, median, peak))
        inpainter = None  # free the GPU memory before the next configuration loads
    return (
        "| work | batch | s / call | s / image | first call | peak memory |\n|---|---:|---:|---:|---:|---:|\n"
        + "\n".join(rows)
    )


def lora_part(weights: Path, tmp: Path, setup: Setup) -> str:
    from inpaint.config import TrainConfig
    from inpaint.training.loop import train
    from inpaint.training.lora_task import LoRAOptions, LoRATask

    from ._fixtures import log_step_seconds, train_images

    size, steps = setup.sd_size, setup.lora_steps
    data = train_images(tmp / "lora-data", 2 * steps, size)
    precision = "fp16" if setup.cuda else "no"
    rows = []
    for checkpointing in (False, True):
        _reset_peak(setup)
        output = tmp / f"lora-run-{checkpointing}"
        config = TrainConfig(
            method="lora",
            data=str(data),
            output=str(output),
            base=str(weights),
            resolution=size,
            batch_size=2,
            lr=1e-4,
            max_steps=steps,
            save_every=10**6,
            val_images=0,
            ema_decay=0.0,
            device=setup.device,
            mixed_precision=precision,
            masks=["lama-thick"],
        )
        train(LoRATask(str(weights), LoRAOptions(gradient_checkpointing=checkpointing)), config)
        step = log_step_seconds(output)
        peak = _peak_gib(setup)
        label = f"train-lora step, batch 2, {size} px, {precision} mixed precision" + (
            ", --gradient-checkpointing" if checkpointing else ""
        )
        rows.append(f"| {label} | {step:.3f} s | {'-' if math.isnan(peak) else f'{peak:.1f} GiB'} |")
    return "| work | median step | peak memory |\n|---|---:|---:|\n" + "\n".join(rows)


def build_smoke_models(directory: Path) -> tuple[Path, Path]:
    """The test suite's tiny SD inpainting pipeline and 7-channel pixel DDPM."""
    from inpaint.testing import save_tiny_ddpm, save_tiny_sd_inpaint

    return save_tiny_sd_inpaint(directory / "sd"), save_tiny_ddpm(directory / "ddpm", in_channels=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=("sd", "ddpm", "lora", "levers"), help="run just this part")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per row, after one warm-up call")
    parser.add_argument("--print", action="store_true", help="print instead of writing docs/benchmarks.md")
    parser.add_argument("--check", action="store_true", help="build on the meta device and count parameters only")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="every part on the CPU with tiny models (implies --print): checks this script, measures nothing",
    )
    args = parser.parse_args()
    if args.check:
        check()
        return
    import torch

    setup = SMOKE if args.smoke else Setup()
    if setup.cuda and not torch.cuda.is_available():
        print(
            "error: benchmarks.gpu needs a CUDA GPU and this machine has none; run it on a GPU machine "
            "(--check and --smoke work anywhere)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    from ._report import DOCS, machine, write_section

    parts = args.only or list(PARTS)
    smoke = " (smoke run: tiny models, nothing measured)" if args.smoke else ""
    stamp = (
        f'*{machine()}{smoke}; {args.repeats} timed calls after a warm-up call ("first call", which '
        "includes any compilation).*"
    )
    blocks: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.smoke:
            sd, ddpm = build_smoke_models(tmp)
        else:
            sd = build_sd(tmp) if {"sd", "lora", "levers"} & set(parts) else None
            ddpm = build_ddpm(tmp) if "ddpm" in parts else None
        for part in parts:
            print(f"running {part} …", file=sys.stderr, flush=True)
            if part == "sd":
                table, per_image = sd_part(sd, args.repeats, setup)
                result = table + "\n\n" + compare_with_references(per_image)
            elif part == "ddpm":
                result = ddpm_part(ddpm, args.repeats, setup)
            elif part == "lora":
                result = lora_part(sd, tmp, setup)
            else:
                result = levers_part(sd, args.repeats, setup)
            blocks[part] = f"### {PARTS[part]}\n\n{stamp}\n\n{result}"
    if args.print or args.smoke:
        print(gpu_section(blocks))
    else:
        # Parts run separately (where a command's time is limited) accumulate: each run replaces only
        # its own parts and keeps the others' figures, each with its own date and machine.
        kept = {part: block for part, block in recorded_parts(DOCS).items() if part not in blocks}
        write_section("gpu", gpu_section({**kept, **blocks}))


#: The parts, in report order, with their headings.
PARTS = {
    "sd": "Stable Diffusion 1.5 inpainting, 512 px, 50 steps",
    "ddpm": "DDPM 256 px sampler",
    "lora": "train-lora step",
    "levers": "Memory levers (sd, batch 8)",
}
#: What each part measures, for the placeholder of a part not measured yet.
MEASURES = {
    "sd": "seconds per image at batch 1 and 8, fp16, guidance 7.5, without and with `--compile`, and the `sd` "
    "method against a bare diffusers pipeline call on the same GPU, beside diffusers' ~2.2 s per image on "
    "an A100 (~1.0 s compiled) and the ~85 ms per image compute floor of an H100",
    "ddpm": "the `ddpm` method on `google/ddpm-celebahq-256`'s UNet widened to 7 channels, 256 px, ancestral DDPM "
    "25 steps, fp16, batch 1 and 8, without and with `--compile`",
    "lora": "one `train-lora` step at batch 2, 512 px, fp16 mixed precision, rank 16, with and without "
    "`--gradient-checkpointing`: step time and peak memory",
    "levers": "SD at batch 8 with `--channels-last`, `--vae-slicing`, `--attention-slicing` and `--cpu-offload`: "
    "seconds per image and peak GPU memory",
}
#: How a part's block starts until it is measured (and how :func:`recorded_parts` tells it from figures).
NOT_MEASURED = "Not measured yet"


def gpu_section(blocks: dict[str, str]) -> str:
    """The docs section from per-part blocks (missing parts say what they will measure and the command
    that measures them), each between its own markers."""
    counts = ", ".join(
        f"{PUBLISHED_MILLIONS[name]} M" for name in ("sd unet", "sd vae", "sd text encoder", "ddpm unet")
    )
    text = [
        "## GPU figures",
        "**Rerun.** On one CUDA GPU, from the repository root: `HF_HUB_OFFLINE=1 python -m benchmarks.gpu` "
        "measures every part; `--only PART` measures one part and keeps the others' figures, each with its own "
        "date and machine; `--repeats N` sets the timed calls per row (default 3). The models are the real "
        "architectures built from their published configurations with random weights (speed does not depend "
        "on the values; `python -m benchmarks.gpu --check` verifies the parameter counts anywhere: "
        f"{counts}), loaded through `inpaint`'s own loaders. Without CUDA the script stops with one line; "
        "`python -m benchmarks.gpu --smoke` runs every part on the CPU with the test suite's tiny models and "
        "prints the tables (the test suite runs it, so the script is known to work before GPU time is spent).",
    ]
    for part, heading in PARTS.items():
        placeholder = (
            f"### {heading}\n\n{NOT_MEASURED}: {MEASURES[part]}. Measure it on one CUDA GPU with "
            f"`HF_HUB_OFFLINE=1 python -m benchmarks.gpu --only {part}`."
        )
        body = blocks.get(part, placeholder)
        text.append(f"<!-- gpu-{part}:begin -->\n{body.strip()}\n<!-- gpu-{part}:end -->")
    return "\n\n".join(text) + "\n"


def recorded_parts(docs: Path) -> dict[str, str]:
    """The measured part blocks already in ``docs`` (not the placeholders of parts not measured yet)."""
    import re

    text = docs.read_text() if docs.exists() else ""
    found = {}
    for part in PARTS:
        match = re.search(rf"<!-- gpu-{part}:begin -->\n(.*?)\n<!-- gpu-{part}:end -->", text, re.S)
        if match and NOT_MEASURED not in match.group(1):
            found[part] = match.group(1)
    return found


if __name__ == "__main__":
    main()
