"""Training checkpoints that never execute code and are never half-written.

A checkpoint is a directory ``<run>/checkpoints/step-00001234/`` holding

- ``model.safetensors``: the trainable weights (the whole UNet, or only the LoRA parameters);
- ``ema.safetensors``: the EMA shadow weights, when EMA is on;
- ``optimizer.safetensors``: the optimizer's tensors (AdamW moments and step counts);
- ``state.json``: step, the optimizer's other state, LR schedule, grad scaler and EMA counters,
  and the training configuration;
- ``INPAINT_CHECKPOINT``: a marker with the format version and the SHA-256 of every other
  file, written last.

Only safetensors and JSON are written or read: nothing is unpickled, so a checkpoint from a
stranger cannot run code. RNG state is not stored because none is needed: every random draw of
step ``k`` comes from generators seeded by (seed, k, …) (see :mod:`inpaint.training.loop`).

Saving writes into a temporary directory, reads every file back to verify it, renames the
directory into place, then moves the ``latest`` pointer, and only then prunes old checkpoints.
A kill at any moment leaves the previous checkpoint intact and ``latest`` pointing at a complete
one.

Resuming checks each file against the SHA-256 its marker recorded: a checkpoint whose bytes
changed on disk afterwards (a failing disk, a copy cut short, a stray write) may still load, and
would then train on wrong numbers until the loss diverges. It is refused in one line naming the
file and the previous checkpoint, rather than silently replaced by that one: the damage says
something about the disk the user should hear, and the previous checkpoint is one deletion away.
Checkpoints written before checksums were recorded load as they always did.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint import atomic
from inpaint.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

MARKER = "INPAINT_CHECKPOINT"
FORMAT_VERSION = 1
LATEST = "latest"
_PREFIX = "step-"


@dataclass
class TrainingState:
    """Everything needed to continue a run, in memory (tensors on the CPU)."""

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    lr_scheduler: dict[str, Any]
    grad_scaler: dict[str, Any] | None
    ema: dict[str, Any] | None
    config: dict[str, Any]


def checkpoint_name(step: int) -> str:
    return f"{_PREFIX}{step:08d}"


# ---- flattening optimizer and EMA state into tensors + JSON ---------------------------------------


def _split_optimizer(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` -> (tensors keyed ``state.<param>.<name>``, JSON-able rest)."""
    import torch

    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, param_id, name = key.split(".", 2)
        state.setdefault(int(param_id), {})[name] = value
    for param_id, values in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def _split_ema(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """diffusers ``EMAModel.state_dict()`` -> (``shadow.<i>`` tensors, the counters)."""
    tensors = {f"shadow.{i}": p.detach().cpu().contiguous() for i, p in enumerate(state["shadow_params"])}
    return tensors, {k: v for k, v in state.items() if k != "shadow_params"}


def _join_ema(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    shadow = [tensors[f"shadow.{i}"] for i in range(len(tensors))]
    return {**meta, "shadow_params": shadow}


# ---- saving ---------------------------------------------------------------------------------------


def save_checkpoint(run_dir: Path, state: TrainingState, keep_last: int) -> Path:
    """Write ``state`` as a verified checkpoint, point ``latest`` at it, prune to ``keep_last``."""
    from safetensors.torch import save_file

    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(state.step)
    tmp = atomic.temporary_folder(f".{final.name}.", root)
    try:
        optimizer_tensors, optimizer_meta = _split_optimizer(state.optimizer)
        files = {
            "model.safetensors": {k: v.detach().cpu().contiguous() for k, v in state.model.items()},
            "optimizer.safetensors": optimizer_tensors,
        }
        ema_meta = None
        if state.ema is not None:
            files["ema.safetensors"], ema_meta = _split_ema(state.ema)
        for name, tensors in files.items():
            save_file(tensors, tmp / name, metadata={"format": "pt"})
        meta = {
            "step": state.step,
            "optimizer": optimizer_meta,
            "lr_scheduler": state.lr_scheduler,
            "grad_scaler": state.grad_scaler,
            "ema": ema_meta,
            "config": state.config,
        }
        (tmp / "state.json").write_text(json.dumps(meta, indent=1, default=_json_default))
        _fsync_dir_files(tmp)
        _verify(tmp, files)
        # The checksums of the bytes as they are on disk, verified: what resuming compares against.
        digests = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
        (tmp / MARKER).write_text(json.dumps({"format": FORMAT_VERSION, "sha256": digests}))
        atomic.give_usual_modes(tmp)  # safetensors writes 0600 files
        if final.exists():  # the same step saved again (a resumed run): replace it whole
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic.write_text(root / LATEST, final.name + "\n")
    prune(root, keep_last)
    return final


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    try:  # numbers held in 0-d tensors or numpy scalars
        return value.item()
    except AttributeError:
        raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's state.json") from None


def _fsync_dir_files(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _verify(folder: Path, files: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Read every written file back and compare it with what was meant to be written."""
    import torch
    from safetensors.torch import load_file

    for name, tensors in files.items():
        loaded = load_file(folder / name)
        if loaded.keys() != tensors.keys() or not all(torch.equal(loaded[k], tensors[k]) for k in tensors):
            raise OSError(f"checkpoint verification failed for {folder / name}")
    json.loads((folder / "state.json").read_text())


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read a block at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_digests(path: Path, recorded: Any) -> None:
    """Refuse a checkpoint whose files differ from the SHA-256 recorded in its marker.

    Names the first damaged file and the checkpoint to fall back to. A marker without checksums
    (written before they were recorded) is not checked.
    """
    if not isinstance(recorded, dict):
        return
    for name, expected in recorded.items():
        file = path / name
        try:
            actual = file_sha256(file)
        except OSError as e:
            actual = f"unreadable ({e.strerror or e})"
        if actual != expected:
            earlier = [p for step, p in sorted(_complete_checkpoints(path.parent)) if p.name < path.name]
            fix = (
                f"delete {path} to resume from the previous checkpoint, {earlier[-1].name}"
                if earlier
                else f"delete {path} (there is no earlier checkpoint: the run starts over)"
            )
            what = (
                actual
                if actual.startswith("unreadable")
                else "its SHA-256 differs from the one recorded when it was saved"
            )
            raise InputError(f"{file}: damaged checkpoint ({what}: its bytes changed on disk); {fix}")


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` complete checkpoints, and stale temporary folders."""
    complete = sorted(_complete_checkpoints(root))
    latest = read_latest(root)
    for _step, path in complete[:-keep_last] if keep_last > 0 else []:
        if path != latest:
            shutil.rmtree(path, ignore_errors=True)
    for stale in root.glob(f".{_PREFIX}*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


# ---- finding and loading ----------------------------------------------------------------------


def _complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    found = []
    for path in root.glob(f"{_PREFIX}*"):
        if path.is_dir() and (path / MARKER).is_file():
            try:
                found.append((int(path.name[len(_PREFIX) :]), path))
            except ValueError:
                continue
    return found


def read_latest(root: Path) -> Path | None:
    """The checkpoint ``latest`` points at, or the newest complete one if the pointer is missing."""
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if (candidate / MARKER).is_file():
            return candidate
    complete = sorted(_complete_checkpoints(root))
    return complete[-1][1] if complete else None


def find_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint to resume a run in ``run_dir`` from, or ``None`` for a fresh run."""
    root = Path(run_dir) / "checkpoints"
    return read_latest(root) if root.is_dir() else None


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a checkpoint directory we wrote (it carries our marker)."""
    return (Path(path) / MARKER).is_file()


def load_checkpoint(path: Path) -> TrainingState:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not is_checkpoint(path):
        raise InputError(f"{path}: not an inpaint checkpoint (no {MARKER} marker)")
    try:
        marker = json.loads((path / MARKER).read_text())
        if marker.get("format") != FORMAT_VERSION:
            raise InputError(f"{path}: checkpoint format {marker.get('format')} is not {FORMAT_VERSION}")
        _check_digests(path, marker.get("sha256"))
        meta = json.loads((path / "state.json").read_text())
        model = load_file(path / "model.safetensors")
        optimizer = _join_optimizer(load_file(path / "optimizer.safetensors"), meta["optimizer"])
        ema = None
        if meta.get("ema") is not None:
            ema = _join_ema(load_file(path / "ema.safetensors"), meta["ema"])
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise InputError(f"{path}: damaged checkpoint ({e}); delete it to resume from the previous one") from None
    return TrainingState(
        step=int(meta["step"]),
        model=model,
        optimizer=optimizer,
        lr_scheduler=meta["lr_scheduler"],
        grad_scaler=meta.get("grad_scaler"),
        ema=ema,
        config=meta["config"],
    )
