"""``inpaint bench``: run methods over a test set and score them under one recorded protocol.

click has no options that take several values, so ``--models ddpm sd`` is rewritten before
parsing (:func:`expand_models`) into ``--models ddpm --models sd``; ``--models ddpm,sd`` and a
repeated ``--models`` work as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from inpaint.cli import console, options

COMMAND = "bench"
MODELS_FLAGS = ("--models", "-m")
#: Options of the root command that may come before the subcommand name.
_ROOT_FLAGS = {"--debug", "--version", "-h", "--help"}


def expand_models(argv: list[str]) -> list[str]:
    """``inpaint bench --models a b c …`` -> ``… --models a --models b --models c …``.

    Only for the ``bench`` subcommand: the values after ``--models`` (or ``-m``) run until the
    next token that starts with ``-``. Everything else, and everything after ``--``, is unchanged.
    """
    position = next((i for i, token in enumerate(argv) if token not in _ROOT_FLAGS), None)
    if position is None or argv[position] != COMMAND:
        return list(argv)
    out, i = list(argv[: position + 1]), position + 1
    while i < len(argv):
        token = argv[i]
        if token == "--":
            out.extend(argv[i:])
            break
        out.append(token)
        i += 1
        if token in MODELS_FLAGS:
            first = True
            while i < len(argv) and not argv[i].startswith("-"):
                out.extend([argv[i]] if first else [token, argv[i]])
                first = False
                i += 1
    return out


def bench(
    models: Annotated[
        list[str],
        typer.Option(
            "--models",
            "-m",
            help="Methods to compare: --models ddpm sd, --models ddpm,sd or a repeated "
            "--models (see 'inpaint complete --list-models').",
            show_default=False,
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Folder of test images (the ground truth; default: ./test/).",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    masks: Annotated[
        str | None,
        typer.Option(
            "--masks",
            help="Folder of masks matched to the images by file "
            "stem, or a mask preset or comma-separated mixture of presets (see "
            "'inpaint make-masks --list-presets'): one mask per image, written "
            "to OUTPUT/masks (default: ./masks/ with the default --data, else "
            "lama-thin,lama-medium,lama-thick).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Results folder: outputs/, reports, pictures; rerunning resumes (default: ./results/).",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    eval_size: Annotated[
        int,
        typer.Option(
            "--eval-size", help="Every image is scored at this square size (bicubic for images, nearest for masks)."
        ),
    ] = 256,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw/--no-raw",
            help="Score the methods' raw outputs; default: composites, with the "
            "known pixels pasted back from the original.",
        ),
    ] = False,
    weights: Annotated[
        list[str] | None,
        typer.Option(
            "--weights",
            "-w",
            help="NAME=PATH: weights of method NAME (hub id or folder), e.g. "
            "ddpm=runs/ddpm (ddpm's default: ./runs/ddpm; sd takes the LoRA in ./runs/lora when there "
            "is one). Repeatable.",
            show_default=False,
        ),
    ] = None,
    model_option: Annotated[
        list[str] | None,
        typer.Option(
            "--model-option",
            help="NAME.KEY=VALUE: a setting of method NAME (ddpm.steps=50, "
            "repaint.sampler=fast, sd.lora=DIR); KEY=VALUE sets every method. Repeatable.",
            show_default=False,
        ),
    ] = None,
    lpips_net: Annotated[
        str, typer.Option("--lpips-net", help="LPIPS backbone: alex (default, as papers) or vgg.")
    ] = "alex",
    lpips_weights: Annotated[
        Path | None,
        typer.Option(
            "--lpips-weights",
            help="torchvision's alexnet-owt-7be5be79.pth (or vgg16-397923af.pth), or a folder holding it.",
        ),
    ] = None,
    fid_weights: Annotated[
        Path | None,
        typer.Option(
            "--fid-weights", help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or a folder holding it."
        ),
    ] = None,
    lpips: Annotated[bool, typer.Option("--lpips/--no-lpips", help="Compute LPIPS (if its weights are found).")] = True,
    fid: Annotated[
        bool, typer.Option("--fid/--no-fid", help="Compute FID and KID (if Inception's weights are found).")
    ] = True,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict/--no-strict",
            help="Fail (exit 2) instead of marking LPIPS/FID unavailable when their weights are missing.",
        ),
    ] = False,
    seam_width: Annotated[
        int,
        typer.Option(
            "--seam-width",
            help="Width in pixels (at the evaluation size) of the band on each side of the hole boundary.",
        ),
    ] = 8,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", help="Images per method call (same-size images only); results do not depend on it."
        ),
    ] = 1,
    worst_k: Annotated[int, typer.Option("--worst-k", help="Images in each method's worst-case gallery.")] = 8,
    grid_images: Annotated[int, typer.Option("--grid-images", help="Images in grid.png (a fixed sample).")] = 8,
    kid_subsets: Annotated[int, typer.Option("--kid-subsets", help="KID: number of random subsets.")] = 100,
    kid_subset_size: Annotated[
        int | None,
        typer.Option(
            "--kid-subset-size",
            help="KID: images per subset "
            "(default: 1000, or half the images when there are "
            "fewer than 2000, so the subsets differ and KID has a "
            "spread).",
            show_default=False,
        ),
    ] = None,
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype",
            help="auto (fp16 on CUDA; bf16 on a CPU with native bf16, "
            "AVX512-BF16 or AMX, said on stderr; else fp32), fp32, fp16 or bf16, for "
            "every method.",
        ),
    ] = "auto",
    seed: options.Seed = 0,
    device: options.Device = "auto",
    invert_mask: options.InvertMask = False,
    resize_mask: options.ResizeMask = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite/--no-overwrite",
            help="Regenerate every output (default: reuse the outputs a previous run made from the same inputs).",
        ),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json/--no-json", help="Print results.json on stdout instead of the table.")
    ] = False,
    config: options.Config = None,
) -> None:
    """Compare completion methods on one test set: same pairs, same seeds, one protocol.

    Writes OUTPUT/results.json, per_image.csv, report.md, metrics.png, grid.png and
    galleries/worst-METHOD.png; the methods' outputs go to OUTPUT/outputs/METHOD/. Interrupt at
    will (Ctrl-C, SIGTERM, SIGUSR1 stop after the image in hand): the same command reuses the
    outputs made. One run per OUTPUT: a second is refused.

    Examples:

    ```
    inpaint bench --models ddpm sd       # ./test/, ./masks/ (or LaMa masks), ./runs/ddpm, ./runs/lora -> ./results/
    inpaint bench --models ddpm sd --data test/ --masks masks/ -o results/
    inpaint bench --models telea,biharmonic --data test/ --masks lama-thick -o results/
    inpaint bench -m ddpm -w ddpm=runs/ddpm --model-option ddpm.steps=50 --data test/ --masks masks/ -o results/
    ```
    """
    from inpaint import project
    from inpaint.bench import BenchConfig, parse_method_settings, run_bench
    from inpaint.bench.config import unique_models
    from inpaint.bench.distributed import is_main_process
    from inpaint.cli import stopping
    from inpaint.cli.progress import RichProgress
    from inpaint.errors import Stopped

    names = unique_models(models)
    method_options = parse_method_settings(weights or [], model_option or [], names)
    data, masks, output, implicit = project.bench_defaults(names, data, masks, output, method_options)
    main = is_main_process()
    for choice in implicit if main else []:
        console.info(f"using {choice}")
    bench_config = BenchConfig(
        models=names,
        data=data,
        masks=masks,
        output=output,
        seed=seed,
        eval_size=eval_size,
        raw=raw,
        device=device,
        dtype=dtype,
        method_options=method_options,
        implicit_choices=implicit,
        lpips=lpips,
        lpips_net=lpips_net,
        lpips_weights=None if lpips_weights is None else str(lpips_weights),
        fid=fid,
        fid_weights=None if fid_weights is None else str(fid_weights),
        strict=strict,
        seam_width=seam_width,
        batch_size=batch_size,
        worst_k=worst_k,
        grid_images=grid_images,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        overwrite=overwrite,
        invert_mask=invert_mask,
        resize_mask=resize_mask,
    )
    with stopping.graceful_stop("this image or batch (the outputs made so far are kept)") as stop:
        try:
            with RichProgress(disable=json_output or not main) as progress:
                result = run_bench(bench_config, progress=progress, stop_requested=stop, step_progress=progress.steps())
        except Stopped as e:
            if not main:
                raise typer.Exit(stop.exit_code) from None
            raise stopping.stopped(stop, str(e)) from None
    if result is None:  # another process of a multi-process run: the main one reports
        return
    turned_off = {"lpips": not lpips, "fid": not fid}  # by the user: nothing to warn about
    for metric, reason in result.unavailable.items():
        if metric in turned_off and not turned_off[metric]:
            console.warn(f"{metric.upper()} unavailable: {reason}")
    for warning in result.warnings:
        console.warn(warning)
    for error in result.failed.values():
        console.warn(error)
    if json_output:
        typer.echo(json.dumps(result.results))
    else:
        _print_table(result)
        done = ", ".join(f"{m} {result.written[m]} new / {result.reused[m]} reused" for m in names)
        console.info(f"{result.n_images} images scored ({done}) -> {result.files['report']}")
    if result.failed:
        console.error(
            f"{len(result.failed)} of {result.total_images} images failed and were not scored "
            "(see the warnings above, or failed_images in results.json)"
        )
        raise typer.Exit(1)


def _print_table(result) -> None:
    """The study's table (model | PSNR | SSIM | LPIPS | FID), then hole metrics and cost."""
    from rich.table import Table

    from inpaint.bench.report import format_cell

    protocol = result.results["protocol"]
    title = f"{result.n_images} images at {protocol['resolution']['eval_size'][0]} px, {protocol['scoring']}"
    main = {"psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS", "fid": "FID"}
    hole = {"psnr_hole": "PSNR hole", "ssim_hole": "SSIM hole", "lpips_hole": "LPIPS hole", "kid": "KID x1000"}
    for number, (titles, caption) in enumerate(((main, "95 % intervals in report.md"), (hole, None))):
        columns = [m for m in titles if m not in result.unavailable]  # the reasons were printed as warnings
        table = Table(title=title if number == 0 else None, caption=caption)
        table.add_column("model", no_wrap=True)
        for metric in columns:
            table.add_column(titles[metric], justify="right")
        if number == 1:
            table.add_column("s / image", justify="right")
            table.add_column("NFE / image", justify="right")
        for s in result.summaries:
            cells = [format_cell(s, m, result.unavailable, interval=False) for m in columns]
            if number == 1:
                cells.append("n/a" if s.seconds_per_image is None else f"{s.seconds_per_image:.3f}")
                cells.append("n/a" if s.nfe_per_image is None else f"{s.nfe_per_image:g}")
            table.add_row(s.model, *cells)
        console.stdout.print(table)
