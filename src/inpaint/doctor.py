"""``inpaint doctor``: what this machine can run, without touching the network.

Reports package versions (from installed metadata, nothing imported but torch), the devices torch
sees, which known hub models sit in the local Hugging Face cache (``try_to_load_from_cache``: a
file lookup, never a request), which metric weight files are found where LPIPS and FID look for
them (:mod:`inpaint.metrics.weights`), which completion methods can run, and how to get the rest.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

#: Distribution names reported, in order (display name -> distribution).
PACKAGES: dict[str, str] = {
    "torch": "torch",
    "torchvision": "torchvision",
    "diffusers": "diffusers",
    "transformers": "transformers",
    "peft": "peft",
    "accelerate": "accelerate",
    "huggingface-hub": "huggingface-hub",
    "lpips": "lpips",
    "pytorch-fid": "pytorch-fid",
    "scikit-image": "scikit-image",
    "opencv (cv2)": "opencv-python-headless",
    "numpy": "numpy",
    "pillow": "pillow",
    "scipy": "scipy",
    "matplotlib": "matplotlib",
}
#: Other distributions that provide the same import (cv2 comes in four flavours).
_ALTERNATIVES = {"opencv-python-headless": ("opencv-python", "opencv-contrib-python", "opencv-contrib-python-headless")}


@dataclass(frozen=True)
class KnownModel:
    """A hub model ``inpaint`` uses; ``config`` and ``weights`` are files that show it is cached.

    Weights count as safetensors or as pickle ``.bin`` files: the loaders convert the latter once
    through torch's weights-only unpickler (:mod:`inpaint.models.weight_files`).
    """

    repo_id: str
    purpose: str
    config: str
    weights: tuple[str, ...]


KNOWN_MODELS = (
    KnownModel(
        "google/ddpm-celebahq-256",
        "ddpm/repaint base (train-ddpm --base, repaint weights)",
        "config.json",
        ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    ),
    KnownModel(
        "stable-diffusion-v1-5/stable-diffusion-inpainting",
        "sd: Stable Diffusion 1.5 Inpainting",
        "model_index.json",
        (
            "unet/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "unet/diffusion_pytorch_model.bin",
        ),
    ),
    KnownModel(
        "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
        "sdxl: Stable Diffusion XL Inpainting 0.1",
        "model_index.json",
        (
            "unet/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "unet/diffusion_pytorch_model.bin",
        ),
    ),
    KnownModel(
        "black-forest-labs/FLUX.1-Fill-dev",
        "flux: FLUX.1 Fill dev (gated on the hub: accept its licence, then `hf auth login`)",
        "model_index.json",
        (
            "transformer/diffusion_pytorch_model.safetensors.index.json",
            "transformer/diffusion_pytorch_model.safetensors",
            "transformer/diffusion_pytorch_model.bin",
        ),
    ),
    KnownModel(
        "kandinsky-community/kandinsky-2-2-decoder-inpaint",
        "kandinsky: Kandinsky 2.2 Inpainting's decoder (with kandinsky-community/kandinsky-2-2-prior)",
        "model_index.json",
        (
            "unet/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "unet/diffusion_pytorch_model.bin",
        ),
    ),
    KnownModel(
        "kandinsky-community/kandinsky-2-2-prior",
        "kandinsky: Kandinsky 2.2's prior (prompt -> CLIP image embedding)",
        "model_index.json",
        (
            "prior/diffusion_pytorch_model.safetensors",
            "prior/diffusion_pytorch_model.fp16.safetensors",
            "prior/diffusion_pytorch_model.bin",
        ),
    ),
    KnownModel(
        "Salesforce/blip-image-captioning-base",
        "caption: BLIP captions",
        "config.json",
        ("model.safetensors", "pytorch_model.bin"),
    ),
)


@dataclass
class DoctorReport:
    """Everything ``inpaint doctor`` prints; ``to_dict`` is its ``--json`` form."""

    python: str
    platform: str
    packages: dict[str, str | None]
    devices: list[dict[str, Any]]
    hub_cache: str
    offline: bool
    models: list[dict[str, Any]] = field(default_factory=list)
    metric_weights: list[dict[str, Any]] = field(default_factory=list)
    methods: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed versions of distributions ``names`` (None when absent), read from metadata only."""
    result: dict[str, str | None] = {}
    for name in names:
        result[name] = None
        for candidate in (name, *_ALTERNATIVES.get(name, ())):
            try:
                result[name] = importlib.metadata.version(candidate)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return result


def devices() -> list[dict[str, Any]]:
    """CUDA GPUs (name, memory), Apple MPS, and the CPU, as torch sees them."""
    import torch

    found: list[dict[str, Any]] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            found.append(
                {"device": f"cuda:{index}", "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
            )
    found.append({"device": "mps", "available": bool(torch.backends.mps.is_available())})
    found.append(
        {
            "device": "cpu",
            "name": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda_build": torch.version.cuda,
            **cpu_precision(),
        }
    )
    return found


def cpu_precision() -> dict[str, Any]:
    """The CPU's physical cores, and what ``auto`` picks there (:func:`inpaint.devices.auto_cpu_bf16`):
    ``auto_dtype`` (``bf16`` or ``fp32``), ``auto_mixed_precision`` (``bf16`` or ``no``) and
    ``native_bf16``, the instruction set that makes bf16 fast here (``avx512_bf16``, ``amx_bf16``;
    ``None`` without)."""
    from inpaint.devices import auto_cpu_bf16, cpu_capabilities, native_bf16_cpu

    auto = auto_cpu_bf16()
    # torch's default thread count is the physical cores: a lower torch_threads means a setting
    # (OMP_NUM_THREADS) holds it back.
    return {
        "physical_cores": cpu_capabilities().get("num_physical_cores"),
        "native_bf16": native_bf16_cpu(),
        "auto_dtype": "bf16" if auto else "fp32",
        "auto_mixed_precision": "bf16" if auto else "no",
    }


def cached_models() -> list[dict[str, Any]]:
    """Which :data:`KNOWN_MODELS` the local Hugging Face cache holds (config and weights)."""
    from huggingface_hub import constants, try_to_load_from_cache

    from inpaint.download import name_of

    def cached(repo_id: str, filename: str) -> str | None:
        path = try_to_load_from_cache(repo_id, filename)
        return path if isinstance(path, str) else None

    rows = []
    for model in KNOWN_MODELS:
        config = cached(model.repo_id, model.config)
        weights = next((p for p in (cached(model.repo_id, f) for f in model.weights) if p), None)
        status = "cached" if config and weights else ("incomplete" if config or weights else "missing")
        rows.append(
            {
                "repo_id": model.repo_id,
                "purpose": model.purpose,
                "status": status,
                "path": os.path.dirname(config) if config else None,
                "get": None
                if status == "cached"
                else f"run `inpaint download {name_of(model.repo_id)}` (offline: run it on a machine with network "
                f"access, then copy that machine's Hugging Face cache to {constants.HF_HUB_CACHE})",
            }
        )
    return rows


def metric_weights() -> list[dict[str, Any]]:
    """Where each LPIPS/FID backbone file is found, or the one-line instructions to provide it."""
    from inpaint.download import ITEMS
    from inpaint.download import weight_file as file_of
    from inpaint.metrics import FID_INCEPTION, LPIPS_ALEX, LPIPS_VGG, MetricWeightsMissing, resolve_weights
    from inpaint.metrics.weights import hub_cache_path

    names = {file_of(item).filename: item.name for item in ITEMS if item.kind == "file"}
    rows = []
    for weight_file in (LPIPS_ALEX, LPIPS_VGG, FID_INCEPTION):
        row = {
            "file": weight_file.filename,
            "purpose": weight_file.purpose,
            "found": None,
            "default_location": str(hub_cache_path(weight_file)),
            "url": weight_file.url,
            "get": None,
        }
        try:
            row["found"] = str(resolve_weights(weight_file))
        except MetricWeightsMissing as e:
            row["get"] = f"run `inpaint download {names[weight_file.filename]}`, or: {e}"
        rows.append(row)
    return rows


def methods() -> list[dict[str, Any]]:
    """The registered completion methods and whether they can run here with local files only."""
    from inpaint import models
    from inpaint.models.base import MethodOptions

    rows = []
    for name in models.method_names():
        info = models.get_method(name)
        reason = info.unavailable(MethodOptions(local_only=True))
        rows.append({"method": name, "available": reason is None, "reason": reason, "summary": info.summary})
    return rows


def diagnose() -> DoctorReport:
    """Collect the whole report. Never uses the network."""
    from huggingface_hub import constants

    return DoctorReport(
        python=platform.python_version(),
        platform=platform.platform(),
        packages={label: package_versions([dist])[dist] for label, dist in PACKAGES.items()},
        devices=devices(),
        hub_cache=str(constants.HF_HUB_CACHE),
        offline=bool(constants.HF_HUB_OFFLINE),
        models=cached_models(),
        metric_weights=metric_weights(),
        methods=methods(),
    )
