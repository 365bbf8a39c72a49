"""Running diffusers' inpainting pipelines: ``sd``, ``sdxl``, ``flux``, ``kandinsky``, ``train-lora``'s validation.

:func:`run_pipeline` takes tensors in [0, 1] and returns the raw output at the input size:

- Any size: the image is processed at its size rounded *up* to a multiple of 8 (16 for FLUX.1
  Fill, whose transformer reads 2x2 patches of latent cells; 64 for Kandinsky 2.2, whose decoder
  sizes its latents as ``ceil(size / 64) * 8``: :func:`size_multiple`; bicubic; the mask grows to
  cover every pixel that touches the hole) and the result resized back.
- ``crop_padding`` (diffusers' ``padding_mask_crop``; UNet pipelines only): only the hole's
  bounding box, padded and widened to the image's aspect ratio, is generated, at the model's native
  size (512 px long side for SD 1.5) — small holes in large images get full detail.
- ``mask_blur``: the mask is Gaussian-blurred outwards only (diffusers' ``mask_processor.blur``,
  then the maximum with the hard mask) and the output blended with the input through it,
  feathering the seam into the known pixels; the hole stays fully generated.
- The mask reaches the UNet max-pooled to the latent grid (:func:`latent_mask`), not sampled
  one pixel per 8x8 cell as diffusers does: strokes thinner than a cell are never lost. FLUX.1
  Fill's pipeline packs every pixel of the mask into channels of its own: nothing is lost there.
  Kandinsky 2.2's decoder has no ``prepare_mask_latents``: it binarizes the mask at 0.5, resizes it
  to the latent grid by nearest sampling and grows the hole by one cell (its ``prepare_mask``); it
  is given the mask already max-pooled to the latent grid and blown back up to whole cells
  (:func:`cell_mask`), so its nearest sampling loses nothing either.
- The denoiser (:func:`denoiser`) is the UNet, or FLUX's transformer: its calls are counted.
- Randomness: one CPU generator per image (initial noise, VAE sampling, ancestral steps), so a
  batch gives the images' single-run results (up to float summation order) on any device.
  Kandinsky 2.2's decoder blends every image of a batch with the first one's known latents
  (``image[:1]``, ``mask_image[:1]``): its images run one at a time (prior and decoder), each with
  its own generator.

:func:`unet_in_bf16` runs the UNet alone in bf16 with fp32 inputs and outputs.
Nothing heavy is imported at module import.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inpaint.models.base import blank_holes, resize_known
from inpaint.progress import NullProgress, Progress

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    import torch
    from diffusers import StableDiffusionInpaintPipeline


@dataclass
class Generation:
    """Settings of one pipeline run (see :func:`run_pipeline`): ``steps`` >= 1, ``guidance`` >= 0
    (<= 1: no classifier-free guidance), ``strength`` in (0, 1], ``mask_blur`` and ``crop_padding``
    in pixels (``None``: the whole image)."""

    steps: int
    guidance: float
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
    return round_up(n, 8)


def round_up(n: int, multiple: int) -> int:
    return max(multiple, math.ceil(n / multiple) * multiple)


def is_kandinsky(pipe) -> bool:
    """Whether ``pipe`` is Kandinsky 2.2's combined inpainting pipeline (a prior, then a decoder)."""
    return getattr(pipe, "prior_pipe", None) is not None and getattr(pipe, "decoder_pipe", None) is not None


def denoiser(pipe) -> torch.nn.Module:
    """The network the pipeline's sampler calls: its UNet, or FLUX's transformer."""
    unet = getattr(pipe, "unet", None)
    return unet if unet is not None else pipe.transformer


def is_unet_pipeline(pipe) -> bool:
    """Whether ``pipe`` runs a UNet (SD, SDXL: classifier-free guidance, a mask on the latent grid)."""
    return getattr(pipe, "unet", None) is not None


def size_multiple(pipe) -> int:
    """What the work size is rounded up to: 8 for the UNet pipelines (as before, whatever their VAE),
    the VAE's factor times the 2x2 patch for FLUX (16), the square of the MoVQ's factor for
    Kandinsky 2.2 (64: its decoder's ``downscale_height_and_width``)."""
    if is_kandinsky(pipe):
        return max(8, pipe.decoder_pipe.movq_scale_factor**2)
    return 8 if is_unet_pipeline(pipe) else max(8, 2 * pipe.vae_scale_factor)


def _title(pipe) -> str:
    if is_kandinsky(pipe):
        return "Kandinsky 2.2"
    return "Stable Diffusion" if is_unet_pipeline(pipe) else "FLUX.1 Fill"


def steps_run(pipe, settings: Generation) -> int:
    """The steps the pipeline runs below strength 1: SD's skip ``steps - floor(steps * strength)``,
    FLUX's ``floor(steps - steps * strength)`` (diffusers' two ``get_timesteps``)."""
    if is_unet_pipeline(pipe):
        return math.floor(settings.steps * settings.strength)
    return settings.steps - int(max(settings.steps - settings.steps * settings.strength, 0))


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
    FLUX.1 Fill's guidance is an input of its transformer (guidance distillation): one call a step.
    """
    import torch

    progress = progress or NullProgress()
    unet = is_unet_pipeline(pipe)
    if unet and not is_kandinsky(pipe):  # FLUX packs the whole-resolution mask itself; Kandinsky: cell_mask
        _max_pooled_mask_latents(pipe)
    _quiet_vae_casts()
    calls = [0]
    hook = denoiser(pipe).register_forward_pre_hook(lambda module, args: calls.__setitem__(0, calls[0] + 1))
    n = images.shape[0]
    try:
        if settings.crop_padding is None:
            out = _run_whole(pipe, images, masks, prompts, generators, settings, progress)
            per_image = calls[0] // n if is_kandinsky(pipe) else calls[0]
        else:
            out = torch.cat(
                [
                    _run_cropped(
                        pipe, images[i : i + 1], masks[i : i + 1], prompts[i], generators[i], settings, progress
                    )
                    for i in range(n)
                ]
            )
            per_image = calls[0] // n
    finally:
        hook.remove()
    return out, per_image * (2 if unet and settings.guidance > 1 else 1)


class _VaeCastNotice(logging.Filter):
    """Drops diffusers' notice that a model with fp32-only modules was cast with ``to()``: SDXL's
    pipeline casts its VAE to fp32 before every encode (``force_upcast``), even when it is fp32
    already, and the notice (twice per image) would bury what matters on stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32" not in record.getMessage()


def _quiet_vae_casts() -> None:
    """Install :class:`_VaeCastNotice` on diffusers' model logger, once."""
    logger = logging.getLogger("diffusers.models.modeling_utils")
    if not any(isinstance(f, _VaeCastNotice) for f in logger.filters):
        logger.addFilter(_VaeCastNotice())


def _step_callback(progress: Progress):
    def callback(pipe, step, timestep, tensors):
        progress.advance(1)
        return tensors

    return callback


def _common(pipe, prompts: Sequence[str], settings: Generation, progress: Progress) -> dict:
    common = dict(
        prompt=list(prompts),
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        strength=settings.strength,
        callback_on_step_end=_step_callback(progress),
    )
    if is_unet_pipeline(pipe):  # FLUX.1 Fill has no negative prompt (no classifier-free guidance)
        negative = [settings.negative_prompt] * len(prompts) if settings.negative_prompt is not None else None
        common["negative_prompt"] = negative
    return common


def _feathered(pipe, masks: torch.Tensor, radius: int) -> torch.Tensor:
    """masks (N, 1, H, W) -> soft masks in [0, 1]: 1 in the hole, a Gaussian falloff outside it.

    The blur (diffusers' ``mask_processor.blur``) only spreads the mask outwards: inside the hole
    the mask stays 1, so every hole pixel is generated and none is blended with what lay under it.
    """
    import numpy as np
    import torch
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    soft = []
    for mask in masks[:, 0]:
        picture = Image.fromarray((mask.numpy() * 255).astype(np.uint8))
        soft.append(torch.from_numpy(np.asarray(VaeImageProcessor.blur(picture, radius), dtype=np.float32) / 255))
    return torch.maximum(torch.stack(soft)[:, None], masks)


def _run_whole(pipe, images, masks, prompts, generators, settings: Generation, progress: Progress) -> torch.Tensor:
    import torch.nn.functional as F

    height, width = images.shape[2:]
    multiple = size_multiple(pipe)
    work = (round_up(height, multiple), round_up(width, multiple))
    if work == (height, width):
        x, m = settings.visible(images, masks), masks
    else:
        # From the known pixels alone; every processed pixel that touches the hole belongs to it.
        x, m = resize_known(images, masks, work)
        if settings.starts_from_input:  # SDEdit starts from the whole input, hole included
            x = F.interpolate(images, size=work, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    soft = _feathered(pipe, m, settings.mask_blur) if settings.mask_blur > 0 else m
    if is_kandinsky(pipe):
        progress.start(_title(pipe), steps_run(pipe, settings) * len(prompts))
        result = _kandinsky(pipe, x, soft, work, prompts, generators, settings, progress)
    else:
        progress.start(_title(pipe), steps_run(pipe, settings))
        result = pipe(
            image=x,
            mask_image=soft,
            height=work[0],
            width=work[1],
            generator=list(generators),
            output_type="pt",
            **_common(pipe, prompts, settings, progress),
        ).images
    progress.finish()
    result = result.float().cpu().clamp(0, 1)
    if settings.mask_blur > 0:
        result = soft * result + (1 - soft) * x
    if work != (height, width):
        # Always a shrink (the work size is rounded up): low-pass first, as ddpm does.
        result = F.interpolate(result, size=(height, width), mode="bicubic", antialias=True, align_corners=False).clamp(
            0, 1
        )
    return result


def _kandinsky(pipe, x, soft, work, prompts, generators, settings: Generation, progress: Progress) -> torch.Tensor:
    """Kandinsky 2.2's combined pipeline, one image at a time (see the module docstring): images in
    [-1, 1] as its decoder takes tensors, the mask as whole latent cells (:func:`cell_mask`, 1 =
    fill, the polarity of diffusers >= 0.19), the output ("pt": the MoVQ's [-1, 1]) back to [0, 1].
    The prior runs diffusers' defaults (25 steps, guidance 4); ``guidance`` is the decoder's."""
    import torch

    factor = pipe.decoder_pipe.movq_scale_factor
    cells = cell_mask((soft >= 0.5).to(soft.dtype), factor)  # the decoder binarizes at 0.5 too
    negative = settings.negative_prompt
    out = []
    for i, prompt in enumerate(prompts):
        out.append(
            pipe(
                prompt=prompt,
                negative_prompt=negative,
                image=x[i : i + 1] * 2 - 1,
                mask_image=cells[i : i + 1].clone(),  # binarized in place by the pipeline
                height=work[0],
                width=work[1],
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance,
                generator=generators[i],  # one generator: the prior doubles its batch for a negative prompt
                output_type="pt",
                callback_on_step_end=_step_callback(progress),
            ).images
        )
    return (torch.cat(out).float() + 1) / 2


def cell_mask(masks: torch.Tensor, factor: int) -> torch.Tensor:
    """Masks (N, 1, H, W) (H, W multiples of ``factor``) as whole ``factor`` x ``factor`` cells: a
    cell is hole if any of its pixels is (:func:`latent_mask`), at the pixel size again, so a
    pipeline that resizes the mask to the latent grid by nearest sampling gets the max-pooled mask."""
    import torch.nn.functional as F

    height, width = masks.shape[2:]
    return F.interpolate(latent_mask(masks, (height // factor, width // factor)), size=(height, width), mode="nearest")


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
    if not is_unet_pipeline(pipe):  # FLUX: 1024 px (its pipeline's default size)
        return int(pipe.default_sample_size) * pipe.vae_scale_factor
    size = pipe.unet.config.sample_size
    return int(size if isinstance(size, int) else max(size)) * pipe.vae_scale_factor


def _run_cropped(pipe, image, mask, prompt, generator, settings: Generation, progress: Progress) -> torch.Tensor:
    """One image through diffusers' crop-to-mask path (PIL in and out, as that path requires)."""
    import numpy as np
    from PIL import Image

    from inpaint import io

    height, width = image.shape[2:]
    scale = _native_size(pipe) / max(height, width)
    multiple = size_multiple(pipe)
    work = (round_up(round(height * scale), multiple), round_up(round(width * scale), multiple))
    picture = Image.fromarray(io.to_uint8(settings.visible(image, mask))[0])
    if settings.mask_blur > 0:
        mask = _feathered(pipe, mask, settings.mask_blur)
    hole = Image.fromarray(np.round(mask[0, 0].numpy() * 255).astype(np.uint8))
    progress.start(_title(pipe), steps_run(pipe, settings))
    result = pipe(
        image=picture,
        mask_image=hole,
        height=work[0],
        width=work[1],
        generator=[generator],
        padding_mask_crop=settings.crop_padding,
        output_type="pil",
        **_common(pipe, [prompt], settings, progress),
    ).images[0]
    progress.finish()
    return io.to_tensor(np.asarray(result.convert("RGB")))


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
        # SDXL's pooled text embedding and size/crop ids feed the UNet's added embedding.
        if isinstance(kwargs.get("added_cond_kwargs"), dict):
            kwargs["added_cond_kwargs"] = {key: to_unet(value) for key, value in kwargs["added_cond_kwargs"].items()}
        return args, kwargs

    def outputs(module, args, kwargs, output):
        if isinstance(output, tuple):
            return tuple(o.float() if torch.is_tensor(o) else o for o in output)
        output.sample = output.sample.float()
        return output

    unet.register_forward_pre_hook(inputs, with_kwargs=True)
    unet.register_forward_hook(outputs, with_kwargs=True)
    unet._inpaint_fp32_io = True
