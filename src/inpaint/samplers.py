"""Stateless denoising loops for image completion, all in the model range [-1, 1].

Every sampler is a small function ``sample_x(denoiser, x0, masks, generators, ..., progress)``
(k-diffusion style): the model is the only state, passed as a *denoiser*, a callable
``(x_t (N, 3, H, W) fp32, t 0-dim long tensor) -> model output (N, 3, H, W) fp32``. Build one
with :func:`completion_denoiser` (the 7-channel fine-tuned model of the study) or
:func:`unconditional_denoiser` (a plain DDPM, for RePaint in :mod:`inpaint.repaint`).

Conventions: ``x0`` (N, 3, H, W) in [-1, 1] is the input image (its hole pixels are ignored);
``masks`` (N, 1, H, W) in {0, 1}, **1 = fill**; ``generators`` holds one ``torch.Generator`` per
image and *all* noise of image i is drawn from ``generators[i]``, so a batch gives the same
result as its images run one by one. Samplers return a :class:`SampleResult` whose ``nfe``
counts network evaluations (each one processes the whole batch).

The known region is re-imposed after every step (the study's sampling, shared/METHOD.md):
``x_{t-1} = m_known * q_sample(x0, t-1, fresh noise) + m_hole * x̂_{t-1}``, where ``t-1`` is the
noise level the scheduler just stepped to and the last step imposes the clean ``x0``; so the
known pixels of the result equal ``x0`` exactly. Every scheduler step acts pixel by pixel, so
re-imposition never touches the hole's own history (a multistep solver's included): it only sets
what the model sees of the known region. Replacing the known region of the model's x0 estimate by
the true ``x0`` instead (the known pixels then follow the solver's own, consistent trajectory)
scored lower on the benchmark of docs/benchmarks.md, and changes nothing when combined with
re-imposition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from inpaint.progress import NullProgress, Progress

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import UNet2DModel

#: ``(x_t, t) -> model output``; see the module docstring.
Denoiser = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
#: Samplers built on diffusers' schedulers.
SchedulerSampler = Literal["ddpm", "ddim", "dpmpp"]
#: Default number of steps (= network evaluations) of each scheduler sampler; 1000 ancestral steps
#: is the study's setting (see :class:`inpaint.models.ddpm.DDPMInpainter` for the method's default).
DEFAULT_STEPS: dict[str, int] = {"ddpm": 1000, "ddim": 50, "dpmpp": 25}


@dataclass
class SampleResult:
    """A sampler's output: ``images`` (N, 3, H, W) clamped to [-1, 1] (known pixels equal ``x0``) and
    ``nfe``, the number of network evaluations (per image: each evaluation covers the batch)."""

    images: torch.Tensor
    nfe: int


# ---- model inputs shared with training ------------------------------------------------------


def masked_image(x0: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The conditioning image: ``x0 * (1 - masks)``, the hole set to 0 (mid-gray in [-1, 1]).

    x0: (N, 3, H, W) in [-1, 1]; masks: (N, 1, H, W) in {0, 1}, 1 = hole. Training and
    sampling both call this, so the model sees the same conditioning in both.
    """
    return x0 * (1.0 - masks)


def completion_model_input(x_t: torch.Tensor, x0: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The 7-channel input of the completion UNet: ``concat(x_masked [3], mask [1], x_t [3])``.

    x_t, x0: (N, 3, H, W) in the model range; masks: (N, 1, H, W) in {0, 1}, 1 = hole.
    Returns (N, 7, H, W). The order matches :func:`inpaint.models.pixel_unet.widen_conv_in`.
    """
    import torch

    masks = masks.to(x_t.dtype)
    return torch.cat([masked_image(x0.to(x_t.dtype), masks), masks, x_t], dim=1)


def completion_denoiser(
    unet: UNet2DModel, x0: torch.Tensor, masks: torch.Tensor, dtype: torch.dtype | None = None
) -> Denoiser:
    """Wrap the 7-channel completion UNet as a denoiser conditioned on (x0, masks).

    The model runs in ``dtype`` (default: its parameters' dtype); outputs come back as fp32.
    """
    dtype = dtype or unet.dtype

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        model_input = completion_model_input(x_t, x0, masks).to(dtype)
        return unet(model_input, t.to(x_t.device)).sample.float()

    return denoise


def unconditional_denoiser(unet: UNet2DModel, dtype: torch.dtype | None = None) -> Denoiser:
    """Wrap an unconditional 3-channel UNet as a denoiser (fp32 outputs)."""
    dtype = dtype or unet.dtype

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x_t.to(dtype), t.to(x_t.device)).sample.float()

    return denoise


# ---- noise and the forward process ----------------------------------------------------------


def randn_per_image(like: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Standard normal noise shaped like ``like``; image i drawn from ``generators[i]`` only.

    Drawn on each generator's device in fp32, then moved to ``like``'s device and dtype, so the
    numbers do not depend on the batch size or on where the model runs.
    """
    import torch

    if len(generators) != like.shape[0]:
        raise ValueError(f"got {len(generators)} generators for a batch of {like.shape[0]}")
    shape = (1, *like.shape[1:])
    draws = [torch.randn(shape, generator=g, device=g.device, dtype=torch.float32) for g in generators]
    return torch.cat([d.to(like.device) for d in draws]).to(like.dtype)


def q_sample(x0: torch.Tensor, alpha_bar: float, noise: torch.Tensor) -> torch.Tensor:
    """Sample q(x_t | x0) = N(sqrt(ᾱ_t) x0, (1 - ᾱ_t) I) (Ho et al. 2020, eq. 4)."""
    return alpha_bar**0.5 * x0 + (1.0 - alpha_bar) ** 0.5 * noise


def impose_known(
    x: torch.Tensor,
    x0: torch.Tensor,
    masks: torch.Tensor,
    alpha_bar: float,
    generators: Sequence[torch.Generator],
) -> torch.Tensor:
    """Replace the known region of ``x`` by ``q_sample(x0, ᾱ, fresh noise)``; ᾱ >= 1 gives ``x0``.

    Keeps the hole (masks == 1) of ``x``. Fresh noise is drawn at every call, as RePaint does
    (Lugmayr et al. 2022, eq. 8); ``where`` keeps the clean known pixels bit-exact.
    """
    import torch

    if alpha_bar >= 1.0:
        known = x0
    else:
        known = q_sample(x0, alpha_bar, randn_per_image(x, generators))
    return torch.where(masks > 0.5, x, known.to(x.dtype))


def predict_x0(
    output: torch.Tensor, x_t: torch.Tensor, alpha_bar: float, prediction_type: str
) -> torch.Tensor:
    """The model's estimate of x0 from its output (epsilon, sample or v prediction)."""
    if prediction_type == "epsilon":
        return (x_t - (1.0 - alpha_bar) ** 0.5 * output) / alpha_bar**0.5
    if prediction_type == "sample":
        return output
    if prediction_type == "v_prediction":  # Salimans & Ho 2022
        return alpha_bar**0.5 * x_t - (1.0 - alpha_bar) ** 0.5 * output
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


# ---- samplers on diffusers' schedulers ------------------------------------------------------


def make_scheduler(sampler: SchedulerSampler, scheduler_config: Mapping[str, Any]) -> Any:
    """A fresh diffusers scheduler for ``sampler`` with the model's noise schedule.

    DDPM and DPM-Solver++ use ``timestep_spacing="trailing"``, so the first step is at t = T-1
    where x_T is pure noise, as sampling assumes (Lin et al. 2024, "Common diffusion noise
    schedules and sample steps are flawed", Table 2). DDIM keeps "leading" spacing: its step
    assumes the constant stride T // steps, which trailing timesteps break whenever ``steps``
    does not divide T (it would land between timesteps and finish at t = 0, not at the clean
    image); leading starts a little below T-1 (980 for 50 of 1000 steps; counts whose stride
    covers under 90 % of T are refused by :func:`steps_problem`). DDIM runs with
    eta = 0. DPM-Solver++ is the 2nd-order multistep solver of the diffusion *SDE*
    (``sde-dpmsolver++``, Lu et al. 2022; "DPM++ 2M SDE"), which draws fresh noise at every step:
    with known-region re-imposition its deterministic ODE form scored ~3.7 dB lower hole PSNR on
    the benchmark of docs/benchmarks.md, with or without x0 clipping. Its 1st-order form is the
    ``ddpm`` sampler on the same steps. x0_hat is clipped when the config has ``clip_sample``.
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    config = dict(scheduler_config)
    if sampler == "ddpm":
        return DDPMScheduler.from_config(config, timestep_spacing="trailing")
    if sampler == "ddim":
        return DDIMScheduler.from_config(config, timestep_spacing="leading", set_alpha_to_one=True)
    if sampler == "dpmpp":
        # DPM-Solver++ has no clip_sample; dynamic thresholding with a maximum of the clip range
        # always scales by 1, i.e. it clips x0_hat exactly as DDPM/DDIM do for pixel models.
        clip = bool(config.get("clip_sample", False))
        return DPMSolverMultistepScheduler.from_config(
            config,
            timestep_spacing="trailing",
            algorithm_type="sde-dpmsolver++",
            solver_order=2,
            thresholding=clip,
            sample_max_value=float(config.get("clip_sample_range", 1.0)),
        )
    raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(DEFAULT_STEPS)}")


def steps_problem(sampler: str, steps: int, train_steps: int) -> str | None:
    """Why ``steps`` would sample badly with ``sampler`` on a model of ``train_steps`` timesteps, or None.

    DDIM's leading timesteps (see :func:`make_scheduler`) step by ``train_steps // steps``, so the
    steps cover only ``stride * steps`` of the schedule and the chain starts at
    ``(steps - 1) * stride``: 980 of 1000 at 50 steps, but 599 at 600 steps, far from the pure
    noise it is drawn as. Step counts covering less than 90 % of the timesteps are refused (few
    steps are fine: 2 steps start at 500, as in the DDIM paper).
    """
    if sampler != "ddim" or steps > train_steps or _covers(steps, train_steps):
        return None
    fine = max(n for n in range(1, steps) if _covers(n, train_steps))
    return (f"DDIM on {steps} steps would start at t = {(steps - 1) * (train_steps // steps)} of {train_steps}: "
            f"its stride {train_steps} // {steps} = {train_steps // steps} covers only "
            f"{train_steps // steps * steps} of the timesteps; use {fine} steps, or the ddpm sampler")


def _covers(steps: int, train_steps: int) -> bool:
    return train_steps // steps * steps >= 0.9 * train_steps


def _alpha_bar_after(scheduler: Any, timesteps: torch.Tensor, i: int) -> float:
    """ᾱ of the noise level that ``scheduler.step`` moves step ``i``'s sample to."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if i == len(timesteps) - 1:
        return 1.0  # the last step returns the clean image
    if isinstance(scheduler, DPMSolverMultistepScheduler):
        sigma = float(scheduler.sigmas[i + 1])  # VP: sigma = sqrt((1 - ᾱ) / ᾱ)
        return 1.0 / (1.0 + sigma**2)
    if isinstance(scheduler, DDIMScheduler):
        # DDIM steps by the fixed stride T // steps (with leading spacing: the next timestep).
        prev = int(timesteps[i]) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    else:
        prev = int(scheduler.previous_timestep(timesteps[i]))
    return float(scheduler.alphas_cumprod[prev]) if prev >= 0 else 1.0


def sample_with_scheduler(
    denoiser: Denoiser,
    scheduler: Any,
    x0: torch.Tensor,
    masks: torch.Tensor,
    generators: Sequence[torch.Generator],
    steps: int,
    *,
    progress: Progress | None = None,
    description: str = "sampling",
) -> SampleResult:
    """Reverse diffusion with a diffusers scheduler, re-imposing the known region after every step.

    x0: (N, 3, H, W) in [-1, 1]; masks: (N, 1, H, W), 1 = fill. Costs ``steps`` evaluations.
    ``progress`` advances once per evaluation.
    """
    import torch

    progress = progress or NullProgress()
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    x0, masks = x0.float(), masks.float()
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    x = randn_per_image(x0, generators) * scheduler.init_noise_sigma
    x = impose_known(x, x0, masks, float(scheduler.alphas_cumprod[int(timesteps[0])]), generators)
    # DDPM's and SDE-DPM-Solver++'s noise is drawn by scheduler.step; diffusers' randn_tensor
    # draws image i from generators[i] when given a list (DDIM with eta=0 draws nothing).
    step_generators = list(generators)
    progress.start(description, total=len(timesteps))
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            output = denoiser(scheduler.scale_model_input(x, t), t)
            x = scheduler.step(output, t, x, generator=step_generators).prev_sample.float()
            x = impose_known(x, x0, masks, _alpha_bar_after(scheduler, timesteps, i), generators)
            progress.advance()
    progress.finish()
    return SampleResult(images=x.clamp(-1.0, 1.0), nfe=len(timesteps))


def sample_ddpm(
    denoiser: Denoiser,
    x0: torch.Tensor,
    masks: torch.Tensor,
    generators: Sequence[torch.Generator],
    scheduler_config: Mapping[str, Any],
    steps: int = DEFAULT_STEPS["ddpm"],
    progress: Progress | None = None,
) -> SampleResult:
    """Ancestral DDPM sampling (Ho et al., NeurIPS 2020); 1000 steps is the study's setting.

    Fewer steps take the DDPM posterior between the ``steps`` trailing timesteps; 25 of them is the
    ``ddpm`` method's default (the best sampler at <= 25 evaluations in docs/benchmarks.md).
    """
    scheduler = make_scheduler("ddpm", scheduler_config)
    return sample_with_scheduler(
        denoiser, scheduler, x0, masks, generators, steps, progress=progress, description="DDPM"
    )


def sample_ddim(
    denoiser: Denoiser,
    x0: torch.Tensor,
    masks: torch.Tensor,
    generators: Sequence[torch.Generator],
    scheduler_config: Mapping[str, Any],
    steps: int = DEFAULT_STEPS["ddim"],
    progress: Progress | None = None,
) -> SampleResult:
    """Deterministic DDIM sampling, eta = 0 (Song, Meng & Ermon, ICLR 2021)."""
    scheduler = make_scheduler("ddim", scheduler_config)
    return sample_with_scheduler(
        denoiser, scheduler, x0, masks, generators, steps, progress=progress, description="DDIM"
    )


def sample_dpmpp(
    denoiser: Denoiser,
    x0: torch.Tensor,
    masks: torch.Tensor,
    generators: Sequence[torch.Generator],
    scheduler_config: Mapping[str, Any],
    steps: int = DEFAULT_STEPS["dpmpp"],
    progress: Progress | None = None,
) -> SampleResult:
    """SDE-DPM-Solver++(2M) multistep sampling (Lu et al., arXiv:2211.01095, 2022): stochastic,
    its noise drawn per image from ``generators``."""
    scheduler = make_scheduler("dpmpp", scheduler_config)
    return sample_with_scheduler(
        denoiser, scheduler, x0, masks, generators, steps, progress=progress, description="DPM-Solver++"
    )


#: The scheduler samplers by name (``--sampler``).
SAMPLERS: dict[str, Callable[..., SampleResult]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "dpmpp": sample_dpmpp,
}
