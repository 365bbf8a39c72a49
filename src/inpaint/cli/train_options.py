"""Options shared by ``train-ddpm`` and ``train-lora``, and the code that turns them into a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from inpaint.cli import console, options, stopping

Data = Annotated[Path, typer.Argument(help="Folder of training images.", show_default=False)]
Output = Annotated[
    Path,
    typer.Option(
        "-o",
        "--output",
        help="Run folder: checkpoints, logs, samples and the "
        "trained weights; where complete and bench find them by default.",
        file_okay=False,
    ),
]
Resolution = Annotated[
    int,
    typer.Option(
        "--resolution",
        help="Training size: images are resized (short side) and centre-cropped to a square of this side.",
    ),
]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Images per step and process.")]
Lr = Annotated[float, typer.Option("--lr", help="AdamW learning rate.", callback=options.finite)]
Epochs = Annotated[
    float, typer.Option("--epochs", help="Passes over the data (ignored with --max-steps).", callback=options.finite)
]
MaxSteps = Annotated[int | None, typer.Option("--max-steps", help="Optimizer steps to train for (overrides --epochs).")]
SaveEvery = Annotated[int, typer.Option("--save-every", help="Checkpoint every N steps (and at each epoch's end).")]
KeepLast = Annotated[
    int, typer.Option("--keep-last", help="Checkpoints to keep (older ones are deleted once a newer one is verified).")
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume/--no-resume",
        help="Continue from the latest checkpoint in the output folder; --no-resume refuses a folder that holds one.",
    ),
]
Masks = Annotated[
    list[str] | None,
    typer.Option(
        "--masks",
        help="Mask presets to draw from per image "
        "(repeat or comma-separate for a mix; default lama-thin, "
        "lama-medium, lama-thick) or a folder of masks matched by stem.",
    ),
]
GradAccum = Annotated[int, typer.Option("--grad-accum", help="Micro-batches accumulated per optimizer step.")]
LrSchedule = Annotated[str, typer.Option("--lr-schedule", help="constant, constant_with_warmup, linear or cosine.")]
WarmupSteps = Annotated[int, typer.Option("--warmup-steps", help="Linear LR warm-up steps.")]
ClipGradNorm = Annotated[
    float, typer.Option("--clip-grad-norm", help="Clip the gradient norm to this (0: off).", callback=options.finite)
]
MixedPrecision = Annotated[
    str,
    typer.Option(
        "--mixed-precision",
        help="auto (fp16 + grad scaler on CUDA; bf16 "
        "autocast on a CPU with native bf16, AVX512-BF16 or AMX, said on "
        "stderr; else fp32), no, fp16 (not on the CPU) or bf16. Weights, "
        "optimiser and EMA stay fp32.",
    ),
]
EmaDecay = Annotated[float, typer.Option("--ema-decay", help="EMA of the weights (0: off).", callback=options.finite)]
ValidateEvery = Annotated[int, typer.Option("--validate-every", help="Validate every N steps (0: at each checkpoint).")]
ValImages = Annotated[
    int,
    typer.Option(
        "--val-images",
        help="Images completed at validation, with fixed masks and "
        "seeds (0: no validation): held out of training (chosen by the seed) when "
        "the folder has at least 5 times as many, else training images.",
    ),
]
ValData = Annotated[
    Path | None,
    typer.Option(
        "--val-data",
        help="Folder of validation images (--val-images of them), instead of holding images of DATA out of training.",
        file_okay=False,
        show_default=False,
    ),
]
Flip = Annotated[bool, typer.Option("--flip/--no-flip", help="Random horizontal flips.")]
Workers = Annotated[int, typer.Option("--workers", help="Data-loading processes.")]


def study_run(method: str):
    """The study's run of ``method``, the library's defaults (:data:`inpaint.config.METHOD_DEFAULTS`):
    what every option of its train command defaults to."""
    from inpaint.config import METHOD_DEFAULTS, TrainConfig

    defaults = METHOD_DEFAULTS[method]
    return TrainConfig(method=method, data="DATA", output=str(defaults.run), base=defaults.base)


def build_config(method: str, parameters: dict[str, Any]):
    """The shared :class:`~inpaint.config.TrainConfig` from a train command's parameters (its ``locals()``).

    Every field of the config is a parameter of the same name in both train commands; taking
    them by name keeps the two commands from drifting apart.
    """
    import dataclasses

    from inpaint.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"method", "method_options"}
    values = {name: parameters[name] for name in names if name in parameters}
    values.update(data=str(values["data"]), output=str(values["output"]), masks=list(values["masks"] or []))
    if values.get("val_data") is not None:
        values["val_data"] = str(values["val_data"])
    return TrainConfig(method=method, **values)


#: What a stop signal lets a training run finish.
STOP_AFTER = "this step (a checkpoint will be saved)"


def run_training(task, config, *, resume: bool, json_output: bool, stop: stopping.StopRequest | None = None) -> None:
    """Run the shared loop with a progress bar.

    A stop signal (Ctrl-C, SIGTERM, SIGUSR1: :mod:`inpaint.cli.stopping`) finishes the step in
    hand, checkpoints it and exits with 128 + the signal's number; the same command resumes.
    ``stop``: the request of a :func:`~inpaint.cli.stopping.graceful_stop` the command entered
    already (a signal that came before training then stops it at its first step).
    """
    import contextlib
    from dataclasses import asdict

    from inpaint.cli.progress import RichProgress
    from inpaint.training.loop import train

    if stop is not None:
        stop.after = STOP_AFTER
    with stopping.graceful_stop(STOP_AFTER) if stop is None else contextlib.nullcontext(stop) as stop:
        with RichProgress(disable=json_output) as progress:
            result = train(task, config, progress=progress, resume=resume, stop_requested=stop)
    if not result.main_process:
        if result.stopped_early and stop():
            raise typer.Exit(stop.exit_code)
        return
    summary = {**asdict(result), "output": str(result.output), "artefacts": [str(p) for p in result.artefacts]}
    if result.stopped_early and stop():
        summary["stopped_by"] = stop.name
    if json_output:
        typer.echo(json.dumps(summary))
    else:
        if result.resumed_from:
            console.info(f"resumed from step {result.resumed_from}")
        loss = f"{result.last_loss:.4g}" if result.last_loss is not None else "n/a"
        console.info(
            f"step {result.step}/{result.total_steps}, last loss {loss}, {result.seconds:.1f} s -> {config.output}"
        )
        if result.validation:
            console.info("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in result.validation.items()))
    if result.stopped_early:
        if not stop():  # another process of the launch was signalled: this one stopped with it
            console.info("stopped early; run the same command again to continue")
            raise typer.Exit(0)
        raise stopping.stopped(stop, f"at step {result.step} of {result.total_steps} (checkpoint saved)")
