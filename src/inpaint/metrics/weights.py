"""Finding and loading the pretrained backbones LPIPS and FID need, without the network.

lpips and pytorch-fid download their backbones through torch.hub on first use; offline that fails
deep inside a constructor with a ``URLError``. We look for the file ourselves, in this order:

1. an explicit path (the CLI's ``--lpips-weights`` / ``--fid-weights``; a directory holding the
   file by its exact name also works);
2. an environment variable (``INPAINT_LPIPS_WEIGHTS`` / ``INPAINT_FID_WEIGHTS``);
3. ``$TORCH_HOME/hub/checkpoints/<exact file name>`` (:func:`torch.hub.get_dir`), where
   torchvision and pytorch-fid themselves would have cached it.

A path given in 1 or 2 that does not exist is an error, not a reason to fall through: the user
asked for that file. When nothing is found, :class:`MetricWeightsMissing` says which file, where we
looked, and the three ways to provide it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inpaint.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class WeightFile:
    """A backbone file a metric needs.

    Attributes:
        filename: the exact name torch.hub caches it under (the hash prefix is part of the name).
        purpose: what it is for, for messages.
        option: the CLI option that passes it.
        env_var: the environment variable that passes it.
        url: where it is published, for the user to fetch on a machine with network access.
    """

    filename: str
    purpose: str
    option: str
    env_var: str
    url: str


LPIPS_ALEX = WeightFile(
    filename="alexnet-owt-7be5be79.pth",
    purpose="LPIPS (AlexNet backbone)",
    option="--lpips-weights",
    env_var="INPAINT_LPIPS_WEIGHTS",
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
)
LPIPS_VGG = WeightFile(
    filename="vgg16-397923af.pth",
    purpose="LPIPS (VGG16 backbone)",
    option="--lpips-weights",
    env_var="INPAINT_LPIPS_WEIGHTS",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
)
FID_INCEPTION = WeightFile(
    filename="pt_inception-2015-12-05-6726825d.pth",
    purpose="FID/KID (pytorch-fid InceptionV3)",
    option="--fid-weights",
    env_var="INPAINT_FID_WEIGHTS",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
)


class MetricWeightsMissing(InputError):
    """A metric's backbone weights file was not found (exit code 2); the message says how to fix it."""

    def __init__(self, message: str, weight_file: WeightFile, searched: tuple[str, ...]) -> None:
        super().__init__(message)
        self.weight_file = weight_file
        self.searched = searched


def hub_cache_path(weight_file: WeightFile) -> Path:
    """``$TORCH_HOME/hub/checkpoints/<filename>``: where torch.hub would have cached the file."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / weight_file.filename


def resolve_weights(weight_file: WeightFile, path: str | os.PathLike[str] | None = None) -> Path:
    """Locate ``weight_file``: explicit ``path``, else its environment variable, else the hub cache.

    Raises:
        MetricWeightsMissing: the file is in none of those places, or an explicitly given path
            (argument or environment variable) does not exist.
    """
    if path is not None:
        return _existing(Path(path), weight_file, f"{weight_file.option} {path}")
    from_env = os.environ.get(weight_file.env_var, "").strip()
    if from_env:
        return _existing(Path(from_env), weight_file, f"${weight_file.env_var}={from_env}")
    cached = hub_cache_path(weight_file)
    if cached.is_file():
        return cached
    searched = (f"{weight_file.option} not given", f"${weight_file.env_var} not set", str(cached))
    raise MetricWeightsMissing(
        f"{weight_file.purpose} needs {weight_file.filename}, not found (looked at: {'; '.join(searched)}). "
        f"Download {weight_file.url} on a machine with network access, then pass {weight_file.option} FILE, "
        f"set {weight_file.env_var}=FILE, or copy it to {cached}",
        weight_file,
        searched,
    )


def load_state_dict(path: Path, weight_file: WeightFile) -> dict[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)`` on CPU, failures turned into one-line ``InputError``s."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - zip, pickle and OS errors all mean "not a weights file"
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: cannot load as PyTorch weights for {weight_file.purpose} ({first_line})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state dict of tensors, so not {weight_file.filename}")
    return state


def _existing(path: Path, weight_file: WeightFile, given: str) -> Path:
    """``path`` itself, or ``path/<filename>`` for a directory; MetricWeightsMissing otherwise."""
    candidate = path / weight_file.filename if path.is_dir() else path
    if candidate.is_file():
        return candidate
    raise MetricWeightsMissing(
        f"{weight_file.purpose}: {candidate} does not exist (from {given}). "
        f"Pass the path of {weight_file.filename} (download: {weight_file.url})",
        weight_file,
        (str(candidate),),
    )
