"""Choosing the torch device and dtype, and the generic speed levers applied to a model there.

``auto`` picks CUDA, then Apple's MPS, then the CPU. The levers every diffusion method shares
(docs/performance.md) are the channels-last memory format and ``torch.compile``; their checks
and failures are one-line errors like every other option's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from inpaint.errors import InpaintError, InputError

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
    if spec == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        # Pre-Ampere GPUs emulate bf16 slowly or not at all: say so now, not deep in a kernel.
        raise InputError(f"--dtype bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use fp16")
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


# ---- levers: channels-last memory format and torch.compile -------------------------------------


def check_compile(device: torch.device) -> None:
    """Raise :class:`InputError` unless ``torch.compile`` can build kernels for ``device``.

    Inductor (the default backend) compiles C++ on the CPU and Triton kernels on CUDA; without
    them the failure would come only at the first call, deep in a traceback.
    """
    if device.type == "cpu":
        from torch._inductor import cpp_builder

        try:
            cpp_builder.get_cpp_compiler()
        except Exception:  # noqa: BLE001 - any failure here means no usable compiler
            raise InputError("--compile: torch.compile needs a C++ compiler on the CPU and found none (install "
                             "g++ or clang++, or run without --compile)") from None
    elif device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise InputError("--compile: torch.compile needs Triton on CUDA (pip install triton), or run without "
                             "--compile")


def speed_up(module: torch.nn.Module, device: torch.device, *, channels_last: bool = False,
             compile: bool = False) -> None:
    """Apply the generic levers, in place, to a model already on ``device``.

    ``channels_last`` stores 4-D weights NHWC (convolutions read activations in that layout too;
    inputs need no change). ``compile`` wraps the module's call in ``torch.compile`` (default
    mode: the first call, and each new input shape, pays the compilation); the module keeps its
    type, config and hooks.
    """
    import torch

    if channels_last:
        module.to(memory_format=torch.channels_last)
    if compile:
        check_compile(device)
        module.compile()


def is_compile_error(error: BaseException) -> bool:
    """Whether ``error`` comes from torch.compile's machinery (dynamo, inductor), not the model."""
    return type(error).__module__.startswith(("torch._dynamo", "torch._inductor"))


@contextlib.contextmanager
def compile_errors(enabled: bool) -> Iterator[None]:
    """Turn a torch.compile failure (at the first call, when it compiles) into one line (exit 1)."""
    try:
        yield
    except Exception as e:
        if not (enabled and is_compile_error(e)):
            raise
        cause = getattr(e, "inner_exception", None) or e  # dynamo wraps the backend's own error
        lines = [line for line in str(cause).strip().splitlines() if line.strip()]
        why = f"{type(cause).__name__}: {lines[0][:200]}" if lines else type(cause).__name__
        raise InpaintError(f"--compile: torch.compile failed ({why}); run without --compile") from None
