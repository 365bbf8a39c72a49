"""``inpaint make-masks``: reproducible masks from named presets, with a manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from inpaint.cli import console, options
from inpaint.errors import InputError


def _parse_size(text: str) -> tuple[int, int]:
    """``256`` -> (256, 256); ``320x240`` -> (320, 240) as (width, height)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"--size {text!r}: expected N or WxH, e.g. 256 or 320x240") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 8:
        raise InputError(f"--size {text!r}: expected N or WxH with sides of at least 8 pixels")
    return values[0], values[1]


def make_masks(
    images: Annotated[
        Path | None,
        typer.Argument(
            help="Folder of images: one mask per image, same stem and size. "
            "Omit it and give --size and --count for standalone masks.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="Folder to write the masks and manifest.json to.",
            file_okay=False,
            show_default=False,
        ),
    ] = Path("masks"),
    preset: Annotated[
        list[str],
        typer.Option(
            "--preset",
            "-p",
            help="Mask preset (see --list-presets). Repeat it for a mixture: each mask picks one preset at random.",
        ),
    ] = ["lama-thick"],  # noqa: B006 - typer needs a list default
    seed: options.Seed = 0,
    size: Annotated[str | None, typer.Option("--size", help="Standalone masks: N or WxH pixels.")] = None,
    count: Annotated[int | None, typer.Option("--count", help="Standalone masks: how many.", min=1)] = None,
    min_ratio: Annotated[
        float | None,
        typer.Option(
            "--min-ratio",
            help="Resample until the hole covers at least this fraction of the image.",
            callback=options.finite,
        ),
    ] = None,
    max_ratio: Annotated[
        float | None,
        typer.Option(
            "--max-ratio",
            help="Resample until the hole covers at most this fraction (LaMa presets: 0.5).",
            callback=options.finite,
        ),
    ] = None,
    overwrite: options.Overwrite = False,
    json_output: options.Json = False,
    list_presets: Annotated[
        bool,
        typer.Option(
            "--list-presets",
            help="List the presets and exit.",
            is_eager=True,
            callback=lambda value: _print_presets() if value else None,
        ),
    ] = False,
    config: options.Config = None,
) -> None:
    """Write masks (white = fill) from a preset, the same bytes for the same seed every time.

    Examples:

    ```
    inpaint make-masks data/ --preset lama-thick --seed 0 -o masks/
    inpaint make-masks --size 256 --count 500 --preset lama-thin -o masks/
    ```
    """
    from inpaint import mask_sets
    from inpaint.cli.progress import RichProgress

    for name in preset:
        _check_preset(name)
    with RichProgress(disable=json_output) as progress:
        if images is not None:
            if size is not None or count is not None:
                raise InputError(
                    "--size and --count make standalone masks; with an image folder the masks take each image's size"
                )
            summary = mask_sets.masks_for_images(
                images,
                output,
                presets=preset,
                seed=seed,
                min_ratio=min_ratio,
                max_ratio=max_ratio,
                overwrite=overwrite,
                progress=progress,
            )
        else:
            if size is None or count is None:
                raise InputError("give a folder of images, or --size and --count for standalone masks")
            width, height = _parse_size(size)
            summary = mask_sets.standalone_masks(
                output,
                width=width,
                height=height,
                count=count,
                presets=preset,
                seed=seed,
                min_ratio=min_ratio,
                max_ratio=max_ratio,
                overwrite=overwrite,
                progress=progress,
            )
    if json_output:
        typer.echo(json.dumps(summary.to_dict()))
    else:
        _print_summary(summary)


def _check_preset(name: str) -> None:
    from inpaint import masks

    masks.get_preset(name)


def _print_presets() -> None:
    """Print the presets as a table and exit."""
    from rich.table import Table

    from inpaint import masks

    table = Table("preset", "description", "source")
    for name in masks.preset_names():
        preset = masks.get_preset(name)
        table.add_row(name, preset.summary, preset.reference)
    console.stdout.print(table)
    raise typer.Exit()


def _print_summary(summary) -> None:
    from rich.table import Table

    console.info(
        f"{summary.count} masks -> {summary.manifest.parent} "
        f"(hole ratio mean {summary.mean:.3f}, min {summary.min:.3f}, max {summary.max:.3f})"
    )
    table = Table("hole area", "masks", title="LaMa area bins")
    for i, n in enumerate(summary.bins):
        table.add_row(f"{10 * i}-{10 * (i + 1)} %", str(n))
    console.stderr.print(table)
