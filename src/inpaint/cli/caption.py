"""``inpaint caption``: BLIP captions for a folder of images, as JSON, resumable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from inpaint.captions import DEFAULT_CAPTION_MODEL as DEFAULT_MODEL
from inpaint.captions import DEFAULT_SUFFIX
from inpaint.cli import console, options


def caption(
    data: Annotated[Path, typer.Argument(help="Folder of images to caption.", show_default=False)],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Captions JSON file {file name: caption} (default: DATA/captions.json).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str, typer.Option("--model", help="BLIP captioning model: hub id or local folder.")
    ] = DEFAULT_MODEL,
    revision: options.Revision = None,
    variant: options.Variant = None,
    suffix: Annotated[str, typer.Option("--suffix", help="Appended to every caption (--suffix '' for none).")] = (
        DEFAULT_SUFFIX
    ),
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per BLIP call.")] = 16,
    device: options.Device = "auto",
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite/--no-overwrite",
            help="Caption every image again (default: keep the captions already in the file and do only the others).",
        ),
    ] = False,
    json_output: options.Json = False,
    config: options.Config = None,
) -> None:
    """Caption every image of DATA with BLIP (greedy decoding, deterministic), as the study did.

    The JSON file is rewritten atomically after every batch: interrupt at will, and run the same
    command again to caption only what is missing. Ctrl-C, SIGTERM or SIGUSR1 stop it after the
    batch in hand (exit 128 + the signal's number). One run per output file: a second is refused.

    Examples:

    ```
    inpaint caption faces/                       # writes faces/captions.json
    inpaint caption faces/ --model ./blip-base --suffix ''
    ```
    """
    from inpaint.captions import caption_folder
    from inpaint.cli import stopping
    from inpaint.cli.progress import RichProgress

    with stopping.graceful_stop("this batch (the captions made so far are saved)") as stop:
        with RichProgress(disable=json_output) as progress:
            report = caption_folder(
                data,
                output,
                model=model,
                suffix=suffix,
                batch_size=batch_size,
                device=device,
                overwrite=overwrite,
                progress=progress,
                revision=revision,
                variant=variant,
                stop_requested=stop,
            )
    if json_output:
        typer.echo(
            json.dumps(
                {
                    "output": str(report.output),
                    "total": report.total,
                    "captioned": len(report.captioned),
                    "already_done": report.already_done,
                    "seconds": round(report.seconds, 3),
                }
            )
        )
    else:
        console.info(
            f"{len(report.captioned)} captioned, {report.already_done} already done -> {report.output} "
            f"({report.seconds:.1f} s)"
        )
    if report.stopped:
        done = report.already_done + len(report.captioned)
        raise stopping.stopped(stop, f"with {done} of {report.total} images captioned")
