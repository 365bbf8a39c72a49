"""FLUX.1 Fill (``flux``): diffusers' ``FluxFillPipeline``, base ``black-forest-labs/FLUX.1-Fill-dev``.

:class:`FluxFillInpainter` is :class:`~inpaint.models.sd.SDInpainter` (prompts and captions,
per-image generators, progress, bit-exact paste-back, the memory levers; how the pipeline runs is
:mod:`inpaint.models.sd_pipeline`) with what FLUX.1 Fill differs in:

- Guidance distillation: ``guidance`` (default 30, as the model card) is an input of the
  transformer, not classifier-free guidance: one transformer evaluation per step (NFE = steps), and
  no negative prompt (``--negative-prompt`` is refused).
- Sizes: a multiple of 16 (the VAE's factor 8 times the transformer's 2x2 patches): any image is
  processed at its size rounded up to one and resized back. Native size: 1024 px.
- The mask: the pipeline packs it per pixel into 256 of the transformer's 384 input channels, so
  it is not max-pooled to the latent grid as the UNet's is.
- No crop to the mask (its pipeline has no ``padding_mask_crop``): ``--crop-padding`` is refused.
- Its own sampler only: ``flow-euler`` (FlowMatchEulerDiscreteScheduler, the rectified-flow ODE's
  Euler steps with the pipeline's resolution-shifted sigmas), the default; others are refused.
- No LoRA (``--lora`` is refused: the LoRAs here are sd's and sdxl's UNet LoRAs).
- Precision: the whole pipeline loads in the chosen dtype; ``--dtype auto`` is bf16 on a GPU with
  bf16 (FLUX's published precision: fp16 overflows in its T5 encoder) and on a CPU with native
  bf16, fp32 elsewhere. Unlike sd's bf16 (only the UNet, between fp32 latents), bf16 here holds the
  latents and the text encoders too: loading the 12B transformer and the 4.7B T5 encoder in fp32
  first would take 68 GB of memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from inpaint.errors import InputError
from inpaint.models.base import MethodOptions
from inpaint.models.sd import SDInpainter
from inpaint.models.sd_weights import DEFAULT_FLUX_BASE

if TYPE_CHECKING:  # pragma: no cover
    import torch


class FluxFillInpainter(SDInpainter):
    """FLUX.1 Fill. Options read: ``weights`` (the base), ``prompt``, ``captions``, ``steps``,
    ``guidance``, ``strength``, ``sampler`` (``flow-euler`` only), ``mask_blur``, ``device``,
    ``dtype`` and the levers ``channels_last``, ``compile``, ``vae_slicing``, ``vae_tiling``,
    ``cpu_offload``; ``negative_prompt``, ``crop_padding`` and ``lora`` are refused in one line."""

    name: ClassVar[str] = "flux"
    default_base: ClassVar[str] = DEFAULT_FLUX_BASE
    families: ClassVar[tuple[str, ...]] = ("flux",)
    #: FLUX.1 Fill's model card: 50 steps, guidance 30.
    default_steps: ClassVar[int] = 50
    default_guidance: ClassVar[float] = 30.0
    guidance_rule: ClassVar[str] = "must be 0 or more (FLUX's distilled guidance, an input of its transformer)"

    @classmethod
    def _refuse(cls, o: MethodOptions) -> None:
        if o.negative_prompt is not None:
            raise InputError(
                "--negative-prompt: flux takes none (FLUX.1 Fill is guidance-distilled: no classifier-free guidance)"
            )
        if o.crop_padding is not None:
            raise InputError(
                "--crop-padding: flux cannot crop to the mask (FLUX.1 Fill's pipeline has no padding_mask_crop); "
                "leave it out"
            )
        if o.lora is not None:
            raise InputError("--lora: flux loads no LoRA (the LoRAs here are sd's and sdxl's UNet LoRAs)")

    def _resolve_dtype(self) -> torch.dtype:
        import torch

        if self.options.dtype.strip().lower() == "auto" and self.device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return super()._resolve_dtype()

    def _load_dtype(self) -> torch.dtype:
        return self.dtype  # everything in it, bf16 included (see the module docstring)

    def _mixed_precision(self) -> None:
        """Nothing: the whole pipeline was loaded in its dtype."""
