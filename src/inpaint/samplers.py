"""The ``--sampler`` names of every method, and stateless denoising loops in the model range [-1, 1].

:data:`SAMPLERS` is the one registry of sampler names: each name means one algorithm (a diffusers
scheduler class and the settings that make it that algorithm, or RePaint's own loop) for every
method that takes it, with its default number of steps. :func:`make_scheduler` builds the
scheduler for a method; :func:`sampler_spec` refuses a name the method does not take.

Every loop is a small function ``sample_x(denoiser, x0, masks, generators, ..., progress)``
(k-diffusion style): the model is the only state, passed as a *denoiser*, a callable
``(x_t (N, 3, H, W) fp32, t 0-dim long tensor) -> model output (N, 3, H, W) fp32``. Build one
with :func:`completion_denoiser` (the 7-channel fine-tuned model of the study) or
:func:`unconditional_denoiser` (a plain DDPM, for RePaint in :mod:`inpaint.repaint`).

Conventions: ``x0`` (N, 3, H, W) in [-1, 1] is the input image (its hole pixels are ignored);
``masks`` (N, 1, H, W) in {0, 1}, **1 = fill**; ``generators`` holds one ``torch.Generator`` per
image and *all* noise of image i is drawn from ``generators[i]``, so a batch gives the same
result as its images run one by one. Samplers return a :class:`SampleResult` whose ``nfe``
counts network evaluations (each one processes the whole batch).

The known region is re-imposed after every step (the study's sampling, docs/method.md, Method 1):
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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inpaint.errors import InputError
from inpaint.progress import NullProgress, Progress
from inpaint.seeding import per_image_randn

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import UNet2DModel

#: ``(x_t, t) -> model output``; see the module docstring.
Denoiser = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


@dataclass(frozen=True)
class SamplerSpec:
    """What one ``--sampler`` name means, the same for every method that takes it.

    ``scheduler`` is the diffusers scheduler class (``None``: a loop of its own, RePaint's);
    ``kwargs`` the settings that make it this algorithm, applied for every method; ``pixel_kwargs``
    those added in this module's pixel-space loops, whose chain must start from pure noise (see
    :func:`make_scheduler`; ``sd`` keeps its pipeline's own timestep spacing). ``steps`` is the
    default number of steps where the method has none of its own (``sd`` runs 50 whatever the
    sampler; ``ddpm`` 25 when no sampler is named). ``methods`` lists the methods that take it.
    """

    name: str
    title: str
    scheduler: str | None
    steps: int
    methods: tuple[str, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    pixel_kwargs: Mapping[str, Any] = field(default_factory=dict)


#: The methods that run a diffusers latent pipeline (its own scheduler loop): SD 1.x/2.x and SDXL.
LATENT_METHODS = ("sd", "sdxl")
#: The methods whose schedulers keep their pipeline's own timestep spacing (no ``pixel_kwargs``):
#: the latent ones and Kandinsky 2.2, whose decoder takes its own DDPM only (its loop calls no
#: ``scale_model_input``, which Euler-type schedulers need).
PIPELINE_METHODS = (*LATENT_METHODS, "kandinsky")

#: Every ``--sampler`` name. The pixel loops re-impose the known region as a variance-preserving
#: ``q_sample``, so the ``ddpm`` method takes the VP schedulers only; Euler, PNDM and UniPC are
#: ``sd``'s (its pipeline handles any scheduler). RePaint's loops are its own (:mod:`inpaint.repaint`).
SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec
    for spec in (
        # Ancestral DDPM (Ho et al. 2020); 1000 steps is the study's setting. Kandinsky 2.2's
        # decoder's own scheduler (its only sampler; naming it changes nothing).
        SamplerSpec(
            "ddpm",
            "DDPM",
            "DDPMScheduler",
            1000,
            ("ddpm", *LATENT_METHODS, "kandinsky"),
            pixel_kwargs={"timestep_spacing": "trailing"},
        ),
        # Deterministic DDIM, eta = 0 (Song, Meng & Ermon 2021).
        SamplerSpec(
            "ddim",
            "DDIM",
            "DDIMScheduler",
            50,
            ("ddpm", *LATENT_METHODS),
            pixel_kwargs={"timestep_spacing": "leading", "set_alpha_to_one": True},
        ),
        # DPM-Solver++(2M), the deterministic multistep solver of the diffusion ODE (Lu et al. 2022).
        SamplerSpec(
            "dpmpp",
            "DPM-Solver++",
            "DPMSolverMultistepScheduler",
            25,
            ("ddpm", *LATENT_METHODS),
            kwargs={"algorithm_type": "dpmsolver++", "solver_order": 2},
            pixel_kwargs={"timestep_spacing": "trailing"},
        ),
        # Its SDE form ("DPM++ 2M SDE"): fresh noise at every step, drawn per image.
        SamplerSpec(
            "dpmpp-sde",
            "SDE-DPM-Solver++",
            "DPMSolverMultistepScheduler",
            25,
            ("ddpm", *LATENT_METHODS),
            kwargs={"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
            pixel_kwargs={"timestep_spacing": "trailing"},
        ),
        SamplerSpec("euler", "Euler", "EulerDiscreteScheduler", 50, LATENT_METHODS),
        SamplerSpec("euler-a", "Euler ancestral", "EulerAncestralDiscreteScheduler", 50, LATENT_METHODS),
        # PNDM's Runge-Kutta warm-up breaks at few steps; SD's own PNDM config skips it (PLMS).
        SamplerSpec("pndm", "PNDM", "PNDMScheduler", 50, LATENT_METHODS, kwargs={"skip_prk_steps": True}),
        SamplerSpec("unipc", "UniPC", "UniPCMultistepScheduler", 50, LATENT_METHODS),
        # FLUX.1 Fill's own: Euler steps of the rectified-flow ODE, the resolution-shifted sigmas of
        # its pipeline. The only sampler of flux (a flow-matching model: the others are for noise
        # predictors); naming it changes nothing.
        SamplerSpec("flow-euler", "Flow-matching Euler", "FlowMatchEulerDiscreteScheduler", 50, ("flux",)),
        # RePaint's resampling schedules (inpaint.repaint): the paper's, and our five-fold cheaper one.
        SamplerSpec("repaint", "RePaint", None, 250, ("repaint",)),
        SamplerSpec("fast", "RePaint-fast", None, 50, ("repaint",)),
    )
}


def sampler_names(method: str) -> list[str]:
    """The ``--sampler`` names ``method`` takes, in registry order."""
    return [name for name, spec in SAMPLERS.items() if method in spec.methods]


def sampler_spec(method: str, name: str) -> SamplerSpec:
    """The registry entry of ``--sampler name`` for ``method``; an :class:`InputError` naming the
    method's samplers if it takes no such name."""
    spec = SAMPLERS.get(name)
    if spec is None or method not in spec.methods:
        raise InputError(f"--sampler {name!r}: {method} supports {', '.join(sampler_names(method))}")
    return spec


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


def check_generators(generators: Sequence[torch.Generator], x: torch.Tensor) -> None:
    """Refuse a generator count that differs from the batch size of ``x`` (N, ...): one generator
    would otherwise broadcast its noise over every image."""
    if len(generators) != x.shape[0]:
        raise ValueError(f"got {len(generators)} generators for a batch of {x.shape[0]}")


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
        known = q_sample(x0, alpha_bar, per_image_randn(generators, x.shape[1:], x.device, x.dtype))
    return torch.where(masks > 0.5, x, known.to(x.dtype))


#: The model outputs diffusers' schedulers define (``prediction_type``) and this package trains and samples.
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def predict_x0(output: torch.Tensor, x_t: torch.Tensor, alpha_bar: float, prediction_type: str) -> torch.Tensor:
    """The model's estimate of x0 from its output (epsilon, sample or v prediction); the inverse of
    :func:`training_target` at the same noise level."""
    if prediction_type == "epsilon":
        return (x_t - (1.0 - alpha_bar) ** 0.5 * output) / alpha_bar**0.5
    if prediction_type == "sample":
        return output
    if prediction_type == "v_prediction":  # Salimans & Ho 2022
        return alpha_bar**0.5 * x_t - (1.0 - alpha_bar) ** 0.5 * output
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def training_target(scheduler: Any, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the model learns to output at ``x_t = scheduler.add_noise(x0, noise, t)``, by the
    scheduler's ``prediction_type``: ``noise`` (epsilon), the velocity
    ``sqrt(ᾱ_t) noise - sqrt(1 - ᾱ_t) x0`` (v_prediction, Salimans & Ho 2022) or ``x0`` (sample).

    x0, noise: (N, C, H, W), any range (pixels in [-1, 1], or latents); t: (N,) long timesteps.
    Returns (N, C, H, W). ``scheduler`` is a diffusers noise scheduler (``DDPMScheduler``).
    """
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    if kind == "sample":
        return x0
    raise ValueError(f"unknown prediction_type {kind!r}; expected one of {', '.join(PREDICTION_TYPES)}")


# ---- samplers on diffusers' schedulers ------------------------------------------------------


def make_scheduler(sampler: str, scheduler_config: Mapping[str, Any], method: str = "ddpm") -> Any:
    """A fresh diffusers scheduler for ``sampler`` (a :data:`SAMPLERS` name) as ``method`` runs it,
    built from the model's scheduler config (its noise schedule).

    ``sd`` gets the class with the sampler's ``kwargs`` on its pipeline's config, timestep spacing
    included. The pixel methods also get ``pixel_kwargs``: DDPM and DPM-Solver++ use
    ``timestep_spacing="trailing"``, so the first step is at t = T-1 where x_T is pure noise, as
    sampling assumes (Lin et al. 2024, "Common diffusion noise schedules and sample steps are
    flawed", Table 2). DDIM keeps "leading" spacing: its step assumes the constant stride
    T // steps, which trailing timesteps break whenever ``steps`` does not divide T (it would land
    between timesteps and finish at t = 0, not at the clean image); leading starts a little below
    T-1 (980 for 50 of 1000 steps; counts whose stride covers under 90 % of T are refused by
    :func:`steps_problem`). DDIM runs with eta = 0. With known-region re-imposition, the SDE form
    of DPM-Solver++ (``dpmpp-sde``) scored ~3.7 dB higher hole PSNR than the deterministic one
    (``dpmpp``) on the benchmark of docs/benchmarks.md, with or without x0 clipping; its
    1st-order form is the ``ddpm`` sampler on the same steps. x0_hat is clipped when the config
    has ``clip_sample``.
    """
    import diffusers

    spec = SAMPLERS.get(sampler)
    if spec is None or spec.scheduler is None or method not in spec.methods:
        names = [name for name in sampler_names(method) if SAMPLERS[name].scheduler is not None]
        raise ValueError(f"unknown sampler {sampler!r} for {method}; choose from {', '.join(names)}")
    config = dict(scheduler_config)
    kwargs = dict(spec.kwargs)
    if method not in PIPELINE_METHODS:
        kwargs.update(spec.pixel_kwargs)
        if spec.scheduler == "DPMSolverMultistepScheduler":
            # DPM-Solver++ has no clip_sample; dynamic thresholding with a maximum of the clip range
            # always scales by 1, i.e. it clips x0_hat exactly as DDPM/DDIM do for pixel models.
            kwargs.update(
                thresholding=bool(config.get("clip_sample", False)),
                sample_max_value=float(config.get("clip_sample_range", 1.0)),
            )
    return getattr(diffusers, spec.scheduler).from_config(config, **kwargs)


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
    return (
        f"DDIM on {steps} steps would start at t = {(steps - 1) * (train_steps // steps)} of {train_steps}: "
        f"its stride {train_steps} // {steps} = {train_steps // steps} covers only "
        f"{train_steps // steps * steps} of the timesteps; use {fine} steps, or the ddpm sampler"
    )


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
    check_generators(generators, x0)
    x0, masks = x0.float(), masks.float()
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    x = per_image_randn(generators, x0.shape[1:], x0.device, x0.dtype) * scheduler.init_noise_sigma
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


def sample_named(
    sampler: str,
    denoiser: Denoiser,
    x0: torch.Tensor,
    masks: torch.Tensor,
    generators: Sequence[torch.Generator],
    scheduler_config: Mapping[str, Any],
    steps: int | None = None,
    progress: Progress | None = None,
) -> SampleResult:
    """Sample with the scheduler sampler named ``sampler`` (a :data:`SAMPLERS` name the ``ddpm``
    method takes: ``ddpm``, ``ddim``, ``dpmpp``, ``dpmpp-sde``) on ``steps`` steps (default: the
    sampler's), as :func:`sample_with_scheduler` does. The stochastic samplers (``ddpm``,
    ``dpmpp-sde``) draw their noise per image from ``generators``."""
    spec = SAMPLERS[sampler]
    scheduler = make_scheduler(sampler, scheduler_config)
    return sample_with_scheduler(
        denoiser, scheduler, x0, masks, generators, steps or spec.steps, progress=progress, description=spec.title
    )


def sample_ddpm(
    denoiser: Denoiser,
    x0: torch.Tensor,
    masks: torch.Tensor,
    generators: Sequence[torch.Generator],
    scheduler_config: Mapping[str, Any],
    steps: int = SAMPLERS["ddpm"].steps,
    progress: Progress | None = None,
) -> SampleResult:
    """Ancestral DDPM sampling (Ho et al., NeurIPS 2020); 1000 steps is the study's setting.

    Fewer steps take the DDPM posterior between the ``steps`` trailing timesteps; 25 of them is the
    ``ddpm`` method's default (the best sampler at <= 25 evaluations in docs/benchmarks.md).
    """
    return sample_named("ddpm", denoiser, x0, masks, generators, scheduler_config, steps, progress)
