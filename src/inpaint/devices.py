"""Choosing the torch device: ``auto`` picks CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inpaint.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """``--dtype``: ``auto`` is fp16 on CUDA and fp32 elsewhere; fp16/bf16 only on a GPU."""
    import torch

    spec = spec.strip().lower()
    if spec == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if spec not in dtypes:
        raise InputError(f"--dtype {spec!r}: choose from auto, fp32, fp16, bf16")
    if dtypes[spec] != torch.float32 and device.type == "cpu":
        raise InputError(f"--dtype {spec}: half precision needs a GPU here; use --dtype fp32 on the CPU")
    return dtypes[spec]


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` into an available ``torch.device``.

    Raises :class:`InputError` when the asked-for device does not exist on this machine.
    """
    import torch

    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise InputError(f"--device {spec!r}: not a device name (use auto, cpu, cuda, cuda:N or mps)") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {spec}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {spec}: Apple MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {spec}: unsupported device type {device.type!r}")
    return device
