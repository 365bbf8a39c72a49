"""inpaint: diffusion-based image completion — fine-tune, run and fairly benchmark inpainting models.

The entry points below are importable from the package itself (``from inpaint import load_inpainter``)
and documented, each in use, in docs/api.md. They are resolved on first use, so ``import inpaint``
imports neither torch nor diffusers and ``inpaint --help`` stays instant; the modules that define
them (:mod:`inpaint.io`, :mod:`inpaint.masks`, :mod:`inpaint.models`, :mod:`inpaint.metrics`,
:mod:`inpaint.bench`, :mod:`inpaint.training`) hold the rest.

- images and masks: :func:`read_image`, :func:`read_mask`, :func:`save_image`, :func:`save_mask`,
  :func:`to_tensor`, :func:`mask_to_tensor`, :func:`to_uint8`
- mask presets: :func:`make_mask`, :func:`preset_names`
- completion: :func:`load_inpainter`, :func:`method_names`, :class:`MethodOptions`, :class:`Inpainter`,
  :func:`complete_file`
- training: :func:`train`, :class:`TrainConfig`, :class:`DDPMTask`, :class:`DDPMOptions`, :class:`LoRATask`,
  :class:`LoRAOptions`, :func:`caption_folder`
- evaluation: :func:`run_bench`, :class:`BenchConfig`, :func:`psnr`, :func:`ssim`, :func:`lpips`
- errors: :class:`InputError` (bad input; its message is one line meant for the user)

Convention everywhere: a mask is white (1) where the image is to be filled.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it.
_EXPORTS = {
    "read_image": "inpaint.io",
    "read_mask": "inpaint.io",
    "save_image": "inpaint.io",
    "save_mask": "inpaint.io",
    "to_tensor": "inpaint.io",
    "mask_to_tensor": "inpaint.io",
    "to_uint8": "inpaint.io",
    "make_mask": "inpaint.masks",
    "preset_names": "inpaint.masks",
    "load_inpainter": "inpaint.models",
    "method_names": "inpaint.models",
    "MethodOptions": "inpaint.models.base",
    "Inpainter": "inpaint.models.base",
    "complete_file": "inpaint.completion",
    "train": "inpaint.training.loop",
    "TrainConfig": "inpaint.config",
    "DDPMTask": "inpaint.training.ddpm_task",
    "DDPMOptions": "inpaint.training.ddpm_task",
    "LoRATask": "inpaint.training.lora_task",
    "LoRAOptions": "inpaint.training.lora_task",
    "caption_folder": "inpaint.captions",
    "run_bench": "inpaint.bench",
    "BenchConfig": "inpaint.bench",
    "psnr": "inpaint.metrics",
    "ssim": "inpaint.metrics",
    "lpips": "inpaint.metrics",
    "InputError": "inpaint.errors",
}

__all__ = [
    "__version__",
    "read_image",
    "read_mask",
    "save_image",
    "save_mask",
    "to_tensor",
    "mask_to_tensor",
    "to_uint8",
    "make_mask",
    "preset_names",
    "load_inpainter",
    "method_names",
    "MethodOptions",
    "Inpainter",
    "complete_file",
    "train",
    "TrainConfig",
    "DDPMTask",
    "DDPMOptions",
    "LoRATask",
    "LoRAOptions",
    "caption_folder",
    "run_bench",
    "BenchConfig",
    "psnr",
    "ssim",
    "lpips",
    "InputError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inpaint' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs, which do not run __getattr__
    from inpaint.bench import BenchConfig, run_bench
    from inpaint.captions import caption_folder
    from inpaint.completion import complete_file
    from inpaint.config import TrainConfig
    from inpaint.errors import InputError
    from inpaint.io import mask_to_tensor, read_image, read_mask, save_image, save_mask, to_tensor, to_uint8
    from inpaint.masks import make_mask, preset_names
    from inpaint.metrics import lpips, psnr, ssim
    from inpaint.models import load_inpainter, method_names
    from inpaint.models.base import Inpainter, MethodOptions
    from inpaint.training.ddpm_task import DDPMOptions, DDPMTask
    from inpaint.training.loop import train
    from inpaint.training.lora_task import LoRAOptions, LoRATask
