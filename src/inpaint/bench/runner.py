"""Running each method over the benchmark pairs: raw outputs on disk, resumable, timed.

Each method writes its **raw** output (no known pixels pasted back; scoring decides) at the
image's own size to ``<output>/outputs/<method>/<stem>.png``, atomically. Beside them:

- ``run.json``: the method's settings and the seed, and a fingerprint of the files that options
  naming a local path point to (weights, LoRA, captions), as :mod:`inpaint.provenance` records
  them (folder ``complete`` records the same). A rerun with other settings, or with
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
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inpaint import atomic, batching, io, provenance
from inpaint.bench.config import BenchConfig
from inpaint.bench.data import OUTPUTS_SUBDIR, BenchPair
from inpaint.errors import InputError, Stopped
from inpaint.progress import NullProgress, Progress

RUN_FILE = "run.json"
_LOG_GLOB = "log-rank*.jsonl"


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
    """The options of ``model`` that differ from MethodOptions' defaults, device excluded
    (:func:`inpaint.provenance.recorded_options`)."""
    return provenance.recorded_options(config.options_for(model))


def run_settings(config: BenchConfig, model: str) -> dict[str, Any]:
    """What the outputs of ``model`` depend on besides the input files (device excluded): the
    seed, how masks are read, and :func:`inpaint.provenance.method_settings` (the options, the
    fingerprints of the local paths they name, the weights read inside a run folder)."""
    method = provenance.method_settings(model, config.options_for(model))
    return {
        "model": model,
        "seed": config.seed,
        "invert_mask": config.invert_mask,
        "resize_mask": config.resize_mask,
        **{k: v for k, v in method.items() if k != "model"},
    }


def check_run_file(config: BenchConfig, model: str) -> bool:
    """True if ``run.json`` must be (re)written; InputError if it records other settings."""
    path = output_dir(config, model) / RUN_FILE
    if config.overwrite or not path.is_file():
        return True
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return True
    found = provenance.changes(recorded, run_settings(config, model)) if isinstance(recorded, dict) else None
    if found == []:
        return False
    if found is None or not any(path.parent.glob("*.png")):
        # Unreadable, or a run that stopped before its first output (a bad option, say): nothing to protect.
        return True
    # A path option's files changed: the same path, other contents (a model retrained into the
    # same folder); or a run.json written before fingerprints were, which cannot vouch for them.
    changed = [change.key if change.note is None else f"{change.key} ({change.note})" for change in found]
    raise InputError(
        f"{path}: these outputs were made with other settings ({', '.join(changed)}); "
        "pass --overwrite to regenerate them or choose another -o"
    )


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


def read_pair(pair: BenchPair, config: BenchConfig) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image and (H, W) bool mask of a pair, as every method sees them
    (:func:`inpaint.io.read_pair`); InputError if the sizes differ (unless ``config.resize_mask``)."""
    image, mask, _ = io.read_pair(
        pair.image,
        pair.mask,
        image_name=str(pair.image),
        mask_name=str(pair.mask),
        invert_mask=config.invert_mask,
        resize_mask=config.resize_mask,
    )
    return image, mask


def generate(
    config: BenchConfig,
    model: str,
    pairs: Sequence[BenchPair],
    *,
    rank: int = 0,
    device: str | None = None,
    progress: Progress | None = None,
    stop_requested: Callable[[], bool] | None = None,
    step_progress: Progress | None = None,
) -> tuple[int, int, str, dict[str, str]]:
    """Write the raw outputs of ``model`` for ``pairs`` that are not done yet.

    Returns (written, reused, memory kind, refused). The method is loaded only if something is
    left to do. ``device`` replaces the configured device (a launcher-assigned GPU). Pairs go
    through :func:`inpaint.batching.complete_batches`, ``config.batch_size`` at a time, the
    engine folder ``complete`` uses. A pair that cannot be read (a corrupt image, a mask of the
    wrong size) is skipped, and scoring reports it; a pair the method refuses (a full mask for
    a classical method) is skipped and returned in ``refused`` (name -> error).
    ``progress`` counts images, ``step_progress`` the method's steps. ``stop_requested()``
    returning True before a batch raises :class:`~inpaint.errors.Stopped` (what is written
    and logged is reused by a rerun).
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
            # Raw outputs: scoring decides whether the known pixels are pasted back.
            for outcome in batching.complete_batches(
                inpainter,
                todo,
                seed=config.seed,
                batch_size=max(config.batch_size, 1),
                paste_back=False,
                invert_mask=config.invert_mask,
                resize_mask=config.resize_mask,
                step_progress=step_progress,
                stop_requested=stop_requested,
            ):
                if outcome.completed is not None:
                    _save(outcome, folder, log, memory)
                    written += 1
                elif not outcome.unreadable:  # an unreadable pair is reported once, by scoring
                    refused[outcome.pair.name] = str(outcome.error)
                progress.advance(1, model=model)
    except Stopped:
        raise Stopped(f"while completing with {model} ({written} new outputs written)") from None
    finally:
        del inpainter
        _release_memory()
    progress.finish()
    return written, len(pairs) - len(todo), memory.kind, refused


def _save(outcome: batching.Outcome[BenchPair], folder: Path, log, memory: PeakMemory) -> None:
    """Write one raw output and its log line (what it cost)."""
    pair = outcome.pair
    io.save_image(outcome.completed.result, folder / f"{pair.name}.png")
    entry = ImageLog(
        name=pair.name,
        image_sha256=pair.image_sha256,
        mask_sha256=pair.mask_sha256,
        seconds=outcome.seconds,
        nfe=outcome.nfe,
        peak_bytes=memory.peak_bytes(),
        time=time.time(),
    )
    # One write per line: a crash can tear only the last line, which read_logs skips.
    log.write(json.dumps(asdict(entry)) + "\n")
    log.flush()


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
