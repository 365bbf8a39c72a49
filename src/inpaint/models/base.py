"""The one interface every completion method implements.

An :class:`Inpainter` takes a batch of images in [0, 1] (N, 3, H, W), masks in {0, 1}
(N, 1, H, W) with **1 = fill**, and one seed per image, and returns completed images in [0, 1].
By default known pixels are pasted back from the input bit-exactly (``composite=True``); a
method's raw output is available with ``composite=False`` (diffusion models, VAEs in particular,
shift the pixels they were told to keep).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from inpaint.errors import InputError
from inpaint.progress import NullProgress, Progress

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class MethodOptions:
    """Settings a method may read when it is built. Each method uses the fields it knows.

    ``weights`` is a hub id or local directory for methods that need weights; ``device`` is a
    device spec (``auto``, ``cpu``, ``cuda:1``…) resolved by :func:`inpaint.devices.resolve_device`;
    ``dtype`` is ``auto`` (fp16 on CUDA, fp32 elsewhere), ``fp32``, ``fp16`` or ``bf16``.
    ``sampler``/``steps`` choose the denoising loop of diffusion methods (``None``: the method's
    default); ``jump_length``/``jump_n_sample`` are RePaint's resampling schedule.
    ``local_only`` makes availability checks count only weights already on this machine (the
    automatic choice of a method must never start a download). ``lora``, ``prompt``,
    ``negative_prompt``, ``guidance``, ``strength``, ``mask_blur``, ``crop_padding`` (diffusers'
    ``padding_mask_crop``) and ``captions`` (a captions JSON file) configure Stable Diffusion.

    Speed and memory levers (docs/performance.md; none changes what is computed beyond float
    rounding, except ``vae_tiling``): ``channels_last`` (the UNet's, and SD's VAE's, memory
    format) and ``compile`` (``torch.compile`` of the UNet) for every diffusion method;
    ``attention_slicing``, ``vae_slicing``, ``vae_tiling`` and ``cpu_offload`` (diffusers' model
    CPU offload, CUDA only) for Stable Diffusion alone. Attention runs through PyTorch's SDPA
    (``scaled_dot_product_attention``), diffusers' default, unless ``attention_slicing`` replaces it.
    """

    device: str = "auto"
    dtype: str = "auto"
    weights: str | None = None
    #: ddpm and sd's ``lora``: a training run's EMA weights (True) or its raw weights (False);
    #: weights without an EMA are used either way.
    ema: bool = True
    #: ``weights`` (or the method's default base) as a hub id: the branch, tag or commit to fetch.
    revision: str | None = None
    #: The weights variant to fetch and load (``fp16``: the ``*.fp16.safetensors`` files).
    variant: str | None = None
    sampler: str | None = None
    steps: int | None = None
    jump_length: int | None = None
    jump_n_sample: int | None = None
    local_only: bool = False
    # Text-conditioned methods (Stable Diffusion inpainting + LoRA):
    lora: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    guidance: float | None = None
    strength: float | None = None
    mask_blur: int | None = None
    crop_padding: int | None = None
    captions: str | None = None
    # Speed and memory levers:
    channels_last: bool = False
    compile: bool = False
    attention_slicing: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False


#: The options that name what a method loads: set, an unavailability is theirs to fix.
WEIGHT_OPTIONS = ("weights", "lora", "captions", "revision", "variant")


@dataclass(frozen=True)
class Unavailable:
    """Why a method cannot run here: ``kind`` for code to branch on, ``message`` for people.

    ``kind`` is ``"weights"`` when the method's own weights are missing (none of
    :data:`WEIGHT_OPTIONS` was set: download them, or name others with ``--weights``), or
    ``"options"`` when what the options name cannot be used (a ``--weights`` folder that is not a
    model, a missing ``--lora``). ``message`` is one line without the method's name.
    """

    method: str
    kind: str
    message: str

    def __str__(self) -> str:
        return self.message


class MethodUnavailable(InputError):
    """A method was asked to load but cannot run here; ``reason`` says why (:class:`Unavailable`)."""

    def __init__(self, reason: Unavailable) -> None:
        super().__init__(f"{reason.method}: {reason.message}")
        self.reason = reason

    def __reduce__(self):  # rebuilt from its reason (multi-process runs pass errors around)
        return type(self), (self.reason,)


def composite(images: torch.Tensor, filled: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Paste known pixels back: ``filled`` inside the mask, ``images`` outside, copied exactly.

    images, filled: (N, 3, H, W); masks: (N, 1, H, W) with 1 = fill. Uses ``where`` rather than
    ``m * a + (1 - m) * b`` so the known pixels are the very same floats (no rounding).
    """
    import torch

    return torch.where(masks > 0.5, filled.to(images.dtype), images)


def blank_holes(images: torch.Tensor, masks: torch.Tensor, value: float = 0.5) -> torch.Tensor:
    """``images`` with every hole pixel set to ``value`` (mid-gray by default), memory format kept.

    images: (N, 3, H, W) in [0, 1]; masks: (N, 1, H, W), 1 = fill. Methods call it before any
    resampling that mixes neighbouring pixels, so nothing under the hole (in a benchmark, the
    ground truth) can reach the result; ``tests/test_hole_independence.py`` checks every method.
    """
    blanked = images.clone()
    blanked.masked_fill_((masks > 0.5).expand_as(images), value)
    return blanked


def resize_known(images: torch.Tensor, masks: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize images and masks for a model that works at ``size``, from the known pixels alone.

    images: (N, 3, H, W) in [0, 1]; masks: (N, 1, H, W), 1 = fill. Returns images (N, 3, h, w) in
    [0, 1] and masks (N, 1, h, w) in {0, 1}. A resized pixel is a hole if any pixel of its cell is
    (max-pooling: one-pixel holes survive a downsize). Known pixels are a normalised convolution,
    ``resize(image * known) / resize(known)`` (bicubic, antialiased when shrinking): the filter's
    weights over known pixels alone, so neither what lies under the hole (a benchmark's ground
    truth) nor a placeholder colour bleeds into the known pixels around it. Holes are mid-gray.
    """
    import torch
    import torch.nn.functional as F

    def resize(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)

    known = 1.0 - masks.to(images.dtype)
    weight = resize(known)
    small_masks = F.adaptive_max_pool2d(masks.to(images.dtype), size)
    # Every pixel left known has its own cell known, so its weight is near 1 (bicubic's negative
    # lobes take a little); the floor only guards the division for pixels that are holes anyway.
    small = resize(images * known) / weight.clamp_min(1e-3)
    small = torch.where(small_masks > 0.5, 0.5, small).clamp(0, 1)
    return small, small_masks


class Inpainter(ABC):
    """A completion method. Subclasses implement :meth:`fill`; call the instance to use it."""

    #: Registry name, e.g. ``"biharmonic"``.
    name: ClassVar[str]
    #: Methods that extrapolate from known pixels cannot fill a mask that covers everything.
    needs_known_pixels: ClassVar[bool] = True
    #: Methods that look something up by image name (Stable Diffusion: its caption) set this;
    #: their ``fill`` then takes a ``names`` keyword (the names of the images it fills, or ``None``).
    uses_names: ClassVar[bool] = False
    #: The :class:`MethodOptions` fields that only change how each call runs (steps, prompt…), not
    #: what is loaded: :meth:`with_options` applies them to a loaded method without reloading it.
    call_options: ClassVar[frozenset[str]] = frozenset()

    def with_options(self, options: MethodOptions) -> Inpainter:
        """This method with ``options``, sharing its loaded weights (a server keeps one model warm
        for requests that ask for other steps or prompts).

        ``options`` may differ from the ones this method was built with only in
        :attr:`call_options` (``ValueError`` otherwise: those need a new load); they are checked as
        building the method checks them (:class:`InputError`). The copy shares the weights: run one
        of the two at a time.
        """
        import copy
        import dataclasses

        own = getattr(self, "options", None) or MethodOptions()
        changed = {f.name for f in dataclasses.fields(options) if getattr(options, f.name) != getattr(own, f.name)}
        if changed - self.call_options:
            raise ValueError(f"{self.name}: {', '.join(sorted(changed - self.call_options))} need a new load")
        if not changed:
            return self
        twin = copy.copy(self)
        twin.options = options
        twin._configure_calls()
        return twin

    def _configure_calls(self) -> None:  # noqa: B027 - a hook: methods without call options have none
        """Set (and check) what :attr:`call_options` decide from ``self.options``; called when the
        method is built (by subclasses that have call options) and by :meth:`with_options`."""

    @abstractmethod
    def fill(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        generators: list[torch.Generator],
        progress: Progress,
    ) -> torch.Tensor:
        """Fill the holes of a validated batch.

        images: (N, 3, H, W) float32 in [0, 1] on the CPU; masks: (N, 1, H, W) float32 in {0, 1},
        1 = fill, every mask non-empty; generators: one CPU ``torch.Generator`` per image.
        Returns (N, 3, H, W) float32 in [0, 1]; pixels outside the mask may differ from the input.
        """

    def __call__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        seeds: Sequence[int] | int = 0,
        *,
        composite_known: bool = True,
        progress: Progress | None = None,
        names: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Complete ``images`` where ``masks`` is 1.

        ``seeds`` holds one seed per image (an int is allowed for a single image); image i draws
        its randomness only from ``seeds[i]``, so a batch equals the same images run one by one.
        Images whose mask is empty are returned unchanged without calling the method.
        ``names`` (optional, one per image: file names or stems) lets methods that use them
        (``uses_names``) look up per-image data such as captions; others ignore it.
        """
        import torch

        _check_batch(images, masks)
        n = images.shape[0]
        if isinstance(seeds, int):
            if n != 1:
                raise ValueError("pass one seed per image (a sequence) for a batch of several images")
            seeds = [seeds]
        if len(seeds) != n:
            raise ValueError(f"got {len(seeds)} seeds for {n} images")
        if names is not None and len(names) != n:
            raise ValueError(f"got {len(names)} names for {n} images")
        hole_pixels = masks.flatten(1).sum(dim=1)
        if self.needs_known_pixels and bool((hole_pixels == masks[0].numel()).any()):
            raise InputError(f"{self.name} needs some known pixels, but a mask covers the whole image")
        out = images.clone()
        todo = torch.nonzero(hole_pixels > 0).flatten().tolist()
        if todo:
            generators = [torch.Generator().manual_seed(int(seeds[i])) for i in todo]
            extra = {"names": [names[i] for i in todo] if names is not None else None} if self.uses_names else {}
            filled = self.fill(images[todo], masks[todo], generators, progress or NullProgress(), **extra)
            if composite_known:
                filled = composite(images[todo], filled, masks[todo])
            out[todo] = filled.to(out.dtype).clamp(0, 1)
        return out


def _check_batch(images: torch.Tensor, masks: torch.Tensor) -> None:
    """Raise ``ValueError`` unless images are (N,3,H,W) in [0,1] and masks (N,1,H,W) in {0,1}."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must be (N, 1, H, W), got {tuple(masks.shape)}")
    if images.shape[0] != masks.shape[0] or images.shape[2:] != masks.shape[2:]:
        raise ValueError(f"images {tuple(images.shape)} and masks {tuple(masks.shape)} do not match")
    if not images.is_floating_point() or float(images.min()) < 0 or float(images.max()) > 1:
        raise ValueError("images must be floating point in [0, 1]")
    if bool(((masks != 0) & (masks != 1)).any()):
        raise ValueError("masks must hold only 0 (known) and 1 (fill)")
