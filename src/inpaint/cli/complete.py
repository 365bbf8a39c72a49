"""``inpaint complete``: fill the masked region of one image, a folder of images, or a pipe.

Under ``accelerate launch`` / ``torchrun`` a folder is split over the processes
(:func:`inpaint.completion.complete_folder`); the main process alone prints: notes, warnings
about the options, refusals every process meets, and the summary. A single file or a pipe is
refused there: there is nothing to split.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from inpaint.cli import console, options
from inpaint.errors import InpaintError, InputError

STDIO = "-"


def complete(
    image: Annotated[str, typer.Argument(help="Image file, folder of images, or - for stdin.", show_default=False)],
    mask: Annotated[
        str,
        typer.Argument(
            help="Mask file (white = fill) or folder of masks matched by file stem, or - for stdin.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            help="Output file (format from its extension: .png, .jpg, .webp, .bmp, .tif; a name without one is "
            "written as PNG, as given), folder, or - for PNG on stdout "
            "(default: IMAGE_inpainted.png beside the image, a folder IMAGES_inpainted/ beside a folder, "
            "stdout for stdin).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Completion method (see 'inpaint complete --list-models'); "
            "default: the best one available on this machine.",
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            "-w",
            help="Model weights for diffusion methods: hub id or local folder "
            "(ddpm: a train-ddpm output; repaint: an unconditional DDPM, default google/ddpm-celebahq-256; "
            "sd: an inpainting pipeline, default stable-diffusion-v1-5/stable-diffusion-inpainting).",
        ),
    ] = None,
    revision: options.Revision = None,
    variant: options.Variant = None,
    sampler: Annotated[
        str | None,
        typer.Option(
            "--sampler",
            help="Diffusion sampler, the same algorithm for every method: ddpm (ancestral), "
            "ddim, dpmpp (deterministic DPM-Solver++(2M)) or dpmpp-sde (its SDE form) for ddpm and sd "
            "(ddpm's default: ddpm with 25 steps; --sampler ddpm alone: the study's 1000); euler, euler-a, "
            "pndm or unipc for sd and sdxl (default: the pipeline's own); flow-euler for flux (its only one); "
            "repaint or fast for repaint (default repaint).",
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Diffusion steps (default: the sampler's).")] = None,
    jump_length: Annotated[
        int | None, typer.Option("--jump-length", help="RePaint: steps per jump back (default 10).")
    ] = None,
    jump_n_sample: Annotated[
        int | None, typer.Option("--jump-n-sample", help="RePaint: resamplings per jump (default 10).")
    ] = None,
    lora: Annotated[
        str | None,
        typer.Option(
            "--lora", help="sd: a LoRA, the output folder of train-lora or a diffusers LoRA .safetensors file."
        ),
    ] = None,
    ema: Annotated[
        bool,
        typer.Option(
            "--ema/--no-ema",
            help="ddpm, sd --lora: a training run's EMA weights (default) or --no-ema its raw weights.",
        ),
    ] = True,
    prompt: Annotated[
        str | None,
        typer.Option(
            "--prompt",
            help="sd: the prompt of every image (default: its caption with --captions, else a generic photo prompt).",
        ),
    ] = None,
    negative_prompt: Annotated[
        str | None, typer.Option("--negative-prompt", help="sd: what to steer away from.")
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(
            "--guidance",
            help="sd: classifier-free guidance scale (default 7.5; 1 turns it off and halves the cost).",
            callback=options.finite,
        ),
    ] = None,
    strength: Annotated[
        float | None,
        typer.Option(
            "--strength",
            help="sd: how far to noise the hole before denoising, in (0, 1] (default 1: from pure noise).",
            callback=options.finite,
        ),
    ] = None,
    mask_blur: Annotated[
        int | None,
        typer.Option(
            "--mask-blur",
            help="sd: feather the seam outwards with a "
            "Gaussian of this radius (px): the hole stays fully generated, "
            "the blend reaches into the known pixels around it.",
        ),
    ] = None,
    crop_padding: Annotated[
        int | None,
        typer.Option(
            "--crop-padding",
            help="sd: generate only the hole's "
            "bounding box plus this margin (px), at the model's native "
            "size: small holes in large images.",
        ),
    ] = None,
    captions: Annotated[
        str | None,
        typer.Option(
            "--captions",
            help="sd: captions JSON {file name: caption} (from 'inpaint caption'); each image's caption is its prompt.",
        ),
    ] = None,
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype",
            help="auto (fp16 on CUDA; bf16 on a CPU with native bf16, "
            "AVX512-BF16 or AMX, said on stderr; else fp32), fp32, fp16 or bf16 (fp16 "
            "on the CPU only where it has fp16 arithmetic).",
        ),
    ] = "auto",
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            help="Folders: complete up to N images of one size "
            "together (same results up to float rounding; faster on a GPU, N "
            "times the memory).",
        ),
    ] = 1,
    channels_last: Annotated[
        bool,
        typer.Option(
            "--channels-last/--no-channels-last",
            help="Diffusion methods: NHWC memory format for the UNet (and SD's VAE); often faster on recent GPUs.",
        ),
    ] = False,
    compile_: Annotated[
        bool,
        typer.Option(
            "--compile/--no-compile",
            help="Diffusion methods: torch.compile the UNet; the first "
            "batch (and each new size) waits for compilation.",
        ),
    ] = False,
    attention_slicing: Annotated[
        bool,
        typer.Option(
            "--attention-slicing/--no-attention-slicing",
            help="sd: attention in slices (less memory, slower than the default SDPA).",
        ),
    ] = False,
    vae_slicing: Annotated[
        bool,
        typer.Option(
            "--vae-slicing/--no-vae-slicing",
            help="sd: run the VAE one image at a time (less memory with --batch-size).",
        ),
    ] = False,
    vae_tiling: Annotated[
        bool,
        typer.Option(
            "--vae-tiling/--no-vae-tiling",
            help="sd: run the VAE in overlapping tiles (large images in little memory; slightly different pixels).",
        ),
    ] = False,
    cpu_offload: Annotated[
        bool,
        typer.Option(
            "--cpu-offload/--no-cpu-offload",
            help="sd, CUDA only: keep each model on the CPU until it runs (small GPUs; slower).",
        ),
    ] = False,
    seed: options.Seed = 0,
    device: options.Device = "auto",
    invert_mask: options.InvertMask = False,
    resize_mask: options.ResizeMask = False,
    overwrite: options.Overwrite = False,
    paste_back: Annotated[
        bool,
        typer.Option(
            "--paste-back/--no-paste-back",
            help="Copy the known pixels from the input bit-exactly "
            "(default); --no-paste-back keeps the method's raw output everywhere.",
        ),
    ] = True,
    concat: Annotated[
        bool, typer.Option("--concat/--no-concat", help="Also write input | masked | result side by side.")
    ] = False,
    # --config, --json and --list-models are processed first (eager), in this order when not typed:
    # the listing obeys --json, and --json a config file's json = true.
    config: options.Config = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json/--no-json",
            help="Print a machine-readable JSON summary on stdout (with --list-models: "
            "the methods as a JSON list of name, available, reason, description).",
            is_eager=True,
            callback=lambda ctx, value: _json_given(ctx, value),
        ),
    ] = False,
    list_models: Annotated[
        bool,
        typer.Option(
            "--list-models",
            help="List the completion methods, whether each can run here and why not, and exit.",
            is_eager=True,
            callback=lambda ctx, value: _list_models_given(ctx, value),
        ),
    ] = False,
) -> None:
    """Complete IMAGE where MASK is white; known pixels are kept exactly.

    Examples:

    ```
    inpaint complete photo.png mask.png            # -> photo_inpainted.png
    inpaint complete photo.png mask.png -o out.png
    inpaint complete images/ masks/ -o out/    # matched by file stem; a re-run resumes
    inpaint complete images/ masks/ -o out/ -m sd --batch-size 8 --compile   # faster on a GPU
    cat a.png | inpaint complete - mask.png -o - > b.png
    ```
    """
    from inpaint import models, project
    from inpaint.distributed import is_main_process
    from inpaint.models.base import MethodOptions

    with _main_process_speaks():
        say = not _launched() or is_main_process()  # under a launcher, the notes are printed once
        method_options = MethodOptions(
            device=device,
            dtype=dtype,
            weights=weights,
            sampler=sampler,
            steps=steps,
            jump_length=jump_length,
            jump_n_sample=jump_n_sample,
            lora=lora,
            prompt=prompt,
            negative_prompt=negative_prompt,
            guidance=guidance,
            strength=strength,
            mask_blur=mask_blur,
            crop_padding=crop_padding,
            captions=captions,
            channels_last=channels_last,
            compile=compile_,
            attention_slicing=attention_slicing,
            vae_slicing=vae_slicing,
            vae_tiling=vae_tiling,
            cpu_offload=cpu_offload,
            ema=ema,
            revision=revision,
            variant=variant,
        )
        if batch_size < 1:
            raise InputError(f"--batch-size {batch_size}: must be at least 1")
        for argument in (image, mask):  # before a method is chosen or the output path looked at
            path = Path(argument)
            if argument != STDIO and not path.exists() and path.parent.is_dir():
                raise InputError(f"{argument}: no such file")
        info = (
            models.get_method(model)
            if model
            else models.best_available(method_options, adjust=lambda name, opts: project.method_defaults(name, opts)[0])
        )
        ignored = info.ignored_options(method_options)
        if ignored and say:
            console.warn(f"{info.name} does not use {', '.join(ignored)}: ignored")
        # The project's run folders (runs/ddpm, runs/lora) serve when no --weights/--lora names others.
        method_options, chosen = project.method_defaults(info.name, method_options)
        using = f" ({'; '.join(chosen)})" if chosen else ""
        if model is None and say:
            console.info(f"using {info.name}{using}: the best method available here; choose with --model")
        elif chosen and say:
            console.info(f"using {'; '.join(chosen)} (the project's run folder; --weights/--lora choose others)")
        if output is None:
            output = STDIO if image == STDIO else str(project.completed_path(Path(image)))
        if output == STDIO and (json_output or concat):
            raise InputError("-o -: the PNG goes to stdout, so --json and --concat cannot be used with it")
        if image == STDIO and mask == STDIO:
            raise InputError("only one of IMAGE and MASK can be read from stdin")

        if image != STDIO and Path(image).is_dir():
            _complete_folder(
                info,
                method_options,
                Path(image),
                mask,
                output,
                seed=seed,
                overwrite=overwrite,
                concat=concat,
                invert_mask=invert_mask,
                resize_mask=resize_mask,
                paste_back=paste_back,
                json_output=json_output,
                batch_size=batch_size,
            )
        else:
            if _launched():  # one image has nothing to split, and stdin reaches one process only
                raise InputError(
                    f"{image}: several processes split folders of images, not one image or a pipe; "
                    "give folders (IMAGES/ MASKS/ -o OUT/), or run one process"
                )
            _complete_one(
                info,
                method_options,
                image,
                mask,
                output,
                seed=seed,
                overwrite=overwrite,
                concat=concat,
                invert_mask=invert_mask,
                resize_mask=resize_mask,
                paste_back=paste_back,
                json_output=json_output,
            )


#: How long a process other than the main one waits before it exits with an error, under a
#: launcher that stops every process once one has failed (torchrun, accelerate launch): the main
#: process, which says why (the refusal, the summary), then ends first, not stopped mid-sentence.
QUIET_EXIT_DELAY_SECONDS = 2.0


@contextlib.contextmanager
def _main_process_speaks() -> Iterator[None]:
    """Under a launcher, the main process alone says what every process would say.

    The refusals every process meets (each checks the same arguments, or they agree on one:
    :class:`~inpaint.distributed.SharedError`) are printed by the main process; the others exit
    with the same code without a word, a moment after it (:data:`QUIET_EXIT_DELAY_SECONDS`).
    Notes (the ``inpaint`` logger's info lines, such as the dtype chosen) come from the main
    process too; warnings come from every process, each about its own images.
    """
    import logging

    from inpaint.distributed import is_main_process

    quiet = _launched() and not is_main_process()
    logger = logging.getLogger("inpaint")
    level = logger.level
    if quiet:
        logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    except InpaintError as e:
        if not quiet:
            raise
        _after_the_main_process()
        raise typer.Exit(e.exit_code) from None
    except typer.Exit as e:  # failed images or a stop: the main process prints the summary
        if quiet and e.exit_code:
            _after_the_main_process()
        raise
    finally:
        logger.setLevel(level)


def _after_the_main_process() -> None:
    """Give the main process the time to say why, under a launcher that would stop it."""
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        time.sleep(QUIET_EXIT_DELAY_SECONDS)


def _launched() -> bool:
    """Whether a launcher started this process as one of several."""
    from inpaint.distributed import launched_world_size

    return launched_world_size() > 1


_LISTING = "inpaint.list_models"


def _list_models_given(ctx: typer.Context, value: bool) -> bool:
    """--list-models: list now if --json is known yet, else when it is (:func:`_json_given`)."""
    if value and not ctx.resilient_parsing:
        if "json_output" in ctx.params:
            _print_models(ctx.params["json_output"])
        ctx.meta[_LISTING] = True
    return value


def _json_given(ctx: typer.Context, value: bool) -> bool:
    if ctx.meta.get(_LISTING) and not ctx.resilient_parsing:
        _print_models(value)
    return value


def _print_models(as_json: bool) -> None:
    """Print the registry (a table, or JSON) and exit: IMAGE and MASK are not needed."""
    from inpaint import models, project
    from inpaint.models.base import MethodOptions

    rows = []
    for name in models.method_names():
        info = models.get_method(name)
        # The project's run folders count, as they do when completing (runs/ddpm for ddpm).
        reason = info.why_unavailable(project.method_defaults(name, MethodOptions(local_only=True))[0])
        rows.append(
            {
                "name": name,
                "available": reason is None,
                "reason": None if reason is None else reason.message,
                "description": info.summary,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows))
        raise typer.Exit()
    from rich.table import Column, Table

    # fold: a long hub id or command in a reason breaks across lines instead of being cut to "…"
    table = Table("method", Column("available", overflow="fold"), Column("description", overflow="fold"))
    for row in rows:
        table.add_row(row["name"], "yes" if row["available"] else f"no: {row['reason']}", row["description"])
    console.stdout.print(table)
    raise typer.Exit()


def _source(argument: str) -> tuple[object, str]:
    """A path, or stdin's bytes for ``-``; with the label used in messages.

    Stdin is read header first and only as far as an image of its size can reach
    (:func:`inpaint.io.read_stream`): a stream that is not an image, or is larger than the readers
    accept, is refused before it fills the memory.
    """
    from inpaint import io

    if argument == STDIO:
        if sys.stdin is None:
            raise InputError("-: stdin is closed; pipe an image into it or give a file")
        return io.read_stream(sys.stdin.buffer, "<stdin>"), "<stdin>"
    return Path(argument), argument


def _complete_one(
    info,
    method_options,
    image: str,
    mask: str,
    output: str,
    *,
    seed: int,
    overwrite: bool,
    concat: bool,
    invert_mask: bool,
    resize_mask: bool,
    paste_back: bool,
    json_output: bool,
) -> None:
    from inpaint import completion, io
    from inpaint.cli.progress import RichProgress

    if mask != STDIO and Path(mask).is_dir():
        raise InputError(f"{mask}: is a folder, but IMAGE is a single file; pass a mask file")
    out_path = None if output == STDIO else Path(output)
    if out_path is not None:  # before the model loads (minutes for sd on a CPU)
        completion.check_output_file(
            out_path, *(Path(p) for p in (image, mask) if p != STDIO), overwrite=overwrite, concat=concat
        )
    image_source, image_label = _source(image)
    mask_source, mask_label = _source(mask)
    started = time.perf_counter()
    inpainter = info.load(method_options)
    # A diffusion method takes minutes on a CPU: its steps show on stderr (stdout may be the PNG).
    with RichProgress(disable=json_output) as progress:
        completed = completion.complete_file(
            inpainter,
            image_source,
            mask_source,
            seed=seed,
            name=Path(image).stem if image != STDIO else "stdin",
            image_label=image_label,
            mask_label=mask_label,
            invert_mask=invert_mask,
            resize_mask=resize_mask,
            paste_back=paste_back,
            progress=progress.steps(),
        )
    written = []
    if out_path is None:
        sys.stdout.buffer.write(io.encode_image(completed.result, "PNG", icc_profile=completed.icc_profile))
        sys.stdout.buffer.flush()
    else:
        written = [str(path) for path in completion.write_result(completed, out_path, concat=concat)]
    seconds = time.perf_counter() - started
    if json_output:
        summary = {
            "files": written,
            "seconds": round(seconds, 3),
            "method": info.name,
            "seed": seed,
            "empty_mask": completed.empty_mask,
        }
        typer.echo(json.dumps(summary))
    elif out_path is not None:
        console.info(f"wrote {out_path} ({info.name}, {seconds:.2f} s)")


def _complete_folder(
    info,
    method_options,
    images_dir: Path,
    masks: str,
    output: str,
    *,
    seed: int,
    overwrite: bool,
    concat: bool,
    invert_mask: bool,
    resize_mask: bool,
    paste_back: bool,
    json_output: bool,
    batch_size: int = 1,
) -> None:
    """A folder run, split over the processes when a launcher started several.

    Each process computes on its own device (:meth:`~inpaint.distributed.Dist.for_device`;
    classical methods on the CPU). The main process checks the folders and the record and takes
    the folder's lock while the others wait (:meth:`~inpaint.distributed.Dist.agree`: a refusal
    there, or a model that fails to load in any process, stops every process with one error);
    it holds the lock until every process is done, so a second, independent run is refused
    while the processes of this one never meet it.
    """
    from inpaint import completion, locking
    from inpaint.cli import stopping
    from inpaint.cli.progress import RichProgress
    from inpaint.distributed import Dist

    if masks == STDIO or not Path(masks).is_dir():
        raise InputError(f"{masks}: IMAGE is a folder, so MASK must be a folder of masks too")
    if output == STDIO:
        raise InputError("-o -: a folder of images cannot be written to stdout; give an output folder")
    out_dir = Path(output)
    requested = method_options.device
    dist, device = Dist.for_device(requested, cpu_only=not info.heavy)
    if dist.world > 1 and info.heavy and ":" in requested and dist.is_main:
        console.warn(
            f"--device {requested} names one device; each of the {dist.world} processes uses its own "
            f"(the launcher's: {device} here)"
        )
    method_options = dataclasses.replace(method_options, device=device)
    try:
        with contextlib.ExitStack() as held:
            pairs, ignored, settings = None, None, None
            with dist.agree():
                if dist.is_main:
                    pairs, ignored, settings = _check_folder(
                        info,
                        method_options,
                        images_dir,
                        Path(masks),
                        out_dir,
                        seed=seed,
                        overwrite=overwrite,
                        concat=concat,
                        invert_mask=invert_mask,
                        resize_mask=resize_mask,
                        paste_back=paste_back,
                    )
                    # One run per output folder, locked before the model loads (minutes for sd).
                    held.enter_context(locking.lock_folder(out_dir))
            if dist.world > 1:
                pairs, ignored, settings = dist.broadcast((pairs, ignored, settings))
            stop = held.enter_context(stopping.graceful_stop("this image or batch"))
            with dist.agree():
                inpainter = info.load(method_options)
            with RichProgress(disable=json_output or not dist.is_main) as progress:
                report = completion.complete_folder(
                    inpainter,
                    pairs,
                    seed=seed,
                    overwrite=overwrite,
                    concat=concat,
                    invert_mask=invert_mask,
                    resize_mask=resize_mask,
                    paste_back=paste_back,
                    batch_size=batch_size,
                    progress=progress,
                    step_progress=progress.steps(),
                    settings=settings,
                    stop_requested=stop,
                    dist=dist,
                )
    finally:
        dist.close()
    report.ignored_files = ignored
    if dist.is_main:
        _print_summary(report, out_dir, info.name, json_output)
    if report.stopped:
        done = len(report.written) + len(report.skipped_existing)
        if not dist.is_main:
            raise typer.Exit(stop.exit_code)
        raise stopping.stopped(stop, f"with {done} of {len(pairs)} images done")
    if report.failed:
        if dist.is_main:
            console.error(f"{len(report.failed)} of {len(pairs)} images failed (see the warnings above)")
        raise typer.Exit(1)


def _check_folder(
    info,
    method_options,
    images_dir: Path,
    masks_dir: Path,
    out_dir: Path,
    *,
    seed: int,
    overwrite: bool,
    concat: bool,
    invert_mask: bool,
    resize_mask: bool,
    paste_back: bool,
) -> tuple[list, list[str], dict]:
    """Match the folders and refuse, before the model loads and before anything is written, an
    output folder that cannot be written or whose outputs other settings made; returns the pairs,
    the files ignored and the settings to record."""
    from inpaint import completion, folder_record, io

    pairs, ignored = completion.pair_folders(images_dir, masks_dir, out_dir)
    unsupported, strays = io.split_unsupported(ignored)
    if unsupported:
        console.warn(io.unsupported_message(images_dir, unsupported))
    if strays:
        console.warn(f"{images_dir}: skipped {len(strays)} non-image file(s), e.g. {strays[0]}")
    completion.check_output_folder(pairs, concat=concat)
    settings = folder_record.folder_settings(
        info.name, method_options, seed=seed, paste_back=paste_back, invert_mask=invert_mask, resize_mask=resize_mask
    )
    folder_record.FolderRecord(out_dir, settings).check(overwrite=overwrite)
    return pairs, ignored, settings


def _print_summary(report, out_dir: Path, method: str, json_output: bool) -> None:
    """The run's summary on stdout (``--json``) or one line on stderr."""
    if json_output:
        summary = report.to_dict()
        summary["files"] = [str(out_dir / f"{name}.png") for name in report.written]
        typer.echo(json.dumps(summary))
        return
    redone = ", ".join(
        f"{len(names)} redone: {why}"
        for names, why in (
            (report.redone_inputs_changed, "inputs changed"),
            (report.redone_unrecorded, "not in the record"),
        )
        if names
    )
    console.info(
        f"{len(report.written)} written{f' ({redone})' if redone else ''}, "
        f"{len(report.skipped_existing)} already done, "
        f"{len(report.failed)} failed -> {out_dir} ({method}, {report.seconds:.1f} s)"
    )
