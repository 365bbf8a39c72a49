"""DDPM completion samplers on CPU: hole PSNR against network evaluations (NFE).

One command, deterministic from start to end::

    HF_HUB_OFFLINE=1 python -m benchmarks.ddpm_samplers [--quick] [--cache DIR] [--docs FILE]

1. draws a small structured image set at 32 px (colour gradients, stripes, discs and boxes);
2. trains an unconditional 3-channel UNet on it (a minimal eps-prediction loop, below), for RePaint;
3. widens that model to 7 channels and fine-tunes it for completion with the library's loop
   (``inpaint.training``), as the study fine-tunes a pretrained DDPM, on the eval mask preset;
4. completes a fixed held-out set (fixed masks, one fixed noise seed per image, the same for every
   sampler) with DDPM at 1000/25/10 steps, DDIM and DPM-Solver++ at 10/25/50 steps and two
   diagnostic variants (7-channel model), and RePaint and the fast variant (unconditional model);
   scores hole PSNR (mean, bootstrap 95 % interval, and the paired difference to the reference
   sampler) and checks how much the 7-channel model uses its conditioning;
5. replaces its own section of docs/benchmarks.md (between marker comments) with the table.

Trained models are cached in ``--cache`` (default /tmp/inpaint-bench-ddpm) keyed by their
settings, so a second run only samples. ``--quick`` is a smoke run (a few training steps, 4 images,
nothing written to the docs unless ``--docs`` is given).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from inpaint import io  # noqa: E402
from inpaint.masks import make_mask  # noqa: E402
from inpaint.metrics import bootstrap_ci, psnr  # noqa: E402
from inpaint.seeding import derive_seed, numpy_random_state, per_image_randn  # noqa: E402

from ._fixtures import SCHEDULER, UNET  # noqa: E402
from ._report import DOCS, machine, write_section  # noqa: E402

RESOLUTION = 32
SECTION = "ddpm-samplers"
#: Diagnostic rows (alternatives measured against the library's choices).
DPMPP_ODE = "DPM-Solver++ 25, ODE (dpmsolver++)"
DPMPP_PASTE = "DPM-Solver++ 25, known x0 pasted, no re-imposition"
FAST_MID_CHAIN = "RePaint-fast, no jump in the last tenth"
#: The ddpm method's default sampler (inpaint.models.ddpm.DDPMInpainter).
DEFAULT_ROW = "DDPM 25"
#: What the fast samplers must reach: (candidate, reference, allowed shortfall in dB).
TARGETS = [("DPM-Solver++ 25", "DDPM 1000", 0.3), (DEFAULT_ROW, "DDPM 1000", 0.3), ("RePaint-fast", "RePaint", 0.2)]


@dataclass
class Settings:
    train_images: int = 1024
    test_images: int = 32
    steps: int = 600  # the unconditional model, trained from scratch
    finetune_steps: int = 900  # the 7-channel model, fine-tuned from the unconditional one
    batch_size: int = 32
    lr: float = 1e-3
    ema_decay: float = 0.995
    train_masks: tuple[str, ...] = ("lama-thick",)  # the eval preset
    test_mask: str = "lama-thick"
    test_min_ratio: float = 0.1
    seed: int = 0

    def key(self) -> str:
        """The unconditional model's settings."""
        return (
            f"n{self.train_images}-s{self.steps}-b{self.batch_size}-lr{self.lr:g}-ema{self.ema_decay:g}-seed{self.seed}"
        )

    def completion_key(self) -> str:
        """The 7-channel model's settings: its base (the unconditional model) and the fine-tuning."""
        return f"{self.key()}-ft{self.finetune_steps}-{'+'.join(self.train_masks)}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- data -------------------------------------------------------------------------------------


def draw_image(rng: np.random.RandomState, size: int = RESOLUTION) -> np.ndarray:
    """A (size, size, 3) uint8 image: a linear two-colour gradient, maybe stripes, 0-2 discs or boxes."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)

    def ramp() -> np.ndarray:
        angle = rng.uniform(0, 2 * np.pi)
        return np.cos(angle) * xx + np.sin(angle) * yy

    def colour() -> np.ndarray:
        return rng.uniform(0.0, 1.0, 3)

    r = ramp()
    r = (r - r.min()) / (r.max() - r.min())
    c0, c1 = colour(), colour()
    image = c0 + (c1 - c0) * r[..., None]
    if rng.rand() < 0.5:  # stripes: periodic, so a good sampler continues them through the hole
        period, phase = rng.uniform(5, 12), rng.uniform(0, 2 * np.pi)
        on = np.sin(2 * np.pi * ramp() * (size - 1) / period + phase) > 0
        image = np.where(on[..., None], 0.4 * image + 0.6 * colour(), image)
    for _ in range(rng.randint(3)):
        cy, cx = rng.uniform(0, size, 2)
        if rng.rand() < 0.5:
            radius = rng.uniform(3, 8)
            inside = (yy * (size - 1) - cy) ** 2 + (xx * (size - 1) - cx) ** 2 < radius**2
        else:
            hy, hx = rng.uniform(2, 8, 2)
            inside = (np.abs(yy * (size - 1) - cy) < hy) & (np.abs(xx * (size - 1) - cx) < hx)
        image = np.where(inside[..., None], colour(), image)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_images(folder: Path, count: int, seed: int, split: str) -> Path:
    """``count`` images ``{split}-NNNNN.png`` in ``folder`` (skipped when already complete)."""
    done = folder / ".complete"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        io.save_image(draw_image(numpy_random_state(seed, "bench-image", split, i)), folder / f"{split}-{i:05d}.png")
    done.write_text(f"{count}\n")
    return folder


def test_set(folder: Path, settings: Settings) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Held-out images (N, 3, R, R) in [0, 1], their masks (N, 1, R, R) 1 = fill, and names."""
    paths = sorted(folder.glob("*.png"))[: settings.test_images]
    names = [p.stem for p in paths]
    images = io.to_tensor([io.read_image(p) for p in paths])
    masks = [
        make_mask(
            settings.test_mask,
            seed=settings.seed,
            name=n,
            height=RESOLUTION,
            width=RESOLUTION,
            min_ratio=settings.test_min_ratio,
        )[0]
        for n in names
    ]
    return images, torch.from_numpy(np.stack(masks)).float()[:, None], names


# ---- models -----------------------------------------------------------------------------------


def new_unet(in_channels: int, seed: int):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(**UNET, sample_size=RESOLUTION, in_channels=in_channels)


def train_completion(cache: Path, data: Path, settings: Settings, base: Path) -> Path:
    """The 7-channel completion model: the unconditional model ``base`` widened to 7 channels
    (exact at init) and fine-tuned with the library's loop, as the study does (EMA weights at the run
    folder's root, raw ones in ``raw/``)."""
    from inpaint.config import TrainConfig
    from inpaint.training.ddpm_task import DDPMOptions, DDPMTask
    from inpaint.training.loop import train

    run = cache / f"completion-{settings.completion_key()}"
    if (run / "config.json").is_file():  # the export, written after the last step: the run is complete
        return run
    steps = settings.finetune_steps
    config = TrainConfig(
        method="ddpm",
        data=str(data),
        output=str(run),
        base=str(base),
        resolution=RESOLUTION,
        batch_size=settings.batch_size,
        lr=settings.lr,
        max_steps=steps,
        lr_schedule="cosine",
        warmup_steps=min(100, steps // 10),
        save_every=steps,
        keep_last=1,
        val_images=0,
        ema_decay=settings.ema_decay,
        device="cpu",
        mixed_precision="no",
        masks=list(settings.train_masks),
        seed=settings.seed,
    )
    started = time.perf_counter()
    result = train(DDPMTask(str(base), DDPMOptions()), config)
    log(
        f"  completion model: {result.step} steps in {time.perf_counter() - started:.0f} s, loss {result.last_loss:.4f}"
    )
    return run


def train_unconditional(cache: Path, data: Path, settings: Settings) -> Path:
    """An unconditional 3-channel DDPM (eps prediction, plain MSE) with the same optimiser settings."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    out = cache / f"unconditional-{settings.key()}"
    if (out / "config.json").is_file():
        return out
    images = io.to_model_range(io.to_tensor([io.read_image(p) for p in sorted(data.glob("*.png"))]))
    unet = new_unet(3, settings.seed).train()
    noise_scheduler = DDPMScheduler(**SCHEDULER)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=settings.lr, weight_decay=1e-2)
    lr_schedule = get_scheduler(
        "cosine", optimizer, num_warmup_steps=min(100, settings.steps // 10), num_training_steps=settings.steps
    )
    ema = EMAModel(unet.parameters(), decay=settings.ema_decay)
    rng = torch.Generator().manual_seed(derive_seed(settings.seed, "unconditional"))
    started = time.perf_counter()
    for _ in range(settings.steps):
        index = torch.randint(0, len(images), (settings.batch_size,), generator=rng)
        x0 = images[index]
        flip = torch.rand(settings.batch_size, generator=rng) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (settings.batch_size,), generator=rng)
        eps = torch.randn(x0.shape, generator=rng)
        loss = torch.nn.functional.mse_loss(unet(noise_scheduler.add_noise(x0, eps, t), t).sample, eps)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
    ema.copy_to(unet.parameters())
    unet.eval().save_pretrained(out)
    noise_scheduler.save_pretrained(out)
    log(
        f"  unconditional model: {settings.steps} steps in {time.perf_counter() - started:.0f} s, "
        f"loss {loss.item():.4f}"
    )
    return out


# ---- sampling ---------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    model: str
    nfe: int
    psnr: list[float]
    seconds_per_image: float


def run_samplers(
    completion_dir: Path,
    unconditional_dir: Path,
    images: torch.Tensor,
    masks: torch.Tensor,
    names: list[str],
    settings: Settings,
    cached: dict[str, Row],
    only: set[str] | None = None,
) -> list[Row]:
    """Score every sampler on the held-out set; rows in ``cached`` are reused unless named in ``only``."""
    from inpaint import repaint, samplers
    from inpaint.models.pixel_unet import load_base, load_completion_unet

    unet7, config7 = load_completion_unet(completion_dir, use_ema=True)
    unet3, config3 = load_base(unconditional_dir)
    unet7.eval(), unet3.eval()
    x0 = io.to_model_range(images)

    def scheduler(name: str, steps: int) -> Callable:
        return lambda g: samplers.sample_named(
            name, samplers.completion_denoiser(unet7, x0, masks), x0, masks, g, config7, steps
        )

    def zero_shot(fn: Callable) -> Callable:
        return lambda g: fn(samplers.unconditional_denoiser(unet3), x0, masks, g, config3)

    def dpmpp_ode(g: list[torch.Generator]):
        # The deterministic DPM-Solver++(2M): the library's dpmpp.
        sched = samplers.make_scheduler("dpmpp", config7)
        return samplers.sample_with_scheduler(samplers.completion_denoiser(unet7, x0, masks), sched, x0, masks, g, 25)

    def dpmpp_paste(g: list[torch.Generator]):
        # SDE-DPM-Solver++(2M) without re-imposing x_t: the known region of the model's x0 estimate
        # is replaced by the true x0, so the known pixels follow the solver's own trajectory.
        sched = samplers.make_scheduler("dpmpp-sde", config7)
        sched = type(sched).from_config(sched.config, prediction_type="sample")
        inner = samplers.completion_denoiser(unet7, x0, masks)
        kind = config7.get("prediction_type", "epsilon")
        sched.set_timesteps(25)
        x = per_image_randn(g, x0.shape[1:]) * sched.init_noise_sigma
        for t in sched.timesteps:
            x0_hat = samplers.predict_x0(inner(x, t), x, float(sched.alphas_cumprod[int(t)]), kind)
            x = sched.step(torch.where(masks > 0.5, x0_hat, x0), t, x, generator=g).prev_sample.float()
        return samplers.SampleResult(images=torch.where(masks > 0.5, x, x0).clamp(-1, 1), nfe=25)

    def repaint_fast_mid_chain(g: list[torch.Generator]):
        # Without the jump in the last (least noisy) tenth of the chain: what resampling there buys.
        schedule = repaint.repaint_schedule(
            repaint.FAST_STEPS,
            repaint.FAST_JUMP_LENGTH,
            repaint.FAST_JUMP_N_SAMPLE,
            jump_start=repaint.FAST_STEPS // 10,
        )
        return repaint.run_schedule(samplers.unconditional_denoiser(unet3), x0, masks, g, config3, schedule)

    def mean_fill(g: list[torch.Generator]):
        known = 1.0 - masks
        mean = (x0 * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True)
        return samplers.SampleResult(images=x0 * known + mean * masks, nfe=0)

    runs: list[tuple[str, str, Callable]] = [
        ("mean-colour fill", "none", mean_fill),
        ("DDPM 1000", "7-channel", scheduler("ddpm", 1000)),
    ]
    for steps in (10, 25):
        runs.append((f"DDPM {steps}", "7-channel", scheduler("ddpm", steps)))
    for steps in (10, 25, 50):
        runs.append((f"DDIM {steps}", "7-channel", scheduler("ddim", steps)))
    for steps in (10, 25, 50):
        runs.append((f"DPM-Solver++ {steps}", "7-channel", scheduler("dpmpp-sde", steps)))
    runs.append((DPMPP_ODE, "7-channel", dpmpp_ode))
    runs.append((DPMPP_PASTE, "7-channel", dpmpp_paste))
    runs.append(("RePaint", "unconditional", zero_shot(repaint.sample_repaint)))
    runs.append(("RePaint-fast", "unconditional", zero_shot(repaint.sample_repaint_fast)))
    runs.append((FAST_MID_CHAIN, "unconditional", repaint_fast_mid_chain))

    rows = []
    for name, model, sample in runs:
        if name in cached and (only is None or name not in only):
            rows.append(cached[name])
            continue
        # The same noise seed per image for every sampler, so differences between rows are paired.
        generators = [torch.Generator().manual_seed(derive_seed(settings.seed, "sample", n)) for n in names]
        started = time.perf_counter()
        result = sample(generators)
        seconds = time.perf_counter() - started
        completed = io.from_model_range(result.images)
        scores = psnr(completed, images, masks).tolist()
        rows.append(Row(name, model, result.nfe, scores, seconds / len(names)))
        log(f"  {name:<18} NFE {result.nfe:>5}  hole PSNR {np.mean(scores):6.2f} dB  {seconds:6.1f} s")
    return rows


def conditioning_check(
    completion_dir: Path, unconditional_dir: Path, images: torch.Tensor, masks: torch.Tensor, settings: Settings
) -> dict[str, dict[str, float]]:
    """Hole MSE of the models' clipped x0 estimates (model range) at a few noise levels: the 7-channel
    model with its conditioning, with x_masked zeroed, and the unconditional model; plus the
    mean-colour fill. A model that uses x_masked does better with it and beats the unconditional one."""
    from inpaint import samplers
    from inpaint.models.pixel_unet import load_base, load_completion_unet

    unet7, config7 = load_completion_unet(completion_dir, use_ema=True)
    unet3, _ = load_base(unconditional_dir)
    x0 = io.to_model_range(images)
    hole = masks.expand_as(x0) > 0.5
    known = 1.0 - masks
    mean = (x0 * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True)
    abar = samplers.make_scheduler("ddpm", config7).alphas_cumprod
    kind = config7.get("prediction_type", "epsilon")
    rng = torch.Generator().manual_seed(derive_seed(settings.seed, "conditioning-check"))
    fill_error = float(((mean.expand_as(x0) - x0)[hole] ** 2).mean())
    out: dict[str, dict[str, float]] = {"mean-colour fill": {"any": fill_error}}
    for t in (300, 500, 700):
        a = float(abar[t])
        x_t = samplers.q_sample(x0, a, torch.randn(x0.shape, generator=rng))
        tt = torch.full((len(x0),), t)
        inputs = samplers.completion_model_input(x_t, x0, masks)
        blind = inputs.clone()
        blind[:, :3] = 0

        def mse(output: torch.Tensor) -> float:
            return float(((samplers.predict_x0(output, x_t, a, kind).clamp(-1, 1) - x0)[hole] ** 2).mean())

        out[str(t)] = {
            "7-channel": mse(unet7(inputs, tt).sample),
            "7-channel, x_masked zeroed": mse(unet7(blind, tt).sample),
            "unconditional": mse(unet3(x_t, tt).sample),
        }
    return out


# ---- report -----------------------------------------------------------------------------------


def paired(rows: dict[str, Row], candidate: str, reference: str) -> tuple[float, float, float]:
    """Mean hole-PSNR difference candidate - reference over the same images, with its 95 % interval."""
    diff = np.asarray(rows[candidate].psnr) - np.asarray(rows[reference].psnr)
    low, high = bootstrap_ci(diff, seed=1)
    return float(diff.mean()), low, high


def conditioning_verdict(check: dict[str, dict[str, float]]) -> str:
    """One sentence on whether the 7-channel model uses x_masked (judged at t = 500)."""
    at = check["500"]
    gain = at["7-channel, x_masked zeroed"] / at["7-channel"] - 1.0
    beats = "beats" if at["7-channel"] < at["unconditional"] else "does not beat"
    if gain >= 0.05:
        return (
            f"The 7-channel model {beats} the unconditional one, and zeroing its x_masked input raises its "
            f"error by {gain:.0%} at t = 500: it uses the conditioning."
        )
    return (
        f"The 7-channel model {beats} the unconditional one, but zeroing its x_masked input changes its "
        f"error by {gain:+.0%} at t = 500: it reads the known region from x_t (where sampling re-imposes it) "
        "and has not learnt to copy colours from x_masked, likely because the eps loss weighs x0 errors by "
        "ᾱ/(1-ᾱ), small exactly where x_t carries little of the known region. Training and sampling build "
        "the same input (`completion_model_input`), so this is undertraining, not a wiring bug."
    )


def sampling_code_hash() -> str:
    """A short hash of the source files the sampled rows depend on."""
    import hashlib

    import inpaint

    package = Path(inpaint.__file__).resolve().parent
    digest = hashlib.sha256()
    for name in ("samplers.py", "repaint.py", "models/ddpm.py", "models/base.py", "metrics/pixel.py"):
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:12]


def render(
    rows: list[Row],
    settings: Settings,
    train_seconds: dict[str, float],
    check: dict[str, dict[str, float]] | None = None,
) -> str:
    by_name = {r.name: r for r in rows}
    refs = {"7-channel": "DDPM 1000", "unconditional": "RePaint", "none": "DDPM 1000"}
    lines = [
        "## DDPM completion samplers: hole PSNR vs network evaluations",
        "",
        f"**Machine.** {machine()}. CPU time was shared with other jobs, so wall times are indicative only.",
        "",
        "**Rerun.** `HF_HUB_OFFLINE=1 python -m benchmarks.ddpm_samplers` (see benchmarks/README.md).",
        "",
        f"**Setup.** {settings.train_images} synthetic 32x32 training images (two-colour gradients, stripes in "
        f"half of them, 0-2 discs or boxes) and {settings.test_images} held-out ones from the same generator. "
        f"An unconditional UNet ({sum(p.numel() for p in new_unet(3, 0).parameters()) / 1e6:.2f} M "
        f"parameters, channels {UNET['block_out_channels']}, attention at 8x8; 1000 linear betas, x0 clipped) "
        f"trained from scratch for {settings.steps} steps with plain eps loss "
        f"({train_seconds.get('unconditional', float('nan')):.0f} s), used by RePaint; the 7-channel completion "
        f"model is that model widened (exact at init) and fine-tuned with `inpaint.training` for "
        f"{settings.finetune_steps} more steps (weighted eps loss, masks {', '.join(settings.train_masks)}; "
        f"{train_seconds.get('completion', float('nan')):.0f} s), as the study fine-tunes a pretrained DDPM. "
        f"Both: batch {settings.batch_size}, AdamW lr {settings.lr:g} (cosine), EMA {settings.ema_decay} "
        f"(EMA weights evaluated). Test masks: `{settings.test_mask}` "
        f"with hole ratio >= {settings.test_min_ratio}, seed {settings.seed}; one noise seed per image, the same "
        "for every sampler. Hole PSNR on 8-bit images; 95 % intervals are percentile bootstraps over images "
        "(1000 resamples); Δ is the paired difference to the reference of the same model (DDPM 1000 for the "
        "7-channel model and the network-free mean-colour fill, RePaint for the unconditional one). Seconds are "
        "wall time of a batch divided by its size.",
        "",
        "| sampler | model | NFE | hole PSNR (dB) | 95 % CI | Δ vs reference (dB) [95 % CI] | s / image |",
        "|---|---|---:|---:|---|---|---:|",
    ]
    for row in rows:
        low, high = bootstrap_ci(row.psnr)
        ref = refs[row.model]
        if row.name == ref or ref not in by_name:
            delta = "reference"
        else:
            d, dl, dh = paired(by_name, row.name, ref)
            delta = f"{d:+.2f} [{dl:+.2f}, {dh:+.2f}]"
        lines.append(
            f"| {row.name} | {row.model} | {row.nfe:,} | {np.mean(row.psnr):.2f} | "
            f"[{low:.2f}, {high:.2f}] | {delta} | {row.seconds_per_image:.3f} |"
        )
    lines += [
        "",
        "Samplers: DDPM is ancestral sampling on `steps` trailing timesteps; DDIM has eta = 0; DPM-Solver++ is "
        "the library's `dpmpp-sde`, SDE-DPM-Solver++(2M) (`sde-dpmsolver++`); all re-impose the known region "
        f"after every step. Diagnostic rows: *{DPMPP_ODE}* is the deterministic form of the same solver, the "
        "library's `dpmpp`; "
        f"*{DPMPP_PASTE}* replaces the known region of the model's x0 estimate by the true x0 instead of "
        "re-imposing noised x0 in x_t. "
        f"*{FAST_MID_CHAIN}* is RePaint-fast's schedule without the jump at the clean end of the chain.",
        "",
    ]
    fast = [r for r in rows if r.model == "7-channel" and r.nfe <= 25 and not r.name.startswith("DPM-Solver++ 25,")]
    if fast:
        best, *others = sorted(fast, key=lambda r: -np.mean(r.psnr))
        finding = f"**Best at <= 25 NFE (7-channel model):** {best.name}, {np.mean(best.psnr):.2f} dB"
        if others:
            d, dl, dh = paired(by_name, best.name, others[0].name)
            finding += f"; {d:+.2f} dB [{dl:+.2f}, {dh:+.2f}] over the next best, {others[0].name}"
        lines += [finding + f". The `ddpm` method's default is {DEFAULT_ROW}.", ""]
    if check:
        levels = [k for k in check if k.isdigit()]
        cells = "; ".join(
            f"t = {t}: " + ", ".join(f"{name} {value:.3f}" for name, value in check[t].items()) for t in levels
        )
        lines += [
            "**Conditioning check.** Hole MSE of the clipped x0 estimate (model range [-1, 1]) on the test set: "
            f"{cells}; the mean-colour fill: {check['mean-colour fill']['any']:.3f}. " + conditioning_verdict(check),
            "",
        ]
    lines += ["**Targets.**", ""]
    for candidate, reference, allowed in TARGETS:
        if candidate not in by_name or reference not in by_name:
            continue
        d, dl, dh = paired(by_name, candidate, reference)
        verdict = "met" if d >= -allowed else "**not met**"
        if d >= -allowed and dl < -allowed:
            verdict += " by the mean (the interval still reaches below the threshold)"
        note = ", the `ddpm` method's default" if candidate == DEFAULT_ROW else ""
        lines.append(
            f"- {candidate} ({by_name[candidate].nfe} NFE{note}) within {allowed} dB of {reference} "
            f"({by_name[reference].nfe:,} NFE): Δ = {d:+.2f} dB [{dl:+.2f}, {dh:+.2f}] — {verdict}."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 training steps, 4 images, no docs")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/inpaint-bench-ddpm"),
        help="folder for the image set, trained models and raw results",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        help=f"Markdown file whose section to replace (default {DOCS}; none with --quick)",
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps of the unconditional model")
    parser.add_argument(
        "--finetune-steps",
        type=int,
        default=None,
        help="fine-tuning steps of the 7-channel model (from the unconditional one)",
    )
    parser.add_argument("--test-images", type=int, default=None, help="held-out images to complete")
    parser.add_argument(
        "--only",
        action="append",
        help="resample only this row (repeatable), e.g. 'RePaint-fast'; other rows come from the cache",
    )
    parser.add_argument("--fresh", action="store_true", help="resample every row, ignoring cached results")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a busy 2-core machine two threads spin and run 10x slower)",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    settings = Settings(train_images=128, test_images=4, steps=20, finetune_steps=20) if args.quick else Settings()
    if args.steps:
        settings.steps = args.steps
    if args.finetune_steps:
        settings.finetune_steps = args.finetune_steps
    if args.test_images:
        settings.test_images = args.test_images
    docs = args.docs or (None if args.quick else DOCS)
    cache = args.cache.resolve()

    log(f"data -> {cache}")
    train_dir = write_images(
        cache / f"train-{settings.train_images}-seed{settings.seed}", settings.train_images, settings.seed, "train"
    )
    test_dir = write_images(
        cache / f"test-{settings.test_images}-seed{settings.seed}", settings.test_images, settings.seed, "test"
    )
    log("training")
    train_seconds: dict[str, float] = {}

    def timed(label: str, fn: Callable[[], Path]) -> Path:
        started = time.perf_counter()
        folder = fn()
        timing = folder / "train_seconds.json"
        if not timing.is_file():
            timing.write_text(json.dumps({"seconds": time.perf_counter() - started}))
        train_seconds[label] = json.loads(timing.read_text())["seconds"]
        return folder

    unconditional_dir = timed("unconditional", lambda: train_unconditional(cache, train_dir, settings))
    completion_dir = timed("completion", lambda: train_completion(cache, train_dir, settings, unconditional_dir))
    log("sampling")
    images, masks, names = test_set(test_dir, settings)
    # Rows are reused only while the sampling code is the code that made them: a change to a sampler
    # gives a new file, so a rerun cannot re-date old numbers as today's.
    results = cache / f"results-{settings.completion_key()}-t{settings.test_images}-code{sampling_code_hash()}.json"
    cached: dict[str, Row] = {}
    if results.is_file() and not args.fresh:
        cached = {r["name"]: Row(**r) for r in json.loads(results.read_text())["rows"]}
    with torch.no_grad():
        rows = run_samplers(
            completion_dir,
            unconditional_dir,
            images,
            masks,
            names,
            settings,
            cached,
            set(args.only) if args.only else None,
        )
        check = conditioning_check(completion_dir, unconditional_dir, images, masks, settings)
    results.write_text(
        json.dumps({"settings": asdict(settings), "rows": [asdict(r) for r in rows], "check": check}, indent=1)
    )
    body = render(rows, settings, train_seconds, check)
    print(body)
    if docs is not None:
        write_section(SECTION, body, docs)
        log(f"wrote {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
