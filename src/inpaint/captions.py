"""Captions for training and prompting Stable Diffusion: BLIP, a resumable JSON file, look-ups.

The study (docs/method.md, Method 2) captions every training image offline with BLIP
(Li et al. 2022, ``Salesforce/blip-image-captioning-base``), appends "high quality, realistic,
sharp focus", stores ``{file name: caption}`` as JSON, and trains on those captions.

:func:`caption_folder` does that resumably: images already in the JSON file are skipped, and the
file is rewritten atomically after every batch, so an interrupted run loses at most one batch
and a re-run carries on. Decoding is greedy (deterministic): the same images and model give the
same captions.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from inpaint import atomic, io, locking
from inpaint.errors import InputError
from inpaint.models.sd import DEFAULT_PROMPT
from inpaint.models.weight_files import TRANSFORMERS, Component, ModelFiles
from inpaint.progress import NullProgress, Progress

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

log = logging.getLogger(__name__)

#: The study's captioner.
DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-base"
#: The study's suffix, appended to every caption.
DEFAULT_SUFFIX = ", high quality, realistic, sharp focus"
#: Where ``inpaint caption DATA`` writes, inside DATA.
CAPTIONS_NAME = "captions.json"
#: Longest caption, in tokens (BLIP-base captions are ~10 tokens).
MAX_NEW_TOKENS = 40

#: What a BLIP repository is fetched as: configs, the tokenizer's vocabulary, the weights.
BLIP_FILES = ModelFiles(other=("*.json", "*.txt"), components=(Component("", TRANSFORMERS),))

#: A captioner: PIL images -> one caption each.
Captioner = Callable[[Sequence["Image.Image"]], list[str]]


class BlipCaptioner:
    """BLIP image captioning (``BlipForConditionalGeneration``), greedy decoding.

    ``model`` is a hub id (at ``revision``: a branch, tag or commit) or a local folder holding the
    model and its processor (``config.json``, ``model.safetensors``, ``preprocessor_config.json``
    and the tokenizer files). ``variant`` picks a weights variant (``fp16``). Weights published as
    ``pytorch_model.bin`` only are converted once through torch's weights-only unpickler
    (:mod:`inpaint.models.weight_files`). Runs in fp16 on CUDA, fp32 elsewhere.
    """

    def __init__(
        self,
        model: str = DEFAULT_CAPTION_MODEL,
        device: str = "auto",
        *,
        revision: str | None = None,
        variant: str | None = None,
    ) -> None:
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor

        from inpaint.devices import resolve_device
        from inpaint.models.hub import quiet_loading, resolve
        from inpaint.models.weight_files import safetensors_view

        self.device = resolve_device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        folder = resolve(model, BLIP_FILES, revision=revision, variant=variant)
        if not (folder / "config.json").is_file():
            raise InputError(f"{model}: no config.json; expected a BLIP captioning model folder")
        missing_files = BLIP_FILES.missing(folder, variant)
        if missing_files:
            raise InputError(
                f"{model}: no {missing_files[0]} (nor pytorch_model.bin) in {folder}; expected a BLIP "
                "captioning model folder"
            )
        view = safetensors_view(folder, ("",), model, variant)  # .bin weights: converted, no pickle in sight
        from safetensors import SafetensorError

        with quiet_loading():
            try:
                self.processor = BlipProcessor.from_pretrained(folder)
                self.model, loading = BlipForConditionalGeneration.from_pretrained(
                    view, use_safetensors=True, output_loading_info=True, variant=variant
                )
            # RuntimeError: weights of another architecture (shapes that do not fit).
            except (OSError, ValueError, TypeError, RuntimeError, SafetensorError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise InputError(f"{model}: cannot load a BLIP captioning model ({first})") from None
        # transformers fills weights missing from the file with random values and says so only in
        # a warning: a checkpoint without the caption decoder (an ITM or retrieval BLIP) would
        # caption every image with random words.
        missing = sorted(loading.get("missing_keys") or [])
        if missing:
            raise InputError(
                f"{model}: the weights lack {len(missing)} of the captioning model's tensors (e.g. "
                f"{missing[0]}); is it a BLIP captioning checkpoint (BlipForConditionalGeneration)?"
            )
        self.model.to(self.device, self.dtype).eval()
        self.name = model

    def __call__(self, images: Sequence[Image.Image]) -> list[str]:
        import torch

        inputs = self.processor(images=list(images), return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            tokens = self.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1)
        return [text.strip() for text in self.processor.batch_decode(tokens, skip_special_tokens=True)]


@dataclass
class CaptionReport:
    """What :func:`caption_folder` did."""

    output: Path
    total: int
    captioned: list[str] = field(default_factory=list)
    already_done: int = 0
    seconds: float = 0.0
    #: True when ``stop_requested`` ended the call before every image was captioned.
    stopped: bool = False


def read_captions_for_resume(path: Path) -> dict[str, str]:
    """The captions already in ``path`` ({} when it does not exist); InputError when malformed."""
    from inpaint.data import load_captions

    return load_captions(path) if Path(path).exists() else {}


def caption_folder(
    folder: str | Path,
    output: str | Path | None = None,
    *,
    model: str = DEFAULT_CAPTION_MODEL,
    suffix: str = DEFAULT_SUFFIX,
    batch_size: int = 16,
    device: str = "auto",
    overwrite: bool = False,
    captioner: Captioner | None = None,
    progress: Progress | None = None,
    revision: str | None = None,
    variant: str | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> CaptionReport:
    """Caption every image of ``folder`` into ``output`` (default ``folder/captions.json``).

    Images whose file name is already a key of the output are skipped unless ``overwrite``;
    the JSON (sorted by file name) is rewritten atomically after each batch. ``captioner``
    replaces BLIP (tests, other backends); ``revision`` and ``variant`` choose BLIP's weights
    (:class:`BlipCaptioner`). ``stop_requested()`` returning True after a batch ends the call
    there (``report.stopped``; the file holds every caption made, and a rerun does the rest).
    The output's lock (:func:`inpaint.locking.lock_file`) is held while it is written: a second
    run on the same file is refused. Raises :class:`InputError` for a malformed existing file, a
    missing folder, a bad batch size or an output in use.
    """
    started = time.perf_counter()
    folder = Path(folder)
    output = Path(output) if output is not None else folder / CAPTIONS_NAME
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    images, others = io.list_images(folder)
    if not images:
        raise InputError(io.no_images_message(folder, others))
    for image in images:
        if output.resolve() == image.resolve():
            raise InputError(f"{output}: the captions file would overwrite the input image {image}")
    unsupported, strays = io.split_unsupported(p for p in others if p.suffix.lower() != ".json")  # captions live here
    if unsupported:
        log.warning(io.unsupported_message(folder, unsupported))
    if strays:
        log.warning(f"{folder}: skipped {len(strays)} non-image file(s), e.g. {strays[0]}")
    captions = {} if overwrite else read_captions_for_resume(output)
    todo = [p for p in images if p.name not in captions]
    report = CaptionReport(output=output, total=len(images), already_done=len(images) - len(todo))
    progress = progress or NullProgress()
    if todo:
        # Everything that can be checked cheaply is checked before the model loads: unreadable
        # images, and whether the output's folder can be written to.
        from inpaint.data import check_readable

        check_readable(todo, purpose="captioning")
    if todo or overwrite or not output.exists():
        with locking.lock_file(output, create_label=f"-o {output}"):
            _write_captions(
                output,
                images,
                captions,
                todo,
                report,
                overwrite=overwrite,
                model=model,
                suffix=suffix,
                batch_size=batch_size,
                device=device,
                captioner=captioner,
                progress=progress,
                revision=revision,
                variant=variant,
                stop_requested=stop_requested,
            )
    report.seconds = time.perf_counter() - started
    return report


def _write_captions(
    output: Path,
    images: list[Path],
    captions: dict[str, str],
    todo: list[Path],
    report: CaptionReport,
    *,
    overwrite: bool,
    model: str,
    suffix: str,
    batch_size: int,
    device: str,
    captioner: Captioner | None,
    progress: Progress,
    revision: str | None,
    variant: str | None,
    stop_requested: Callable[[], bool] | None,
) -> None:
    """The writing part of :func:`caption_folder`, under the output's lock."""
    if not overwrite:
        # Read again under the lock: a run that held it until now may have added captions.
        captions.update(read_captions_for_resume(output))
        todo[:] = [p for p in todo if p.name not in captions]
        report.already_done = len(images) - len(todo)
    if not todo:
        if overwrite or not output.exists():
            atomic.write_json(output, dict(sorted(captions.items())))
        return
    atomic.remove_stale_temporaries(output.parent, name=output.name)  # left by a killed run
    captioner = captioner or BlipCaptioner(model, device, revision=revision, variant=variant)
    progress.start("Captioning", len(todo))
    for start in range(0, len(todo), batch_size):
        if stop_requested is not None and stop_requested():
            report.stopped = True
            break
        batch = todo[start : start + batch_size]
        texts = captioner([_open(p) for p in batch])
        for path, text in zip(batch, texts):
            # An empty caption gets the suffix alone, not a caption starting with ", ".
            captions[path.name] = text + suffix if text else suffix.lstrip(", ")
            report.captioned.append(path.name)
        atomic.write_json(output, dict(sorted(captions.items())))
        progress.advance(len(batch), file=batch[-1].name)
    progress.finish()


def _open(path: Path) -> Image.Image:
    from PIL import Image

    return Image.fromarray(io.read_image(path))


# ---- using captions --------------------------------------------------------------------------


def caption_index(captions: Mapping[str, str]) -> dict[str, str]:
    """A look-up table for :func:`caption_for`: the file names, plus every stem that is unique."""
    stems = Counter(Path(key).stem for key in captions)
    index = dict(captions)
    for key, text in captions.items():
        if stems[Path(key).stem] == 1:
            index.setdefault(Path(key).stem, text)
    return index


def caption_for(index: Mapping[str, str], name: str) -> str | None:
    """The caption of image ``name`` (a file name or a stem) in a :func:`caption_index`."""
    return index.get(name, index.get(Path(name).stem))


def missing_captions(captions: Mapping[str, str], folder: str | Path) -> list[str]:
    """File names of the images in ``folder`` that have no caption."""
    index = caption_index(captions)
    images, _ = io.list_images(folder)
    return [p.name for p in images if caption_for(index, p.name) is None]


# ---- captions for train-lora -----------------------------------------------------------------


def blip_unavailable(model: str = DEFAULT_CAPTION_MODEL) -> str | None:
    """Why BLIP ``model`` cannot caption here, or None: a cheap check that loads and fetches nothing.

    A local folder needs ``config.json``; a hub id must be in the local cache, or downloadable
    (the hub not switched off with ``HF_HUB_OFFLINE``).
    """
    from inpaint.models.hub import cached_availability, looks_like_path

    path = Path(model).expanduser()
    if path.is_dir():
        return None if (path / "config.json").is_file() else f"{model}: no config.json"
    if path.exists() or looks_like_path(model):
        return f"{model}: no such folder"
    fix = "get it with `inpaint download` on a connected machine, or pass a local BLIP folder"
    return cached_availability(model, ("config.json",), lambda name, file: None, fix, local_only=False)


@dataclass
class TrainingCaptions:
    """What :func:`captions_for_training` found: the captions (None: ``prompt`` for every image),
    where they came from, and the images it captioned now."""

    captions: dict[str, str] | None
    source: Path | None
    captioned: int = 0
    #: Why there are no captions when none were asked for: BLIP cannot caption here.
    reason: str | None = None
    #: True when ``stop_requested`` ended the captioning part-way (``captions`` is then None).
    stopped: bool = False
    #: The prompt of every image when there are no captions: the one asked for, else the study's
    #: fixed prompt (:data:`inpaint.models.sd.DEFAULT_PROMPT`).
    prompt: str = DEFAULT_PROMPT


def captions_for_training(
    data: str | Path,
    captions_file: str | Path | None = None,
    *,
    prompt: str | None = None,
    fallback_folder: str | Path | None = None,
    model: str = DEFAULT_CAPTION_MODEL,
    device: str = "auto",
    captioner: Captioner | None = None,
    progress: Progress | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> TrainingCaptions:
    """The captions a LoRA trains on, as the study made them: BLIP + :data:`DEFAULT_SUFFIX` per image.

    - ``captions_file`` given: read it; every image of ``data`` must have a caption.
    - else ``prompt`` given: no captions, that prompt for every image (BLIP is not looked for).
    - else ``data/captions.json`` (what ``inpaint caption DATA`` writes), created or completed with
      BLIP when BLIP can run here (:func:`blip_unavailable`; ``captioner`` replaces it) — resumably, as
      :func:`caption_folder` does. When ``data`` cannot be written to, the file goes to
      ``fallback_folder/captions.json`` instead (a run folder, say).
    - else no captions (``captions`` None, ``reason`` says why, and a warning on the log): the
      study's fixed prompt for every image.

    ``LoRAOptions(prompt=found.prompt)`` and ``LoRATask(..., captions=found.captions)`` train on
    what was found.

    Several processes of one launch must not caption at once (they would race on one file): there,
    missing captions are an :class:`InputError` asking for ``inpaint caption`` first.
    ``stop_requested`` is handed to :func:`caption_folder`; when it ends the captioning part-way,
    ``stopped`` is True and there are no captions to train with yet.
    """
    import os

    from inpaint.data import load_captions

    data = Path(data)
    fixed = DEFAULT_PROMPT if prompt is None else prompt
    if captions_file is not None:
        loaded = load_captions(captions_file)
        missing = missing_captions(loaded, data)
        if missing:
            raise InputError(
                f"{captions_file}: no caption for {len(missing)} image(s) of {data} (first: "
                f"{missing[0]}); run `inpaint caption {data} -o {captions_file}` to add them"
            )
        return TrainingCaptions(loaded, Path(captions_file), prompt=fixed)
    if prompt is not None:
        return TrainingCaptions(None, None, prompt=prompt)
    target = data / CAPTIONS_NAME
    if not os.access(data, os.W_OK) and fallback_folder is not None and not target.is_file():
        target = Path(fallback_folder) / CAPTIONS_NAME
    existing = read_captions_for_resume(target)
    missing = missing_captions(existing, data)
    if not missing:
        return TrainingCaptions(existing, target)
    reason = None if captioner is not None else blip_unavailable(model)
    if reason is not None:
        if existing:
            raise InputError(
                f"{target}: no caption for {len(missing)} image(s) of {data} (first: {missing[0]}), and "
                f"BLIP cannot add them ({reason}); run `inpaint caption {data}` where it can"
            )
        log.warning(
            f"{data} has no captions, so every image trains on the prompt {fixed!r}: BLIP cannot caption "
            f"here ({reason}); for the study's captions run `inpaint caption {data}` where BLIP is "
            "available, or choose the prompt with --prompt"
        )
        return TrainingCaptions(None, None, reason=reason, prompt=fixed)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError(
            f"{data}: {len(missing)} image(s) have no caption, and the processes of a launch cannot "
            f"caption together; run `inpaint caption {data}` once first"
        )
    report = caption_folder(
        data, target, model=model, device=device, captioner=captioner, progress=progress, stop_requested=stop_requested
    )
    if report.stopped:
        return TrainingCaptions(None, target, captioned=len(report.captioned), stopped=True)
    return TrainingCaptions(load_captions(target), target, captioned=len(report.captioned))
