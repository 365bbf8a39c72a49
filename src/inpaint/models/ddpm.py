"""Pixel-space diffusion completion: the study's fine-tuned DDPM and zero-shot RePaint.

- ``ddpm`` (:class:`DDPMInpainter`, Method 1 of docs/method.md): a ``UNet2DModel`` fine-tuned
  with 7 input channels ``concat(x_masked, mask, x_t)``; samplers ``ddpm`` (ancestral: 1000 steps,
  the study's setting, when named; the method's default is ``ddpm`` on 25 steps), ``ddim`` (50),
  ``dpmpp`` (the deterministic DPM-Solver++(2M), 25) and ``dpmpp-sde`` (its SDE form, 25); the
  names mean what they mean for ``sd`` (:data:`inpaint.samplers.SAMPLERS`).
- ``repaint`` (:class:`RePaintInpainter`, Lugmayr et al. CVPR 2022): any unconditional
  ``UNet2DModel`` (default ``google/ddpm-celebahq-256``); sampler ``repaint`` (default: 250
  steps, jump length 10, 10 resamplings, 2,410 evaluations) or ``fast`` (ours: 50 steps, jump
  length 5, 5 resamplings, 230 evaluations).

Both run the model at its native resolution (``unet.config.sample_size``): other sizes are
resized to it and back. The resize reads the known pixels alone
(:func:`~inpaint.models.base.resize_known`: a normalised bicubic convolution, masks by
max-pooling so thin holes survive), so nothing under the hole reaches the model. The result is
resized back with bicubic, antialiased when the input is smaller than the model's size; the base
class pastes the known pixels back at full resolution.

This module imports nothing heavy at import time, so the registry can call the cheap
``*_unavailable`` checks without loading torch or diffusers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from inpaint.errors import InputError
from inpaint.models.base import Inpainter, MethodOptions, resize_known
from inpaint.models.pixel_unet import DEFAULT_BASE
from inpaint.progress import Progress
from inpaint.samplers import sampler_spec, steps_problem

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import UNet2DModel

    from inpaint.samplers import Denoiser, SampleResult

DEFAULT_REPAINT_WEIGHTS = DEFAULT_BASE
_TRAIN_HINT = (
    "train one with `inpaint train-ddpm DATA` (it writes runs/ddpm, where complete and bench look by "
    "default) or pass --weights DIR"
)


def _native_size(unet: UNet2DModel) -> tuple[int, int]:
    size = unet.config.sample_size
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


class _PixelDiffusion(Inpainter):
    """Shared plumbing: option checks, device/dtype, native-size resizing, NFE bookkeeping."""

    needs_known_pixels: ClassVar[bool] = False  # a full mask is plain generation
    #: The default sampler; the method takes the :data:`inpaint.samplers.SAMPLERS` names listing it.
    default_sampler: ClassVar[str]
    #: Steps when neither --sampler nor --steps is given (``None``: the default sampler's own).
    default_steps: ClassVar[int | None] = None

    def __init__(self, options: MethodOptions | None = None) -> None:
        import torch

        from inpaint.devices import check_compile, resolve_device, resolve_dtype, speed_up

        self.options = options or MethodOptions()
        _refuse_sd_levers(self.name, self.options)
        self._choose_sampling()  # before the weights load: a bad --sampler or --steps fails at once
        self.device = resolve_device(self.options.device)
        self.dtype = resolve_dtype(self.options.dtype, self.device)
        if self.options.compile:
            check_compile(self.device)  # before the weights load: fail at once
        self.unet, self.scheduler_config = self._load()  # already in self.dtype
        self._configure_calls()
        self.unet.to(self.device).eval()
        # bf16 on the CPU: oneDNN's bf16 convolutions run faster on channels-last weights (a step of
        # the 256-px celebahq UNet took 0.86 s instead of 1.16 s; fp32 gains nothing there), so it
        # is on whether asked or not (docs/benchmarks.md, "CPU precision").
        channels_last = self.options.channels_last or (self.device.type == "cpu" and self.dtype == torch.bfloat16)
        speed_up(self.unet, self.device, channels_last=channels_last, compile=self.options.compile)
        #: Network evaluations per image in the last call (for benchmarks).
        self.last_nfe: int | None = None

    call_options: ClassVar[frozenset[str]] = frozenset({"sampler", "steps"})

    def _choose_sampling(self) -> None:
        """``self.sampler`` and ``self.steps`` from the options; checks what needs no weights."""
        self.sampler = self.options.sampler or self.default_sampler
        spec = sampler_spec(self.name, self.sampler)
        if self.options.steps is not None:
            self.steps = self.options.steps
        elif self.options.sampler is None and self.default_steps is not None:
            self.steps = self.default_steps
        else:
            self.steps = spec.steps
        if self.steps < 1:
            raise InputError(f"--steps {self.steps}: must be a positive number of steps")

    def _configure_calls(self) -> None:
        """The sampler and steps, checked against the loaded model's training timesteps."""
        self._choose_sampling()
        train_steps = int(self.scheduler_config.get("num_train_timesteps", 1000))
        if self.steps > train_steps:
            raise InputError(
                f"--steps {self.steps}: the model was trained with {train_steps} timesteps; use at most that"
            )
        problem = steps_problem(self.sampler, self.steps, train_steps)
        if problem is not None:
            raise InputError(f"--steps {self.steps}: {problem}")

    def _load(self) -> tuple[UNet2DModel, dict[str, Any]]:
        raise NotImplementedError

    def _sample(
        self, x0: torch.Tensor, masks: torch.Tensor, generators: list[torch.Generator], progress: Progress
    ) -> SampleResult:
        """Sample at the native size: x0 (N, 3, h, w) in [-1, 1] on the device, masks 1 = fill."""
        raise NotImplementedError

    def fill(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        generators: list[torch.Generator],
        progress: Progress,
    ) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        from inpaint.devices import compile_errors
        from inpaint.io import from_model_range, to_model_range

        size = tuple(images.shape[2:])
        native = _native_size(self.unet)
        small, small_masks = images, masks
        if size != native:  # from the known pixels alone: nothing under the hole reaches the model
            small, small_masks = resize_known(images, masks, native)
        x0 = to_model_range(small.clamp(0, 1)).to(self.device)
        with torch.inference_mode(), compile_errors(self.options.compile):
            result = self._sample(x0, small_masks.to(self.device), generators, progress)
        out = from_model_range(result.images.float().cpu())
        if size != native:
            # Shrinking needs a low-pass first, or detail finer than the input's pixels aliases
            # into moire; enlarging keeps plain bicubic (the antialiased kernel differs there too).
            shrinks = size[0] < native[0] or size[1] < native[1]
            out = F.interpolate(out, size=size, mode="bicubic", antialias=shrinks, align_corners=False).clamp(0, 1)
        self.last_nfe = result.nfe
        return out


def _refuse_sd_levers(name: str, options: MethodOptions) -> None:
    """The memory levers of Stable Diffusion's pipeline mean nothing for a pixel UNet: say so."""
    for flag, on in (
        ("--attention-slicing", options.attention_slicing),
        ("--vae-slicing", options.vae_slicing),
        ("--vae-tiling", options.vae_tiling),
        ("--cpu-offload", options.cpu_offload),
    ):
        if on:
            raise InputError(
                f"{flag}: only the sd method has it ({name} runs one pixel-space UNet; "
                "--channels-last and --compile apply)"
            )


class DDPMInpainter(_PixelDiffusion):
    """The study's fine-tuned 7-channel DDPM (``options.weights``: the trained model folder; its EMA
    weights, or with ``options.ema=False`` its raw ones)."""

    name: ClassVar[str] = "ddpm"
    # Default: ancestral DDPM on 25 steps, 40x cheaper than the study's 1000 (which a plain
    # --sampler ddpm still gives). Of the samplers at <= 25 evaluations it scored the best hole
    # PSNR in docs/benchmarks.md: +0.27 dB [+0.14, +0.40] over SDE-DPM-Solver++(2M) 25 (dpmpp-sde)
    # and +2.0 dB over DDIM 25 (the deterministic samplers, dpmpp too, trail the stochastic ones).
    default_sampler: ClassVar[str] = "ddpm"
    default_steps: ClassVar[int | None] = 25

    def _load(self) -> tuple[UNet2DModel, dict[str, Any]]:
        from inpaint.models.pixel_unet import load_completion_unet

        if self.options.weights is None:
            raise InputError(f"ddpm: needs fine-tuned weights: {_TRAIN_HINT}")
        return load_completion_unet(
            self.options.weights,
            use_ema=self.options.ema,
            dtype=self.dtype,
            revision=self.options.revision,
            variant=self.options.variant,
        )

    def _sample(
        self, x0: torch.Tensor, masks: torch.Tensor, generators: list[torch.Generator], progress: Progress
    ) -> SampleResult:
        from inpaint.samplers import completion_denoiser, sample_named

        denoiser = completion_denoiser(self.unet, x0, masks, self.dtype)
        return sample_named(
            self.sampler, denoiser, x0, masks, generators, self.scheduler_config, steps=self.steps, progress=progress
        )


class RePaintInpainter(_PixelDiffusion):
    """Zero-shot RePaint on an unconditional DDPM (``options.weights``: hub id or folder)."""

    name: ClassVar[str] = "repaint"
    default_sampler: ClassVar[str] = "repaint"

    call_options: ClassVar[frozenset[str]] = frozenset({"sampler", "steps", "jump_length", "jump_n_sample"})

    def _choose_sampling(self) -> None:
        """The sampler and steps, and the resampling schedule (``jump_length``, ``jump_n_sample``)."""
        from inpaint.repaint import (
            FAST_JUMP_LENGTH,
            FAST_JUMP_N_SAMPLE,
            REPAINT_JUMP_LENGTH,
            REPAINT_JUMP_N_SAMPLE,
        )

        options = self.options
        for flag, value in (
            ("--jump-length", options.jump_length),
            ("--jump-n-sample", options.jump_n_sample),
        ):
            if value is not None and value < 1:
                raise InputError(f"{flag} {value}: must be a positive number")
        fast = options.sampler == "fast"
        self.jump_length = options.jump_length or (FAST_JUMP_LENGTH if fast else REPAINT_JUMP_LENGTH)
        self.jump_n_sample = options.jump_n_sample or (FAST_JUMP_N_SAMPLE if fast else REPAINT_JUMP_N_SAMPLE)
        super()._choose_sampling()

    def _load(self) -> tuple[UNet2DModel, dict[str, Any]]:
        from inpaint.models.pixel_unet import load_base

        weights = self.options.weights or DEFAULT_REPAINT_WEIGHTS
        unet, scheduler_config = load_base(
            weights, dtype=self.dtype, revision=self.options.revision, variant=self.options.variant
        )
        if unet.config.in_channels != 3:
            raise InputError(
                f"{weights}: takes {unet.config.in_channels} input channels; RePaint needs an unconditional "
                "3-channel model (use --model ddpm for a fine-tuned 7-channel completion model)"
            )
        return unet, scheduler_config

    def _sample(
        self, x0: torch.Tensor, masks: torch.Tensor, generators: list[torch.Generator], progress: Progress
    ) -> SampleResult:
        from inpaint.repaint import sample_repaint, sample_repaint_fast
        from inpaint.samplers import unconditional_denoiser

        denoiser: Denoiser = unconditional_denoiser(self.unet, self.dtype)
        sample = sample_repaint_fast if self.sampler == "fast" else sample_repaint
        return sample(
            denoiser,
            x0,
            masks,
            generators,
            self.scheduler_config,
            steps=self.steps,
            jump_length=self.jump_length,
            jump_n_sample=self.jump_n_sample,
            progress=progress,
        )


# ---- cheap availability checks for the registry (no torch, no diffusers) -----------------------


def _local_problem(path: Path, want_channels: int) -> str | None:
    """Why the model folder ``path`` cannot be used, from its json files alone; ``None`` if fine."""
    config_path = next((p for p in (path / "config.json", path / "unet" / "config.json") if p.is_file()), None)
    if config_path is None:
        return f"{path}: no config.json, not a diffusers model folder"
    return _config_problem(config_path, str(path), want_channels)


def _config_problem(config_path: Path, label: str, want_channels: int) -> str | None:
    """Why the UNet described by ``config_path`` does not suit, from its input channels; else ``None``."""
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"{label}: cannot read {Path(config_path).name} ({e})"
    channels = config.get("in_channels", 3) if isinstance(config, dict) else None
    if want_channels == 7 and channels == 3:
        return f"{label}: is an unconditional 3-channel model; use --model repaint with it, or {_TRAIN_HINT}"
    if want_channels == 3 and channels == 7:
        return f"{label}: is a fine-tuned 7-channel completion model; use --model ddpm with it"
    if channels != want_channels:
        return f"{label}: takes {channels} input channels, expected {want_channels}"
    return None


def _weights_problem(
    weights: str,
    want_channels: int,
    fix: str,
    local_only: bool = False,
    revision: str | None = None,
    variant: str | None = None,
) -> str | None:
    from inpaint.models.hub import cached_availability, meant_as_local

    path = Path(weights).expanduser()
    if path.is_dir():
        if revision is not None:
            return f"--revision {revision}: only a hub model has revisions; {weights} is a local directory"
        return _local_problem(path, want_channels)
    if path.exists():
        return f"{weights}: is a file; expected a model directory"
    if meant_as_local(weights):
        return f"{weights}: no such directory; {fix}"
    return cached_availability(
        weights,
        ("config.json", "unet/config.json"),
        lambda _, config: _config_problem(config, weights, want_channels),
        fix,
        local_only,
        revision=revision,
        variant=variant,
    )


def ddpm_unavailable(options: MethodOptions) -> str | None:
    """Registry check for ``ddpm``: fine-tuned weights must be given and look like a 7-channel model."""
    if options.weights is None:
        return f"needs fine-tuned weights: {_TRAIN_HINT}"
    return _weights_problem(options.weights, 7, _TRAIN_HINT, options.local_only, options.revision, options.variant)


def repaint_unavailable(options: MethodOptions) -> str | None:
    """Registry check for ``repaint``: the unconditional base must be on disk, cached or downloadable."""
    from inpaint.models.hub import download_hint, meant_as_local

    weights = options.weights or DEFAULT_REPAINT_WEIGHTS
    if meant_as_local(weights):  # a folder that is not there: downloading is no fix
        fix = "pass an existing model directory with --weights"
    else:
        fix = (
            f"download it on a connected machine with {download_hint(weights, options.revision, options.variant)} "
            "or pass a local model directory with --weights"
        )
    return _weights_problem(weights, 3, fix, options.local_only, options.revision, options.variant)
