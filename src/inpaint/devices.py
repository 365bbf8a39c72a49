"""Choosing the torch device and dtype, and the generic speed levers applied to a model there.

``auto`` picks CUDA, then Apple's MPS, then the CPU. ``--dtype auto`` is fp16 on CUDA, bf16 on a
CPU that computes in bf16 natively (x86-64 with AVX512-BF16 or AMX: the diffusion UNets ran
1.7-2x faster there, with images within a few 8-bit levels of fp32's; docs/benchmarks.md, "CPU
precision") and fp32 elsewhere. Half precision on the CPU needs torch's oneDNN kernels for it;
without them torch falls back to reference kernels that ran convolutions 65x (bf16) to 400x
(fp16) slower than fp32 on our CPU, so it is refused in one line instead. The levers every
diffusion method shares (docs/performance.md) are the channels-last memory format and
``torch.compile``; their checks and failures are one-line errors like every other option's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from inpaint.errors import InpaintError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

#: x86-64 instruction sets that compute in bf16 natively (bf16 dot products in hardware), best
#: first. Arm CPUs with BF16 (and Apple silicon, whose default device is MPS) keep fp32 under
#: ``auto``: not measured here.
NATIVE_BF16 = ("amx_bf16", "avx512_bf16")
#: What :func:`resolve_dtype` has announced in this process (it says so once, not per model).
_announced: set[str] = set()


def cpu_capabilities() -> Mapping[str, Any]:
    """The CPU's instruction sets as torch's cpuinfo sees them (Linux, macOS and Windows alike):
    ``{"avx512_bf16": True, "num_physical_cores": 8, ...}``; empty when torch cannot say."""
    import torch

    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        try:
            return get()
        except Exception:  # noqa: BLE001 - a probe that fails means "unknown", never an error
            return {}
    # Older torch: the private probes its compiler uses (AMX tiles come with AMX-BF16).
    found: dict[str, Any] = {}
    for key, probe in (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_bf16", "_is_amx_tile_supported")):
        try:
            found[key] = bool(getattr(torch.cpu, probe)())
        except Exception:  # noqa: BLE001
            found[key] = False
    return found


def native_bf16_cpu() -> str | None:
    """The instruction set this CPU computes bf16 with natively (an entry of :data:`NATIVE_BF16`),
    or ``None``: then ``--dtype auto`` and ``--mixed-precision auto`` keep fp32 on the CPU."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    capabilities = cpu_capabilities()
    return next((name for name in NATIVE_BF16 if capabilities.get(name)), None)


def cpu_half_kernels(dtype: torch.dtype) -> bool:
    """Whether torch has oneDNN kernels for ``dtype`` (bf16 or fp16) on this CPU.

    bf16 needs AVX-512 (or AVX2-VNNI-2) on x86, BF16 on Arm; fp16 needs AVX512-FP16 or AMX-FP16.
    Without them torch runs reference kernels, 65x (bf16) to 400x (fp16) slower than fp32.
    """
    import torch

    probe = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}[dtype]
    try:
        return bool(getattr(torch.ops.mkldnn, probe)())
    except Exception:  # noqa: BLE001 - no oneDNN in this build, or no such probe: no fast kernels
        return False


def auto_cpu_bf16() -> str | None:
    """Whether ``auto`` picks bf16 on this CPU: the native instruction set it uses (``avx512_bf16``,
    ``amx_bf16``) when the CPU has one and torch has oneDNN's bf16 kernels, else ``None`` (fp32)."""
    import torch

    native = native_bf16_cpu()
    return native if native is not None and cpu_half_kernels(torch.bfloat16) else None


def announce_once(key: str, message: str) -> None:
    """Log ``message`` at info level the first time ``key`` comes up in this process."""
    if key not in _announced:
        _announced.add(key)
        log.info(message)


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """``--dtype``: ``auto`` is fp16 on CUDA, bf16 on a CPU with native bf16 (said once, on the
    ``inpaint`` logger), fp32 elsewhere; fp16/bf16 on the CPU only where torch has kernels for them."""
    import torch

    spec = spec.strip().lower()
    if spec == "auto":
        if device.type == "cuda":
            return torch.float16
        native = auto_cpu_bf16() if device.type == "cpu" else None
        if native is not None:
            announce_once(
                "dtype",
                f"--dtype auto: bf16 on this CPU (it has {native}): about twice as fast as "
                "fp32; --dtype fp32 for full precision",
            )
            return torch.bfloat16
        return torch.float32
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if spec not in dtypes:
        raise InputError(f"--dtype {spec!r}: choose from auto, fp32, fp16, bf16")
    if dtypes[spec] != torch.float32 and device.type == "cpu":
        check_cpu_half(f"--dtype {spec}", dtypes[spec])
    if spec == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        # Pre-Ampere GPUs emulate bf16 slowly or not at all: say so now, not deep in a kernel.
        raise InputError(f"--dtype bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use fp16")
    return dtypes[spec]


def check_cpu_half(flag: str, dtype: torch.dtype) -> None:
    """Raise :class:`InputError` (naming ``flag``) unless torch has fast kernels for ``dtype`` on this CPU."""
    import torch

    if cpu_half_kernels(dtype):
        if dtype == torch.bfloat16 and native_bf16_cpu() is None:
            announce_once(
                "emulated-bf16",
                f"{flag}: this CPU has no native bf16 (AVX512-BF16 or AMX); oneDNN "
                "emulates it, which may be no faster than fp32",
            )
        return
    if dtype == torch.float16:
        fix = "use bf16" if cpu_half_kernels(torch.bfloat16) else "use fp32"
        raise InputError(
            f"{flag}: this CPU has no fp16 arithmetic (AVX512-FP16 or AMX-FP16), and torch's fallback "
            f"runs fp16 convolutions hundreds of times slower than fp32; {fix}"
        )
    raise InputError(
        f"{flag}: torch has no fast bf16 kernels for this CPU (oneDNN needs AVX-512 on x86, BF16 on "
        "Arm), and its fallback runs bf16 convolutions about 65 times slower than fp32; use fp32"
    )


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
            raise InputError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
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
            raise InputError(
                "--compile: torch.compile needs a C++ compiler on the CPU and found none (install "
                "g++ or clang++, or run without --compile)"
            ) from None
    elif device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise InputError(
                "--compile: torch.compile needs Triton on CUDA (pip install triton), or run without --compile"
            )


def speed_up(
    module: torch.nn.Module, device: torch.device, *, channels_last: bool = False, compile: bool = False
) -> None:
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
