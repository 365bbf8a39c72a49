"""Pixel-space diffusion UNets (diffusers ``UNet2DModel``): find, load, widen and save them.

Method 1 of the study (docs/method.md) starts from the unconditional ``google/ddpm-celebahq-256``
and widens its first convolution from 3 to 7 input channels, ``concat(x_masked [3], mask [1],
x_t [3])``. This module owns every step of that life cycle:

- :func:`load_base` — any unconditional ``UNet2DModel`` (hub id or local directory) plus its noise
  schedule, used by RePaint and as the starting point of fine-tuning;
- :func:`widen_conv_in` — the exact 3 -> 7 channel widening;
- :func:`save_completion_unet` / :func:`load_completion_unet` — the fine-tuned 7-channel model
  (EMA or raw weights: :func:`completion_weights_folder`).

Directory layouts understood (local or in the Hugging Face cache):

- *flat*: ``config.json`` + ``diffusion_pytorch_model.safetensors`` + ``scheduler_config.json`` at
  the root (``google/ddpm-celebahq-256``; also what :func:`save_completion_unet` writes);
- *pipeline*: ``model_index.json`` with ``unet/`` and ``scheduler/`` subfolders
  (``DDPMPipeline.save_pretrained``).

A fine-tuned model directory (a ``train-ddpm`` run folder) holds at its root the weights to use:
the EMA weights when the run kept an EMA, with the raw weights in ``raw/``, itself a flat model
directory — diffusers' own convention (its training examples save the EMA model as the result),
so stock ``from_pretrained`` gets the EMA weights. Each folder's ``inpaint_config.json`` says
which weights it holds (``"weights": "ema"`` or ``"raw"``). Folders written before that marker
existed hold the raw weights at the root and the EMA in ``ema/``; :func:`load_completion_unet`
reads both layouts. Weights are read as safetensors; a model published with
``diffusion_pytorch_model.bin`` only (older hub repositories) is converted once through torch's
weights-only unpickler, which refuses anything but tensors, and the converted safetensors are
what loads (:mod:`inpaint.models.weight_files`). Hub ids take a ``revision`` (branch, tag or
commit) and a ``variant`` (``fp16``: half the download). Everything that can go wrong with the
files is reported as one :class:`~inpaint.errors.InputError` line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint import atomic
from inpaint.errors import InputError
from inpaint.models.weight_files import DIFFUSERS, Component, ModelFiles, has_weights, weight_names

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import UNet2DModel

#: The study's pretrained base (unconditional DDPM on CelebA-HQ 256x256, Ho et al. 2020).
DEFAULT_BASE = "google/ddpm-celebahq-256"
#: Input channels of the completion UNet: x_masked (3), mask (1), x_t (3).
COMPLETION_CHANNELS = 7
#: Where a fine-tuned model directory keeps its raw weights when the root holds the EMA ones.
RAW_SUBFOLDER = "raw"
#: Where folders written before the ``weights`` marker keep their EMA weights (root: raw).
EMA_SUBFOLDER = "ema"
#: The key of ``inpaint_config.json`` that says which weights a folder holds: ``ema`` or ``raw``.
WEIGHTS_KEY = "weights"
#: Our own training configuration, saved beside the weights.
INPAINT_CONFIG_NAME = "inpaint_config.json"

_CONFIG = "config.json"
_SCHEDULER_CONFIG = "scheduler_config.json"
_LAYOUT_HINT = (
    "expected config.json + diffusion_pytorch_model.safetensors + scheduler_config.json, "
    "or a pipeline folder with model_index.json, unet/ and scheduler/"
)
#: What a pixel UNet repository is fetched as: every json file, and the weights of the UNet at
#: the root (flat layout), in ``unet/`` (pipeline layout), and in a fine-tuned model's ``raw/``
#: and ``ema/`` subfolders.
MODEL_FILES = ModelFiles(
    other=("*.json",),
    components=tuple(
        Component(folder, DIFFUSERS, required=False) for folder in ("", "unet", RAW_SUBFOLDER, EMA_SUBFOLDER)
    ),
)


# ---- finding the files ----------------------------------------------------------------------


def resolve_model_dir(
    id_or_dir: str | os.PathLike[str], *, revision: str | None = None, variant: str | None = None
) -> Path:
    """The local folder holding model ``id_or_dir``: the directory itself, or a hub snapshot (at
    ``revision``) of its json files and weights (:data:`MODEL_FILES`: safetensors of ``variant``,
    ``.bin`` only for a UNet that has no safetensors).

    Raises :class:`InputError` when it is neither an existing directory nor a reachable or
    cached hub model.
    """
    from inpaint.models import hub

    path = Path(os.fspath(id_or_dir)).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{os.fspath(id_or_dir)}: is a file; expected a model directory ({_LAYOUT_HINT})")
    return hub.resolve(id_or_dir, MODEL_FILES, revision=revision, variant=variant)


def _unet_folder(root: Path, label: str) -> Path:
    """The folder with the UNet's ``config.json``: the root (flat) or ``unet/`` (pipeline).

    The root wins: ``google/ddpm-celebahq-256`` ships a ``model_index.json`` but keeps the UNet
    files at the root.
    """
    if (root / _CONFIG).is_file():
        return root
    if (root / "unet" / _CONFIG).is_file():
        return root / "unet"
    if (root / "model_index.json").is_file():
        raise InputError(f"{label}: a pipeline folder without unet/config.json; {_LAYOUT_HINT}")
    raise InputError(f"{label}: no config.json, not a diffusers UNet2DModel folder; {_LAYOUT_HINT}")


def _read_json(path: Path, label: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{label}: cannot read {path.name} ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{label}: {path.name} is not a JSON object")
    return data


def _check_unet_config(config: dict[str, Any], label: str) -> None:
    """Refuse anything but a pixel-space ``UNet2DModel`` with a 3-channel output."""
    cls = config.get("_class_name", "UNet2DModel")
    if cls == "UNet2DConditionModel":
        raise InputError(
            f"{label}: holds a UNet2DConditionModel (a text-conditioned latent model such as Stable "
            "Diffusion); this method needs a pixel-space UNet2DModel (use --model sd for Stable Diffusion)"
        )
    if cls != "UNet2DModel":
        raise InputError(f"{label}: holds a {cls}, not a diffusers UNet2DModel")
    if config.get("out_channels", 3) != 3:
        raise InputError(
            f"{label}: the UNet predicts {config.get('out_channels')} channels; only epsilon/v/x0 "
            "models with 3 output channels are supported (no learned variance)"
        )


def _check_weights(folder: Path, label: str, variant: str | None = None) -> None:
    """Require the UNet's weights (of ``variant``) as safetensors or ``.bin`` (converted when loaded)."""
    if has_weights(folder, DIFFUSERS, variant) or has_weights(folder, DIFFUSERS, variant, pickle=True):
        return
    others = sorted(p.name for p in folder.glob("diffusion_pytorch_model*.safetensors")) + sorted(
        p.name for p in folder.glob("diffusion_pytorch_model*.bin")
    )
    hint = f" (it has {', '.join(others[:3])}: another --variant?)" if others else ""
    raise InputError(
        f"{label}: no {weight_names(DIFFUSERS, variant)[0]} nor its .bin in {folder}{hint}; {_LAYOUT_HINT}"
    )


def _scheduler_config(root: Path, unet_dir: Path, label: str) -> dict[str, Any]:
    """The noise schedule saved with the model (beside the UNet, at the root or in scheduler/)."""
    for candidate in (
        unet_dir / _SCHEDULER_CONFIG,
        root / _SCHEDULER_CONFIG,
        root / "scheduler" / _SCHEDULER_CONFIG,
    ):
        if candidate.is_file():
            return _read_json(candidate, label)
    raise InputError(
        f"{label}: no scheduler_config.json (looked in {unet_dir} and {root / 'scheduler'}); the noise "
        "schedule the model was trained with is unknown; copy the base model's scheduler_config.json there"
    )


def _load_unet(folder: Path, label: str, dtype: torch.dtype | None, variant: str | None = None) -> UNet2DModel:
    from diffusers import UNet2DModel

    from inpaint.models.weight_files import safetensors_view

    view = safetensors_view(folder, ("",), label, variant)  # .bin weights: converted, in a folder without pickles
    try:
        # use_safetensors=True: diffusers then never falls back to a pickle file.
        unet = UNet2DModel.from_pretrained(view, use_safetensors=True, torch_dtype=dtype, variant=variant)
    except (OSError, ValueError, RuntimeError) as e:
        raise InputError(f"{label}: cannot load the UNet from {folder} ({str(e).splitlines()[0]})") from None
    return unet.eval()


def _load(
    id_or_dir: str | os.PathLike[str],
    dtype: torch.dtype | None,
    revision: str | None = None,
    variant: str | None = None,
) -> tuple[UNet2DModel, dict[str, Any]]:
    """Load the UNet and scheduler config of ``id_or_dir`` (either layout)."""
    label = os.fspath(id_or_dir)
    root = resolve_model_dir(id_or_dir, revision=revision, variant=variant)
    unet_dir = _unet_folder(root, label)
    config = _read_json(unet_dir / _CONFIG, label)
    _check_unet_config(config, label)
    _check_weights(unet_dir, label, variant)
    scheduler_config = _scheduler_config(root, unet_dir, label)
    return _load_unet(unet_dir, label, dtype, variant), scheduler_config


# ---- public API -------------------------------------------------------------------------------


def load_base(
    id_or_dir: str | os.PathLike[str] = DEFAULT_BASE,
    *,
    dtype: torch.dtype | None = None,
    revision: str | None = None,
    variant: str | None = None,
) -> tuple[UNet2DModel, dict[str, Any]]:
    """Load a pretrained pixel-space ``UNet2DModel`` and its noise schedule.

    ``id_or_dir`` is a hub id (default ``google/ddpm-celebahq-256``, Ho et al. 2020) or a local
    directory in the flat or pipeline layout. Returns the model (``dtype``, default fp32; CPU;
    eval mode) and the
    scheduler config as a dict (build a scheduler with ``SomeScheduler.from_config(config)``).
    ``revision`` picks a branch, tag or commit of a hub id, ``variant`` a weights variant
    (``fp16``: half the download; pass ``dtype`` to get another precision). Raises
    :class:`InputError` with the fix when the model cannot be found, is not a ``UNet2DModel``, or
    has no weights (safetensors, or ``.bin`` that torch's weights-only unpickler accepts).
    """
    return _load(id_or_dir, dtype, revision, variant)


def widen_conv_in(unet: UNet2DModel, in_channels: int = COMPLETION_CHANNELS) -> UNet2DModel:
    """Widen ``unet.conv_in`` in place so it takes ``in_channels`` inputs; returns ``unet``.

    The new input is ``concat(extra, x_t)`` with the original channels *last*; for the study's
    3 -> 7 widening that is ``concat(x_masked [3], mask [1], x_t [3])``. The pretrained kernel is
    copied into the x_t slice, the bias is copied unchanged and the extra channels start at zero,
    so the widened network computes exactly what the original did, whatever the extra channels
    hold. (Re-initialising with ``from_pretrained(..., ignore_mismatched_sizes=True)`` would
    instead draw ``conv_in`` at random, and leaving out the bias shifts every output.)
    ``unet.config.in_channels`` is updated, so ``save_pretrained`` records the new width.
    """
    import torch

    old = unet.conv_in
    if in_channels <= old.in_channels:
        raise ValueError(f"conv_in already has {old.in_channels} inputs; cannot widen to {in_channels}")
    new = torch.nn.Conv2d(
        in_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        groups=old.groups,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, in_channels - old.in_channels :].copy_(old.weight)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)
    return unet


def weights_marker(folder: Path) -> str | None:
    """Which weights ``folder`` holds by its ``inpaint_config.json``: ``"ema"``, ``"raw"``, or
    ``None`` (no marker: a folder from an earlier version, or not a training run's)."""
    path = Path(folder) / INPAINT_CONFIG_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    value = data.get(WEIGHTS_KEY) if isinstance(data, dict) else None
    return value if value in ("ema", "raw") else None


def completion_weights_folder(root: Path, *, use_ema: bool = True, label: str | None = None) -> Path:
    """The folder of ``root`` (a local model directory) holding the weights asked for.

    ``use_ema=True``: the EMA weights when the directory has them, else its only weights.
    ``use_ema=False``: the raw weights — ``raw/`` when the root holds the EMA ones, else the
    UNet folder itself. Both layouts are read: the root marked ``"weights": "ema"`` (raw in
    ``raw/``), and the earlier one, an unmarked root with raw weights and the EMA in ``ema/``.
    Raises :class:`InputError` when the raw weights are asked for and the root holds only EMA
    weights (``raw/`` was not copied with it).
    """
    root = Path(root)
    label = label or str(root)
    marker = weights_marker(root)
    if marker == "ema":
        if use_ema:
            return root
        raw = root / RAW_SUBFOLDER
        if not (raw / _CONFIG).is_file():
            raise InputError(
                f"{label}: holds EMA weights and no {RAW_SUBFOLDER}/config.json; the raw weights were "
                "not kept with it (use its EMA weights)"
            )
        return raw
    if marker is None and use_ema and (root / EMA_SUBFOLDER / _CONFIG).is_file():
        return root / EMA_SUBFOLDER
    return _unet_folder(root, label)


def load_completion_unet(
    id_or_dir: str | os.PathLike[str],
    *,
    use_ema: bool = True,
    dtype: torch.dtype | None = None,
    revision: str | None = None,
    variant: str | None = None,
) -> tuple[UNet2DModel, dict[str, Any]]:
    """Load a fine-tuned 7-channel completion UNet and its noise schedule.

    ``id_or_dir`` is what :func:`save_completion_unet` wrote (a plain ``UNet2DModel`` folder with
    ``in_channels=7`` and ``scheduler_config.json``), typically a ``train-ddpm`` run folder.
    ``use_ema=True`` (the default) loads the EMA weights when the folder has them, else its only
    weights; ``use_ema=False`` the raw weights (see :func:`completion_weights_folder`). EMA
    weights are what a run is for: they average out the last steps' noise. The model expects
    ``concat(x_masked, mask, x_t)`` in [-1, 1] (see
    :func:`inpaint.samplers.completion_model_input`). An unconditional 3-channel model is refused
    with an :class:`InputError` pointing at ``--model repaint`` or training. ``revision`` and
    ``variant`` are those of :func:`load_base`.
    """
    label = os.fspath(id_or_dir)
    root = resolve_model_dir(id_or_dir, revision=revision, variant=variant)
    unet_dir = completion_weights_folder(root, use_ema=use_ema, label=label)
    config = _read_json(unet_dir / _CONFIG, label)
    _check_unet_config(config, label)
    channels = config.get("in_channels", 3)
    if channels == 3:
        raise InputError(
            f"{label}: is an unconditional 3-channel UNet; this needs a fine-tuned 7-channel completion "
            "model (train one with `inpaint train-ddpm`), or use --model repaint to complete with an "
            "unconditional model"
        )
    if channels != COMPLETION_CHANNELS:
        raise InputError(
            f"{label}: the UNet takes {channels} input channels; a completion model takes 7 "
            "(masked image 3, mask 1, noisy image 3)"
        )
    _check_weights(unet_dir, label, variant)
    scheduler_config = _scheduler_config(root, unet_dir, label)
    return _load_unet(unet_dir, label, dtype, variant), scheduler_config


def save_completion_unet(
    unet: UNet2DModel,
    scheduler_config: dict[str, Any],
    out_dir: str | os.PathLike[str],
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """Save ``unet`` as a plain diffusers model folder that stock ``from_pretrained`` loads.

    Writes ``config.json`` + ``diffusion_pytorch_model.safetensors`` (``save_pretrained``),
    ``scheduler_config.json`` (``scheduler_config``) and, when given, ``inpaint_config.json``
    (``extra_config``: our training configuration). Everything is written to a temporary folder
    beside ``out_dir`` first. A new ``out_dir`` is then created by one atomic rename; an existing
    one has each of these files replaced atomically (``os.replace``) and keeps everything else it
    holds — a training run's ``raw/`` subfolder and checkpoints live there too, so the folder as a
    whole is never swapped out. The weights go in before ``config.json``. Returns ``out_dir``.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic.temporary_folder(f".{out.name}.", out.parent)  # not private, unlike mkdtemp's
    try:
        unet.save_pretrained(tmp, safe_serialization=True)
        (tmp / _SCHEDULER_CONFIG).write_text(json.dumps(scheduler_config, indent=2, sort_keys=True) + "\n")
        if extra_config is not None:
            (tmp / INPAINT_CONFIG_NAME).write_text(json.dumps(extra_config, indent=2, default=str) + "\n")
        atomic.give_usual_modes(tmp)  # save_pretrained's safetensors file is 0600
        if not out.exists():
            os.replace(tmp, out)
            return out
        if not out.is_dir():
            raise InputError(f"{out}: exists and is not a directory")
        # config.json last: a reader that sees the new config also sees the new weights.
        names = sorted((p.name for p in tmp.iterdir()), key=lambda n: (n == _CONFIG, n))
        for name in names:
            os.replace(tmp / name, out / name)
        return out
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
