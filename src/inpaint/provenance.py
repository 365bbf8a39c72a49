"""What made a set of outputs: settings recorded beside them, compared on every rerun.

A command that resumes (``bench``, folder ``complete``) takes an output already on disk as done.
That is only right if the output was made the way this run would make it; otherwise a rerun with
another method, other options or retrained weights would keep the old files under the new name.
So both record, beside their outputs, what the outputs depend on besides the input files:

- the method and :func:`recorded_options` (the options that differ from their defaults);
- :func:`path_fingerprint` of each local file or folder an option names (weights, LoRA,
  captions): the same path with other contents (a model retrained into the same folder) is
  another setting;
- :func:`weights_used`: which weights inside a training run's folder the method reads;

and, per output, the SHA-256 of its input files (:func:`file_sha256`), so that a changed image or
mask redoes its output. :func:`changes` compares a record with the settings of a rerun.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inpaint.errors import InputError
from inpaint.names import name_bytes

#: Options that may name a local file or folder whose contents the outputs depend on.
PATH_OPTIONS = ("weights", "lora", "captions")
#: Files of a folder that the fingerprint covers: weights and the configs beside them.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".json")
#: Bytes read from each end of a file for its fingerprint (weights are GBs; hashing them whole
#: would cost minutes on every run).
_FINGERPRINT_BYTES = 1 << 20
#: Options that never change what is computed: where it runs, and where weights are looked for.
_NOT_RECORDED = ("device", "local_only")


def file_sha256(path: Path) -> str:
    """The SHA-256 of a whole file (an input image or mask), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_options(options, reads: Collection[str] | None = None) -> dict[str, Any]:
    """The fields of ``options`` (a MethodOptions) that differ from their defaults, device excluded.

    Only those: a field added to MethodOptions later does not make earlier outputs look stale.
    With ``reads`` (the fields the method uses), options the method ignores are left out too:
    they did not shape the outputs (``--steps`` given to telea).
    """
    from inpaint.models.base import MethodOptions

    defaults = asdict(MethodOptions())
    return {
        k: v
        for k, v in asdict(options).items()
        if k not in _NOT_RECORDED and v != defaults[k] and (reads is None or k in reads)
    }


def method_settings(model: str, options, reads: Collection[str] | None = None) -> dict[str, Any]:
    """``model``, its :func:`recorded_options`, and what the local paths they name hold.

    ``fingerprints`` (option -> :func:`path_fingerprint`) is there only when an option of
    :data:`PATH_OPTIONS` names an existing local path, and ``weights_used`` only when the method
    reads a file or folder inside a training run's folder (:func:`weights_used`), so that the
    record of a method with no such option (a classical one) stays what it was before these
    were recorded.
    """
    recorded = recorded_options(options, reads)
    settings: dict[str, Any] = {"model": model, "options": recorded}
    fingerprints = {}
    for key in PATH_OPTIONS:
        value = recorded.get(key)
        if isinstance(value, str) and Path(value).expanduser().exists():
            fingerprints[key] = path_fingerprint(Path(value).expanduser())
    if fingerprints:
        settings["fingerprints"] = fingerprints
    used = weights_used(model, options)
    if used:
        settings["weights_used"] = used
    return settings


def weights_used(model: str, options) -> dict[str, str]:
    """Which file or folder of a training run's folder the method reads (its EMA or raw weights),
    relative to the folder named: the same folder gives other outputs with ``ema`` on or off, and
    folders written by earlier versions kept their EMA elsewhere."""
    from inpaint.models.lora_files import lora_file
    from inpaint.models.pixel_unet import completion_weights_folder

    named = {
        "ddpm": ("weights", lambda path: completion_weights_folder(path, use_ema=options.ema)),
        "sd": ("lora", lambda path: lora_file(path, use_ema=options.ema)),
        "sdxl": ("lora", lambda path: lora_file(path, use_ema=options.ema)),
    }
    if model not in named:
        return {}
    key, resolve = named[model]
    value = getattr(options, key)
    path = Path(value).expanduser() if isinstance(value, str) else None
    if path is None or not path.is_dir():
        return {}
    try:
        return {key: resolve(path).relative_to(path).as_posix()}
    except (InputError, ValueError):  # reported when the method loads
        return {}


def path_fingerprint(path: Path) -> str:
    """A cheap SHA-256 that changes when the weights at ``path`` (a file or a folder) change.

    For a folder, every file with a weight or config suffix (:data:`_WEIGHT_SUFFIXES`), searched
    recursively, skipping names that start with ``.`` (caches, VCS folders); for a file, the file
    whatever its suffix. Each file contributes its relative path, its size and a SHA-256 of its
    first and last MiB: retrained weights differ there, and a multi-GB checkpoint is not read
    whole. Modification times are not used, so a copied model folder is the same model.
    """
    if path.is_file():
        files = [(path, "")]
    else:
        files = []
        seen: set[str] = set()
        for root, dirs, names in os.walk(path, followlinks=True):
            real = os.path.realpath(root)
            if real in seen:  # a symlink loop
                dirs[:] = []
                continue
            seen.add(real)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in names:
                if not name.startswith(".") and name.lower().endswith(_WEIGHT_SUFFIXES):
                    file = Path(root) / name
                    files.append((file, file.relative_to(path).as_posix()))
    digest = hashlib.sha256()
    for file, name in sorted(files, key=lambda item: item[1]):
        digest.update(name_bytes(f"{name}\t{_file_fingerprint(file)}\n"))  # a name's own bytes, UTF-8 or not
    return digest.hexdigest()


def _file_fingerprint(path: Path) -> str:
    """``size:sha256(first MiB + last MiB)``, or a marker for a file that cannot be read.

    A ``.safetensors`` file is taken by content: its JSON header (which the library writes in a
    different key order each time the same tensors are saved) with its keys sorted, then the
    tensor bytes' first and last MiB. A re-export of the same weights is then the same file.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start, digest = 0, hashlib.sha256()
            if path.suffix == ".safetensors" and size >= 8:
                length = int.from_bytes(f.read(8), "little")
                if 0 < length <= min(size - 8, 100 << 20):
                    try:
                        header = json.loads(f.read(length))
                        digest.update(json.dumps(header, sort_keys=True).encode())
                        start = 8 + length
                    except ValueError:  # not a safetensors header after all: take the bytes
                        pass
            f.seek(start)
            digest.update(f.read(_FINGERPRINT_BYTES))
            if size - start > _FINGERPRINT_BYTES:
                f.seek(max(size - _FINGERPRINT_BYTES, start + _FINGERPRINT_BYTES))
                digest.update(f.read(_FINGERPRINT_BYTES))
    except OSError as e:  # loading reports it; here it only has to be stable
        return f"unreadable ({type(e).__name__})"
    return f"{size}:{digest.hexdigest()}"


#: :attr:`Change.note` of a path option whose files changed, or whose record has no fingerprint.
FILES_CHANGED = "files changed"
NO_FINGERPRINT = "no fingerprint recorded"
#: :attr:`Change.note` of a training run's folder read at another place (``weights_used``).
OTHER_WEIGHTS_INSIDE = "other weights inside it"


@dataclass(frozen=True)
class Change:
    """One way the settings of a rerun differ from those recorded with the outputs.

    ``key`` is ``model``, an option (``steps``) or another setting (``seed``); ``before`` and
    ``now`` are its values (None: not recorded; for an option, its default). ``note`` is set for a
    path option that names the same path but not the same contents (:data:`FILES_CHANGED`,
    :data:`NO_FINGERPRINT`), with ``before``/``now`` the path, or that is read at another place
    inside it (:data:`OTHER_WEIGHTS_INSIDE`), with ``before``/``now`` the places.
    """

    key: str
    before: Any
    now: Any
    note: str | None = None


def changes(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[Change]:
    """How ``wanted`` (this run's settings) differs from ``recorded``; empty if the outputs are its own.

    In order: the model; the options, by name; the contents of paths (an option naming the same
    path whose fingerprint differs or was not recorded); the place read inside a run folder
    (unless ``ema`` changed, which says it); then the other settings (``seed``…). A path option
    spelled otherwise (``runs/ddpm/`` for ``runs/ddpm``, a copy of the folder) is no change when
    the files there are the same ones.
    """
    found: list[Change] = []
    if recorded.get("model") != wanted.get("model"):
        found.append(Change("model", recorded.get("model"), wanted.get("model")))
    before_options, now_options = recorded.get("options") or {}, wanted.get("options") or {}
    before_prints, now_prints = recorded.get("fingerprints") or {}, wanted.get("fingerprints") or {}
    before_used, now_used = recorded.get("weights_used") or {}, wanted.get("weights_used") or {}
    changed_options = []
    for key in sorted(set(before_options) | set(now_options)):
        before, now = before_options.get(key), now_options.get(key)
        if before == now:
            continue
        same_files = (
            key in PATH_OPTIONS
            and before_prints.get(key) is not None
            and before_prints.get(key) == now_prints.get(key)
            and before_used.get(key) == now_used.get(key)
        )
        if not same_files:
            changed_options.append(key)
            found.append(Change(key, before, now))
    for key in PATH_OPTIONS:
        if key not in changed_options and before_prints.get(key) != now_prints.get(key):
            # Same path, other contents (a model retrained into the same folder); or a record
            # written before fingerprints were, which cannot vouch for its files.
            note = FILES_CHANGED if key in before_prints else NO_FINGERPRINT
            found.append(Change(key, before_options.get(key), now_options.get(key), note))
    if "ema" not in changed_options:
        for key in sorted(set(before_used) | set(now_used)):
            if key not in changed_options and before_used.get(key) != now_used.get(key):
                found.append(Change(key, before_used.get(key), now_used.get(key), OTHER_WEIGHTS_INSIDE))
    method_keys = {"model", "options", "fingerprints", "weights_used"}
    for key in [*wanted, *(k for k in recorded if k not in wanted)]:
        if key not in method_keys and recorded.get(key) != wanted.get(key):
            found.append(Change(key, recorded.get(key), wanted.get(key)))
    return found
