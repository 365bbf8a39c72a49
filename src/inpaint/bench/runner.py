"""Running each method over the benchmark pairs: raw outputs on disk, resumable, timed.

Each method writes its **raw** output (no known pixels pasted back; scoring decides) at the
image's own size to ``<output>/outputs/<method>/<stem>.png``, atomically. Beside them:

- ``run.json``: the method's settings and the seed, and a fingerprint of the files that options
  naming a local path point to (weights, LoRA, captions). A rerun with other settings, or with
  those files changed (a model retrained into the same folder), is refused (``--overwrite``
  regenerates everything), because mixing outputs of two settings would be wrong;
- ``log-rank<k>.jsonl``: one line per image written (input hashes, seconds, network evaluations,
  peak memory). An output is reused on resume only when a log line says it was made from the
  same image and mask bytes; a crash between writing an image and its line just redoes it.

Every image draws its noise from ``derive_seed(seed, stem)``, whatever the method, batch or
process, so all methods see the same pairs and seeds.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inpaint import atomic, io
from inpaint.bench.config import BenchConfig
from inpaint.bench.data import OUTPUTS_SUBDIR, BenchPair
from inpaint.errors import InputError
from inpaint.progress import NullProgress, Progress
from inpaint.seeding import derive_seed

RUN_FILE = "run.json"
_LOG_GLOB = "log-rank*.jsonl"
#: Options that may name a local file or folder whose contents the outputs depend on.
PATH_OPTIONS = ("weights", "lora", "captions")
#: Files of a folder that the fingerprint covers: weights and the configs beside them.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".json")
#: Bytes read from each end of a file for its fingerprint (weights are GBs; hashing them whole
#: would cost minutes on every run).
_FINGERPRINT_BYTES = 1 << 20


@dataclass(frozen=True)
class ImageLog:
    """What generating one output cost. ``nfe`` is None when the method does not report it."""

    name: str
    image_sha256: str
    mask_sha256: str
    seconds: float
    nfe: int | None
    peak_bytes: int | None
    time: float


def output_dir(config: BenchConfig, model: str) -> Path:
    return config.output / OUTPUTS_SUBDIR / model


def recorded_options(config: BenchConfig, model: str) -> dict[str, Any]:
    """The options of ``model`` that differ from MethodOptions' defaults (device excluded).

    Only those: a field added to MethodOptions later does not make earlier outputs look stale.
    """
    from inpaint.models.base import MethodOptions

    defaults = asdict(MethodOptions())
    return {k: v for k, v in asdict(config.options_for(model)).items()
            if k not in ("device", "local_only") and v != defaults[k]}


def run_settings(config: BenchConfig, model: str) -> dict[str, Any]:
    """What the outputs of ``model`` depend on besides the input files (device excluded).

    ``fingerprints`` (option -> :func:`path_fingerprint`) is there only when an option of
    :data:`PATH_OPTIONS` names an existing local path, so that the run.json of a method with no
    such option (a classical one) stays what it was before fingerprints were recorded.
    """
    options = recorded_options(config, model)
    settings = {"model": model, "seed": config.seed, "invert_mask": config.invert_mask,
                "resize_mask": config.resize_mask, "options": options}
    fingerprints = {}
    for key in PATH_OPTIONS:
        value = options.get(key)
        if isinstance(value, str) and Path(value).expanduser().exists():
            fingerprints[key] = path_fingerprint(Path(value).expanduser())
    if fingerprints:
        settings["fingerprints"] = fingerprints
    used = _weights_used(model, config.options_for(model))
    if used:
        settings["weights_used"] = used
    return settings


def _weights_used(model: str, options) -> dict[str, str]:
    """Which file or folder of a training run's folder the method reads (its EMA or raw weights),
    relative to the folder named: the same folder gives other outputs with ``ema`` on or off, and
    folders written by earlier versions kept their EMA elsewhere."""
    from inpaint.models.pixel_unet import completion_weights_folder
    from inpaint.models.sd_weights import lora_file

    named = {"ddpm": ("weights", lambda path: completion_weights_folder(path, use_ema=options.ema)),
             "sd": ("lora", lambda path: lora_file(path, use_ema=options.ema))}
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
        digest.update(f"{name}\t{_file_fingerprint(file)}\n".encode())
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


def check_run_file(config: BenchConfig, model: str) -> bool:
    """True if ``run.json`` must be (re)written; InputError if it records other settings."""
    path = output_dir(config, model) / RUN_FILE
    if config.overwrite or not path.is_file():
        return True
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return True
    wanted = run_settings(config, model)
    if recorded != wanted and not any(path.parent.glob("*.png")):
        return True  # a run that stopped before its first output (a bad option, say): nothing to protect
    if recorded != wanted:
        changed = sorted(k for k in set(recorded.get("options", {})) | set(wanted["options"])
                         if recorded.get("options", {}).get(k) != wanted["options"].get(k))
        before, now = recorded.get("fingerprints") or {}, wanted.get("fingerprints", {})
        for key in PATH_OPTIONS:
            if key not in changed and before.get(key) != now.get(key):
                # Same path, other contents (a model retrained into the same folder); or a run.json
                # written before fingerprints were recorded, which cannot vouch for its files.
                changed.append(f"{key} ({'files changed' if key in before else 'no fingerprint recorded'})")
        changed += [k for k in ("seed", "invert_mask", "resize_mask") if recorded.get(k) != wanted[k]]
        raise InputError(
            f"{path}: these outputs were made with other settings ({', '.join(changed) or 'model'}); "
            "pass --overwrite to regenerate them or choose another -o"
        )
    return False


def write_run_file(config: BenchConfig, model: str) -> None:
    atomic.write_json(output_dir(config, model) / RUN_FILE, run_settings(config, model))


def clear_logs(config: BenchConfig, model: str) -> None:
    """Delete the method's log files: no output on disk counts as done any more (``--overwrite``)."""
    for path in output_dir(config, model).glob(_LOG_GLOB):
        path.unlink()


def read_logs(folder: Path) -> dict[str, ImageLog]:
    """The latest log line per image from every ``log-rank*.jsonl`` (torn lines are skipped)."""
    latest: dict[str, ImageLog] = {}
    for path in sorted(folder.glob(_LOG_GLOB)):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    entry = ImageLog(**json.loads(line))
                except (ValueError, TypeError):
                    continue
                if entry.name not in latest or entry.time >= latest[entry.name].time:
                    latest[entry.name] = entry
    return latest


def is_done(pair: BenchPair, folder: Path, logs: dict[str, ImageLog]) -> bool:
    entry = logs.get(pair.name)
    return (
        entry is not None
        and entry.image_sha256 == pair.image_sha256
        and entry.mask_sha256 == pair.mask_sha256
        and (folder / f"{pair.name}.png").is_file()
    )


class PeakMemory:
    """Peak memory while one method runs: CUDA's allocator peak on a GPU, else the process's peak
    resident set (Linux ``VmHWM``, reset per method through ``/proc/self/clear_refs``; elsewhere
    ``ru_maxrss``, the peak since the process started)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.kind = "cuda_max_memory_allocated" if self.cuda else "process_peak_rss"
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(device)
            self.device = device
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                self.kind = "process_peak_rss (VmHWM, reset per method)"
            except OSError:
                self.kind = "process_peak_rss (ru_maxrss since start)"

    def peak_bytes(self) -> int | None:
        if self.cuda:
            import torch

            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                match = re.search(r"VmHWM:\s+(\d+)\s+kB", f.read())
            if match:
                return int(match.group(1)) * 1024
        except OSError:
            pass
        try:
            import resource
            import sys

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return int(peak if sys.platform == "darwin" else peak * 1024)
        except (ImportError, OSError):  # pragma: no cover - Windows
            return None


def _batches(pairs: Sequence[BenchPair], images: dict[str, np.ndarray], size: int) -> list[list[BenchPair]]:
    """Consecutive runs of at most ``size`` pairs whose images share one shape."""
    batches: list[list[BenchPair]] = []
    for pair in pairs:
        if batches and len(batches[-1]) < size and images[batches[-1][0].name].shape == images[pair.name].shape:
            batches[-1].append(pair)
        else:
            batches.append([pair])
    return batches


def read_pair(pair: BenchPair, config: BenchConfig) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image and (H, W) bool mask of a pair; InputError if the sizes differ
    (unless ``config.resize_mask``: nearest neighbour)."""
    image = io.read_image(pair.image)
    mask = io.read_mask(pair.mask, invert=config.invert_mask)
    mask = io.fit_mask(mask, image.shape, resize=config.resize_mask, mask_name=str(pair.mask),
                       image_name=str(pair.image))
    return image, mask


def generate(
    config: BenchConfig,
    model: str,
    pairs: Sequence[BenchPair],
    *,
    rank: int = 0,
    device: str | None = None,
    progress: Progress | None = None,
) -> tuple[int, int, str, dict[str, str]]:
    """Write the raw outputs of ``model`` for ``pairs`` that are not done yet.

    Returns (written, reused, memory kind, refused). The method is loaded only if something is
    left to do. ``device`` replaces the configured device (a launcher-assigned GPU). A pair that
    cannot be read (a corrupt image, a mask of the wrong size) is skipped, and scoring reports it;
    a pair the method refuses (a full mask for a classical method) is skipped and returned in
    ``refused`` (name -> error).
    """
    from inpaint import models
    from inpaint.devices import resolve_device

    progress = progress or NullProgress()
    folder = output_dir(config, model)
    logs = {} if config.overwrite else read_logs(folder)
    todo = [p for p in pairs if not is_done(p, folder, logs)]
    progress.start(f"{model}: completing", len(pairs))
    progress.advance(len(pairs) - len(todo))
    if not todo:
        progress.finish()
        return 0, len(pairs), "", {}
    options = config.options_for(model)
    if device is not None and options.device in ("auto", "cuda"):
        options.device = device
    inpainter = models.get_method(model).load(options)
    memory = PeakMemory(str(getattr(inpainter, "device", None) or resolve_device(options.device)))
    log_path = folder / f"log-rank{rank}.jsonl"
    atomic.ensure_folder(folder)
    written, refused = 0, {}
    try:
        with open(log_path, "a", encoding="utf-8") as log:
            for chunk in _chunks(todo, max(config.batch_size, 1) * 8):
                inputs = {}
                for pair in chunk:
                    try:
                        inputs[pair.name] = read_pair(pair, config)
                    except InputError:  # reported once, by scoring; the other images go on
                        progress.advance(1, model=model)
                readable = [p for p in chunk if p.name in inputs]
                for batch in _batches(readable, {k: v[0] for k, v in inputs.items()}, config.batch_size):
                    failed = _run_batch(inpainter, batch, inputs, config.seed, folder, log, memory)
                    refused.update(failed)
                    written += len(batch) - len(failed)
                    progress.advance(len(batch), model=model)
    finally:
        del inpainter
        _release_memory()
    progress.finish()
    return written, len(pairs) - len(todo), memory.kind, refused


def _chunks(items: Sequence[BenchPair], size: int) -> list[Sequence[BenchPair]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _run_batch(inpainter, batch: list[BenchPair], inputs: dict[str, tuple[np.ndarray, np.ndarray]], seed: int,
               folder: Path, log, memory: PeakMemory) -> dict[str, str]:
    """Complete, save and log one batch; returns the pairs the method refused (name -> error).

    A method refuses an input with an :class:`InputError` (a classical method given a mask that
    covers the whole image, say); the batch is then retried one image at a time so that only the
    offending images are left out.
    """
    images = io.to_tensor([inputs[p.name][0] for p in batch])
    masks = io.mask_to_tensor([inputs[p.name][1] for p in batch])
    seeds = [derive_seed(seed, p.name) for p in batch]
    started = time.perf_counter()
    names = [p.name for p in batch]  # methods that look things up per image (captions) need them
    try:
        raw = io.to_uint8(inpainter(images, masks, seeds, composite_known=False, names=names))
    except InputError as e:
        if len(batch) == 1:
            return {batch[0].name: f"{batch[0].image}: {e}"}
        refused: dict[str, str] = {}
        for pair in batch:
            refused.update(_run_batch(inpainter, [pair], inputs, seed, folder, log, memory))
        return refused
    seconds = (time.perf_counter() - started) / len(batch)
    nfe = getattr(inpainter, "last_nfe", 0)
    empty = [not inputs[p.name][1].any() for p in batch]
    peak = memory.peak_bytes()
    for pair, result, no_hole in zip(batch, raw, empty):
        io.save_image(result, folder / f"{pair.name}.png")
        entry = ImageLog(name=pair.name, image_sha256=pair.image_sha256, mask_sha256=pair.mask_sha256,
                         seconds=seconds, nfe=0 if no_hole else (None if nfe is None else int(nfe)),
                         peak_bytes=peak, time=time.time())
        # One write per line: a crash can tear only the last line, which read_logs skips.
        log.write(json.dumps(asdict(entry)) + "\n")
        log.flush()
    return {}


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
