"""What a benchmark run is asked to do: :class:`BenchConfig`, and parsing of per-method settings.

Per-method settings arrive as strings (command line or TOML lists) and map onto the fields of
:class:`~inpaint.models.base.MethodOptions`:

- ``NAME=PATH`` (``--weights``): the weights of method NAME;
- ``NAME.KEY=VALUE`` (``--model-option``): field KEY of method NAME's options, converted to the
  field's type (``ddpm.steps=50``, ``repaint.sampler=fast``); ``KEY=VALUE`` without a method
  name applies to every method of the run.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from inpaint.errors import InputError

LpipsNet = Literal["alex", "vgg"]

#: MethodOptions fields that a benchmark does not let the user set per method.
_RESERVED = {"local_only"}


@dataclass
class BenchConfig:
    """A benchmark run. Paths may be relative; ``masks`` is a folder, a mask preset name or a
    comma-separated mixture of presets.

    ``method_options`` maps a method name to MethodOptions field overrides (see
    :func:`parse_method_settings`); ``device`` and ``dtype`` apply to every method unless
    overridden there. ``raw`` scores the methods' raw outputs instead of composites (known pixels
    pasted back from the input). ``lpips``/``fid`` switch those metrics off altogether (FID off
    also means no KID); ``strict`` turns missing metric weights into an error.
    """

    models: list[str]
    data: Path
    masks: str
    output: Path
    seed: int = 0
    eval_size: int = 256
    raw: bool = False
    device: str = "auto"
    dtype: str = "auto"
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    lpips: bool = True
    lpips_net: LpipsNet = "alex"
    lpips_weights: str | None = None
    fid: bool = True
    fid_weights: str | None = None
    strict: bool = False
    seam_width: int = 8
    batch_size: int = 1
    score_batch_size: int = 16
    worst_k: int = 8
    grid_images: int = 8
    kid_subsets: int = 100
    #: None: :func:`inpaint.metrics.features.kid_subset_size` (1000, or half the images below 2000).
    kid_subset_size: int | None = None
    n_boot: int = 1000
    overwrite: bool = False
    invert_mask: bool = False
    resize_mask: bool = False
    #: Values the command line filled in by the project layout (:mod:`inpaint.project`), one line
    #: each: recorded in results.json so a report says what it was not told.
    implicit_choices: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data, self.output = Path(self.data), Path(self.output)
        self.models = unique_models(self.models)
        checks = [
            (self.eval_size >= 16, f"--eval-size {self.eval_size}: must be at least 16 pixels"),
            (self.seam_width >= 1, f"--seam-width {self.seam_width}: must be at least 1 pixel"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size}: must be at least 1"),
            (self.score_batch_size >= 1, f"score batch size {self.score_batch_size}: must be at least 1"),
            (self.worst_k >= 0, f"--worst-k {self.worst_k}: must not be negative"),
            (self.grid_images >= 0, f"--grid-images {self.grid_images}: must not be negative"),
            (self.kid_subsets >= 1, f"--kid-subsets {self.kid_subsets}: must be at least 1"),
            (
                self.kid_subset_size is None or self.kid_subset_size >= 2,
                f"--kid-subset-size {self.kid_subset_size}: must be at least 2",
            ),
            (self.lpips_net in ("alex", "vgg"), f"--lpips-net {self.lpips_net!r}: choose alex or vgg"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        unknown = sorted(set(self.method_options) - set(self.models))
        if unknown:
            raise InputError(
                f"settings given for {', '.join(unknown)}, which is not among --models ({', '.join(self.models)})"
            )
        self.check_method_options()

    def check_method_options(self) -> None:
        """InputError for a per-method value out of range (Stable Diffusion's ``strength`` below 1).

        The command line checks these as it parses them; settings given from Python are checked
        here (on construction, and again by ``run_bench`` in case they were changed since), so
        that no path lets a method start from the ground truth under the hole.
        """
        for model, settings in self.method_options.items():
            for key, value in settings.items():
                _check_range(key, value, f"method_options[{model!r}]")

    @property
    def scoring(self) -> Literal["composite", "raw"]:
        return "raw" if self.raw else "composite"

    def options_for(self, model: str):
        """The :class:`~inpaint.models.base.MethodOptions` that method ``model`` is built with."""
        from inpaint.models.base import MethodOptions

        values = {"device": self.device, "dtype": self.dtype, **self.method_options.get(model, {})}
        return MethodOptions(**values)


def unique_models(names: Sequence[str]) -> list[str]:
    """Split comma-separated names, drop blanks and repeats (first occurrence wins), check the registry."""
    from inpaint import models

    result: list[str] = []
    for item in names:
        for name in item.split(","):
            name = name.strip()
            if name and name not in result:
                result.append(name)
    if not result:
        raise InputError(f"--models: name at least one method ({', '.join(models.method_names())})")
    for name in result:
        models.get_method(name)  # InputError listing the choices
    return result


def _field_types() -> dict[str, Any]:
    from inpaint.models.base import MethodOptions

    hints = typing.get_type_hints(MethodOptions)
    return {f.name: hints[f.name] for f in dataclasses.fields(MethodOptions) if f.name not in _RESERVED}


def _convert(key: str, text: str, hint: Any, label: str) -> Any:
    """Turn ``text`` into the type of MethodOptions field ``key`` (``none`` clears an optional one)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if optional and text.strip().lower() in ("none", "null", ""):
        return None
    try:
        if base is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        if base in (int, float):
            return base(text)
    except ValueError:
        raise InputError(f"{label}: {key} expects {base.__name__}, got {text!r}") from None
    return text


def parse_method_settings(
    weights: Sequence[str], options: Sequence[str], models: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """``--weights NAME=PATH`` and ``--model-option [NAME.]KEY=VALUE`` -> {method: {field: value}}.

    Raises :class:`InputError` for a malformed item, a method not in ``models`` or an unknown key.
    """
    types = _field_types()
    result: dict[str, dict[str, Any]] = {}

    def put(method: str | None, key: str, value: Any, label: str) -> None:
        targets = list(models) if method is None else [method]
        if method is not None and method not in models:
            raise InputError(f"{label}: {method!r} is not among --models ({', '.join(models)})")
        for target in targets:
            result.setdefault(target, {})[key] = value

    for item in weights:
        label = f"--weights {item}"
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InputError(f"{label}: expected NAME=PATH, e.g. ddpm=runs/ddpm")
        put(name.strip(), "weights", path.strip(), label)
    for item in options:
        label = f"--model-option {item}"
        target, sep, value = item.partition("=")
        if not sep or not target.strip():
            raise InputError(f"{label}: expected NAME.KEY=VALUE (or KEY=VALUE for every method), e.g. ddpm.steps=50")
        method, dot, key = target.strip().rpartition(".")
        key = key.strip().replace("-", "_")
        if key not in types:
            raise InputError(f"{label}: unknown key {key!r}; choose from {', '.join(sorted(types))}")
        converted = _convert(key, value, types[key], label)
        _check_range(key, converted, label)
        put(method.strip() if dot else None, key, converted, label)
    return result


#: Ranges every method agrees on, checked when the settings are parsed so that a typo fails
#: before anything is written (method-specific checks, such as sampler names, run when the method
#: loads).
_RANGES = {
    "steps": (lambda v: v >= 1, "must be at least 1"),
    "jump_length": (lambda v: v >= 1, "must be at least 1"),
    "jump_n_sample": (lambda v: v >= 1, "must be at least 1"),
    "guidance": (lambda v: math.isfinite(v) and v >= 0, "must be a number, 0 or more"),
    # Below 1, Stable Diffusion starts the hole from the pixels under it: the ground truth here.
    "strength": (lambda v: v == 1, "must be 1 in a benchmark (below 1 the hole starts from the ground truth under it)"),
    "mask_blur": (lambda v: v >= 0, "must be 0 or more"),
    "crop_padding": (lambda v: v >= 0, "must be 0 or more"),
}


def _check_range(key: str, value: Any, label: str) -> None:
    """InputError if ``value`` is outside the range every method agrees on for ``key``."""
    if value is None or key not in _RANGES:
        return
    try:
        ok = _RANGES[key][0](value)
    except TypeError:  # a string from Python, say: the command line converts before checking
        raise InputError(f"{label}: {key} expects a number, got {value!r}") from None
    if not ok:
        raise InputError(f"{label}: {key} {value} {_RANGES[key][1]}")
