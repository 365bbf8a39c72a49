"""The project folder: where the commands look when the user names nothing.

A user who types ``inpaint train-lora data/`` or ``inpaint bench --models ddpm sd`` works in a
folder laid out like this (every path relative to the current directory)::

    data/          training images                      train-ddpm DATA, train-lora DATA, caption DATA
    test/          held-out test images                 bench --data
    masks/         test masks, matched to test/ by stem bench --masks (else the LaMa mixture below)
    runs/ddpm/     train-ddpm's run folder              train-ddpm -o; the ddpm method's weights
    runs/lora/     train-lora's run folder              train-lora -o; the sd method's LoRA
    results/       bench's report                       bench -o
    inpaint.toml   option defaults for every command    (see inpaint.cli.config_file)

The commands print every choice made here for the user (on stderr) and ``bench`` records them in
``results.json``. Nothing here reads a file: these are names and cheap existence checks, used by
the CLI; the library itself never looks in the current directory on its own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from inpaint.models.base import MethodOptions

#: train-ddpm's default run folder, and where the ddpm method finds its weights.
DDPM_RUN = Path("runs/ddpm")
#: train-lora's default run folder, and where the sd method finds its LoRA.
LORA_RUN = Path("runs/lora")
#: bench's test images.
TEST_IMAGES = Path("test")
#: bench's test masks (a folder matched by stem); absent, bench draws :data:`TEST_MASK_PRESETS`.
TEST_MASKS = Path("masks")
#: The study's test masks when there is no mask folder: LaMa's thin/medium/thick mixture, one per
#: image (the training masks' mixture too), written into the results folder.
TEST_MASK_PRESETS = "lama-thin,lama-medium,lama-thick"
#: bench's output folder.
RESULTS = Path("results")


def completed_path(source: Path) -> Path:
    """Where ``complete`` writes when no ``-o`` is given: beside the input, never over it.

    A file ``dir/photo.jpg`` -> ``dir/photo_inpainted.png`` (PNG: lossless, so the known pixels
    stay bit-exact whatever the input's format); a folder ``photos/`` -> ``photos_inpainted/``.
    """
    from inpaint.io import COMPLETED_SUFFIX  # inpaint.io.list_images knows these files for what they are

    source = Path(source)
    if source.is_dir():
        resolved = source.resolve()
        return resolved.with_name(f"{resolved.name}{COMPLETED_SUFFIX}")
    return source.with_name(f"{source.stem}{COMPLETED_SUFFIX}.png")


def ddpm_run_ready(folder: Path = DDPM_RUN) -> bool:
    """A finished train-ddpm run (its exported model) sits in ``folder``."""
    return (folder / "config.json").is_file()


def lora_run_ready(folder: Path = LORA_RUN) -> bool:
    """A finished train-lora run (its LoRA file) sits in ``folder``."""
    from inpaint.models.lora_files import LORA_WEIGHT_NAME

    return (folder / LORA_WEIGHT_NAME).is_file()


def unfinished_run(folder: Path) -> str | None:
    """Why ``folder`` cannot serve yet when it is a run folder that has not exported anything."""
    if (folder / "checkpoints").is_dir():
        return (
            f"{folder} holds checkpoints but no trained weights yet (the training has not finished; run the "
            "same train command again to resume it)"
        )
    return None


def method_defaults(method: str, options: MethodOptions) -> tuple[MethodOptions, list[str]]:
    """``options`` with the project's run folders filled in for ``method``, and what was filled.

    ``ddpm`` without ``weights`` takes :data:`DDPM_RUN`; ``sd`` on its default base without a
    ``lora`` takes :data:`LORA_RUN` (train-lora's default base is sd's: a LoRA is only taken for the
    base it was trained on) — each only when a finished run is there. Returns the options and one
    line per choice made (for the user and the record); options the user set are never changed.
    """
    if method == "ddpm" and options.weights is None and ddpm_run_ready():
        return dataclasses.replace(options, weights=str(DDPM_RUN)), [f"ddpm weights: {DDPM_RUN}"]
    if method == "sd" and options.lora is None and options.weights is None and lora_run_ready():
        return dataclasses.replace(options, lora=str(LORA_RUN)), [f"sd LoRA: {LORA_RUN}"]
    return options, []


def bench_defaults(
    models: list[str], data: Path | None, masks: str | None, output: Path | None, method_options: dict[str, dict]
) -> tuple[Path, str, Path, list[str]]:
    """Fill in what ``inpaint bench`` was not told, by the layout above; returns
    ``(data, masks, output, choices)`` and adds run folders to ``method_options`` in place.

    - test images: ``test/`` (an error naming ``--data`` when it is missing);
    - masks: ``masks/`` when the test images are the project's and that folder exists, else the
      study's LaMa mixture (:data:`TEST_MASK_PRESETS`) drawn into the results folder;
    - results: ``results/``;
    - ``ddpm`` weights: ``runs/ddpm`` (an error naming ``--weights ddpm=DIR`` when there is no
      finished run); ``sd`` on its default base: the LoRA in ``runs/lora`` when there is one.

    ``choices`` holds one line per value filled in, for the user and ``results.json``.
    """
    from inpaint.errors import InputError

    choices: list[str] = []
    if data is None:
        if not TEST_IMAGES.is_dir():
            raise InputError(
                f"no test images: pass --data DIR (or put them in ./{TEST_IMAGES}/, where bench looks by default)"
            )
        data = TEST_IMAGES
        choices.append(f"test images: {TEST_IMAGES}/ (--data)")
        if masks is None and TEST_MASKS.is_dir():
            masks = str(TEST_MASKS)
            choices.append(f"test masks: {TEST_MASKS}/, matched by file stem (--masks)")
    if output is None:
        output = RESULTS
        choices.append(f"results folder: {RESULTS}/ (-o)")
    if masks is None:
        masks = TEST_MASK_PRESETS
        choices.append(
            f"test masks: one per image from LaMa's thin/medium/thick mixture, written to {output}/masks (--masks)"
        )
    for model in models:
        settings = method_options.setdefault(model, {})
        if model == "ddpm" and settings.get("weights") is None:
            if not ddpm_run_ready():
                why = unfinished_run(DDPM_RUN) or f"./{DDPM_RUN} holds no trained model"
                raise InputError(
                    f"ddpm: no fine-tuned weights: {why}; train one with `inpaint train-ddpm DATA` "
                    "(it writes there) or pass --weights ddpm=DIR"
                )
            settings["weights"] = str(DDPM_RUN)
            choices.append(f"ddpm weights: {DDPM_RUN} (--weights ddpm=DIR)")
        if model == "sd" and settings.get("lora") is None and settings.get("weights") is None:
            if lora_run_ready():
                settings["lora"] = str(LORA_RUN)
                choices.append(f"sd LoRA: {LORA_RUN} (--model-option sd.lora=DIR)")
            else:
                choices.append(f"sd without a LoRA: ./{LORA_RUN} holds none (--model-option sd.lora=DIR)")
        if not settings:
            del method_options[model]
    return data, masks, output, choices
