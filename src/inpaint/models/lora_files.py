"""LoRA files of the latent-diffusion methods: find, read, load and save them.

LoRA files are diffusers' own format, ``pytorch_lora_weights.safetensors`` with keys
``unet.<module>.lora.{down,up}.weight`` and the adapter's settings in the safetensors metadata
(``lora_adapter_metadata``), so stock ``load_lora_weights`` (SD's and SDXL's pipelines) reads
what ``train-lora`` writes and we read LoRAs trained elsewhere. We add the training
configuration under ``inpaint_*`` metadata keys. LoRAs are read as safetensors only.

A ``train-lora`` run folder holds at its root the LoRA to use — the EMA one when the run kept an
EMA, with the raw one in ``raw/`` — and ``inpaint_weights`` (``ema`` or ``raw``) in each file's
metadata; folders from before that key hold the raw LoRA at the root and the EMA in ``ema/``.
:func:`lora_file` picks the file in either layout.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint.errors import InputError
from inpaint.models.hub import first_line, looks_like_path, quiet_loading, snapshot

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

#: The file name diffusers reads from a LoRA folder.
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
#: Where a ``train-lora`` run folder keeps its raw LoRA when the root holds the EMA one.
RAW_SUBFOLDER = "raw"
#: Where run folders written before the ``inpaint_weights`` key keep their EMA LoRA (root: raw).
EMA_SUBFOLDER = "ema"
#: The metadata key that says which weights a LoRA file holds: ``ema`` or ``raw``.
WEIGHTS_KEY = "inpaint_weights"


def lora_file(id_or_path: str | os.PathLike[str], *, use_ema: bool = True) -> Path:
    """The LoRA safetensors file of ``id_or_path``: a file, a folder holding
    ``pytorch_lora_weights.safetensors`` (a ``train-lora`` output), or a hub repository.

    For a folder, ``use_ema=True`` picks its EMA LoRA when it has one, else its only LoRA;
    ``use_ema=False`` the raw LoRA (``raw/`` when the root holds the EMA one). A file is itself,
    whatever ``use_ema`` says: it holds one set of weights.
    """
    text = os.fspath(id_or_path)
    path = Path(text).expanduser()
    if not path.exists() and not looks_like_path(text):
        path = snapshot(text, ["*.safetensors", "*.json"])
    if path.is_dir():
        candidate = path / LORA_WEIGHT_NAME
        if not candidate.is_file():
            raise InputError(
                f"{text}: no {LORA_WEIGHT_NAME} in this folder; pass a train-lora output folder "
                "or a LoRA .safetensors file"
            )
        return _run_lora(path, candidate, use_ema, text)
    if not path.exists():
        raise InputError(f"{text}: no such LoRA file or folder")
    if path.suffix != ".safetensors":
        raise InputError(f"{text}: only .safetensors LoRA files are loaded (pickle files can run code)")
    return path


def _run_lora(folder: Path, root_file: Path, use_ema: bool, label: str) -> Path:
    """The EMA or raw LoRA of a folder whose root holds ``root_file`` (see :func:`lora_file`)."""
    marker = read_lora_metadata(root_file).get(WEIGHTS_KEY)
    if marker == "ema":
        if use_ema:
            return root_file
        raw = folder / RAW_SUBFOLDER / LORA_WEIGHT_NAME
        if not raw.is_file():
            raise InputError(
                f"{label}: holds an EMA LoRA and no {RAW_SUBFOLDER}/{LORA_WEIGHT_NAME}; the raw weights "
                "were not kept with it (use its EMA weights)"
            )
        return raw
    earlier_ema = folder / EMA_SUBFOLDER / LORA_WEIGHT_NAME
    if marker is None and use_ema and earlier_ema.is_file():
        return earlier_ema
    return root_file


def read_lora_metadata(path: Path) -> dict[str, str]:
    """The safetensors metadata of a LoRA file; :class:`InputError` if it is not valid safetensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys, metadata = list(f.keys()), f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path}: not a valid safetensors file ({first_line(e)})") from None
    if not any("lora" in key for key in keys):
        raise InputError(f"{path}: holds no LoRA weights (no key contains 'lora')")
    return dict(metadata)


def _lora_parameter_count(unet: UNet2DConditionModel) -> int:
    return sum(1 for name, _ in unet.named_parameters() if ".lora_" in name)


def load_lora(
    pipe: StableDiffusionInpaintPipeline, id_or_path: str | os.PathLike[str], base: str, *, use_ema: bool = True
) -> dict[str, str]:
    """Load a LoRA into ``pipe`` (stock ``load_lora_weights``) and return its metadata.

    ``use_ema`` chooses a run folder's EMA or raw LoRA (:func:`lora_file`). A LoRA made for
    another base (other layer shapes, or no key matching this UNet) is refused with an
    :class:`InputError`, rather than silently leaving the model unchanged.
    """
    from safetensors import SafetensorError

    label = os.fspath(id_or_path)
    path = lora_file(id_or_path, use_ema=use_ema)
    metadata = read_lora_metadata(path)
    before = _lora_parameter_count(pipe.unet)
    with quiet_loading(errors_too=True):  # the failure is reported below, in one line
        try:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name)
        except (ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as e:
            raise InputError(
                f"{label}: does not fit the base {base} ({first_line(e)}); was it trained for another base?"
            ) from None
    if _lora_parameter_count(pipe.unet) == before:
        raise InputError(
            f"{label}: none of its weights match a layer of the base {base}'s UNet; was it trained for another base?"
        )
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
    header = {
        "format": "pt",
        "lora_adapter_metadata": json.dumps(adapter, indent=2, sort_keys=True),
        **{k: str(v) for k, v in metadata.items()},
    }

    def write(weights: dict[str, torch.Tensor], filename: str) -> None:
        with atomic.atomic_path(filename) as tmp:
            save_file(weights, tmp, metadata=header)

    with quiet_loading():
        StableDiffusionInpaintPipeline.save_lora_weights(
            folder, unet_lora_layers=layers, save_function=write, weight_name=LORA_WEIGHT_NAME
        )
    return Path(folder) / LORA_WEIGHT_NAME
