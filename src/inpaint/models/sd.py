"""Stable Diffusion inpainting, optionally with a LoRA from ``train-lora`` (the study's Method 2).

:class:`SDInpainter` (``sd``) runs diffusers' ``StableDiffusionInpaintPipeline`` (base: a hub id
or folder, default ``stable-diffusion-v1-5/stable-diffusion-inpainting``; SD 2.x inpainting too),
:class:`SDXLInpainter` (``sdxl``) its SDXL counterpart, each with the study's
settings: 50 steps, guidance 7.5, a prompt per image (its caption when a captions file is
given), the pipeline's own scheduler unless ``sampler`` names another
(:data:`inpaint.samplers.SAMPLERS`). How the pipeline runs — any size, crop to mask, mask blur,
the max-pooled latent mask, per-image generators, bf16 — is :mod:`inpaint.models.sd_pipeline`;
where the weights come from and whether they are there, :mod:`inpaint.models.sd_weights`.

The known pixels are pasted back bit-exactly by :class:`~inpaint.models.base.Inpainter` (the VAE
round trip shifts them otherwise); ``composite_known=False`` keeps the raw output.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, ClassVar

from inpaint.errors import InputError
from inpaint.models.base import Inpainter, MethodOptions
from inpaint.models.sd_pipeline import Generation, run_pipeline, unet_in_bf16
from inpaint.models.sd_weights import DEFAULT_SD_BASE, DEFAULT_SDXL_BASE, UNET_METHODS
from inpaint.progress import Progress
from inpaint.samplers import sampler_spec

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    import torch
    from diffusers import StableDiffusionInpaintPipeline

log = logging.getLogger(__name__)

#: Used when no prompt, caption or LoRA training prompt applies (the study's caption suffix).
DEFAULT_PROMPT = "a photo, high quality, realistic, sharp focus"


class SDInpainter(Inpainter):
    """Stable Diffusion inpainting (+ LoRA). Options read: ``weights`` (the base), ``lora`` (and
    ``ema``: a run folder's EMA or raw LoRA), ``prompt``, ``negative_prompt``, ``captions``,
    ``steps``, ``guidance``, ``strength``, ``sampler``, ``mask_blur``, ``crop_padding``,
    ``device``, ``dtype`` and the levers ``channels_last``, ``compile``, ``attention_slicing``,
    ``vae_slicing``, ``vae_tiling``, ``cpu_offload``."""

    name: ClassVar[str] = "sd"
    needs_known_pixels: ClassVar[bool] = False  # a full mask is plain text-to-image generation
    uses_names: ClassVar[bool] = True
    #: The study's settings: 50 steps whatever the sampler, guidance 7.5.
    default_steps: ClassVar[int] = 50
    default_guidance: ClassVar[float] = 7.5
    guidance_rule: ClassVar[str] = "must be 0 or more (1 or less: no classifier-free guidance)"
    #: The base when no --weights is given. Any supported family's folder loads whatever the
    #: method's name (:data:`~inpaint.models.sd_weights.FAMILIES`): the name only picks the default.
    default_base: ClassVar[str] = DEFAULT_SD_BASE
    #: The pipeline families (:data:`~inpaint.models.sd_weights.FAMILIES`) whose folders it runs.
    families: ClassVar[tuple[str, ...]] = UNET_METHODS

    def __init__(self, options: MethodOptions | None = None) -> None:
        from inpaint.devices import resolve_device
        from inpaint.models.lora_files import load_lora
        from inpaint.models.sd_weights import load_pipeline

        o = self.options = options or MethodOptions()
        _settings(o, type(self))  # before the weights load: a bad --steps or --guidance fails at once
        if o.prompt is not None and o.captions is not None:
            raise InputError("--prompt and --captions: give one (a fixed prompt, or each image's caption)")
        self.captions = _captions(o.captions) if o.captions is not None else None
        self.device = resolve_device(o.device)
        self.dtype = self._resolve_dtype()
        _check_levers(o, self.device)
        self.base = o.weights or self.default_base
        self.pipe = load_pipeline(
            self.base, dtype=self._load_dtype(), revision=o.revision, variant=o.variant, methods=self.families
        )
        #: The pipeline's own scheduler, used when no --sampler is given.
        self.pipeline_scheduler = self.pipe.scheduler
        self.lora_metadata = load_lora(self.pipe, o.lora, self.base, use_ema=o.ema) if o.lora else {}
        self._mixed_precision()
        _apply_levers(self.pipe, o, self.device)
        self._configure_calls()
        #: Network evaluations per image in the last call (for benchmarks).
        self.last_nfe: int | None = None

    call_options: ClassVar[frozenset[str]] = frozenset(
        {"prompt", "negative_prompt", "guidance", "strength", "steps", "sampler", "mask_blur", "crop_padding"}
    )

    def _resolve_dtype(self) -> torch.dtype:
        from inpaint.devices import resolve_dtype

        return resolve_dtype(self.options.dtype, self.device)

    def _load_dtype(self) -> torch.dtype:
        """bf16: only the UNet runs in it (see :meth:`_mixed_precision`); the rest loads in fp32."""
        import torch

        return torch.float32 if self.dtype == torch.bfloat16 else self.dtype

    def _mixed_precision(self) -> None:
        import torch

        if self.dtype == torch.bfloat16:
            unet_in_bf16(self.pipe)

    @classmethod
    def _refuse(cls, o: MethodOptions) -> None:
        """Raise :class:`InputError` for options this method cannot honour (none here)."""

    def _configure_calls(self) -> None:
        """The generation settings, the scheduler and the prompt from ``self.options``."""
        from inpaint.samplers import make_scheduler

        o = self.options
        self.settings = _settings(o, type(self))
        #: Set on the pipeline at each call (copies made by with_options share the pipeline).
        self.scheduler = (
            make_scheduler(o.sampler, self.pipeline_scheduler.config, self.name)
            if o.sampler is not None
            else self.pipeline_scheduler
        )
        #: The prompt of images without a caption: --prompt, else the LoRA's training prompt. An
        #: empty --prompt is a choice (unconditional generation), not a missing one: it is kept.
        if o.prompt is not None:
            self.prompt = o.prompt
        else:
            self.prompt = self.lora_metadata.get("inpaint_prompt") or DEFAULT_PROMPT

    def prompts(self, names: Sequence[str] | None, count: int) -> list[str]:
        """The prompt of each image: its caption when a captions file was given, else the prompt."""
        from inpaint.captions import caption_for

        if self.captions is None:
            return [self.prompt] * count
        if names is None:
            raise InputError("--captions: the images' names are needed to find their captions (pass names=)")
        prompts = []
        for name in names:
            caption = caption_for(self.captions, name)
            if caption is None:
                log.warning(f"{name}: no caption in {self.options.captions}; using the prompt {self.prompt!r}")
            prompts.append(caption if caption is not None else self.prompt)
        return prompts

    def fill(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        generators: list[torch.Generator],
        progress: Progress,
        names: Sequence[str] | None = None,
    ) -> torch.Tensor:
        import torch

        from inpaint.devices import compile_errors

        prompts = self.prompts(names, images.shape[0])
        self.pipe.scheduler = self.scheduler
        with torch.inference_mode(), compile_errors(self.options.compile):
            out, self.last_nfe = run_pipeline(self.pipe, images, masks, prompts, generators, self.settings, progress)
        return out


class SDXLInpainter(SDInpainter):
    """Stable Diffusion XL inpainting (+ LoRA): :class:`SDInpainter` with SDXL Inpainting 0.1 as its
    default base, run by diffusers' ``StableDiffusionXLInpaintPipeline`` (two text encoders, the
    size and crop conditioning, 1024 px native). The same settings and levers; strength stays 1 by
    default although the model card suggests 0.99: below 1 the hole's own pixels seed the result,
    which would leak a benchmark's ground truth into it."""

    name: ClassVar[str] = "sdxl"
    default_base: ClassVar[str] = DEFAULT_SDXL_BASE


def _check_levers(o: MethodOptions, device: torch.device) -> None:
    """Refuse lever combinations that cannot work here, before any weights load."""
    import importlib.util

    from inpaint.devices import check_compile

    if o.cpu_offload:
        if device.type != "cuda":
            raise InputError(
                f"--cpu-offload: moves each model between the CPU and a CUDA GPU as it runs; the "
                f"device here is {device.type}, where it saves nothing (leave it off)"
            )
        if o.compile:
            raise InputError(
                "--cpu-offload and --compile: choose one (offloading suits small GPUs, compiling fast ones)"
            )
        if importlib.util.find_spec("accelerate") is None:
            raise InputError("--cpu-offload: needs accelerate (pip install accelerate)")
    if o.compile:
        check_compile(device)


def _apply_levers(pipe: StableDiffusionInpaintPipeline, o: MethodOptions, device: torch.device) -> None:
    """Put the pipeline on ``device`` (or under model CPU offload) with the asked-for levers on."""
    import torch

    from inpaint.devices import speed_up
    from inpaint.models.hub import quiet_loading
    from inpaint.models.sd_pipeline import denoiser, is_kandinsky

    if o.cpu_offload:  # accelerate hooks move each model to the GPU when it runs, then back
        pipe.enable_model_cpu_offload(device=device)
    else:
        with quiet_loading():  # diffusers warns that fp16 cannot run on the CPU: it does, where allowed
            pipe.to(device)
    if o.attention_slicing:  # replaces SDPA by a sliced processor: less memory, slower
        pipe.enable_attention_slicing()
    if o.vae_slicing:  # encode and decode one image of the batch at a time
        pipe.vae.enable_slicing()
    if o.vae_tiling:  # overlapping tiles, blended: large images in little memory, not bit-identical
        pipe.vae.enable_tiling()
    if o.channels_last:  # Kandinsky 2.2's autoencoder is its MoVQ
        (pipe.movq if is_kandinsky(pipe) else pipe.vae).to(memory_format=torch.channels_last)
    speed_up(denoiser(pipe), device, channels_last=o.channels_last, compile=o.compile)


def _settings(o: MethodOptions, method: type[SDInpainter]) -> Generation:
    method._refuse(o)
    if o.sampler is not None:
        sampler_spec(method.name, o.sampler)  # before any weights load
    settings = Generation(
        steps=o.steps if o.steps is not None else method.default_steps,
        guidance=o.guidance if o.guidance is not None else method.default_guidance,
        strength=o.strength if o.strength is not None else 1.0,
        negative_prompt=o.negative_prompt,
        mask_blur=o.mask_blur or 0,
        crop_padding=o.crop_padding,
    )
    checks = [
        ("--steps", settings.steps, settings.steps >= 1, "must be at least 1"),
        (
            "--guidance",
            settings.guidance,
            math.isfinite(settings.guidance) and settings.guidance >= 0,
            method.guidance_rule,
        ),
        ("--strength", settings.strength, 0 < settings.strength <= 1, "must be in (0, 1]"),
        ("--mask-blur", settings.mask_blur, settings.mask_blur >= 0, "must be 0 (off) or more pixels"),
        (
            "--crop-padding",
            settings.crop_padding,
            settings.crop_padding is None or settings.crop_padding >= 0,
            "must be 0 or more pixels",
        ),
    ]
    for option, value, ok, expected in checks:
        if not ok:
            raise InputError(f"{option} {value}: {expected}")
    if math.floor(settings.steps * settings.strength) < 1:
        raise InputError(f"--strength {settings.strength} with --steps {settings.steps} leaves no step to run")
    return settings


def _captions(path: str) -> dict[str, str]:
    from inpaint.captions import caption_index
    from inpaint.data import load_captions

    return caption_index(load_captions(path))
