"""Option aliases shared by the subcommands, so ``--seed`` means the same thing everywhere."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated

import typer

from inpaint.cli.config_file import config_callback
from inpaint.errors import InputError

Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        help="Random seed. Each image's randomness derives from it and the image's name, "
        "so results do not depend on order or batch size.",
    ),
]


def _check_device(value: str) -> str:
    """Refuse a malformed --device at once, for every method (classical ones never build a torch device)."""
    if value is not None and not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value.strip().lower()):
        raise typer.BadParameter(f"{value!r} is not a device name (use auto, cpu, cuda, cuda:N or mps)")
    return value


def finite(param: typer.CallbackParam, value: float | None) -> float | None:
    """Refuse ``nan`` and ``inf`` for a float option at once, naming it (every float option uses this).

    click reads ``nan`` and ``inf`` as floats, and no range check stops them (every comparison with
    nan is false): a run would start and fail later for another reason ("training diverged … lower
    --lr" for ``--hole-weight nan``), blaming the wrong option, with a partial output left behind.
    Raised as an InputError, the message reads like the library's own range checks.
    """
    if value is not None and not math.isfinite(value):
        flag = max(param.opts, key=len) if param.opts else param.name
        raise InputError(f"{flag} {value}: must be a finite number")
    return value


Device = Annotated[
    str,
    typer.Option(
        "--device",
        callback=_check_device,
        help="Where to run: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.",
    ),
]
Overwrite = Annotated[
    bool,
    typer.Option("--overwrite/--no-overwrite", help="Replace outputs that already exist (default: keep them)."),
]
Json = Annotated[
    bool,
    typer.Option("--json/--no-json", help="Print a machine-readable JSON summary on stdout."),
]
Config = Annotated[
    Path | None,
    typer.Option(
        "--config",
        is_eager=True,
        callback=config_callback,
        dir_okay=False,
        help="TOML file whose keys are this command's options; flags given on the command line win.",
    ),
]
InvertMask = Annotated[
    bool,
    typer.Option(
        "--invert-mask/--no-invert-mask",
        help="Masks are white where the image is KEPT (RePaint's convention); default: white = fill.",
    ),
]
ResizeMask = Annotated[
    bool,
    typer.Option(
        "--resize-mask/--no-resize-mask",
        help="Resize masks to their image's size (nearest neighbour) instead of failing.",
    ),
]


OutputDir = Annotated[Path, typer.Option("-o", "--output", help="Output folder.", file_okay=False)]
Revision = Annotated[
    str | None,
    typer.Option(
        "--revision", help="Weights given as a hub id: the branch, tag or commit to use (default: the main branch)."
    ),
]
Variant = Annotated[
    str | None,
    typer.Option(
        "--variant",
        help="Weights variant to fetch and load, e.g. fp16 (the *.fp16.safetensors files: "
        "half the download; the model still runs in the precision it would otherwise).",
    ),
]
