"""Kandinsky 2.2 inpainting (``kandinsky``): diffusers' ``KandinskyV22InpaintCombinedPipeline``.

Its base is ``kandinsky-community/kandinsky-2-2-decoder-inpaint`` (the decoder) with
``kandinsky-community/kandinsky-2-2-prior`` (the prior), two hub repositories that
``inpaint download kandinsky`` fetches together; or a folder holding a decoder saved alone (the
prior then comes from the hub id, cached), or a combined pipeline saved with ``save_pretrained``
(``prior_*`` folders beside ``unet/`` and ``movq/``), which needs nothing else.

:class:`KandinskyInpainter` is :class:`~inpaint.models.sd.SDInpainter` (prompts and captions,
per-image generators, progress, bit-exact paste-back, the memory levers; how the pipeline runs is
:mod:`inpaint.models.sd_pipeline`) with what Kandinsky 2.2 differs in:

- Two stages: a prior (a transformer over CLIP embeddings, 25 steps, guidance 4: diffusers'
  defaults) turns the prompt, and ``--negative-prompt``, into CLIP image embeddings; the decoder, a
  9-channel UNet over MoVQ latents, inpaints from them (50 steps, classifier-free guidance 4,
  diffusers' default scale). ``--guidance`` and ``--steps`` are the decoder's. NFE counts the
  decoder UNet's evaluations (x2 with guidance), as for sd; the prior's (50 a run, on 81 tokens)
  are not counted.
- Sizes: a multiple of 64 (the decoder makes ``ceil(size / 64) * 8`` latent cells); any image is
  processed at its size rounded up to one and resized back. Native size: 768 px.
- The mask: binarized at 0.5, given as whole 8x8 cells (max-pooled), then grown by one cell by
  the decoder itself. Images run one at a time (the decoder's batch blends every image with the
  first one's known latents).
- No strength below 1 (the decoder always starts from noise), no crop to the mask (no
  ``padding_mask_crop``), no LoRA, no attention slicing, no VAE slicing or tiling (the MoVQ has
  neither); its own sampler only, ``ddpm``.
- Precision: the whole pipeline loads in the chosen dtype (the decoder feeds its latents in the
  UNet's dtype to the MoVQ, so the UNet cannot run alone in bf16 as sd's does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from inpaint.errors import InputError
from inpaint.models.base import MethodOptions
from inpaint.models.sd import SDInpainter
from inpaint.models.sd_weights import DEFAULT_KANDINSKY_BASE

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    import torch

    from inpaint.progress import Progress


class KandinskyInpainter(SDInpainter):
    """Kandinsky 2.2 inpainting. Options read: ``weights`` (the base), ``prompt``,
    ``negative_prompt``, ``captions``, ``steps``, ``guidance``, ``sampler`` (``ddpm`` only),
    ``mask_blur``, ``device``, ``dtype`` and the levers ``channels_last``, ``compile``,
    ``cpu_offload``; ``strength`` below 1, ``crop_padding``, ``lora``, ``attention_slicing``,
    ``vae_slicing`` and ``vae_tiling`` are refused in one line."""

    name: ClassVar[str] = "kandinsky"
    default_base: ClassVar[str] = DEFAULT_KANDINSKY_BASE
    families: ClassVar[tuple[str, ...]] = ("kandinsky",)
    #: 50 decoder steps (as sd; diffusers' default is 100), guidance 4 (diffusers' default).
    default_steps: ClassVar[int] = 50
    default_guidance: ClassVar[float] = 4.0

    @classmethod
    def _refuse(cls, o: MethodOptions) -> None:
        if o.strength is not None and o.strength != 1:
            raise InputError(
                f"--strength {o.strength}: kandinsky always starts from noise (Kandinsky 2.2's inpainting "
                "decoder has no strength); leave it out"
            )
        if o.crop_padding is not None:
            raise InputError(
                "--crop-padding: kandinsky cannot crop to the mask (Kandinsky 2.2's pipeline has no "
                "padding_mask_crop); leave it out"
            )
        if o.lora is not None:
            raise InputError("--lora: kandinsky loads no LoRA (the LoRAs here are sd's and sdxl's UNet LoRAs)")
        if o.attention_slicing:
            raise InputError("--attention-slicing: kandinsky's combined pipeline cannot slice attention; leave it out")
        for flag, on in (("--vae-slicing", o.vae_slicing), ("--vae-tiling", o.vae_tiling)):
            if on:
                raise InputError(f"{flag}: Kandinsky 2.2's MoVQ autoencoder has no slicing nor tiling; leave it out")

    def _load_dtype(self) -> torch.dtype:
        return self.dtype  # everything in it, bf16 included (see the module docstring)

    def _mixed_precision(self) -> None:
        """Nothing: the whole pipeline was loaded in its dtype."""

    def fill(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        generators: list[torch.Generator],
        progress: Progress,
        names: Sequence[str] | None = None,
    ) -> torch.Tensor:
        # The decoder runs its own reference to the scheduler, not the combined pipeline's.
        self.pipe.decoder_pipe.scheduler = self.scheduler
        return super().fill(images, masks, generators, progress, names)
