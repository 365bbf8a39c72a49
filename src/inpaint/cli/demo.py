"""``inpaint demo``: the offline first run — real photos, several presets, every available method."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from inpaint.cli import console, options


def demo(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Folder for the grid, table and images.", file_okay=False)
    ] = Path("inpaint-demo"),
    size: Annotated[int, typer.Option("--size", help="Side of the square photos, in pixels.", min=32)] = 256,
    photo: Annotated[
        list[str] | None,
        typer.Option("--photo", help="scikit-image photo to use (repeatable; default: all four)."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Method to compare (repeatable; default: every available one)."),
    ] = None,
    seed: options.Seed = 0,
    json_output: options.Json = False,
    config: options.Config = None,
) -> None:
    """Complete scikit-image's photos with every method available offline; write a grid and a table."""
    import json
    from dataclasses import asdict

    from rich.table import Table

    from inpaint.cli.progress import RichProgress
    from inpaint.demo import run_demo

    with RichProgress(disable=json_output) as progress:
        result = run_demo(output, size=size, photos=photo, methods=model, seed=seed, progress=progress)
    if json_output:
        typer.echo(
            json.dumps(
                {
                    "grid": str(result.grid),
                    "table": str(result.table),
                    "seconds": round(result.seconds, 2),
                    "scores": [asdict(s) for s in result.scores],
                }
            )
        )
        return
    table = Table(
        "method",
        "PSNR",
        "PSNR hole",
        "SSIM",
        "SSIM hole",
        "s/image",
        title=f"{len(result.photos)} photos at {size} px (means; known pixels pasted back)",
    )
    for s in result.scores:
        table.add_row(
            s.method,
            f"{s.psnr:.2f}",
            f"{s.psnr_hole:.2f}",
            f"{s.ssim:.4f}",
            f"{s.ssim_hole:.4f}",
            f"{s.seconds_per_image:.3f}",
        )
    console.stdout.print(table)
    console.info(f"grid: {result.grid}")
    console.info(f"table: {result.table}  ({result.seconds:.1f} s)")
