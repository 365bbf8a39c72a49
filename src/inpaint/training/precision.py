"""Mixed precision of a training run: what ``--mixed-precision`` means on each device.

``auto`` is the study's AMP on CUDA (fp16 autocast with a grad scaler), bf16 autocast on a CPU
that computes in bf16 natively, and fp32 elsewhere; in every case the trainable weights, the
optimiser state and the EMA stay fp32 (accelerate's autocast only changes what the forward and
backward passes compute in). docs/performance.md, "bf16 on the CPU", has the figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inpaint.config import TrainConfig
from inpaint.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def mixed_precision_for(config: TrainConfig, device: torch.device) -> str:
    """``auto`` means fp16 with a grad scaler on CUDA (the study's AMP), bf16 autocast on a CPU that
    computes in bf16 natively (:func:`inpaint.devices.native_bf16_cpu`; said once on the log), full
    precision elsewhere. Trainable weights, optimiser state and EMA stay fp32 in every case.

    fp16 is refused on the CPU: accelerate gives it neither autocast nor a grad scaler there, so
    the run would silently train in fp32 under an fp16 label.
    """
    import torch

    from inpaint.devices import announce_once, auto_cpu_bf16, check_cpu_half

    precision = config.mixed_precision
    if precision == "auto":
        if device.type == "cuda":
            return "fp16"
        native = auto_cpu_bf16() if device.type == "cpu" else None
        if native is not None:
            announce_once(
                "mixed-precision",
                f"--mixed-precision auto: bf16 autocast on this CPU (it has {native}); --mixed-precision no for fp32",
            )
            return "bf16"
        return "no"
    if device.type == "cpu" and precision == "fp16":
        raise InputError(
            "--mixed-precision fp16: not available on the CPU (accelerate has no fp16 autocast or grad "
            "scaler there: the run would train in fp32); use bf16 or no"
        )
    if device.type == "cpu" and precision == "bf16":
        check_cpu_half("--mixed-precision bf16", torch.bfloat16)
    return precision


def forget_other_precision(mixed_precision: str) -> None:
    """Let a run in this process use another mixed precision than an earlier one.

    accelerate keeps one mixed-precision setting per process (``AcceleratorState``, shared by all
    its instances) and refuses another with "restart your runtime": a second :func:`train` in one
    process (a notebook, the tests) at another precision would fail. That state holds nothing a
    finished run still needs; the process group (``PartialState``) is kept.
    """
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") != mixed_precision:
        AcceleratorState._reset_state()
