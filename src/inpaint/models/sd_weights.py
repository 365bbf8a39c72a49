"""Inpainting pipelines' weights: the supported families, and finding, checking and loading a base.

The study's Method 2 (docs/method.md) starts from SD 1.5 Inpainting
(``stable-diffusion-v1-5/stable-diffusion-inpainting``): a diffusers pipeline folder
(``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``)
whose UNet takes 9 channels, ``concat(noisy latent 4, mask 1, masked-image latent 4)``.

A base pipeline's weights are read as safetensors; a component published with ``.bin`` weights
only (unet, vae or text_encoder of an older repository) is converted once through torch's
weights-only unpickler, which refuses anything but tensors (:mod:`inpaint.models.weight_files`).
LoRA files are :mod:`inpaint.models.lora_files`' concern.
Hub ids take a ``revision`` (branch, tag or commit) and a ``variant`` (``fp16``: half the download).

:func:`sd_unavailable` says, from files alone and without importing torch or diffusers, why the
``sd`` method cannot run with given options (the registry's check).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint.errors import InputError
from inpaint.models.hub import first_line, looks_like_path, quiet_loading, resolve
from inpaint.models.lora_files import LORA_WEIGHT_NAME
from inpaint.models.weight_files import DIFFUSERS, TRANSFORMERS, Component, ModelFiles, has_weights, weight_names

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    from inpaint.models.base import MethodOptions

#: The study's base (SD 1.5 Inpainting, Rombach et al. 2022; the hub id it has today).
DEFAULT_SD_BASE = "stable-diffusion-v1-5/stable-diffusion-inpainting"
#: Input channels of an inpainting UNet: noisy latent (4), mask (1), masked-image latent (4).
INPAINT_CHANNELS = 9
#: SDXL Inpainting (Podell et al. 2023; the 0.1 inpainting fine-tune of SDXL 1.0 published by diffusers).
DEFAULT_SDXL_BASE = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
#: FLUX.1 Fill [dev] (Black Forest Labs 2024; gated on the hub: accept its licence, then `hf auth login`).
DEFAULT_FLUX_BASE = "black-forest-labs/FLUX.1-Fill-dev"
#: Kandinsky 2.2 inpainting's decoder (Razzhigaev et al. 2023): a 9-channel UNet conditioned on CLIP
#: image embeddings, and a MoVQ autoencoder. Its hub repository holds the decoder alone.
DEFAULT_KANDINSKY_BASE = "kandinsky-community/kandinsky-2-2-decoder-inpaint"
#: The prior that turns prompts into the CLIP image embeddings the decoder reads (its own repository).
DEFAULT_KANDINSKY_PRIOR = "kandinsky-community/kandinsky-2-2-prior"
#: A Kandinsky 2.2 inpainting decoder saved alone (the hub repository's class): its prior is
#: :data:`DEFAULT_KANDINSKY_PRIOR`, loaded beside it.
KANDINSKY_DECODER = "KandinskyV22InpaintPipeline"
#: The methods whose pipelines have a 9-channel UNet (train-lora's bases, and LoRAs, are theirs).
UNET_METHODS = ("sd", "sdxl")


@dataclass(frozen=True)
class PipelineFamily:
    """A family of inpainting pipelines that one diffusers class runs.

    ``method`` is the registered method that defaults to this family's base (``default_base``);
    ``pipeline`` the diffusers class; ``classes`` the ``_class_name`` values of ``model_index.json``
    that belong here (a 9-channel UNet saved under the text-to-image or image-to-image class of the
    family runs the same way); ``text_encoders`` the component folders of its text encoders;
    ``denoiser`` the folder of the network the sampler calls (``unet`` or ``transformer``);
    ``autoencoder`` that of its autoencoder (``vae``, Kandinsky's ``movq``); ``prior`` the folders
    of the other weighted components of a combined pipeline (Kandinsky's prior and image encoder).
    """

    method: str
    title: str
    pipeline: str
    classes: tuple[str, ...]
    text_encoders: tuple[str, ...]
    default_base: str
    denoiser: str = "unet"
    autoencoder: str = "vae"
    prior: tuple[str, ...] = ()

    def weighted(self, class_name: str | None) -> tuple[str, ...]:
        """The component folders with weights that a folder saved as ``class_name`` must hold: a
        Kandinsky decoder saved alone (:data:`KANDINSKY_DECODER`) has no prior (it is loaded from
        :data:`DEFAULT_KANDINSKY_PRIOR`)."""
        prior = () if class_name == KANDINSKY_DECODER else (*self.text_encoders, *self.prior)
        encoders = () if self.prior else self.text_encoders
        return (self.denoiser, self.autoencoder, *encoders, *prior)


#: The supported families, by method name. SD and SDXL have a 9-channel UNet conditioned as
#: ``concat(noisy latent, mask, masked-image latent)``; SDXL adds a second text encoder and the
#: size/crop conditioning, which its pipeline computes. FLUX.1 Fill has a transformer over 2x2
#: patches of 16-channel latents, conditioned on the packed masked-image latent and the mask packed
#: per pixel (:func:`flux_fill_channels`: 384 input channels), with a CLIP and a T5 text encoder.
#: Kandinsky 2.2's decoder is a 9-channel UNet too (``concat(noisy latent, masked-image latent,
#: mask)`` of a MoVQ autoencoder), conditioned on CLIP image embeddings that a prior makes from the
#: prompt: the combined pipeline holds the prior's components as ``prior_*`` folders.
FAMILIES: dict[str, PipelineFamily] = {
    family.method: family
    for family in (
        PipelineFamily(
            "sd",
            "Stable Diffusion 1.x/2.x Inpainting",
            "StableDiffusionInpaintPipeline",
            ("StableDiffusionInpaintPipeline", "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
            ("text_encoder",),
            DEFAULT_SD_BASE,
        ),
        PipelineFamily(
            "sdxl",
            "Stable Diffusion XL Inpainting",
            "StableDiffusionXLInpaintPipeline",
            ("StableDiffusionXLInpaintPipeline", "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
            ("text_encoder", "text_encoder_2"),
            DEFAULT_SDXL_BASE,
        ),
        PipelineFamily(
            "flux",
            "FLUX.1 Fill",
            "FluxFillPipeline",
            ("FluxFillPipeline",),
            ("text_encoder", "text_encoder_2"),
            DEFAULT_FLUX_BASE,
            denoiser="transformer",
        ),
        PipelineFamily(
            "kandinsky",
            "Kandinsky 2.2 Inpainting",
            "KandinskyV22InpaintCombinedPipeline",
            ("KandinskyV22InpaintCombinedPipeline", KANDINSKY_DECODER),
            ("prior_text_encoder",),
            DEFAULT_KANDINSKY_BASE,
            autoencoder="movq",
            prior=("prior_prior", "prior_image_encoder"),
        ),
    )
}
#: Inpainting pipelines of other designs, named in the message that refuses them.
_OTHER_DESIGNS = {
    "KandinskyInpaintPipeline": "Kandinsky 2.1",
    "FluxInpaintPipeline": "FLUX.1 text-to-image weights; FLUX.1 Fill runs as --model flux",
    "StableDiffusion3InpaintPipeline": "Stable Diffusion 3 (a transformer, not a UNet)",
}


def local_family(base: str, revision: str | None = None) -> PipelineFamily | None:
    """The family of ``base`` (a folder, or a hub id whose ``model_index.json`` is in the local
    cache) without downloading anything; ``None`` when that cannot be told here."""
    path = Path(base).expanduser()
    index = path / "model_index.json" if path.is_dir() else None
    if index is None and not looks_like_path(base):
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(base, "model_index.json", revision=revision)
        except ValueError:  # not a valid repository id
            found = None
        index = Path(found) if isinstance(found, str) else None
    if index is None or not index.is_file():
        return None
    try:
        return pipeline_family(index.parent, base)
    except InputError:
        return None


def pipeline_class(root: Path) -> str | None:
    """The ``_class_name`` of ``root/model_index.json``; ``None`` when it cannot be read."""
    try:
        index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = index.get("_class_name") if isinstance(index, dict) else None
    return name if isinstance(name, str) else None


def pipeline_family(root: Path, label: str) -> PipelineFamily:
    """The family of the pipeline folder ``root``, from its ``model_index.json``; an
    :class:`InputError` naming the class and what is supported otherwise."""
    try:
        index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{label}: cannot read model_index.json ({e}); {_LAYOUT}") from None
    name = index.get("_class_name") if isinstance(index, dict) else None
    for family in FAMILIES.values():
        if name in family.classes:
            return family
    design = f" ({_OTHER_DESIGNS[name]})" if name in _OTHER_DESIGNS else ""
    supported = _supported(FAMILIES)
    raise InputError(
        f"{label}: a {name or 'pipeline without _class_name'}{design}, not supported; supported: {supported}"
    )


@dataclass(frozen=True)
class PipelineFiles(ModelFiles):
    """:class:`~inpaint.models.weight_files.ModelFiles` of a pipeline whose denoiser is one of
    ``denoisers`` (a UNet pipeline has ``unet/``, FLUX ``transformer/``) and whose autoencoder is one
    of ``autoencoders`` (``vae/``, Kandinsky's ``movq/``): each is optional alone, but a folder with
    none of a kind lacks one."""

    denoisers: tuple[str, ...] = ()
    autoencoders: tuple[str, ...] = ()

    def missing(self, root: Path, variant: str | None = None) -> list[str]:
        lacking = super().missing(root, variant)
        at = sum(1 for name in self.required_files if not (root / name).is_file())
        for kind in (self.denoisers, self.autoencoders):
            if kind and not any((root / folder / "config.json").is_file() for folder in kind):
                lacking.insert(at, " or ".join(f"{folder}/config.json" for folder in kind))
                at += 1
        # The other components its family needs (the text encoders), as model_index.json names it.
        name = pipeline_class(root)
        family = next((f for f in FAMILIES.values() if name in f.classes), None)
        for folder in family.weighted(name) if family is not None else ():
            if folder not in (*self.denoisers, *self.autoencoders) and not (root / folder / "config.json").is_file():
                lacking.append(f"{folder}/config.json")
        return lacking


#: What a pipeline is fetched as, and nothing else: no safety checker, no single-file checkpoints,
#: the weights of one variant only (:meth:`~inpaint.models.weight_files.ModelFiles.patterns`).
#: FLUX.1 Fill's repository also holds single-file checkpoints at its root; only its diffusers
#: folders are fetched. Kandinsky 2.2's decoder repository has ``unet/``, ``movq/`` and
#: ``scheduler/`` only (no text encoder: the prior's repository, :data:`PRIOR_FILES`, has it); a
#: combined pipeline saved with ``save_pretrained`` has the prior's components as ``prior_*``.
PIPELINE_FILES = PipelineFiles(
    other=(
        "model_index.json",
        "*/config.json",
        "scheduler/*.json",
        "tokenizer/*",
        "tokenizer_2/*",
        "feature_extractor/*.json",
        "prior_scheduler/*.json",
        "prior_tokenizer/*",
        "prior_image_processor/*.json",
    ),
    components=(
        Component("unet", DIFFUSERS, required=False),  # SD's, SDXL's and Kandinsky's denoiser
        Component("transformer", DIFFUSERS, required=False),  # FLUX's denoiser
        Component("vae", DIFFUSERS, required=False),
        Component("movq", DIFFUSERS, required=False),  # Kandinsky's autoencoder
        Component("text_encoder", TRANSFORMERS, required=False),  # all but a Kandinsky decoder alone
        Component("text_encoder_2", TRANSFORMERS, required=False),  # SDXL's second CLIP, FLUX's T5
        Component("prior_prior", DIFFUSERS, required=False),  # a combined Kandinsky pipeline's prior
        Component("prior_text_encoder", TRANSFORMERS, required=False),
        Component("prior_image_encoder", TRANSFORMERS, required=False),
    ),
    required_files=("model_index.json",),
    denoisers=("unet", "transformer"),
    autoencoders=("vae", "movq"),
)
#: What Kandinsky 2.2's prior repository (:data:`DEFAULT_KANDINSKY_PRIOR`) is fetched as.
PRIOR_FILES = ModelFiles(
    other=(
        "model_index.json",
        "*/config.json",
        "scheduler/*.json",
        "tokenizer/*",
        "image_processor/*.json",
    ),
    components=(
        Component("prior", DIFFUSERS),
        Component("text_encoder", TRANSFORMERS),
        Component("image_encoder", TRANSFORMERS),
    ),
    required_files=("model_index.json",),
)
_COMPONENTS = tuple(c.folder for c in PIPELINE_FILES.components)
_LAYOUT = (
    "expected a diffusers pipeline folder: model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/ "
    "(SDXL: text_encoder_2/, tokenizer_2/ too; FLUX.1 Fill: transformer/ instead of unet/, text_encoder_2/, "
    "tokenizer_2/; Kandinsky 2.2: unet/, movq/, scheduler/, and the prior's prior_* folders when combined)"
)


# ---- the base pipeline -----------------------------------------------------------------------


def flux_fill_channels(vae_config: Mapping[str, Any]) -> int:
    """The input channels of a FLUX.1 Fill transformer whose VAE has ``vae_config``: the noisy
    latent and the masked-image latent, each packed in 2x2 patches (4 x latent channels), and the
    mask, one channel per pixel of a 2x2 patch of latent cells (4 x factor², factor = the VAE's
    downsampling). FLUX.1 Fill: 64 + 64 + 256 = 384."""
    factor = 2 ** (len(vae_config.get("block_out_channels", (0,) * 4)) - 1)
    latent = int(vae_config.get("latent_channels", 16))
    return 2 * 4 * latent + 4 * factor * factor


def _read_config(root: Path, folder: str, label: str) -> dict:
    try:
        config = json.loads((root / folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{label}: cannot read {folder}/config.json ({e}); {_LAYOUT}") from None
    return config if isinstance(config, dict) else {}


def _check_denoiser(root: Path, label: str, family: PipelineFamily) -> None:
    """Raise :class:`InputError` unless the family's denoiser takes an inpainting model's inputs."""
    config = _read_config(root, family.denoiser, label)
    channels = config.get("in_channels")
    if family.denoiser == "transformer":
        vae = _read_config(root, "vae", label)
        expected = flux_fill_channels(vae)
        if channels != expected:
            raise InputError(
                f"{label}: its transformer takes {channels} input channels, not {expected} (latent, masked-image "
                f"latent and mask, packed); it is not a Fill model (use {DEFAULT_FLUX_BASE})"
            )
        return
    if channels != INPAINT_CHANNELS:
        raise InputError(
            f"{label}: its UNet takes {channels} input channels, not {INPAINT_CHANNELS}; it is not an inpainting "
            f"model (use an inpainting base such as {DEFAULT_SD_BASE})"
        )


def check_family(
    family: PipelineFamily, label: str, methods: Collection[str] | None, class_name: str | None = None
) -> None:
    """Raise :class:`InputError` unless ``family`` is one of ``methods``' (``None``: any), naming
    the folder's ``class_name`` when known (else the family's pipeline)."""
    if methods is None or family.method in methods:
        return
    raise InputError(
        f"{label}: a {class_name or family.pipeline} ({family.title}: run it with --model {family.method}), "
        "not supported; "
        f"supported: {_supported(methods)}"
    )


def _supported(methods: Collection[str]) -> str:
    return "; ".join(f"{FAMILIES[m].pipeline} ({FAMILIES[m].title}: --model {m})" for m in methods)


def check_pipeline_folder(
    root: Path, label: str, variant: str | None = None, methods: Collection[str] | None = None
) -> None:
    """Raise :class:`InputError` unless ``root`` holds an inpainting pipeline of a supported family
    (of ``methods``' families, when given) with weights (of ``variant``) for its denoiser (unet or
    transformer), vae and text encoders, as safetensors or ``.bin``."""
    if not (root / "model_index.json").is_file():
        if (root / LORA_WEIGHT_NAME).is_file():
            raise InputError(f"{label}: is a LoRA, not a base model; pass it with --lora (and the base with --weights)")
        raise InputError(f"{label}: no model_index.json; {_LAYOUT}")
    family = pipeline_family(root, label)  # another design (SD 3) is named before its layout
    check_family(family, label, methods, pipeline_class(root))
    _check_denoiser(root, label, family)
    weighted = family.weighted(pipeline_class(root))
    for component in PIPELINE_FILES.components:
        if component.folder not in weighted:
            continue
        folder = component.path(root)
        if has_weights(folder, component.library, variant) or has_weights(
            folder, component.library, variant, pickle=True
        ):
            continue
        stem = weight_names(component.library, None)[0].split(".")[0]
        others = sorted(p.name for p in folder.glob(f"{stem}*.safetensors")) if folder.is_dir() else []
        hint = f" (it has {', '.join(others[:2])}: another --variant?)" if others else ""
        raise InputError(
            f"{label}: {component.folder}/ has no {weight_names(component.library, variant)[0]} "
            f"nor its .bin{hint}; {_LAYOUT}"
        )


def sd_model_dir(
    id_or_dir: str | os.PathLike[str],
    *,
    revision: str | None = None,
    variant: str | None = None,
    methods: Collection[str] | None = None,
) -> Path:
    """The checked local folder of inpainting base ``id_or_dir`` (a directory, or a hub id at
    ``revision`` fetched as :data:`PIPELINE_FILES` with the weights of ``variant``), of one of
    ``methods``' families when given."""
    label = os.fspath(id_or_dir)
    root = resolve(id_or_dir, PIPELINE_FILES, revision=revision, variant=variant)
    check_pipeline_folder(root, label, variant, methods)
    return root


def load_pipeline(
    id_or_dir: str | os.PathLike[str] = DEFAULT_SD_BASE,
    *,
    dtype: torch.dtype | None = None,
    revision: str | None = None,
    variant: str | None = None,
    methods: Collection[str] | None = UNET_METHODS,
) -> StableDiffusionInpaintPipeline:
    """Load the inpainting pipeline of its family (:func:`pipeline_family`): a
    ``StableDiffusionInpaintPipeline`` (no safety checker), a ``StableDiffusionXLInpaintPipeline``,
    a ``FluxFillPipeline`` or a ``KandinskyV22InpaintCombinedPipeline`` (from a combined folder, or
    from a decoder saved alone plus the prior of :data:`DEFAULT_KANDINSKY_PRIOR`); progress bars
    off; on the CPU.

    ``revision`` picks a branch, tag or commit of a hub id; ``variant`` a weights variant
    (``fp16``); ``dtype`` the precision the components are loaded in (pass ``torch.float32`` to
    train from fp16-variant weights). Components with ``.bin`` weights only are converted first.
    ``methods`` are the families accepted (default: the UNet ones, which train-lora trains; a
    FLUX folder is refused in one line unless ``"flux"`` is among them; ``None``: any).
    """
    from inpaint.models.weight_files import safetensors_view

    label = os.fspath(id_or_dir)
    checked = sd_model_dir(id_or_dir, revision=revision, variant=variant, methods=methods)
    family = pipeline_family(checked, label)
    folders = [folder for folder in _COMPONENTS if (checked / folder).is_dir()]
    root = safetensors_view(checked, folders, label, variant)
    # SD's pipeline would load a safety checker named in model_index.json; inpainting here has none.
    extra = (
        {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
        if family.method == "sd"
        else {}
    )
    if pipeline_class(checked) == KANDINSKY_DECODER:  # the decoder alone: its prior comes from its own repository
        pipe = _with_prior(_from_pretrained(KANDINSKY_DECODER, root, label, dtype, variant), dtype, variant)
    else:
        pipe = _from_pretrained(family.pipeline, root, label, dtype, variant, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _from_pretrained(class_name: str, root: Path, label: str, dtype, variant: str | None, **extra: Any):
    """``diffusers.<class_name>.from_pretrained(root)`` from safetensors, quietly; one-line errors."""
    import diffusers
    from safetensors import SafetensorError

    with quiet_loading(), warnings.catch_warnings():
        # Newer diffusers call it `dtype`; `torch_dtype` works in every version we support.
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
        try:
            return getattr(diffusers, class_name).from_pretrained(
                root, use_safetensors=True, torch_dtype=dtype, variant=variant, **extra
            )
        except (OSError, ValueError, RuntimeError, TypeError, SafetensorError) as e:
            raise InputError(f"{label}: cannot load the pipeline ({first_line(e)})") from None


def kandinsky_prior_dir(variant: str | None = None) -> Path:
    """The checked local folder of Kandinsky 2.2's prior (:data:`DEFAULT_KANDINSKY_PRIOR`, fetched as
    :data:`PRIOR_FILES`; from the cache offline)."""
    root = resolve(DEFAULT_KANDINSKY_PRIOR, PRIOR_FILES, variant=variant)
    lacking = PRIOR_FILES.missing(root, variant)
    if lacking:
        raise InputError(
            f"{DEFAULT_KANDINSKY_PRIOR}: lacks {', '.join(lacking)}; the Kandinsky 2.2 decoder needs this prior "
            "(fetch both with `inpaint download kandinsky`)"
        )
    return root


def _with_prior(decoder, dtype, variant: str | None):
    """The combined pipeline of a Kandinsky 2.2 inpainting ``decoder`` and the prior of
    :data:`DEFAULT_KANDINSKY_PRIOR`, as diffusers' ``AutoPipelineForInpainting`` assembles them
    (there from the decoder's model card; here from the cache, offline too)."""
    import diffusers

    from inpaint.models.weight_files import safetensors_view

    prior_root = kandinsky_prior_dir(variant)
    view = safetensors_view(prior_root, [c.folder for c in PRIOR_FILES.components], DEFAULT_KANDINSKY_PRIOR, variant)
    prior = _from_pretrained("KandinskyV22PriorPipeline", view, DEFAULT_KANDINSKY_PRIOR, dtype, variant)
    return diffusers.KandinskyV22InpaintCombinedPipeline(
        unet=decoder.unet,
        scheduler=decoder.scheduler,
        movq=decoder.movq,
        prior_prior=prior.prior,
        prior_image_encoder=prior.image_encoder,
        prior_text_encoder=prior.text_encoder,
        prior_tokenizer=prior.tokenizer,
        prior_scheduler=prior.scheduler,
        prior_image_processor=prior.image_processor,
    )


# ---- the availability check of the registry (no torch, no diffusers) ---------------------------


def sd_unavailable(
    options: MethodOptions, default_base: str = DEFAULT_SD_BASE, methods: Collection[str] = UNET_METHODS
) -> str | None:
    """Registry check for ``sd`` (and ``sdxl``, whose ``default_base`` is :data:`DEFAULT_SDXL_BASE`;
    and ``flux``: :data:`DEFAULT_FLUX_BASE`, ``methods=("flux",)``): the base must be an inpainting
    pipeline of one of ``methods``' families on disk, cached or downloadable; ``lora`` and
    ``captions`` must exist."""
    from inpaint.models.hub import cached_availability, download_hint, meant_as_local

    if options.captions is not None and not Path(options.captions).expanduser().is_file():
        return f"--captions {options.captions}: no such file"
    if options.lora is not None:
        lora = Path(options.lora).expanduser()
        if not lora.exists() and looks_like_path(options.lora):
            return f"--lora {options.lora}: no such file or folder"
        if lora.is_dir() and not (lora / LORA_WEIGHT_NAME).is_file():
            return f"--lora {options.lora}: no {LORA_WEIGHT_NAME} in this folder"
    base = options.weights or default_base
    kind = (
        "FLUX.1 Fill"
        if "flux" in methods
        else "Kandinsky 2.2 inpainting"
        if "kandinsky" in methods
        else "Stable Diffusion inpainting"
    )
    if meant_as_local(base):  # a folder that is not there: downloading is no fix
        fix = f"pass an existing {kind} pipeline folder"
    else:
        fix = (
            f"download it on a connected machine with {download_hint(base, options.revision, options.variant)} "
            f"or pass a local {kind} pipeline folder with --weights"
        )
    path = Path(base).expanduser()
    if path.is_dir():
        if options.revision is not None:
            return f"--revision {options.revision}: only a hub model has revisions; {base} is a local directory"
        try:
            check_pipeline_folder(path, base, options.variant, methods)
        except InputError as e:
            return str(e)
        return None
    if path.exists():
        return f"{base}: is a file; expected a pipeline folder"
    if meant_as_local(base):
        return f"{base}: no such directory; {fix}"
    return cached_availability(
        base,
        ("unet/config.json", "transformer/config.json", "config.json"),
        _cached_pipeline_problem(base, methods),
        fix,
        options.local_only,
        revision=options.revision,
        variant=options.variant,
    )


def kandinsky_unavailable(options: MethodOptions) -> str | None:
    """Registry check for ``kandinsky``: :func:`sd_unavailable` of its base and, unless the base is
    a combined pipeline folder (``prior_*`` included), the prior :data:`DEFAULT_KANDINSKY_PRIOR` on
    disk (cached) or downloadable."""
    from inpaint.models.hub import cached_availability, download_hint

    problem = sd_unavailable(options, DEFAULT_KANDINSKY_BASE, ("kandinsky",))
    base = Path(options.weights or DEFAULT_KANDINSKY_BASE).expanduser()
    if problem is not None or (base.is_dir() and pipeline_class(base) != KANDINSKY_DECODER):
        return problem
    fix = (
        f"the Kandinsky 2.2 decoder needs this prior: download it on a connected machine with "
        f"{download_hint(DEFAULT_KANDINSKY_PRIOR)} (`inpaint download kandinsky` fetches both) or pass a "
        "combined pipeline folder (KandinskyV22InpaintCombinedPipeline.save_pretrained) with --weights"
    )

    def check(filename: str, config: Path) -> str | None:
        return None

    return cached_availability(
        DEFAULT_KANDINSKY_PRIOR, ("prior/config.json",), check, fix, options.local_only, variant=options.variant
    )


def _cached_pipeline_problem(repo_id: str, methods: Collection[str] = UNET_METHODS):
    """A check for :func:`~inpaint.models.hub.cached_availability`: a cached 9-channel pipeline UNet,
    or a FLUX.1 Fill transformer (more input channels than output: the mask and masked image's),
    whichever ``methods`` run."""
    import json

    def check(filename: str, config: Path) -> str | None:
        if filename == "config.json":
            return f"{repo_id}: a single model, not a diffusers pipeline (no unet/ nor transformer/)"
        try:
            loaded = json.loads(config.read_text(encoding="utf-8"))
            channels = loaded.get("in_channels")
        except (OSError, ValueError, AttributeError):
            loaded, channels = {}, None
        denoiser = filename.split("/")[0]
        if not any(FAMILIES[method].denoiser == denoiser for method in methods):
            other = next(f.method for f in FAMILIES.values() if f.denoiser == denoiser)
            return (
                f"{repo_id}: a pipeline with a {denoiser}/ (run it with --model {other}), not supported; "
                f"supported: {_supported(methods)}"
            )
        if denoiser == "transformer":
            out = loaded.get("out_channels") or channels
            if not isinstance(channels, int) or not isinstance(out, int) or channels <= out:
                return (
                    f"{repo_id}: its transformer takes {channels} input channels, no more than it outputs: "
                    f"not a Fill model (use {DEFAULT_FLUX_BASE})"
                )
            return None
        if channels != INPAINT_CHANNELS:
            return (
                f"{repo_id}: its UNet takes {channels} input channels, not {INPAINT_CHANNELS}: not an inpainting model"
            )
        # The UNet families (sd, sdxl, kandinsky) differ in model_index.json, cached beside it.
        family = local_family(repo_id)
        if family is not None and family.method not in methods:
            try:
                check_family(family, repo_id, methods)
            except InputError as e:
                return str(e)
        return None

    return check
