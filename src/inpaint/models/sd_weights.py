"""Stable Diffusion inpainting weights: find and load a base pipeline, load and save LoRA files.

The study's Method 2 (shared/METHOD.md) starts from SD 1.5 Inpainting
(``stable-diffusion-v1-5/stable-diffusion-inpainting``): a diffusers pipeline folder
(``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``)
whose UNet takes 9 channels, ``concat(noisy latent 4, mask 1, masked-image latent 4)``.

LoRA files are diffusers' own format, ``pytorch_lora_weights.safetensors`` with keys
``unet.<module>.lora.{down,up}.weight`` and the adapter's settings in the safetensors metadata
(``lora_adapter_metadata``), so stock ``StableDiffusionInpaintPipeline.load_lora_weights`` reads
what ``train-lora`` writes and we read LoRAs trained elsewhere. We add the training
configuration under ``inpaint_*`` metadata keys. Only safetensors are ever read.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint.errors import InputError
from inpaint.models.hub import looks_like_path, quiet_loading, resolve, snapshot

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

#: The study's base (SD 1.5 Inpainting, Rombach et al. 2022; the hub id it has today).
DEFAULT_SD_BASE = "stable-diffusion-v1-5/stable-diffusion-inpainting"
#: The file name diffusers reads from a LoRA folder.
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
#: Input channels of an inpainting UNet: noisy latent (4), mask (1), masked-image latent (4).
INPAINT_CHANNELS = 9

# What a pipeline needs, and nothing else: no pickles, no fp16 variants, no single-file checkpoints.
_PIPELINE_FILES = (
    "model_index.json", "*/config.json", "scheduler/*.json", "tokenizer/*", "feature_extractor/*.json",
    "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/model.safetensors", "*/*.safetensors.index.json",
    "unet/diffusion_pytorch_model-*-of-*.safetensors", "text_encoder/model-*-of-*.safetensors",
)
_WEIGHTS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}
_LAYOUT = "expected a diffusers pipeline folder: model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/"


# ---- the base pipeline -----------------------------------------------------------------------


def check_pipeline_folder(root: Path, label: str) -> None:
    """Raise :class:`InputError` unless ``root`` holds an SD inpainting pipeline with safetensors."""
    if not (root / "model_index.json").is_file():
        if (root / LORA_WEIGHT_NAME).is_file():
            raise InputError(f"{label}: is a LoRA, not a base model; pass it with --lora (and the base with --weights)")
        raise InputError(f"{label}: no model_index.json; {_LAYOUT}")
    config_path = root / "unet" / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{label}: cannot read unet/config.json ({e}); {_LAYOUT}") from None
    channels = config.get("in_channels") if isinstance(config, dict) else None
    if channels != INPAINT_CHANNELS:
        raise InputError(
            f"{label}: its UNet takes {channels} input channels, not {INPAINT_CHANNELS}; it is not an inpainting "
            f"model (use an inpainting base such as {DEFAULT_SD_BASE})"
        )
    for component, stem in _WEIGHTS.items():
        folder = root / component
        if not any(folder.glob(f"{stem}*.safetensors")):
            pickles = list(folder.glob("*.bin"))
            why = ("has only pickle weights, which we never load because unpickling can run code; convert them with "
                   "`from_pretrained(dir).save_pretrained(dir)` on a machine you trust") if pickles else \
                "has no safetensors weights"
            raise InputError(f"{label}: {component}/ {why}")


def sd_model_dir(id_or_dir: str | os.PathLike[str]) -> Path:
    """The checked local folder of SD inpainting base ``id_or_dir`` (a directory or a hub id)."""
    label = os.fspath(id_or_dir)
    root = resolve(id_or_dir, _PIPELINE_FILES)
    check_pipeline_folder(root, label)
    return root


def load_pipeline(id_or_dir: str | os.PathLike[str] = DEFAULT_SD_BASE, *,
                  dtype: torch.dtype | None = None) -> StableDiffusionInpaintPipeline:
    """Load a ``StableDiffusionInpaintPipeline`` (no safety checker, progress bars off; CPU)."""
    from diffusers import StableDiffusionInpaintPipeline
    from safetensors import SafetensorError

    root = sd_model_dir(id_or_dir)
    with quiet_loading(), warnings.catch_warnings():
        # Newer diffusers call it `dtype`; `torch_dtype` works in every version we support.
        warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
        try:
            pipe = StableDiffusionInpaintPipeline.from_pretrained(
                root, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                use_safetensors=True, torch_dtype=dtype,
            )
        except (OSError, ValueError, RuntimeError, TypeError, SafetensorError) as e:
            raise InputError(f"{os.fspath(id_or_dir)}: cannot load the pipeline ({_first_line(e)})") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---- LoRA files ------------------------------------------------------------------------------


def lora_file(id_or_path: str | os.PathLike[str]) -> Path:
    """The LoRA safetensors file of ``id_or_path``: a file, a folder holding
    ``pytorch_lora_weights.safetensors`` (a ``train-lora`` output), or a hub repository."""
    text = os.fspath(id_or_path)
    path = Path(text).expanduser()
    if not path.exists() and not looks_like_path(text):
        path = snapshot(text, ["*.safetensors", "*.json"])
    if path.is_dir():
        candidate = path / LORA_WEIGHT_NAME
        if not candidate.is_file():
            raise InputError(f"{text}: no {LORA_WEIGHT_NAME} in this folder; pass a train-lora output folder "
                             "or a LoRA .safetensors file")
        return candidate
    if not path.exists():
        raise InputError(f"{text}: no such LoRA file or folder")
    if path.suffix != ".safetensors":
        raise InputError(f"{text}: only .safetensors LoRA files are loaded (pickle files can run code)")
    return path


def read_lora_metadata(path: Path) -> dict[str, str]:
    """The safetensors metadata of a LoRA file; :class:`InputError` if it is not valid safetensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys, metadata = list(f.keys()), f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path}: not a valid safetensors file ({_first_line(e)})") from None
    if not any("lora" in key for key in keys):
        raise InputError(f"{path}: holds no LoRA weights (no key contains 'lora')")
    return dict(metadata)


def _lora_parameter_count(unet: UNet2DConditionModel) -> int:
    return sum(1 for name, _ in unet.named_parameters() if ".lora_" in name)


def load_lora(pipe: StableDiffusionInpaintPipeline, id_or_path: str | os.PathLike[str], base: str) -> dict[str, str]:
    """Load a LoRA into ``pipe`` (stock ``load_lora_weights``) and return its metadata.

    A LoRA made for another base (other layer shapes, or no key matching this UNet) is refused
    with an :class:`InputError`, rather than silently leaving the model unchanged.
    """
    from safetensors import SafetensorError

    label = os.fspath(id_or_path)
    path = lora_file(id_or_path)
    metadata = read_lora_metadata(path)
    before = _lora_parameter_count(pipe.unet)
    with quiet_loading(errors_too=True):  # the failure is reported below, in one line
        try:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name)
        except (ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as e:
            raise InputError(
                f"{label}: does not fit the base {base} ({_first_line(e)}); was it trained for another base?"
            ) from None
    if _lora_parameter_count(pipe.unet) == before:
        raise InputError(f"{label}: none of its weights match a layer of the base {base}'s UNet; "
                         "was it trained for another base?")
    # Adapters are added in training mode: with a dropout in their config, outputs would be random.
    pipe.unet.eval()
    return metadata


def adapter_metadata(unet: UNet2DConditionModel, adapter: str = "default") -> dict[str, Any]:
    """The adapter settings diffusers stores beside LoRA weights (``lora_adapter_metadata``).

    Dropout is written as 0: it only matters in training, and a loader that rebuilt the dropout
    layers would otherwise leave them active (new modules start in training mode) and make
    inference random.
    """
    config = unet.peft_config[adapter]
    return {
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": 0.0,
        "target_modules": sorted(config.target_modules),
        "bias": config.bias,
        "use_dora": bool(config.use_dora),
        "use_rslora": bool(config.use_rslora),
    }


def save_lora(unet: UNet2DConditionModel, folder: Path, metadata: Mapping[str, str]) -> Path:
    """Write the UNet's LoRA as ``folder/pytorch_lora_weights.safetensors``, atomically.

    The weights go through diffusers' own ``convert_state_dict_to_diffusers`` and
    ``save_lora_weights``, so stock ``load_lora_weights`` reads them; ``metadata`` (strings) is
    stored beside diffusers' adapter settings.
    """
    from diffusers import StableDiffusionInpaintPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from inpaint import atomic

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    layers = {k: v.detach().float().cpu().contiguous() for k, v in layers.items()}
    adapter = {f"unet.{k}": v for k, v in adapter_metadata(unet).items()}
    header = {"format": "pt", "lora_adapter_metadata": json.dumps(adapter, indent=2, sort_keys=True),
              **{k: str(v) for k, v in metadata.items()}}

    def write(weights: dict[str, torch.Tensor], filename: str) -> None:
        with atomic.atomic_path(filename) as tmp:
            save_file(weights, tmp, metadata=header)

    with quiet_loading():
        StableDiffusionInpaintPipeline.save_lora_weights(folder, unet_lora_layers=layers, save_function=write,
                                                         weight_name=LORA_WEIGHT_NAME)
    return Path(folder) / LORA_WEIGHT_NAME


def _first_line(error: BaseException, limit: int = 240) -> str:
    """The gist of an error in one line: its first line, and the next one when the first only
    introduces a list ("Error(s) in loading state_dict for …:"), cut to ``limit`` characters."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[0] if not (lines[0].endswith(":") and len(lines) > 1) else f"{lines[0]} {lines[1]}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
