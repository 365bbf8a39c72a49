"""``run_bench``: from a test set and trained weights to a report, in one call.

1. check every method can run and load LPIPS/Inception (missing weights: unavailable, or an
   error with ``strict``) before anything slow happens;
2. match images to masks (or generate a preset's masks into ``<output>/masks``) and hash them;
3. each method completes this process's share of the images, skipping outputs already done;
4. every output is scored at the evaluation size, streaming; results gathered on the main process;
5. the main process reduces them and writes results.json, per_image.csv, report.md, metrics.png,
   grid.png and galleries/worst-<method>.png.

Under ``torchrun`` / ``accelerate launch`` the images are split over the processes (image i goes
to process i mod N) and the numbers equal a single-process run: every figure is computed from
records sorted by image name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inpaint import atomic, io, locking
from inpaint.bench import data, pictures, report, runner, scoring, summary
from inpaint.bench.config import BenchConfig
from inpaint.bench.distributed import Dist
from inpaint.errors import InputError
from inpaint.progress import NullProgress, Progress


@dataclass
class BenchResult:
    """What the main process wrote and the numbers in it. ``results`` is results.json's content."""

    output: Path
    n_images: int
    summaries: list[summary.ModelSummary]
    unavailable: dict[str, str]
    warnings: list[str]
    files: dict[str, Path]
    results: dict[str, Any]
    written: dict[str, int] = field(default_factory=dict)
    reused: dict[str, int] = field(default_factory=dict)
    #: Images that could not be used (unreadable file, mask of the wrong size): name -> the error.
    #: They are left out of every number; the CLI exits with 1 when there are any.
    failed: dict[str, str] = field(default_factory=dict)
    #: Images of the test set, failed and empty-mask ones included.
    total_images: int = 0


def _devices(config: BenchConfig) -> tuple[Dist, str]:
    """Join the launcher's processes, and pick the device metrics run on."""
    from inpaint.devices import resolve_device

    device = resolve_device(config.device)
    dist = Dist.from_env(cpu=device.type != "cuda")
    if dist.device is not None and device.type == "cuda" and config.device in ("auto", "cuda"):
        return dist, dist.device
    return dist, str(device)


def _check_methods(config: BenchConfig) -> None:
    from inpaint import models

    for model in config.models:
        reason = models.get_method(model).unavailable(config.options_for(model))
        if reason is not None:
            raise InputError(f"{model}: {reason}")


def _pairs(config: BenchConfig, dist: Dist) -> tuple[list[data.BenchPair], data.MaskSource]:
    """The pairs and their source; with a preset, the main process draws the masks first.

    Drawing them can fail (no images, two images with one stem, a folder that cannot be
    written). The main process then tells the others, which wait for the masks, instead of
    leaving them in a barrier forever: every process raises the same one-line InputError.
    """
    if data.is_preset(config.masks):
        unreadable, error = {}, None
        if dist.is_main:
            try:
                unreadable = data.preset_masks(config.data, config.output, config.masks, config.seed)
            except Exception as e:  # noqa: BLE001 - re-raised below, on every process
                if dist.world == 1:
                    raise
                error = e
        # A collective, so also the barrier at which the other processes wait for the masks.
        statuses = dist.gather(None if error is None else _one_line(error))
        message = next((m for m in statuses if m is not None), None)
        if message is not None:
            dist.close()  # every process knows: leave the group (one left behind can abort the exit)
            if isinstance(error, InputError):
                raise error
            raise InputError(message) from error
        return data.collect_pairs(
            config.data,
            config.output / data.MASKS_SUBDIR,
            config.output,
            kind="preset",
            preset=config.masks,
            unreadable=unreadable,
        )
    return data.collect_pairs(config.data, Path(config.masks), config.output, kind="folder", preset=None)


def _one_line(error: Exception) -> str:
    """An error as the CLI would print it: an InputError's message, else its type and message."""
    return str(error) if isinstance(error, InputError) else f"{type(error).__name__}: {error}"


def run_bench(
    config: BenchConfig,
    progress: Progress | None = None,
    stop_requested: Callable[[], bool] | None = None,
    step_progress: Progress | None = None,
) -> BenchResult | None:
    """Run the benchmark described by ``config``; returns the result on the main process, None elsewhere.

    Raises :class:`InputError` for bad inputs, per-method values out of range (Stable Diffusion's
    ``strength`` below 1), unavailable methods, settings or weight files that differ from those
    the outputs already in ``config.output`` were made with (unless ``overwrite``), an output
    folder another run holds (the main process locks it: :func:`inpaint.locking.lock_folder`),
    and, with ``strict``, missing metric weights. ``stop_requested()`` returning True after an
    image or batch (while completing or scoring) raises :class:`~inpaint.errors.Stopped`: the
    outputs written so far are kept, and a rerun reuses them. ``progress`` counts images (while
    completing, then scoring); ``step_progress`` the steps of each method call.
    """
    progress = progress or NullProgress()
    config.check_method_options()
    data.check_inputs(config.data, config.masks, config.output)
    _check_methods(config)
    dist, device = _devices(config)
    fresh = not config.output.exists()
    lock = _lock_output(config, dist)
    try:
        return _run(config, progress, stop_requested, dist, device, step_progress)
    except InputError:
        if fresh and dist.world == 1:
            _remove_refused_output(config)
        raise
    finally:
        if lock is not None:
            lock.release()


def _remove_refused_output(config: BenchConfig) -> None:
    """Empty a results folder this run created, when the run is refused before any method made an
    output (weights that fail to load, a sampler name checked at load): the preset masks and
    ``run.json`` files written so far go, and releasing the lock removes the folder, so a refused
    run leaves nothing behind. Outputs a method did make are kept: they are work a rerun reuses.
    """
    import shutil

    outputs = config.output / data.OUTPUTS_SUBDIR
    if any(outputs.glob("*/*.png")):
        return
    for path in config.output.iterdir():
        if path.name == locking.FOLDER_LOCK_NAME:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()


def _lock_output(config: BenchConfig, dist: Dist) -> locking.OutputLock | None:
    """The main process locks the results folder before anything is read or written there (the
    other processes are part of the same run); when it cannot, every process raises its error."""
    lock, message = None, None
    if dist.is_main:
        try:
            lock = locking.lock_folder(config.output, create_label=f"-o {config.output}")
        except InputError as e:
            if dist.world == 1:
                raise
            message = str(e)
    if dist.world > 1:
        message = next((m for m in dist.gather(message) if m is not None), None)
        if message is not None:
            dist.close()
            raise InputError(message)
    return lock


def _run(
    config: BenchConfig,
    progress: Progress,
    stop_requested: Callable[[], bool] | None,
    dist: Dist,
    device: str,
    step_progress: Progress | None = None,
) -> BenchResult | None:
    """:func:`run_bench` once the results folder is locked."""
    suite = scoring.build_suite(config, device)
    pairs, source = _pairs(config, dist)
    stale = [m for m in config.models if runner.check_run_file(config, m)]
    dist.barrier()
    if dist.is_main:
        # Temporary files a killed run left (this run owns the folder; other processes wait).
        for folder in [
            config.output,
            config.output / "galleries",
            *(runner.output_dir(config, m) for m in config.models),
        ]:
            atomic.remove_stale_temporaries(folder)
        for model in stale:
            if config.overwrite:
                # Forget what the old settings made before recording the new ones: were this run
                # killed, a plain rerun must not take those outputs for its own.
                runner.clear_logs(config, model)
            runner.write_run_file(config, model)
    dist.barrier()

    share = dist.share(pairs)
    written, reused, memory_kinds, refused = {}, {}, {}, {}
    for model in config.models:
        written[model], reused[model], memory_kinds[model], failed = runner.generate(
            config,
            model,
            share,
            rank=dist.rank,
            device=dist.device,
            progress=progress,
            stop_requested=stop_requested,
            step_progress=step_progress,
        )
        refused.update({name: error for name, error in failed.items() if name not in refused})
    dist.barrier()
    # An image a method refused is left out for every method: all are scored on the same pairs.
    shard = scoring.score_pairs(config, share, suite, progress, skip=refused, stop_requested=stop_requested)
    shards = dist.gather(shard)
    counts = dist.gather((written, reused, memory_kinds))
    # The last collective: the main process reduces and writes alone (FID alone can take minutes,
    # longer than other processes should wait in a barrier).
    dist.close()
    if not dist.is_main:
        return None
    return _finish(config, pairs, source, suite, shards, counts, device, dist.world)


def _finish(
    config: BenchConfig,
    pairs: list[data.BenchPair],
    source: data.MaskSource,
    suite: scoring.MetricSuite,
    shards: list[scoring.ScoreShard],
    counts: list[tuple[dict, dict, dict]],
    device: str,
    world: int,
) -> BenchResult:
    from inpaint.bench.protocol import protocol_block

    merged = summary.merge(shards)
    failed = dict(sorted({**source.unreadable, **merged.failed}.items()))
    unavailable = dict(suite.unavailable)
    warnings: list[str] = []
    unsupported, strays = io.split_unsupported(source.ignored_files)
    if unsupported:
        warnings.append(io.unsupported_message(config.data, unsupported))
    if strays:
        warnings.append(f"{config.data}: {len(strays)} non-image file(s) ignored, e.g. {strays[0]}")
    if merged.empty_masks:
        warnings.append(
            f"{len(merged.empty_masks)} image(s) have an empty mask and were not scored, e.g. {merged.empty_masks[0]}"
        )
    logs = {m: runner.read_logs(runner.output_dir(config, m)) for m in config.models}
    summaries = []
    for model in config.models:
        records = [r for r in merged.records if r.model == model]
        s = summary.summarise_model(config, model, records, unavailable, logs[model])
        s.memory_kind = next((c[2][model] for c in counts if c[2].get(model)), "")
        summary.add_distribution_metrics(config, s, merged, unavailable, warnings)
        summaries.append(s)

    out = config.output
    files: dict[str, Path] = {}
    by_name = {p.name: p for p in pairs}
    scored = sorted({r.name for r in merged.records})
    if config.grid_images and scored:
        sample = [by_name[n] for n in summary.grid_names(scored, config.grid_images, config.seed)]
        files["grid"] = pictures.write_grid(out / "grid.png", config, sample)
    for s in summaries:
        if s.worst:
            files[f"worst-{s.model}"] = pictures.write_gallery(
                out / "galleries" / f"worst-{s.model}.png", config, s.model, [by_name[n] for n, _ in s.worst]
            )
    if scored:
        files["plot"] = report.write_plot(out / "metrics.png", summaries, unavailable)
    files["per_image"] = out / "per_image.csv"
    report.write_per_image_csv(files["per_image"], merged.records, logs, unavailable)

    options = {m: {**runner.recorded_options(config, m), "device": config.options_for(m).device} for m in config.models}
    protocol = protocol_block(config, source, suite, device=device, processes=world)
    results = report.results_json(
        config,
        summaries,
        n_images=len(scored),
        empty_masks=merged.empty_masks,
        unavailable=unavailable,
        warnings=warnings,
        protocol=protocol,
        options=options,
        failed=failed,
    )
    files["results"] = out / "results.json"
    atomic.write_json(files["results"], results)
    files["report"] = out / "report.md"
    atomic.write_text(files["report"], report.report_markdown(config, results, summaries, unavailable, files))
    return BenchResult(
        output=out,
        n_images=len(scored),
        summaries=summaries,
        unavailable=unavailable,
        warnings=warnings,
        files=files,
        results=results,
        written={m: sum(c[0][m] for c in counts) for m in config.models},
        reused={m: sum(c[1][m] for c in counts) for m in config.models},
        failed=failed,
        total_images=len(pairs) + len(source.unreadable),
    )
