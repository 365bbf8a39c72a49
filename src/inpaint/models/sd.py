"""Stable Diffusion inpainting, optionally with a LoRA from ``train-lora`` (the study's Method 2).

:class:`SDInpainter` (``sd``) runs diffusers' ``StableDiffusionInpaintPipeline`` (base: a hub id
or folder, default ``stable-diffusion-v1-5/stable-diffusion-inpainting``) with the study's
settings: 50 steps, guidance 7.5, a prompt per image (its caption when a captions file is
given), the pipeline's own scheduler unless ``sampler`` names another.

- Any size: the image is processed at its size rounded *up* to a multiple of 8 (bicubic; the
  mask grows to cover every pixel that touches the hole) and the result resized back.
- ``crop_padding`` (diffusers' ``padding_mask_crop``): only the hole's bounding box, padded and
  widened to the image's aspect ratio, is generated, at the model's native size (512 px long side
  for SD 1.5) — small holes in large images get full detail.
- ``mask_blur``: the mask is Gaussian-blurred outwards only (diffusers' ``mask_processor.blur``,
  then the maximum with the hard mask) and the output blended with the input through it,
  feathering the seam into the known pixels; the hole stays fully generated.
- The mask reaches the UNet max-pooled to the latent grid (:func:`latent_mask`), not sampled
  one pixel per 8x8 cell as diffusers does: strokes thinner than a cell are never lost.
- Randomness: one CPU generator per image (initial noise, VAE sampling, ancestral steps), so a
  batch gives the images' single-run results (up to float summation order) on any device.
- The known pixels are pasted back bit-exactly by :class:`~inpaint.models.base.Inpainter`
  (the VAE round trip shifts them otherwise); ``composite_known=False`` keeps the raw output.

Nothing heavy is imported at module import: the registry calls :func:`sd_unavailable` cheaply.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from inpaint.errors import InputError
from inpaint.models.base import Inpainter, MethodOptions, blank_holes, resize_known
from inpaint.models.sd_weights import DEFAULT_SD_BASE, INPAINT_CHANNELS, LORA_WEIGHT_NAME
from inpaint.progress import NullProgress, Progress

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    import torch
    from diffusers import StableDiffusionInpaintPipeline

log = logging.getLogger(__name__)

#: Used when no prompt, caption or LoRA training prompt applies (the study's caption suffix).
DEFAULT_PROMPT = "a photo, high quality, realistic, sharp focus"
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 7.5
#: ``--sampler`` names -> diffusers scheduler classes (built from the base's scheduler config).
SAMPLERS = {
    "ddim": "DDIMScheduler",
    "dpmpp": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "pndm": "PNDMScheduler",
    "unipc": "UniPCMultistepScheduler",
}


@dataclass
class Generation:
    """Settings of one pipeline run (see :func:`run_pipeline`)."""

    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    strength: float = 1.0
    negative_prompt: str | None = None
    mask_blur: int = 0
    crop_padding: int | None = None

    @property
    def starts_from_input(self) -> bool:
        """Below strength 1 the hole starts from the noised input (SDEdit): its pixels are used."""
        return self.strength < 1

    def visible(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """What the pipeline may see: at strength 1 the hole is blanked before any resampling, so
        nothing under it (a benchmark's ground truth) reaches the result; below 1 it is the start."""
        return images if self.starts_from_input else blank_holes(images, masks)


def round_up_to_8(n: int) -> int:
    return max(8, math.ceil(n / 8) * 8)


def run_pipeline(
    pipe: StableDiffusionInpaintPipeline,
    images: torch.Tensor,
    masks: torch.Tensor,
    prompts: Sequence[str],
    generators: Sequence[torch.Generator],
    settings: Generation,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, int]:
    """Inpaint with ``pipe``: images (N, 3, H, W) in [0, 1], masks (N, 1, H, W) 1 = fill, on the CPU.

    Returns the raw output (N, 3, H, W) in [0, 1] at the input size (known pixels not pasted
    back) and the network evaluations per image: UNet calls counted, not assumed (PNDM makes
    ``steps + 1``), x2 with classifier-free guidance (each call runs both halves of the batch).
    """
    import torch

    progress = progress or NullProgress()
    _max_pooled_mask_latents(pipe)
    calls = [0]
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: calls.__setitem__(0, calls[0] + 1))
    n = images.shape[0]
    try:
        if settings.crop_padding is None:
            out = _run_whole(pipe, images, masks, prompts, generators, settings, progress)
            per_image = calls[0]
        else:
            out = torch.cat([_run_cropped(pipe, images[i : i + 1], masks[i : i + 1], prompts[i], generators[i],
                                          settings, progress) for i in range(n)])
            per_image = calls[0] // n
    finally:
        hook.remove()
    return out, per_image * (2 if settings.guidance > 1 else 1)


def _step_callback(progress: Progress):
    def callback(pipe, step, timestep, tensors):
        progress.advance(1)
        return tensors

    return callback


def _common(prompts: Sequence[str], settings: Generation, progress: Progress) -> dict:
    negative = [settings.negative_prompt] * len(prompts) if settings.negative_prompt is not None else None
    return dict(prompt=list(prompts), negative_prompt=negative, num_inference_steps=settings.steps,
                guidance_scale=settings.guidance, strength=settings.strength,
                callback_on_step_end=_step_callback(progress))


def _feathered(pipe, masks: torch.Tensor, radius: int) -> torch.Tensor:
    """masks (N, 1, H, W) -> soft masks in [0, 1]: 1 in the hole, a Gaussian falloff outside it.

    The blur (diffusers' ``mask_processor.blur``) only spreads the mask outwards: inside the hole
    the mask stays 1, so every hole pixel is generated and none is blended with what lay under it.
    """
    import numpy as np
    import torch
    from PIL import Image

    soft = []
    for mask in masks[:, 0]:
        picture = Image.fromarray((mask.numpy() * 255).astype(np.uint8))
        soft.append(torch.from_numpy(np.asarray(pipe.mask_processor.blur(picture, radius), dtype=np.float32) / 255))
    return torch.maximum(torch.stack(soft)[:, None], masks)


def _run_whole(pipe, images, masks, prompts, generators, settings: Generation, progress: Progress) -> torch.Tensor:
    import torch.nn.functional as F

    height, width = images.shape[2:]
    work = (round_up_to_8(height), round_up_to_8(width))
    if work == (height, width):
        x, m = settings.visible(images, masks), masks
    else:
        # From the known pixels alone; every processed pixel that touches the hole belongs to it.
        x, m = resize_known(images, masks, work)
        if settings.starts_from_input:  # SDEdit starts from the whole input, hole included
            x = F.interpolate(images, size=work, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    soft = _feathered(pipe, m, settings.mask_blur) if settings.mask_blur > 0 else m
    progress.start("Stable Diffusion", math.floor(settings.steps * settings.strength))
    result = pipe(image=x, mask_image=soft, height=work[0], width=work[1], generator=list(generators),
                  output_type="pt", **_common(prompts, settings, progress)).images
    progress.finish()
    result = result.float().cpu().clamp(0, 1)
    if settings.mask_blur > 0:
        result = soft * result + (1 - soft) * x
    if work != (height, width):
        # Always a shrink (the work size is rounded up): low-pass first, as ddpm does.
        result = F.interpolate(result, size=(height, width), mode="bicubic", antialias=True,
                               align_corners=False).clamp(0, 1)
    return result


def latent_mask(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Masks (N, 1, H, W) in [0, 1] on the latent grid ``size`` (H/8, W/8): a cell is hole if any pixel is.

    diffusers (``prepare_mask_latents``, and its training example) samples one pixel per 8x8 cell
    instead; a stroke that misses the sampled pixels then vanishes from the UNet's mask channel
    while its pixels are blanked in the masked image, and the UNet is told to keep that grey. A
    hole can grow by up to 7 px this way, never shrink; paste-back keeps the known pixels exact.
    Used at inference and in ``train-lora`` alike.
    """
    import torch.nn.functional as F

    return F.adaptive_max_pool2d(masks, size)


def _max_pooled_mask_latents(pipe) -> None:
    """Make ``pipe`` shrink its mask with :func:`latent_mask` (its own resize then changes nothing).

    Idempotent: every pipeline :func:`run_pipeline` is given (ours, or train-lora's validation
    pipeline) gets it once.
    """
    import weakref

    if getattr(pipe, "_inpaint_max_pooled_mask", False):
        return
    # No reference back to the pipeline from its own attribute (a weak one, and the class's
    # method): a cycle would keep its weights in (GPU) memory until the next garbage collection.
    shrink, owner, factor = type(pipe).prepare_mask_latents, weakref.ref(pipe), pipe.vae_scale_factor

    def prepare_mask_latents(mask, masked_image, batch_size, height, width, *args, **kwargs):
        mask = latent_mask(mask, (height // factor, width // factor))
        return shrink(owner(), mask, masked_image, batch_size, height, width, *args, **kwargs)

    pipe.prepare_mask_latents = prepare_mask_latents
    pipe._inpaint_max_pooled_mask = True


def _native_size(pipe) -> int:
    size = pipe.unet.config.sample_size
    return int(size if isinstance(size, int) else max(size)) * pipe.vae_scale_factor


def _run_cropped(pipe, image, mask, prompt, generator, settings: Generation, progress: Progress) -> torch.Tensor:
    """One image through diffusers' crop-to-mask path (PIL in and out, as that path requires)."""
    import numpy as np
    from PIL import Image

    from inpaint import io

    height, width = image.shape[2:]
    scale = _native_size(pipe) / max(height, width)
    work = (round_up_to_8(round(height * scale)), round_up_to_8(round(width * scale)))
    picture = Image.fromarray(io.to_uint8(settings.visible(image, mask))[0])
    if settings.mask_blur > 0:
        mask = _feathered(pipe, mask, settings.mask_blur)
    hole = Image.fromarray(np.round(mask[0, 0].numpy() * 255).astype(np.uint8))
    progress.start("Stable Diffusion", math.floor(settings.steps * settings.strength))
    result = pipe(image=picture, mask_image=hole, height=work[0], width=work[1], generator=[generator],
                  padding_mask_crop=settings.crop_padding, output_type="pil",
                  **_common([prompt], settings, progress)).images[0]
    progress.finish()
    return io.to_tensor(np.asarray(result.convert("RGB")))


def make_scheduler(sampler: str, config):
    """The diffusers scheduler named by ``sampler`` (a key of :data:`SAMPLERS`), built from ``config``."""
    import diffusers

    # PNDM's Runge-Kutta warm-up breaks at few steps; SD's own PNDM config skips it (PLMS).
    extra = {"skip_prk_steps": True} if sampler == "pndm" else {}
    return getattr(diffusers, SAMPLERS[sampler]).from_config(config, **extra)


class SDInpainter(Inpainter):
    """Stable Diffusion inpainting (+ LoRA). Options read: ``weights`` (the base), ``lora`` (and
    ``ema``: a run folder's EMA or raw LoRA), ``prompt``, ``negative_prompt``, ``captions``,
    ``steps``, ``guidance``, ``strength``, ``sampler``, ``mask_blur``, ``crop_padding``,
    ``device``, ``dtype`` and the levers ``channels_last``, ``compile``, ``attention_slicing``,
    ``vae_slicing``, ``vae_tiling``, ``cpu_offload``."""

    name: ClassVar[str] = "sd"
    needs_known_pixels: ClassVar[bool] = False  # a full mask is plain text-to-image generation
    uses_names: ClassVar[bool] = True

    def __init__(self, options: MethodOptions | None = None) -> None:
        import torch

        from inpaint.devices import resolve_device, resolve_dtype
        from inpaint.models.sd_weights import load_lora, load_pipeline

        o = self.options = options or MethodOptions()
        self.settings = _settings(o)
        if o.prompt is not None and o.captions is not None:
            raise InputError("--prompt and --captions: give one (a fixed prompt, or each image's caption)")
        self.captions = _captions(o.captions) if o.captions is not None else None
        self.device = resolve_device(o.device)
        self.dtype = resolve_dtype(o.dtype, self.device)
        _check_levers(o, self.device)
        self.base = o.weights or DEFAULT_SD_BASE
        # bf16: only the UNet runs in it (see unet_in_bf16); the rest loads in fp32.
        load_dtype = torch.float32 if self.dtype == torch.bfloat16 else self.dtype
        self.pipe = load_pipeline(self.base, dtype=load_dtype, revision=o.revision, variant=o.variant)
        if o.sampler is not None:
            self.pipe.scheduler = make_scheduler(o.sampler, self.pipe.scheduler.config)
        self.lora_metadata = load_lora(self.pipe, o.lora, self.base, use_ema=o.ema) if o.lora else {}
        if self.dtype == torch.bfloat16:
            unet_in_bf16(self.pipe)
        _apply_levers(self.pipe, o, self.device)
        #: The prompt of images without a caption: --prompt, else the LoRA's training prompt. An
        #: empty --prompt is a choice (unconditional generation), not a missing one: it is kept.
        if o.prompt is not None:
            self.prompt = o.prompt
        else:
            self.prompt = self.lora_metadata.get("inpaint_prompt") or DEFAULT_PROMPT
        #: Network evaluations per image in the last call (for benchmarks).
        self.last_nfe: int | None = None

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

    def fill(self, images: torch.Tensor, masks: torch.Tensor, generators: list[torch.Generator],
             progress: Progress, names: Sequence[str] | None = None) -> torch.Tensor:
        import torch

        from inpaint.devices import compile_errors

        prompts = self.prompts(names, images.shape[0])
        with torch.inference_mode(), compile_errors(self.options.compile):
            out, self.last_nfe = run_pipeline(self.pipe, images, masks, prompts, generators, self.settings, progress)
        return out


def unet_in_bf16(pipe: StableDiffusionInpaintPipeline) -> None:
    """Run the pipeline's UNet (and its LoRA) in bf16, everything else in fp32.

    diffusers runs the denoising loop in the text encoder's dtype: with the whole pipeline in
    bf16 (8 mantissa bits) the latents, the guidance arithmetic, the scheduler's steps and the
    VAE would all round to bf16. Here the text encoder and the VAE stay fp32, so the latents and
    everything between two UNet calls stay fp32; hooks hand the UNet its inputs (the latents,
    the text embeddings) in bf16 and return its prediction in fp32. The timestep is left as it
    is: bf16 cannot hold integers above 256 exactly. On the real SD 1.5 UNet this gave images
    about 3 dB closer to fp32's than a pipeline all in bf16, for the fp32 VAE's few seconds per
    image on the CPU (docs/benchmarks.md, "CPU precision"). fp16 keeps diffusers' all-fp16
    pipeline (the study's GPU setting; 10 mantissa bits). Idempotent.
    """
    import torch

    from inpaint.models.hub import quiet_loading

    unet = pipe.unet
    with quiet_loading():  # diffusers warns about any dtype cast, even when nothing must stay fp32
        unet.to(torch.bfloat16)
    if getattr(unet, "_inpaint_fp32_io", False):
        return

    def to_unet(value):
        return value.to(unet.dtype) if torch.is_tensor(value) and value.is_floating_point() else value

    def inputs(module, args, kwargs):
        # sample first; encoder_hidden_states third or by name (the timestep, second, stays as is)
        args = tuple(to_unet(a) if i in (0, 2) else a for i, a in enumerate(args))
        for name in ("sample", "encoder_hidden_states"):
            if name in kwargs:
                kwargs[name] = to_unet(kwargs[name])
        return args, kwargs

    def outputs(module, args, kwargs, output):
        if isinstance(output, tuple):
            return tuple(o.float() if torch.is_tensor(o) else o for o in output)
        output.sample = output.sample.float()
        return output

    unet.register_forward_pre_hook(inputs, with_kwargs=True)
    unet.register_forward_hook(outputs, with_kwargs=True)
    unet._inpaint_fp32_io = True


def _check_levers(o: MethodOptions, device: torch.device) -> None:
    """Refuse lever combinations that cannot work here, before any weights load."""
    import importlib.util

    from inpaint.devices import check_compile

    if o.cpu_offload:
        if device.type != "cuda":
            raise InputError(f"--cpu-offload: moves each model between the CPU and a CUDA GPU as it runs; the "
                             f"device here is {device.type}, where it saves nothing (leave it off)")
        if o.compile:
            raise InputError("--cpu-offload and --compile: choose one (offloading suits small GPUs, compiling fast "
                             "ones)")
        if importlib.util.find_spec("accelerate") is None:
            raise InputError("--cpu-offload: needs accelerate (pip install accelerate)")
    if o.compile:
        check_compile(device)


def _apply_levers(pipe: StableDiffusionInpaintPipeline, o: MethodOptions, device: torch.device) -> None:
    """Put the pipeline on ``device`` (or under model CPU offload) with the asked-for levers on."""
    import torch

    from inpaint.devices import speed_up

    from inpaint.models.hub import quiet_loading

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
    if o.channels_last:
        pipe.vae.to(memory_format=torch.channels_last)
    speed_up(pipe.unet, device, channels_last=o.channels_last, compile=o.compile)


def _settings(o: MethodOptions) -> Generation:
    settings = Generation(
        steps=o.steps if o.steps is not None else DEFAULT_STEPS,
        guidance=o.guidance if o.guidance is not None else DEFAULT_GUIDANCE,
        strength=o.strength if o.strength is not None else 1.0,
        negative_prompt=o.negative_prompt,
        mask_blur=o.mask_blur or 0,
        crop_padding=o.crop_padding,
    )
    checks = [
        ("--sampler", o.sampler, o.sampler is None or o.sampler in SAMPLERS, f"choose from {', '.join(SAMPLERS)}"),
        ("--steps", settings.steps, settings.steps >= 1, "must be at least 1"),
        ("--guidance", settings.guidance, math.isfinite(settings.guidance) and settings.guidance >= 0,
         "must be 0 or more (1 or less: no classifier-free guidance)"),
        ("--strength", settings.strength, 0 < settings.strength <= 1, "must be in (0, 1]"),
        ("--mask-blur", settings.mask_blur, settings.mask_blur >= 0, "must be 0 (off) or more pixels"),
        ("--crop-padding", settings.crop_padding, settings.crop_padding is None or settings.crop_padding >= 0,
         "must be 0 or more pixels"),
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


# ---- cheap availability check for the registry (no torch, no diffusers) ------------------------


def sd_unavailable(options: MethodOptions) -> str | None:
    """Registry check for ``sd``: the base must be an SD inpainting pipeline on disk, cached or
    downloadable; ``lora`` and ``captions`` must exist."""
    from inpaint.models.hub import cached_availability, download_hint, looks_like_path, meant_as_local
    from inpaint.models.sd_weights import check_pipeline_folder

    if options.captions is not None and not Path(options.captions).expanduser().is_file():
        return f"--captions {options.captions}: no such file"
    if options.lora is not None:
        lora = Path(options.lora).expanduser()
        if not lora.exists() and looks_like_path(options.lora):
            return f"--lora {options.lora}: no such file or folder"
        if lora.is_dir() and not (lora / LORA_WEIGHT_NAME).is_file():
            return f"--lora {options.lora}: no {LORA_WEIGHT_NAME} in this folder"
    base = options.weights or DEFAULT_SD_BASE
    if meant_as_local(base):  # a folder that is not there: downloading is no fix
        fix = "pass an existing Stable Diffusion inpainting pipeline folder"
    else:
        fix = (f"download it on a connected machine with {download_hint(base, options.revision, options.variant)} "
               "or pass a local Stable Diffusion inpainting pipeline folder with --weights")
    path = Path(base).expanduser()
    if path.is_dir():
        if options.revision is not None:
            return f"--revision {options.revision}: only a hub model has revisions; {base} is a local directory"
        try:
            check_pipeline_folder(path, base, options.variant)
        except InputError as e:
            return str(e)
        return None
    if path.exists():
        return f"{base}: is a file; expected a pipeline folder"
    if meant_as_local(base):
        return f"{base}: no such directory; {fix}"
    return cached_availability(base, ("unet/config.json", "config.json"), _cached_pipeline_problem(base), fix,
                               options.local_only, revision=options.revision, variant=options.variant)


def _cached_pipeline_problem(repo_id: str):
    """A check for :func:`~inpaint.models.hub.cached_availability`: a cached 9-channel pipeline UNet."""
    import json

    def check(filename: str, config: Path) -> str | None:
        if filename == "config.json":
            return f"{repo_id}: a single model, not a Stable Diffusion pipeline (no unet/)"
        try:
            channels = json.loads(config.read_text(encoding="utf-8")).get("in_channels")
        except (OSError, ValueError, AttributeError):
            channels = None
        if channels != INPAINT_CHANNELS:
            return f"{repo_id}: its UNet takes {channels} input channels, not {INPAINT_CHANNELS}: not an inpainting model"
        return None

    return check
