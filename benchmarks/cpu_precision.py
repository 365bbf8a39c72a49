"""bf16 against fp32 on the CPU: what ``--dtype auto`` and ``--mixed-precision auto`` choose, and why.

    HF_HUB_OFFLINE=1 python -m benchmarks.cpu_precision              # every part; updates docs/benchmarks.md
    HF_HUB_OFFLINE=1 python -m benchmarks.cpu_precision --only whole --print
    HF_HUB_OFFLINE=1 python -m benchmarks.cpu_precision --smoke      # tiny models: a check of the script

On a CPU with native bf16 (AVX512-BF16 or AMX) ``auto`` runs the diffusion UNets in bf16. This
script measures what that buys and what it costs, in parts (``--only PART``, repeatable; the
results of the other parts are kept in the cache and the section is rendered from all of them):

- ``unet``: one UNet evaluation of the real architectures (random weights from the published
  configurations: speed does not depend on the values): SD 1.5 Inpainting at 64x64 latents (512 px),
  batch 1 and 2 (2: classifier-free guidance), and ddpm-celebahq-256 at 256 px, batch 1 — fp32, bf16
  weights, bf16 autocast over fp32 weights, each with and without channels-last, and with one torch
  thread against the default; plus the relative error of the bf16 outputs at three timesteps;
- ``sd``, ``ddpm``: the real-size methods through the library (``load_inpainter``) on a 512-px photo
  with a LaMa-thick mask, 25 steps: hole PSNR of the bf16 result against the fp32 one (same seed), the
  known pixels compared after paste-back; for SD also the pipeline all in bf16 (diffusers' way: the
  latents, the scheduler and the VAE in bf16 too) and the VAE decoder alone in bf16;
- ``trained``: the tiny *trained* models of ``benchmarks.ddpm_samplers`` (its cache; trained on
  first use, about 10 minutes): ddpm (DDPM 25) and RePaint-fast on its 32 held-out images in fp32
  and bf16: hole PSNR against the ground truth, the paired difference, and bf16 against fp32;
- ``training``: one training step's loss and gradients under bf16 autocast against fp32 (the tiny
  completion model; the real SD UNet's LoRA at 512 px), and two 300-step fine-tunings of the tiny
  model from the same unconditional base, fp32 and bf16 autocast, scored as in ``trained``;
- ``whole``: the commands as a user types them, each its own process, ``--dtype fp32`` against
  ``--dtype auto`` (``--mixed-precision no`` against ``auto``), interleaved: ``complete -m sd`` at
  512 px, ``complete -m ddpm`` (256 px), and ``train-lora`` at 512 px (batch 2, two steps). The
  sampling runs use few steps; 25 steps are extrapolated from two step counts (start-up, loading and
  the VAE cancel in the difference);
- ``compile`` (only when named): ``torch.compile`` of the ddpm UNet at 256 px, fp32 and bf16.

The machine may be shared: variants are interleaved (A B A B ...), medians are reported with the
range, and the load average is recorded before and after each part. The real-size models come from
``benchmarks.real_size``'s cache (``--real-cache``, built there if missing).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ._report import DOCS, machine, write_section

SECTION = "cpu-precision"
PARTS = ("unet", "sd", "ddpm", "trained", "training", "whole", "compile")
DEFAULT_PARTS = PARTS[:-1]
SD_ID = "stable-diffusion-v1-5/stable-diffusion-inpainting"
DDPM_ID = "google/ddpm-celebahq-256"
#: Sampling steps of the quality runs and of the extrapolated whole-process figures.
STEPS = 25
#: Step counts of the whole-process runs (the difference gives the per-step cost).
SD_STEPS, DDPM_STEPS = (1, 3), (2, 6)
TIMESTEPS = (999, 500, 20)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall seconds of each function, run in turn (A B C A B C ...) so that load hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return times


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def relative_error(a, b) -> float:
    """||a - b|| / ||b|| in fp32 (b: the reference)."""
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm())


# ---- models ------------------------------------------------------------------------------------


class Models:
    """Where the models of every part are: the real-size ones (or their tiny look-alikes with
    ``--smoke``) in real_size.py's hub cache, the 7-channel ddpm folder and the tiny trained ones."""

    def __init__(self, real_cache: Path, cache: Path, smoke: bool) -> None:
        from . import real_size

        self.smoke, self.cache = smoke, cache
        self.real = real_cache.resolve() / ("smoke" if smoke else "real")
        self.real.mkdir(parents=True, exist_ok=True)
        self.hf_home = self.real / "hf-home"
        self.env = real_size.child_env(self.hf_home, threads=1)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # the commands run with torch's default, as a user's
            self.env.pop(name)
        real_size.install_models(self.real, smoke, self.env, log)
        self.sd = real_size._hub_folder(self.hf_home, SD_ID)
        self.ddpm3 = real_size._hub_folder(self.hf_home, DDPM_ID)

    @property
    def ddpm7(self) -> Path:
        """The ddpm base widened to 7 channels and saved as a completion model (what ``complete -m ddpm``
        loads; the extra input channels start at zero, which changes nothing about speed)."""
        folder = self.cache / ("ddpm7-smoke" if self.smoke else "ddpm7")
        if not (folder / "config.json").is_file():
            from inpaint.models.pixel_unet import load_base, save_completion_unet, widen_conv_in

            unet, scheduler = load_base(self.ddpm3)
            save_completion_unet(widen_conv_in(unet), scheduler, folder)
        return folder

    def trained(self) -> tuple[Path, Path, object, object, list[str], object]:
        """ddpm_samplers.py's tiny trained models (its cache; trained on first use) and its test set."""
        import torch

        from . import ddpm_samplers as ds

        settings = ds.Settings()
        cache = Path("/tmp/inpaint-bench-ddpm")
        if self.smoke:
            settings = ds.Settings(train_images=64, test_images=4, steps=4, finetune_steps=4, batch_size=8)
            cache = self.cache / "ddpm-smoke"
        train = ds.write_images(
            cache / f"train-{settings.train_images}-seed{settings.seed}", settings.train_images, settings.seed, "train"
        )
        test = ds.write_images(
            cache / f"test-{settings.test_images}-seed{settings.seed}", settings.test_images, settings.seed, "test"
        )
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # ddpm_samplers.py's setting: steadier on a busy machine
        try:
            unconditional = ds.train_unconditional(cache, train, settings)
            completion = ds.train_completion(cache, train, settings, unconditional)
        finally:
            torch.set_num_threads(threads)
        images, masks, names = ds.test_set(test, settings)
        return unconditional, completion, images, masks, names, (settings, train)


def photo_and_mask(size: int = 512):
    """The real-size runs' input: scikit-image's 512x512 immunohistochemistry photo (real_size.py's
    test photo) and a LaMa-thick mask (hole ratio 0.1-0.5) as (1, 3, H, W) and (1, 1, H, W) tensors."""
    import numpy as np
    import torch
    from PIL import Image

    from inpaint import io
    from inpaint.masks import make_mask

    from . import real_size

    picture = np.asarray(Image.fromarray(real_size._photo(real_size.PHOTO)).convert("RGB").resize((size, size)))
    mask, _ = make_mask("lama-thick", seed=0, name=real_size.PHOTO, height=size, width=size, min_ratio=0.1)
    return io.to_tensor(picture), torch.from_numpy(mask)[None, None].float()


def hole_psnr(a, b, mask) -> float:
    from inpaint.metrics import psnr

    return float(psnr(a, b, mask)[0])


def known_identical(result, image, mask) -> bool:
    from inpaint import io

    known = ~mask[0, 0].bool().numpy()
    return bool((io.to_uint8(result)[0][known] == io.to_uint8(image)[0][known]).all())


# ---- part: unet ----------------------------------------------------------------------------------


def part_unet(models: Models, repeats: int) -> dict:
    import torch
    from diffusers import UNet2DConditionModel, UNet2DModel

    from inpaint.models.hub import quiet_loading

    results: dict = {"load_before": load()}
    default_threads = torch.get_num_threads()
    with quiet_loading():
        sd = UNet2DConditionModel.from_pretrained(models.sd / "unet").eval()
        ddpm = UNet2DModel.from_pretrained(models.ddpm3).eval()
    latent, cross = sd.config.sample_size, sd.config.cross_attention_dim
    size = ddpm.config.sample_size
    generator = torch.Generator().manual_seed(0)
    cases = {
        "sd batch 1": (
            sd,
            dict(
                sample=torch.randn(1, 9, latent, latent, generator=generator),
                encoder_hidden_states=torch.randn(1, 77, cross, generator=generator),
            ),
        ),
        "sd batch 2": (
            sd,
            dict(
                sample=torch.randn(2, 9, latent, latent, generator=generator),
                encoder_hidden_states=torch.randn(2, 77, cross, generator=generator),
            ),
        ),
        "ddpm batch 1": (ddpm, dict(sample=torch.randn(1, 3, size, size, generator=generator))),
    }
    for label, (fp32, inputs) in cases.items():
        with quiet_loading():
            bf16 = copy.deepcopy(fp32).to(torch.bfloat16)

        def call(model, half: bool, autocast: bool = False, t: int = 500):
            args = {k: v.to(torch.bfloat16) if half else v for k, v in inputs.items()}
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                return model(timestep=torch.tensor(t), **args).sample

        errors = {}
        for t in TIMESTEPS:
            reference = call(fp32, False, t=t)
            errors[t] = {
                "bf16": relative_error(call(bf16, True, t=t), reference),
                "autocast": relative_error(call(fp32, False, True, t=t), reference),
            }

        def formats(memory_format):
            fp32.to(memory_format=memory_format)
            bf16.to(memory_format=memory_format)

        times: dict[str, list[float]] = {}
        for layout, memory_format in (("", torch.contiguous_format), (", channels-last", torch.channels_last)):
            formats(memory_format)
            variants = {f"fp32{layout}": lambda: call(fp32, False), f"bf16{layout}": lambda: call(bf16, True)}
            if not layout:
                variants["bf16 autocast"] = lambda: call(fp32, False, True)
            for name, values in interleaved(variants, repeats).items():
                times[name] = values
        formats(torch.contiguous_format)
        if label != "sd batch 2":  # one thread against torch's default (its physical cores)
            torch.set_num_threads(1)
            try:
                one = interleaved(
                    {"fp32, 1 thread": lambda: call(fp32, False), "bf16, 1 thread": lambda: call(bf16, True)},
                    max(2, repeats // 2),
                )
            finally:
                torch.set_num_threads(default_threads)
            times.update(one)
        results[label] = {"times": {k: stats(v) for k, v in times.items()}, "errors": errors}
        log(f"unet {label}: " + ", ".join(f"{k} {v['median']:.2f} s" for k, v in results[label]["times"].items()))
        bf16 = None  # frees the copy before the next model is built
    results["threads"] = default_threads
    results["load_after"] = load()
    return results


# ---- parts: sd, ddpm (the real-size methods) ------------------------------------------------------


def _complete(method: str, options, image, mask) -> tuple[object, float]:
    from inpaint import models as registry

    inpainter = registry.load_inpainter(method, options)
    started = time.perf_counter()
    out = inpainter(image, mask, [0], names=["photo"])
    return out, time.perf_counter() - started


def part_sd(models: Models, steps: int) -> dict:
    import torch

    from inpaint.models.base import MethodOptions
    from inpaint.models.hub import quiet_loading
    from inpaint.models.sd_weights import load_pipeline

    image, mask = photo_and_mask(512 if not models.smoke else 64)
    results: dict = {"load_before": load(), "steps": steps}
    options = {
        dtype: MethodOptions(weights=str(models.sd), dtype=dtype, steps=steps, device="cpu")
        for dtype in ("fp32", "bf16")
    }
    reference, seconds = _complete("sd", options["fp32"], image, mask)
    results["fp32 seconds"] = seconds
    out, seconds = _complete("sd", options["bf16"], image, mask)
    results["bf16"] = {
        "hole_psnr": hole_psnr(out, reference, mask),
        "known_identical": known_identical(out, image, mask),
        "seconds": seconds,
    }
    log(f"sd: bf16 {results['bf16']}")
    # The pipeline all in bf16, as diffusers runs it with torch_dtype=bfloat16: latents, guidance,
    # scheduler and VAE in bf16 too (what unet_in_bf16 avoids).
    from inpaint import models as registry

    inpainter = registry.load_inpainter("sd", options["fp32"])
    inpainter.pipe = load_pipeline(models.sd, dtype=torch.bfloat16)
    started = time.perf_counter()
    out = inpainter(image, mask, [0], names=["photo"])
    results["all bf16"] = {"hole_psnr": hole_psnr(out, reference, mask), "seconds": time.perf_counter() - started}
    log(f"sd: all bf16 {results['all bf16']}")
    # The VAE alone: encode the photo in fp32, decode the latents with the fp32 and the bf16 decoder.
    vae = load_pipeline(models.sd, dtype=torch.float32).vae
    with torch.no_grad():
        latents = vae.encode(image * 2 - 1).latent_dist.mean
        decoded = (vae.decode(latents).sample / 2 + 0.5).clamp(0, 1)
        with quiet_loading():
            half = copy.deepcopy(vae).to(torch.bfloat16)
        decoded_half = (half.decode(latents.to(torch.bfloat16)).sample.float() / 2 + 0.5).clamp(0, 1)
        started = time.perf_counter()
        vae.decode(latents)
        vae_fp32 = time.perf_counter() - started
        started = time.perf_counter()
        half.decode(latents.to(torch.bfloat16))
        vae_bf16 = time.perf_counter() - started
    results["vae decode"] = {
        "psnr": hole_psnr(decoded_half, decoded, torch.ones_like(mask)),
        "fp32 seconds": vae_fp32,
        "bf16 seconds": vae_bf16,
    }
    results["load_after"] = load()
    return results


def part_ddpm(models: Models, steps: int) -> dict:
    from inpaint.models.base import MethodOptions

    image, mask = photo_and_mask(512 if not models.smoke else 64)
    results: dict = {"load_before": load(), "steps": steps}
    outs = {}
    for dtype in ("fp32", "bf16"):
        outs[dtype], results[f"{dtype} seconds"] = _complete(
            "ddpm", MethodOptions(weights=str(models.ddpm7), dtype=dtype, steps=steps, device="cpu"), image, mask
        )
    results["bf16"] = {
        "hole_psnr": hole_psnr(outs["bf16"], outs["fp32"], mask),
        "known_identical": known_identical(outs["bf16"], image, mask),
    }
    log(f"ddpm: {results}")
    results["load_after"] = load()
    return results


# ---- parts: trained, training (tiny trained models) -------------------------------------------------


def _paired(candidate: list[float], reference: list[float]) -> dict[str, float]:
    import numpy as np

    from inpaint.metrics import bootstrap_ci

    diff = np.asarray(candidate) - np.asarray(reference)
    low, high = bootstrap_ci(diff)
    return {"mean": float(diff.mean()), "low": low, "high": high}


def _score(method: str, weights: Path, extra: dict, images, masks, names) -> dict[str, list[float]]:
    """Hole PSNR against the ground truth, per image, in fp32 and bf16; and bf16 against fp32."""
    from inpaint import models as registry
    from inpaint.metrics import psnr
    from inpaint.models.base import MethodOptions
    from inpaint.seeding import derive_seed

    seeds = [derive_seed(0, "sample", n) for n in names]
    outs = {}
    for dtype in ("fp32", "bf16"):
        inpainter = registry.load_inpainter(
            method, MethodOptions(weights=str(weights), dtype=dtype, device="cpu", **extra)
        )
        outs[dtype] = inpainter(images, masks, seeds)
    return {
        "fp32": psnr(outs["fp32"], images, masks).tolist(),
        "bf16": psnr(outs["bf16"], images, masks).tolist(),
        "bf16 vs fp32": psnr(outs["bf16"], outs["fp32"], masks).tolist(),
    }


def _summary(scores: dict[str, list[float]]) -> dict:
    import numpy as np

    return {
        "fp32": float(np.mean(scores["fp32"])),
        "bf16": float(np.mean(scores["bf16"])),
        "paired": _paired(scores["bf16"], scores["fp32"]),
        "bf16 vs fp32": float(np.mean(scores["bf16 vs fp32"])),
        "n": len(scores["fp32"]),
    }


def part_trained(models: Models) -> dict:
    unconditional, completion, images, masks, names, _ = models.trained()
    results: dict = {"load_before": load()}
    results["ddpm"] = _summary(_score("ddpm", completion, {"steps": STEPS}, images, masks, names))
    log(f"trained ddpm: {results['ddpm']}")
    results["repaint"] = _summary(_score("repaint", unconditional, {"sampler": "fast"}, images, masks, names))
    log(f"trained repaint: {results['repaint']}")
    results["load_after"] = load()
    return results


def _step_gradients(task, module, batch, generators_for, mixed_precision: str):
    """Loss and the flattened gradient of the trainable parameters for one micro-batch."""
    import torch

    module.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed_precision == "bf16"):
        loss = task.loss(module, batch, generators_for())
    loss.float().backward()
    grads = torch.cat([p.grad.flatten().float() for p in task.trainable_parameters(module)])
    return float(loss.detach()), grads


def _gradient_check(task_for: Callable[[], object], batch, seeds: list[int], trials: int) -> dict:
    """One step's loss and gradients under bf16 autocast against fp32, same batch and draws, over
    ``trials`` draws of timesteps and noise (the loss depends strongly on the timestep)."""
    import torch

    rows = []
    for mixed in ("no", "bf16"):
        task = task_for()
        module = task.build(torch.device("cpu"), mixed)
        module.train()
        for trial in range(trials):

            def generators(trial=trial):
                return [torch.Generator().manual_seed(s + 1000 * trial) for s in seeds]

            rows.append((mixed, trial, *_step_gradients(task, module, batch, generators, mixed)))
        del module, task
    losses, errors, cosines = [], [], []
    for trial in range(trials):
        (_, _, loss32, grad32), (_, _, loss16, grad16) = [r for r in rows if r[1] == trial]
        losses.append(abs(loss16 - loss32) / abs(loss32))
        errors.append(relative_error(grad16, grad32))
        cosines.append(float(torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)))
    return {"loss": stats(losses), "grad": stats(errors), "cosine": stats(cosines), "trials": trials}


def part_training(models: Models, finetune_steps: int) -> dict:
    import torch

    from inpaint import io
    from inpaint.config import TrainConfig
    from inpaint.models.sd import DEFAULT_PROMPT
    from inpaint.training.ddpm_task import DDPMOptions, DDPMTask
    from inpaint.training.loop import train
    from inpaint.training.lora_task import LoRAOptions, LoRATask

    unconditional, completion, images, masks, names, (settings, train_dir) = models.trained()
    results: dict = {"load_before": load()}
    n = min(8, len(names))
    batch = {
        "pixels": io.to_model_range(images[:n]),
        "masks": masks[:n],
        "names": names[:n],
        "captions": [DEFAULT_PROMPT] * n,
    }
    results["ddpm step"] = _gradient_check(
        lambda: DDPMTask(str(completion), DDPMOptions()), batch, list(range(n)), trials=8
    )
    log(f"training: ddpm step {results['ddpm step']}")
    image, mask = photo_and_mask(512 if not models.smoke else 64)
    lora_batch = {"pixels": io.to_model_range(image), "masks": mask, "names": ["photo"], "captions": [DEFAULT_PROMPT]}
    # B starts at zero: a LoRA's first gradients reach only B. Both runs start from the same A.
    results["lora step"] = _gradient_check(
        lambda: LoRATask(str(models.sd), LoRAOptions(dropout=0.0)), lora_batch, [0], trials=2
    )
    log(f"training: lora step {results['lora step']}")
    # Two fine-tunings from the same unconditional base, as ddpm_samplers.py makes its model.
    runs = {}
    for mixed in ("no", "bf16"):
        output = models.cache / f"finetune-{finetune_steps}-{mixed}" / ("smoke" if models.smoke else "real")
        if not (output / "config.json").is_file():
            shutil.rmtree(output, ignore_errors=True)
            config = TrainConfig(
                method="ddpm",
                data=str(train_dir),
                output=str(output),
                base=str(unconditional),
                resolution=32,
                batch_size=settings.batch_size,
                lr=settings.lr,
                max_steps=finetune_steps,
                lr_schedule="cosine",
                warmup_steps=min(100, finetune_steps // 10),
                save_every=finetune_steps,
                keep_last=1,
                val_images=0,
                ema_decay=settings.ema_decay,
                device="cpu",
                mixed_precision=mixed,
                masks=list(settings.train_masks),
                seed=settings.seed,
            )
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            started = time.perf_counter()
            try:
                train(DDPMTask(str(unconditional), DDPMOptions()), config)
            finally:
                torch.set_num_threads(threads)
            log(f"training: {finetune_steps} steps, mixed precision {mixed}: {time.perf_counter() - started:.0f} s")
        runs[mixed] = output
    from inpaint import models as registry
    from inpaint.metrics import psnr
    from inpaint.models.base import MethodOptions
    from inpaint.seeding import derive_seed

    seeds = [derive_seed(0, "sample", n) for n in names]
    scores = {}
    for mixed, folder in runs.items():  # both sampled in fp32: only the training differs
        inpainter = registry.load_inpainter(
            "ddpm", MethodOptions(weights=str(folder), dtype="fp32", steps=STEPS, device="cpu")
        )
        scores[mixed] = psnr(inpainter(images, masks, seeds), images, masks).tolist()
    import numpy as np

    results["finetune"] = {
        "steps": finetune_steps,
        "fp32": float(np.mean(scores["no"])),
        "bf16": float(np.mean(scores["bf16"])),
        "paired": _paired(scores["bf16"], scores["no"]),
        "n": len(names),
    }
    log(f"training: finetune {results['finetune']}")
    results["load_after"] = load()
    return results


# ---- part: whole (the commands, each its own process) ---------------------------------------------


def _project(models: Models) -> Path:
    """A project folder: test/photo.png with masks/photo.png, data/ with four photos and captions.json
    (so train-lora does not caption first)."""
    from inpaint import io

    from . import real_size

    project = models.cache / ("project-smoke" if models.smoke else "project")
    real_size.lay_out_project(project)
    image, mask = photo_and_mask(512)
    io.save_image(io.to_uint8(image)[0], project / "photo.png")
    io.save_mask(mask[0, 0].numpy().astype(bool), project / "photo_mask.png")
    captions = {f"{name}.png": "a photo" for name in real_size.TRAIN_PHOTOS}
    (project / "data" / "captions.json").write_text(json.dumps(captions))
    return project


#: Runs a command and writes its CPU seconds and peak resident memory (KiB) to the file named first.
#: Linux carries a process's peak-memory mark across fork and exec, so a command started straight
#: from this benchmark (which holds gigabytes of models by then) would report at least this
#: process's peak; started from this small launcher it reports its own.
_MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(f"{usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _run(args: list[str], project: Path, env: dict[str, str], logs: Path, label: str) -> dict:
    """One command in its own process: wall seconds, its own CPU seconds and peak memory."""
    logs.mkdir(parents=True, exist_ok=True)
    usage_file = logs / f"{label}.usage"
    started = time.perf_counter()
    with open(logs / f"{label}.err", "wb") as err:
        returncode = subprocess.call(
            [sys.executable, "-c", _MEASURE, str(usage_file), sys.executable, "-m", "inpaint", *args],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    seconds = time.perf_counter() - started
    stderr = (logs / f"{label}.err").read_text(errors="replace")
    if returncode != 0:
        raise RuntimeError(f"{label}: exit {returncode}: {stderr[-2000:]}")
    cpu, peak_kib = usage_file.read_text().split()
    return {
        "seconds": seconds,
        "cpu": float(cpu),
        "peak_gib": int(peak_kib) / 2**20,
        "bf16_said": "auto: bf16" in stderr,
    }


def part_whole(models: Models, repeats: int) -> dict:
    project = _project(models)
    env, logs = models.env, models.cache / "logs"
    commands: dict[str, Callable[[str], list[str]]] = {}
    common = ["complete", "photo.png", "photo_mask.png"]
    for steps in SD_STEPS:
        commands[f"sd {steps}"] = lambda d, s=steps: [
            *common,
            "-o",
            f"out/sd-{d}-{s}.png",
            "-m",
            "sd",
            "--steps",
            str(s),
            "--dtype",
            d,
            "--overwrite",
        ]
    for steps in DDPM_STEPS:
        commands[f"ddpm {steps}"] = lambda d, s=steps: [
            *common,
            "-o",
            f"out/ddpm-{d}-{s}.png",
            "-m",
            "ddpm",
            "--weights",
            str(models.ddpm7),
            "--steps",
            str(s),
            "--dtype",
            d,
            "--overwrite",
        ]
    precision = {"fp32": "no", "auto": "auto"}
    commands["train-lora"] = lambda d: [
        "train-lora",
        "data/",
        "-o",
        f"runs/lora-{d}",
        "--max-steps",
        "2",
        "--val-images",
        "0",
        "--save-every",
        "2",
        "--mixed-precision",
        precision[d],
    ]
    results: dict = {"load_before": load(), "runs": {}}
    for name, command in commands.items():
        runs: dict[str, list[dict]] = {"fp32": [], "auto": []}
        for repeat in range(repeats):
            for dtype in ("fp32", "auto"):  # interleaved
                if name == "train-lora":
                    shutil.rmtree(project / "runs" / f"lora-{dtype}", ignore_errors=True)
                run = _run(command(dtype), project, env, logs, f"{name.replace(' ', '-')}-{dtype}-{repeat}")
                if name == "train-lora":
                    records = [
                        json.loads(line)
                        for line in (project / "runs" / f"lora-{dtype}" / "log.jsonl").read_text().splitlines()
                    ]
                    walls = [r["seconds"] for r in records if "loss" in r]
                    run["second step"] = walls[1] - walls[0]
                runs[dtype].append(run)
                log(
                    f"whole {name} {dtype} #{repeat}: {run['seconds']:.1f} s, peak {run['peak_gib']:.2f} GiB, "
                    f"load {load()}"
                )
        results["runs"][name] = runs
    results["load_after"] = load()
    return results


def extrapolate(runs: dict, method: str, counts: tuple[int, int], dtype: str, steps: int = STEPS) -> dict[str, float]:
    """Seconds of a ``steps``-step run from the medians at two step counts: the shorter run plus the
    per-step cost (their difference) times the steps it lacks."""
    low, high = (statistics.median(r["seconds"] for r in runs[f"{method} {c}"][dtype]) for c in counts)
    per_step = (high - low) / (counts[1] - counts[0])
    return {"per_step": per_step, "fixed": low - counts[0] * per_step, "total": low + (steps - counts[0]) * per_step}


# ---- part: compile ---------------------------------------------------------------------------------


def part_compile(models: Models, repeats: int) -> dict:
    import torch
    from diffusers import UNet2DModel

    from inpaint.models.hub import quiet_loading

    results: dict = {"load_before": load()}
    size = 256 if not models.smoke else 32
    sample = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    for dtype in (torch.float32, torch.bfloat16):
        with quiet_loading():
            unet = UNet2DModel.from_pretrained(models.ddpm3, torch_dtype=dtype).eval()
        x = sample.to(dtype)

        def call(model=unet):
            with torch.no_grad():
                return model(x, torch.tensor(500)).sample

        eager = interleaved({"eager": call}, repeats)["eager"]
        unet.compile()
        started = time.perf_counter()
        call()
        compile_seconds = time.perf_counter() - started
        compiled = interleaved({"compiled": call}, repeats, warmup=0)["compiled"]
        name = "fp32" if dtype == torch.float32 else "bf16"
        results[name] = {"eager": stats(eager), "compiled": stats(compiled), "compile_seconds": compile_seconds}
        log(f"compile {name}: {results[name]}")
        torch._dynamo.reset()
    results["load_after"] = load()
    return results


# ---- the section -------------------------------------------------------------------------------------


def _t(entry: dict | None) -> str:
    if not entry:
        return "-"
    spread = f" ({entry['min']:.2f}-{entry['max']:.2f})" if entry["n"] > 1 else ""
    return f"{entry['median']:.2f}{spread}"


def _ratio(a: dict | None, b: dict | None) -> str:
    return f"{a['median'] / b['median']:.2f}x" if a and b else "-"


def _loads(part: dict) -> str:
    return f"load average {part.get('load_before', '?')} before, {part.get('load_after', '?')} after"


def section(results: dict, smoke: bool) -> str:
    """The ``cpu-precision`` section from the results of every part measured so far."""
    lines = ["## CPU precision: bf16 against fp32", ""]
    if smoke:
        lines += ["**Smoke run**: tiny models; the figures say nothing about the real ones.", ""]
    lines += [
        f"**Machine.** {results.get('machine', machine())}.",
        "",
        "**Rerun.** `HF_HUB_OFFLINE=1 python -m benchmarks.cpu_precision` (`--only PART` reruns one part "
        "and keeps the others). Real architectures with random weights (`inpaint.testing`, from the published "
        "configurations); tiny *trained* models from `benchmarks.ddpm_samplers`. Times are wall seconds, "
        "median (min-max) of interleaved runs on a machine shared with other work: read ratios, not absolute "
        "seconds.",
        "",
    ]
    unet = results.get("unet")
    if unet:
        lines += [
            "### One UNet evaluation",
            "",
            f"Torch threads: {unet['threads']} (torch's default: the physical cores); {_loads(unet)}. "
            "Relative error: ||bf16 - fp32|| / ||fp32|| of the UNet's output at t = "
            f"{', '.join(map(str, TIMESTEPS))} (largest shown).",
            "",
            "| model | fp32 s | bf16 s | speed-up | bf16 autocast s | speed-up | fp32 channels-last s | "
            "bf16 channels-last s | fp32, 1 thread s | bf16, 1 thread s | rel. error bf16 | rel. error autocast |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        labels = {
            "sd batch 1": "SD 1.5 UNet, 64x64 latents, batch 1",
            "sd batch 2": "SD 1.5 UNet, batch 2 (guidance)",
            "ddpm batch 1": "ddpm-celebahq-256 UNet, 256 px, batch 1",
        }
        for key, label in labels.items():
            if key not in unet:
                continue
            t, errors = unet[key]["times"], unet[key]["errors"]
            worst = {k: max(e[k] for e in errors.values()) for k in ("bf16", "autocast")}
            lines.append(
                f"| {label} | {_t(t.get('fp32'))} | {_t(t.get('bf16'))} | {_ratio(t.get('fp32'), t.get('bf16'))} "
                f"| {_t(t.get('bf16 autocast'))} | {_ratio(t.get('fp32'), t.get('bf16 autocast'))} | "
                f"{_t(t.get('fp32, channels-last'))} | {_t(t.get('bf16, channels-last'))} | "
                f"{_t(t.get('fp32, 1 thread'))} | {_t(t.get('bf16, 1 thread'))} | "
                f"{worst['bf16']:.4f} | {worst['autocast']:.4f} |"
            )
        lines.append("")
    whole = results.get("whole")
    if whole:
        runs = whole["runs"]
        lines += [
            "### Whole commands",
            "",
            f"Each command its own process (start-up, loading, sampling or training, writing), `--dtype fp32` "
            f"against `--dtype auto` (bf16 here), interleaved; {_loads(whole)}. The {STEPS}-step figures are "
            f"extrapolated: the run at the fewer steps plus the per-step cost (the difference between the two "
            f"step counts) times the steps it lacks.",
            "",
            "| command | fp32 s | auto (bf16) s | speed-up | peak memory fp32 / auto (GiB) |",
            "|---|---:|---:|---:|---:|",
        ]
        for method, counts, what in (
            ("sd", SD_STEPS, "`complete -m sd`, 512 px"),
            ("ddpm", DDPM_STEPS, "`complete -m ddpm`, 256 px"),
        ):
            if f"{method} {counts[0]}" not in runs:
                continue
            for steps in counts:
                r = runs[f"{method} {steps}"]
                a, b = (stats([x["seconds"] for x in r[d]]) for d in ("fp32", "auto"))
                peaks = [max(x["peak_gib"] for x in r[d]) for d in ("fp32", "auto")]
                lines.append(
                    f"| {what}, {steps} steps | {_t(a)} | {_t(b)} | {_ratio(a, b)} | {peaks[0]:.1f} / {peaks[1]:.1f} |"
                )
            e32, e16 = (extrapolate(runs, method, counts, d) for d in ("fp32", "auto"))
            lines.append(
                f"| {what}, **{STEPS} steps** (extrapolated; a step {e32['per_step']:.1f} / "
                f"{e16['per_step']:.1f} s) | {e32['total']:.0f} | {e16['total']:.0f} | "
                f"**{e32['total'] / e16['total']:.2f}x** | |"
            )
        if "train-lora" in runs:
            r = runs["train-lora"]
            a, b = (stats([x["seconds"] for x in r[d]]) for d in ("fp32", "auto"))
            s32, s16 = (stats([x["second step"] for x in r[d]]) for d in ("fp32", "auto"))
            peaks = [max(x["peak_gib"] for x in r[d]) for d in ("fp32", "auto")]
            lines.append(
                f"| `train-lora`, 512 px, batch 2, 2 steps (`--mixed-precision no` / `auto`) | {_t(a)} | "
                f"{_t(b)} | {_ratio(a, b)} | {peaks[0]:.1f} / {peaks[1]:.1f} |"
            )
            lines.append(f"| `train-lora`: its second step alone | {_t(s32)} | {_t(s16)} | **{_ratio(s32, s16)}** | |")
        said = all(x["bf16_said"] for r in runs.values() for x in r["auto"])
        lines += ["", f"Every `auto` run {'said' if said else '**did not say**'} on stderr that it picked bf16.", ""]
    quality = [results.get(k) for k in ("sd", "ddpm")]
    if any(quality):
        lines += [
            "### Quality: bf16 against fp32, real-size models",
            "",
            "The same seed in both precisions; hole PSNR (8-bit) of the bf16 result against the fp32 result "
            "(the hole is LaMa-thick, ratio >= 0.1, on scikit-image's 512-px immunohistochemistry photo). "
            "Random weights make the fp32 images noise-like, so this measures how far bf16 rounding moves "
            "the sampling trajectory, not image quality (the trained rows below do that).",
            "",
            "| method | variant | hole PSNR vs fp32 (dB) | known pixels identical | seconds (in-process) |",
            "|---|---|---:|---|---:|",
        ]
        sd = results.get("sd")
        if sd:
            lines.append(f"| sd, {sd['steps']} steps, 512 px | fp32 | - | - | {sd['fp32 seconds']:.0f} |")
            lines.append(
                f"| | bf16 (`auto`: the UNet in bf16, text encoder, VAE and latents fp32) | "
                f"{sd['bf16']['hole_psnr']:.2f} | {'yes' if sd['bf16']['known_identical'] else '**no**'} | "
                f"{sd['bf16']['seconds']:.0f} |"
            )
            lines.append(
                f"| | the pipeline all in bf16 (diffusers' way) | {sd['all bf16']['hole_psnr']:.2f} | | "
                f"{sd['all bf16']['seconds']:.0f} |"
            )
            vae = sd["vae decode"]
            lines.append(
                f"| | the VAE decoder alone in bf16 (photo's latents; whole image) | {vae['psnr']:.2f} | | "
                f"{vae['fp32 seconds']:.1f} fp32, {vae['bf16 seconds']:.1f} bf16 |"
            )
        ddpm = results.get("ddpm")
        if ddpm:
            lines.append(
                f"| ddpm, DDPM {ddpm['steps']} steps, 256 px | bf16 | {ddpm['bf16']['hole_psnr']:.2f} | "
                f"{'yes' if ddpm['bf16']['known_identical'] else '**no**'} | "
                f"{ddpm['fp32 seconds']:.0f} fp32, {ddpm['bf16 seconds']:.0f} bf16 |"
            )
        lines.append("")
    trained = results.get("trained")
    training = results.get("training")
    if trained or training:
        lines += [
            "### Quality: tiny trained models",
            "",
            "`benchmarks.ddpm_samplers`'s models (32 px, trained on its synthetic images) on its held-out "
            "images: hole PSNR against the ground truth, mean over images; Δ: bf16 minus fp32, paired, with a "
            "95 % bootstrap interval; last column: bf16 against fp32.",
            "",
            "| model | fp32 (dB) | bf16 (dB) | Δ (dB) | bf16 vs fp32 (dB) |",
            "|---|---:|---:|---:|---:|",
        ]
        for key, label in (
            ("ddpm", f"ddpm, DDPM {STEPS}, bf16 inference"),
            ("repaint", "repaint-fast (230 NFE), bf16 inference"),
        ):
            if trained and key in trained:
                r = trained[key]
                lines.append(
                    f"| {label} | {r['fp32']:.2f} | {r['bf16']:.2f} | {r['paired']['mean']:+.2f} "
                    f"[{r['paired']['low']:+.2f}, {r['paired']['high']:+.2f}] | {r['bf16 vs fp32']:.2f} |"
                )
        if training and "finetune" in training:
            r = training["finetune"]
            lines.append(
                f"| ddpm fine-tuned {r['steps']} steps with bf16 autocast (sampled in fp32) | {r['fp32']:.2f} | "
                f"{r['bf16']:.2f} | {r['paired']['mean']:+.2f} [{r['paired']['low']:+.2f}, "
                f"{r['paired']['high']:+.2f}] | - |"
            )
        lines.append("")
        if training:
            lines += [
                "One training step under bf16 autocast against fp32, same batch and draws (median over draws "
                "of timesteps and noise, range in brackets):",
                "",
            ]
            for key, label in (
                ("ddpm step", "train-ddpm (tiny completion model, batch 8)"),
                ("lora step", "train-lora (real SD 1.5 UNet, LoRA rank 16, 512 px, batch 1)"),
            ):
                if key in training:
                    r = training[key]
                    lines.append(
                        f"- {label}: loss relative difference {r['loss']['median']:.4f} "
                        f"[{r['loss']['min']:.4f}, {r['loss']['max']:.4f}], gradient relative error "
                        f"{r['grad']['median']:.3f} [{r['grad']['min']:.3f}, {r['grad']['max']:.3f}], cosine "
                        f"{r['cosine']['median']:.4f} ({r['trials']} draws)"
                    )
            lines.append("")
    compiled = results.get("compile")
    if compiled:
        lines += [
            "### torch.compile",
            "",
            f"ddpm-celebahq-256 UNet, 256 px, batch 1; {_loads(compiled)}.",
            "",
            "| dtype | eager s | compiled s | speed-up | compilation s |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in ("fp32", "bf16"):
            if name in compiled:
                r = compiled[name]
                lines.append(
                    f"| {name} | {_t(r['eager'])} | {_t(r['compiled'])} | {_ratio(r['eager'], r['compiled'])} "
                    f"| {r['compile_seconds']:.0f} |"
                )
        lines.append("")
    return "\n".join(lines)


# ---- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        metavar="PART",
        help=f"run just this part (repeatable): {', '.join(PARTS)}; the others' results are kept",
    )
    parser.add_argument("--print", action="store_true", help="print the section instead of writing it")
    parser.add_argument("--smoke", action="store_true", help="tiny models, a temporary cache; prints unless --docs")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/inpaint-bench-cpu-precision"),
        help="results, the 7-channel ddpm and the project folder (default %(default)s)",
    )
    parser.add_argument(
        "--real-cache",
        type=Path,
        default=Path("/tmp/inpaint-bench-real-size"),
        help="real_size.py's cache of the real-size models (default %(default)s)",
    )
    parser.add_argument("--docs", type=Path, default=None, help=f"file to write the section to (default {DOCS})")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each UNet variant (default 5)")
    parser.add_argument("--whole-repeats", type=int, default=2, help="repeats of each command (default 2)")
    parser.add_argument("--finetune-steps", type=int, default=300, help="steps of the two fine-tunings (default 300)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="inpaint-cpu-precision-") as tmp:
        cache = (Path(tmp) if args.smoke else args.cache).resolve()
        cache.mkdir(parents=True, exist_ok=True)
        models = Models(Path(tmp) if args.smoke else args.real_cache, cache, args.smoke)
        store = cache / "results.json"
        results = json.loads(store.read_text()) if store.is_file() and not args.smoke else {}
        quick = args.smoke
        for part in args.only or DEFAULT_PARTS:
            log(f"part {part} (load average {load()})")
            if part == "unet":
                results[part] = part_unet(models, 1 if quick else args.repeats)
            elif part == "sd":
                results[part] = part_sd(models, 2 if quick else STEPS)
            elif part == "ddpm":
                results[part] = part_ddpm(models, 2 if quick else STEPS)
            elif part == "trained":
                results[part] = part_trained(models)
            elif part == "training":
                results[part] = part_training(models, 4 if quick else args.finetune_steps)
            elif part == "whole":
                results[part] = part_whole(models, 1 if quick else args.whole_repeats)
            elif part == "compile":
                results[part] = part_compile(models, 1 if quick else args.repeats)
            results["machine"] = machine()
            if not args.smoke:
                store.write_text(json.dumps(results, indent=1))
        body = section(results, args.smoke)
    docs = args.docs or (None if args.smoke else DOCS)
    if args.print or docs is None:
        print(body)
    else:
        write_section(SECTION, body, docs=docs)
        log(f"wrote the {SECTION} section of {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
