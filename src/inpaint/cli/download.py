"""``inpaint download``: fetch the models and metric weights a run needs into the standard caches."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from inpaint.cli import console, options


def download(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="What to fetch (default: ddpm sd blip lpips fid): ddpm = google/ddpm-celebahq-256 "
            "(repaint, train-ddpm), sd = stable-diffusion-v1-5/stable-diffusion-inpainting (sd, "
            "train-lora), sdxl = diffusers/stable-diffusion-xl-1.0-inpainting-0.1 (sdxl), flux = "
            "black-forest-labs/FLUX.1-Fill-dev (flux; gated on the hub: accept its licence, then `hf auth login`), "
            "kandinsky = kandinsky-community/kandinsky-2-2-decoder-inpaint with kandinsky-prior = "
            "kandinsky-community/kandinsky-2-2-prior (kandinsky; naming kandinsky fetches both), "
            "blip = Salesforce/blip-image-captioning-base (caption), lpips = "
            "alexnet-owt-7be5be79.pth, fid = pt_inception-2015-12-05-6726825d.pth (bench), lpips-vgg = "
            "vgg16-397923af.pth.",
            show_default=False,
        ),
    ] = None,
    revision: Annotated[
        str | None,
        typer.Option("--revision", help="Branch, tag or commit of the one hub model named (default: main)."),
    ] = None,
    variant: options.Variant = None,
    json_output: options.Json = False,
    config: options.Config = None,
) -> None:
    """Download the models and weight files runs need, into the Hugging Face cache and torch.hub's
    checkpoints folder, where inpaint looks for them. Files already there are skipped; an
    interrupted download resumes. Offline (HF_HUB_OFFLINE=1) nothing is fetched: it lists what is
    present (with paths) and what is missing, and exits 1 if anything is.

    Examples:

    ```
    inpaint download                      # everything the study uses
    inpaint download sd blip --variant fp16
    HF_HUB_OFFLINE=1 inpaint download     # what is here, what is missing
    ```
    """
    from huggingface_hub import constants

    from inpaint.cli.progress import RichProgress
    from inpaint.download import download as fetch
    from inpaint.errors import InpaintError

    offline = bool(constants.HF_HUB_OFFLINE)
    with RichProgress(disable=json_output) as progress:
        statuses = fetch(names or (), revision=revision, variant=variant, offline=offline, progress=progress)
    if json_output:
        typer.echo(
            json.dumps(
                {"offline": offline, "hub_cache": str(constants.HF_HUB_CACHE), "items": [s.to_dict() for s in statuses]}
            )
        )
    else:
        for s in statuses:
            line = f"{s.status}: {s.name} ({s.source})"
            if s.ok:
                line += f" at {s.path}"
            else:
                line += f": lacks {', '.join(s.lacking)}" if s.lacking else ""
                line += f" ({s.error})" if s.error else ""
                line += f"; goes to {s.path}"
            typer.echo(console.one_line(line))
    lacking = [s.name for s in statuses if not s.ok]
    if lacking:
        why = (
            (
                "offline (HF_HUB_OFFLINE=1): run `inpaint download` on a machine with network access and copy its "
                "caches here, or unset HF_HUB_OFFLINE"
            )
            if offline
            else "see the lines above"
        )
        raise InpaintError(f"{len(lacking)} of {len(statuses)} not here: {', '.join(lacking)}; {why}")
