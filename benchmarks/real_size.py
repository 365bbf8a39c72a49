"""A real-size run on the CPU: every command of the study, typed as a user types it, on the real bases.

    HF_HUB_OFFLINE=1 nice -n 19 python -m benchmarks.real_size      # every stage; updates docs/benchmarks.md
    HF_HUB_OFFLINE=1 python -m benchmarks.real_size --only train-lora --print
    HF_HUB_OFFLINE=1 python -m benchmarks.real_size --smoke          # ~2 min: tiny look-alikes, prints only

The test suite runs every command on tiny random models; nothing there says what the study's own
bases cost at the study's sizes, or whether something breaks only there (memory, a 384-px
processor, a 1 B-parameter pipeline folder). This script:

1. builds ``google/ddpm-celebahq-256`` (113.7 M parameters, flat folder), SD 1.5 Inpainting
   (pipeline folder: UNet 859.5 M, VAE 83.7 M, CLIP text encoder 123.1 M) and BLIP base (384 px)
   from their published configurations with random weights (``inpaint.testing``: speed and memory do
   not depend on the values), and installs each into a private Hugging Face cache under its real hub
   id, so the commands resolve the default ids offline exactly as after a download. Building and
   saving ~1.5 B parameters takes a minute or more, so the cache (``--cache``) keeps them, keyed by
   the source of the builders and the library versions that made them;
2. lays out a project folder as a user would: ``data/`` (scikit-image photos at their native sizes),
   ``test/`` (two other photos) and ``masks/`` (``inpaint make-masks``);
3. runs each stage as its own ``python -m inpaint …`` process in that folder, with ``HF_HOME`` on the
   private cache and ``HF_HUB_OFFLINE=1``, at the study's sizes (256 px DDPM, 512 px SD, 384 px BLIP)
   for a couple of steps, and records its wall time, the peak resident memory of that process alone
   (``os.wait4``), its exit code and, if it failed, the end of its stderr. A failing stage does not
   stop the run; the stages that need its output are recorded as skipped. ``--only STAGE`` runs one
   stage (and first any stage it needs whose outputs are missing) and keeps the other rows;
4. writes the ``real-size`` section of docs/benchmarks.md: the machine, the parameter counts, one
   table row per stage, and what a CPU or small-GPU run costs per step.

Every stage runs with one torch thread (``--threads``) and is timed twice: wall seconds, and the CPU
seconds of its process (user + system, from ``os.wait4``), which on a shared machine say what the
stage takes on an idle core. Per-step costs come from the commands' own records, not guesses: a
training step is the second step (the first includes warm-up), from the process's CPU time when its
``log.jsonl`` line appears; a sampling step is the difference between two ``complete`` runs that differ
only in ``--steps`` (start-up and loading cancel); the bench's seconds per image are its own
``log-rank0.jsonl`` (loading excluded). A stage whose process passes ``--max-memory`` GiB of resident
memory is stopped, so a blow-up cannot take a shared machine down; a training stage stopped so is
retried at batch 1, and both rows are recorded.

``--smoke`` runs the same stages on ``inpaint.testing``'s tiny models shaped like the real ones
(same native sizes, same hub ids) in a temporary folder, and prints the section unless ``--docs`` is
given: a check of the script and of the commands at the study's sizes, in about two minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import inspect
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ._report import DOCS, machine, write_section

SECTION = "real-size"
DATA_MARK = "real-size-results"
REVISION = "0" * 40  # the snapshot revision install_in_hub_cache writes
MEMORY_STOP = "stopped: resident memory passed"

#: Training photos (scikit-image's bundled ones, native sizes from 300x451 to 512x512) and test photos
#: (512x512 and 500x741).
TRAIN_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
TEST_PHOTOS = ("immunohistochemistry", "motorcycle")
#: The test photo the single-image ``complete`` stages use: 512x512, SD 1.5's native size.
PHOTO = "immunohistochemistry"
#: Sampling steps of the ``complete`` stages; the second count of each pair gives the per-step cost.
STEPS, DDPM_MORE_STEPS, SD_MORE_STEPS = 2, 6, 4
#: RePaint-fast on a short chain that still resamples once: 4 steps, one jump of 2, 2 passes (6 NFE).
REPAINT_STEPS, REPAINT_JUMP, REPAINT_PASSES = 4, 2, 2


@dataclass(frozen=True)
class Model:
    """One base: its hub id, and the ``inpaint.testing`` builders of the real thing and its tiny look-alike."""

    repo_id: str
    label: str
    real: str
    smoke: str
    #: Parts to count parameters of (subfolders; "" is the folder itself).
    parts: tuple[tuple[str, str], ...] = (("", ""),)


MODELS = (
    Model(
        "google/ddpm-celebahq-256",
        "DDPM (ddpm-celebahq-256)",
        "save_real_size_ddpm",
        "save_celebahq_shaped_ddpm",
        (("UNet", ""),),
    ),
    Model(
        "stable-diffusion-v1-5/stable-diffusion-inpainting",
        "SD 1.5 Inpainting",
        "save_real_size_sd_inpaint",
        "save_sd15_shaped_inpaint",
        (("UNet", "unet"), ("VAE", "vae"), ("text encoder", "text_encoder")),
    ),
    Model(
        "Salesforce/blip-image-captioning-base",
        "BLIP base (captioning)",
        "save_real_size_blip",
        "save_tiny_blip",
        (("", ""),),
    ),
)


# ---- the models, in a private hub cache ------------------------------------------------------------


def _referenced_names(code) -> set[str]:
    """Global names a code object (and the functions and comprehensions nested in it) refers to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _referenced_names(const)
    return names


def builder_key(builder_name: str) -> str:
    """A digest of what builds a model: the builder's source, every function and constant of
    ``inpaint.testing`` it reaches, and the library versions that write the files."""
    import diffusers
    import torch
    import transformers

    from inpaint import testing

    parts, seen, todo = [], set(), [builder_name]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        value = getattr(testing, name, None)
        if inspect.isfunction(value) and value.__module__ == testing.__name__:
            parts.append(inspect.getsource(value))
            todo.extend(_referenced_names(value.__code__))
        elif isinstance(value, (dict, list, tuple, str, int, float)):
            parts.append(f"{name} = {value!r}")
    parts.append(
        f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}"
    )
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:16]


def _hub_folder(hf_home: Path, repo_id: str) -> Path:
    return hf_home / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / REVISION


def install_models(cache: Path, smoke: bool, env: dict[str, str], log: Callable[[str], None]) -> dict[str, float]:
    """Build (or reuse) every base under ``cache/hf-home``; returns the seconds each build took (0: reused).

    Each build runs in its own process: a 1 B-parameter model is freed with it, not left in this one.
    """
    hf_home = cache / "hf-home"
    stamps_file = cache / "built.json"
    stamps = json.loads(stamps_file.read_text()) if stamps_file.is_file() else {}
    built = {}
    for model in MODELS:
        builder = model.smoke if smoke else model.real
        key = f"{builder}-{builder_key(builder)}"
        snapshot = _hub_folder(hf_home, model.repo_id)
        if stamps.get(model.repo_id) == key and snapshot.is_dir():
            built[model.repo_id] = 0.0
            continue
        log(f"building {model.repo_id} ({builder}) …")
        stamps.pop(model.repo_id, None)
        stamps_file.write_text(json.dumps(stamps, indent=1))
        staging = cache / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        code = (
            "import sys; from pathlib import Path; from inpaint import testing; "
            f"testing.{builder}(Path(sys.argv[1])); "
            f"testing.install_in_hub_cache(sys.argv[1], {model.repo_id!r}, Path(sys.argv[2]) / 'hub', move=True)"
        )
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", code, str(staging), str(hf_home)],
            check=True,
            env={**env, "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
            stdout=subprocess.DEVNULL,
        )
        built[model.repo_id] = time.perf_counter() - started
        stamps[model.repo_id] = key
        stamps_file.write_text(json.dumps(stamps, indent=1))
    return built


def parameter_counts(hf_home: Path) -> list[tuple[str, float]]:
    """(label, millions of parameters) of every model part, from the safetensors headers alone."""
    from safetensors import safe_open

    counts = []
    for model in MODELS:
        for part, subfolder in model.parts:
            total = 0
            for file in sorted((_hub_folder(hf_home, model.repo_id) / subfolder).glob("*.safetensors")):
                with safe_open(str(file), framework="np") as f:
                    total += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())
            counts.append((f"{model.label} {part}".strip(), total / 1e6))
    return counts


# ---- the project folder ----------------------------------------------------------------------------


def _photo(name: str):
    import warnings

    from skimage import data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()


def lay_out_project(project: Path) -> None:
    """``data/`` and ``test/``: scikit-image photos as PNG at their native sizes (what a user copies in)."""
    from PIL import Image

    for folder, names in (("data", TRAIN_PHOTOS), ("test", TEST_PHOTOS)):
        (project / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            target = project / folder / f"{name}.png"
            if not target.is_file():
                Image.fromarray(_photo(name)).convert("RGB").save(target)


# ---- stages ----------------------------------------------------------------------------------------


@dataclass
class Result:
    """What one stage cost, as recorded in the docs (``notes`` holds the derived per-step figures)."""

    stage: str
    command: str
    seconds: float | None = None
    #: User + system time of the stage's process: with one torch thread, its time on an idle core.
    cpu_seconds: float | None = None
    peak_gib: float | None = None
    returncode: int | None = None
    notes: str = ""
    error: str = ""
    date: str = field(default_factory=lambda: datetime.date.today().isoformat())
    #: Per-step CPU seconds for the summary (name -> seconds).
    figures: dict[str, float] = field(default_factory=dict)
    #: The process's CPU seconds when each record it writes (a training step, a bench image) appeared.
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def record(self) -> dict:
        """What the docs keep (the marks are only read while deriving the figures)."""
        return {k: v for k, v in asdict(self).items() if k != "marks"}


@dataclass(frozen=True)
class Stage:
    """One command as the user types it (after ``inpaint``), what it needs and what it writes."""

    name: str
    args: tuple[str, ...]
    outputs: tuple[str, ...]
    needs: tuple[str, ...] = ()
    note: str = ""
    #: Labels of the records the command has written so far (watched while it runs, for ``marks``).
    watch: Callable[[Path], list[str]] | None = None
    #: Reads the stage's outputs, marks and the results so far into notes and figures.
    derive: Callable[[Path, Result, dict[str, Result]], None] | None = None
    #: Training stages: images per step, and the batch to retry with if the process passes --max-memory.
    batch: int = 0
    fallback_batch: int = 0

    @property
    def command(self) -> str:
        return shlex.join(("inpaint", *self.args))


def _records(path: Path) -> list[dict]:
    """The JSON lines of ``path`` (none if absent; a line being written is skipped)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return records


def _folder_gib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**30


def _training_steps(run: str) -> Callable[[Path], list[str]]:
    """The steps a training run has logged (``log.jsonl`` records with a loss)."""
    return lambda project: [f"step {r['step']}" for r in _records(project / run / "log.jsonl") if "loss" in r]


def _bench_images(project: Path) -> list[str]:
    """The images the bench has completed, as ``method/name`` (its ``log-rank*.jsonl`` lines)."""
    return [
        f"{log.parent.name}/{r['name']}"
        for log in sorted((project / "results").rglob("log-rank*.jsonl"))
        for r in _records(log)
    ]


def _train_derive(run: str, batch: int) -> Callable[[Path, Result, dict[str, Result]], None]:
    """A training step's cost: the second step (the first includes warm-up), from the marks and log.jsonl."""

    def derive(project: Path, result: Result, _: dict[str, Result]) -> None:
        walls = [r["seconds"] for r in _records(project / run / "log.jsonl") if "loss" in r and "seconds" in r]
        if {"step 1", "step 2"} <= result.marks.keys() and len(walls) >= 2:
            step = result.marks["step 2"] - result.marks["step 1"]
            result.figures["step"] = step
            result.notes += (
                f"; a step: {step:.1f} CPU s ({step / batch:.1f} per image; {walls[1] - walls[0]:.1f} s wall)"
            )
        checkpoints = [d for d in (project / run / "checkpoints").glob("step-*") if d.is_dir()]
        result.notes += f"; run folder {_folder_gib(project / run):.2f} GiB"
        if checkpoints:
            result.notes += f", a checkpoint {_folder_gib(checkpoints[-1]):.2f} GiB"

    return derive


def _steps_derive(base: str, extra: int) -> Callable[[Path, Result, dict[str, Result]], None]:
    """A sampling step's cost: this stage's CPU seconds minus ``base``'s (the same command with ``extra``
    fewer steps: start-up, loading and the steps' fixed costs cancel)."""

    def derive(_: Path, result: Result, results: dict[str, Result]) -> None:
        other = results.get(base)
        if other is not None and other.ok and other.cpu_seconds is not None and result.cpu_seconds is not None:
            step = (result.cpu_seconds - other.cpu_seconds) / extra
            result.figures["step"] = step
            result.notes += f"; a sampling step: {step:.1f} CPU s per image (this row minus `{base}`, / {extra})"

    return derive


def _bench_derive(project: Path, result: Result, _: dict[str, Result]) -> None:
    """Seconds per image from the bench's own log (wall, loading excluded), and the CPU seconds of
    each method's second image (between its two records)."""
    walls, cpus = [], []
    for log in sorted((project / "results").rglob("log-rank*.jsonl")):
        method, records = log.parent.name, _records(log)
        if records:
            walls.append(f"{method} {sum(r['seconds'] for r in records) / len(records):.1f} s")
        labels = [f"{method}/{r['name']}" for r in records]
        if len(labels) >= 2 and all(label in result.marks for label in labels[:2]):
            cpu = result.marks[labels[1]] - result.marks[labels[0]]
            result.figures[f"{method} image"] = cpu
            cpus.append(f"{method} {cpu:.1f} s ({records[1]['name']})")
    if walls:
        result.notes += "; per image, loading excluded: " + ", ".join(walls) + " wall"
    if cpus:
        result.notes += "; CPU of the second image: " + ", ".join(cpus)


def stages() -> list[Stage]:
    """The study's commands in a user's order, at its sizes, for a couple of steps."""
    from inpaint.repaint import repaint_schedule, schedule_nfe

    image, mask = f"test/{PHOTO}.png", f"masks/{PHOTO}.png"
    repaint_nfe = schedule_nfe(repaint_schedule(REPAINT_STEPS, REPAINT_JUMP, REPAINT_PASSES))
    complete = ("complete", image, mask)
    ddpm = ("-m", "ddpm", "--weights", "runs/ddpm")
    sd = ("-m", "sd", "--lora", "runs/lora")
    training = ("--max-steps", "2", "--val-images", "1", "--val-steps", "2", "--save-every", "2")
    return [
        Stage("make-masks", ("make-masks", "test/", "-o", "masks/"), ("masks",), note="lama-thick, 2 masks"),
        Stage(
            "train-ddpm",
            ("train-ddpm", "data/", "-o", "runs/ddpm", "--max-steps", "2", "--batch-size", "2", *training[2:]),
            ("runs/ddpm",),
            note="256 px, batch 2 (the study's: 8), EMA, 1 validation image",
            watch=_training_steps("runs/ddpm"),
            derive=_train_derive("runs/ddpm", 2),
            batch=2,
            fallback_batch=1,
        ),
        Stage(
            "complete-ddpm",
            (*complete, "-o", "out/ddpm.png", *ddpm, "--steps", str(STEPS)),
            ("out/ddpm.png",),
            ("train-ddpm", "make-masks"),
            note=f"the 512-px photo, sampled at 256 px, {STEPS} steps",
        ),
        Stage(
            f"complete-ddpm-{DDPM_MORE_STEPS}",
            (*complete, "-o", f"out/ddpm-{DDPM_MORE_STEPS}.png", *ddpm, "--steps", str(DDPM_MORE_STEPS)),
            (f"out/ddpm-{DDPM_MORE_STEPS}.png",),
            ("train-ddpm", "make-masks"),
            note=f"{DDPM_MORE_STEPS} steps",
            derive=_steps_derive("complete-ddpm", DDPM_MORE_STEPS - STEPS),
        ),
        Stage(
            "complete-repaint",
            (
                *complete,
                "-o",
                "out/repaint.png",
                "-m",
                "repaint",
                "--sampler",
                "fast",
                "--steps",
                str(REPAINT_STEPS),
                "--jump-length",
                str(REPAINT_JUMP),
                "--jump-n-sample",
                str(REPAINT_PASSES),
            ),
            ("out/repaint.png",),
            ("make-masks",),
            note=f"the default hub base, {repaint_nfe} network evaluations (the fast default: 230)",
        ),
        Stage(
            "caption",
            ("caption", "data/"),
            ("data/captions.json",),
            note=f"BLIP at 384 px, {len(TRAIN_PHOTOS)} images in one batch; random weights decode all 40 new "
            "tokens (real captions stop after about 10): an upper bound",
        ),
        Stage(
            "train-lora",
            ("train-lora", "data/", "-o", "runs/lora", *training),
            ("runs/lora",),
            ("caption",),
            note="512 px, batch 2 (the default), rank 16, captions, 1 validation image",
            watch=_training_steps("runs/lora"),
            derive=_train_derive("runs/lora", 2),
            batch=2,
            fallback_batch=1,
        ),
        Stage(
            "complete-sd",
            (*complete, "-o", "out/sd.png", *sd, "--steps", str(STEPS)),
            ("out/sd.png",),
            ("train-lora", "make-masks"),
            note=f"512 px, {STEPS} steps, guidance 7.5",
        ),
        Stage(
            f"complete-sd-{SD_MORE_STEPS}",
            (*complete, "-o", f"out/sd-{SD_MORE_STEPS}.png", *sd, "--steps", str(SD_MORE_STEPS)),
            (f"out/sd-{SD_MORE_STEPS}.png",),
            ("train-lora", "make-masks"),
            note=f"{SD_MORE_STEPS} steps",
            derive=_steps_derive("complete-sd", SD_MORE_STEPS - STEPS),
        ),
        Stage(
            "bench",
            (
                "bench",
                "--models",
                "ddpm",
                "sd",
                "--data",
                "test/",
                "--masks",
                "masks/",
                "-o",
                "results/",
                "--weights",
                "ddpm=runs/ddpm",
                "--model-option",
                "sd.lora=runs/lora",
                "--model-option",
                f"ddpm.steps={STEPS}",
                "--model-option",
                f"sd.steps={STEPS}",
                "--no-lpips",
                "--no-fid",
            ),
            ("results",),
            ("train-ddpm", "train-lora", "make-masks"),
            note=f"2 images (512x512, 500x741), {STEPS} steps each",
            watch=_bench_images,
            derive=_bench_derive,
        ),
    ]


def _proc_rss_gib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError):
        pass
    return 0.0


def _proc_cpu_seconds(pid: int) -> float:
    """User + system seconds of a running process so far (/proc/PID/stat, fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def run_stage(
    stage: Stage, project: Path, env: dict[str, str], logs: Path, max_memory_gib: float, timeout: float
) -> Result:
    """Run one stage in ``project``: its wall time, and its own CPU time and peak RSS from ``os.wait4``
    on that child alone (not the largest of all children so far, as ``RUSAGE_CHILDREN`` would give)."""
    result = Result(stage.name, stage.command, notes=stage.note)
    for output in stage.outputs:  # each stage is measured from scratch
        path = project / output
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    stdout, stderr = logs / f"{stage.name}.out", logs / f"{stage.name}.err"
    started = time.perf_counter()
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "inpaint", *stage.args],
            cwd=project,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    stopped = ""
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if stage.watch is not None:
            for label in stage.watch(project):
                result.marks.setdefault(label, _proc_cpu_seconds(child.pid))
        if not stopped:
            if _proc_rss_gib(child.pid) > max_memory_gib:
                stopped = f"{MEMORY_STOP} {max_memory_gib:g} GiB"
            elif time.perf_counter() - started > timeout:
                stopped = f"stopped after {timeout:.0f} s"
            if stopped:
                os.killpg(child.pid, signal.SIGKILL)
        time.sleep(0.2)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = usage.ru_utime + usage.ru_stime
    result.peak_gib = usage.ru_maxrss / 2**20  # KiB on Linux
    result.returncode = child.returncode
    if stopped:
        result.error = stopped
    elif not result.ok:
        lines = [line for line in stderr.read_text(errors="replace").splitlines() if line.strip()]
        result.error = "\n".join(lines[-12:])
    return result


def _with_batch(args: tuple[str, ...], batch: int) -> tuple[str, ...]:
    """``args`` with ``--batch-size batch`` (in place of the one given, else appended)."""
    if "--batch-size" not in args:
        return (*args, "--batch-size", str(batch))
    i = args.index("--batch-size")
    return (*args[: i + 1], str(batch), *args[i + 2 :])


def _run_logged(
    stage: Stage,
    project: Path,
    env: dict[str, str],
    logs: Path,
    max_memory_gib: float,
    timeout: float,
    log: Callable[[str], None],
) -> Result:
    log(f"{stage.name}: {stage.command}")
    result = run_stage(stage, project, env, logs, max_memory_gib, timeout)
    status = "ok" if result.ok else f"FAILED (exit {result.returncode}) {result.error.splitlines()[-1:]}"
    log(
        f"{stage.name}: {result.seconds:.1f} s, {result.cpu_seconds:.1f} CPU s, peak {result.peak_gib:.2f} GiB, "
        f"{status}"
    )
    return result


def run_stages(
    selected: list[str],
    all_stages: list[Stage],
    project: Path,
    env: dict[str, str],
    logs: Path,
    max_memory_gib: float,
    timeout: float,
    log: Callable[[str], None],
) -> dict[str, Result]:
    """Run ``selected`` in order, first running any stage they need whose outputs are missing."""
    by_name = {s.name: s for s in all_stages}
    order: list[str] = []

    def want(name: str) -> None:
        for need in by_name[name].needs:
            if need not in order and not all((project / o).exists() for o in by_name[need].outputs):
                want(need)
        if name not in order:
            order.append(name)

    for name in selected:
        want(name)
    order.sort(key=[s.name for s in all_stages].index)
    results: dict[str, Result] = {}
    for name in order:
        stage = by_name[name]
        failed = [n for n in stage.needs if n in results and not results[n].ok]
        if failed:
            results[name] = Result(name, stage.command, notes=stage.note, error=f"skipped: {', '.join(failed)} failed")
            log(f"{name}: skipped ({', '.join(failed)} failed)")
            continue
        result = _run_logged(stage, project, env, logs, max_memory_gib, timeout, log)
        if result.error.startswith(MEMORY_STOP) and stage.fallback_batch:
            # The stopped attempt keeps a row of its own; the stages after it use the smaller batch's run.
            result.stage = f"{name} (batch {stage.batch})"
            results[result.stage] = result
            small = stage.fallback_batch
            stage = dataclasses.replace(
                stage,
                args=_with_batch(stage.args, small),
                batch=small,
                note=stage.note.replace(f"batch {stage.batch}", f"batch {small}")
                + f"; batch {stage.batch} passed {max_memory_gib:g} GiB",
                derive=_train_derive(stage.outputs[0], small),
            )
            result = _run_logged(stage, project, env, logs, max_memory_gib, timeout, log)
        if result.ok and stage.derive is not None:
            stage.derive(project, result, results)
        results[name] = result
    return results


# ---- the section -----------------------------------------------------------------------------------


def recorded_results(docs: Path) -> dict[str, Result]:
    """The results recorded in the section last time (kept for the stages a ``--only`` run skips)."""
    if not docs.is_file():
        return {}
    match = re.search(rf"<!-- {DATA_MARK}\n(.*?)\n-->", docs.read_text(), re.S)
    if not match:
        return {}
    results = {}
    for record in map(json.loads, filter(str.strip, match.group(1).splitlines())):
        fields = {f.name for f in dataclasses.fields(Result)}
        results[record["stage"]] = Result(**{k: v for k, v in record.items() if k in fields})
    return results


def _base(stage: str) -> str:
    """The stage a row belongs to (``train-lora (batch 2)`` belongs to ``train-lora``)."""
    return stage.split(" ", 1)[0]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.{1 if seconds < 600 else 0}f} min"
    return f"{seconds / 3600:.1f} h"


def summary(results: dict[str, Result]) -> str:
    """What a user planning a CPU or small-GPU run should take from the table, in CPU seconds."""

    def ok(stage: str) -> Result | None:
        r = results.get(stage)
        return r if r is not None and r.ok else None

    def step(stage: str) -> float | None:
        r = ok(stage)
        return r.figures.get("step") if r is not None else None

    def one_image(stage: str, per_step: float, steps: int) -> str:
        """A one-image command at ``steps`` steps (the STEPS-step row plus the steps it lacks), if that reads
        differently from the sampling alone."""
        r = ok(stage)
        if r is None or r.cpu_seconds is None:
            return ""
        whole = _duration(r.cpu_seconds + (steps - STEPS) * per_step)
        return (
            "" if whole == _duration(steps * per_step) else f" ({whole} for a one-image `complete`, start-up included)"
        )

    parts = []
    for stage, size in (("train-ddpm", "256 px"), ("train-lora", "512 px")):
        if (seconds := step(stage)) is not None:
            batch = results[stage].figures.get("batch", 2)
            parts.append(
                f"a `{stage}` step at batch {batch:.0f} ({size}) takes {seconds:.0f} s, "
                f"{_duration(1000 * seconds)} per 1,000 steps"
            )
    if (ddpm := step(f"complete-ddpm-{DDPM_MORE_STEPS}")) is not None:
        parts.append(
            f"a DDPM sampling step {ddpm:.1f} s per 256-px image, so the `ddpm` method's default 25 steps "
            f"take {_duration(25 * ddpm)} per image{one_image('complete-ddpm', ddpm, 25)}, the study's "
            f"1,000 {_duration(1000 * ddpm)}, RePaint-fast's 230 evaluations {_duration(230 * ddpm)} "
            f"and the paper's RePaint (2,410) {_duration(2410 * ddpm)}"
        )
    if (sd := step(f"complete-sd-{SD_MORE_STEPS}")) is not None:
        parts.append(
            f"an SD step {sd:.1f} s per 512-px image with guidance (two UNet evaluations; "
            f"`--guidance 1` halves it), so the study's 50 steps take {_duration(50 * sd)} per image"
            f"{one_image('complete-sd', sd, 50)}"
        )
    peaks = {name: r.peak_gib for name, r in results.items() if r.peak_gib is not None and r.ok}
    if peaks:
        top = max(peaks, key=peaks.get)
        parts.append(f"the largest process, `{top}`, peaked at {peaks[top]:.1f} GiB of RAM")
    if not parts:
        return ""
    return (
        "**For a CPU or small-GPU run.** In CPU seconds on this CPU, fp32: "
        + "; ".join(parts)
        + ". A CPU is enough to check a pipeline end to end and to complete a few images with the fast "
        "settings; training, the study's 1,000-step DDPM and RePaint, and SD at 50 steps over a test set "
        "need a GPU (seconds per image there: the GPU section). Memory here is fp32: fp16 on a GPU halves "
        "the weights, and `--gradient-checkpointing` trades about 30 % more time for much less activation "
        "memory in training."
    )


def section(
    results: dict[str, Result], fresh: set[str], counts: list[tuple[str, float]], threads: int, smoke: bool
) -> str:
    """The ``real-size`` section: ``fresh`` rows were measured by this run, the others are kept from the docs."""
    today = datetime.date.today().isoformat()
    order = [s.name for s in stages()]
    # A training stage retried at a smaller batch has two rows: the stopped attempt first.
    rows_in_order = sorted(results.values(), key=lambda r: (order.index(_base(r.stage)), r.stage == _base(r.stage)))
    rows = []
    for r in rows_in_order:
        notes = r.notes
        if r.error:
            notes += (
                "; **"
                + ("failed" if r.returncode not in (0, None) else "not run")
                + "**: "
                + r.error.splitlines()[-1].replace("|", "\\|")
            )
        if r.stage not in fresh and r.date != today:  # kept from an earlier run
            notes += f" (measured {r.date})"
        rows.append(
            f"| {r.stage} | `{r.command}` | {_fmt(r.seconds, '.1f')} | {_fmt(r.cpu_seconds, '.1f')} | "
            f"{_fmt(r.peak_gib, '.2f')} | {notes.lstrip('; ')} |"
        )
    params = ", ".join(f"{label} {millions:.1f} M" for label, millions in counts)
    data = "\n".join(json.dumps(r.record()) for r in rows_in_order)
    kind = (
        "**Smoke run**: `inpaint.testing`'s tiny models shaped like the real ones; the figures say nothing "
        "about the real models.\n\n"
        if smoke
        else ""
    )
    threading = "one torch thread" if threads == 1 else f"{threads} torch threads"
    cpu = (
        "what it takes on an idle core; wall time above it means the shared machine was busy"
        if threads == 1
        else "summed over its threads"
    )
    return f"""## Real-size run on the CPU

{kind}**Machine.** {machine()}.

**Rerun.** `HF_HUB_OFFLINE=1 nice -n 19 python -m benchmarks.real_size` (`--only STAGE` reruns one
stage and keeps the other rows). The study's bases are built from their published configurations with
random weights (`inpaint.testing`) and installed in a private Hugging Face cache under their hub ids,
so every command resolves the default ids offline as after a download. Parameters:
{params}.

Each stage is the command below, typed in a project folder (`data/`: {len(TRAIN_PHOTOS)} scikit-image
photos at their native sizes, 300x451 to 512x512; `test/`: two more, 512x512 and 500x741; `masks/`
from `make-masks`) and run as its own process with {threading}. *Seconds* is its wall time, start-up
and loading included; *CPU seconds* its user + system time
({cpu});
*peak memory* its own maximum resident set. A training step is the second one (the first includes
warm-up), timed from the process's CPU time when `log.jsonl` records it; a sampling step is the
difference between two `complete` rows that differ only in `--steps`. Even CPU seconds move between
runs on a shared machine, whose caches and memory bandwidth other processes use too (three runs on one
day on a shared 2-core machine differed by up to 50 % per step): read the figures as rough costs, not
as a benchmark of this CPU.

| stage | command | seconds | CPU seconds | peak memory (GiB) | notes |
|---|---|---:|---:|---:|---|
{chr(10).join(rows)}

{summary(results)}

<!-- {DATA_MARK}
{data}
-->
"""


# ---- main ------------------------------------------------------------------------------------------


def child_env(hf_home: Path, threads: int) -> dict[str, str]:
    """The stages' environment: the private cache, offline, ``threads`` torch threads."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_ASSETS_CACHE")
    }
    env.update(
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONUNBUFFERED="1",
    )
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [s.name for s in stages()]
    parser.add_argument(
        "--only",
        action="append",
        choices=names,
        metavar="STAGE",
        help=f"run just this stage (repeatable; stages it needs run first if their outputs are "
        f"missing): {', '.join(names)}",
    )
    parser.add_argument("--print", action="store_true", help="print the section instead of writing it")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny models shaped like the real ones, in a temporary folder; prints unless --docs",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="built models and the project folder (default /tmp/inpaint-bench-real-size; --smoke: a temporary folder)",
    )
    parser.add_argument("--docs", type=Path, default=None, help=f"file to write the section to (default {DOCS})")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of every stage (default 1: steadier on a shared machine)"
    )
    parser.add_argument(
        "--max-memory",
        type=float,
        default=18.0,
        help="stop a stage whose resident memory passes this many GiB (default 18)",
    )
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="stop a stage after this many seconds")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)  # so that machine() reports the stages' setting

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="inpaint-real-size-") as tmp:
        cache = args.cache or (Path(tmp) if args.smoke else Path("/tmp/inpaint-bench-real-size"))
        cache = cache.resolve() / ("smoke" if args.smoke else "real")
        cache.mkdir(parents=True, exist_ok=True)
        hf_home = cache / "hf-home"
        env = child_env(hf_home, args.threads)
        started = time.perf_counter()
        built = install_models(cache, args.smoke, env, log)
        if any(built.values()):
            log(f"models built in {time.perf_counter() - started:.0f} s")
        project = cache / "project"
        if not args.only:
            shutil.rmtree(project, ignore_errors=True)  # a full run starts from an empty project
        lay_out_project(project)
        all_stages = stages()
        results = run_stages(
            args.only or names, all_stages, project, env, cache / "logs", args.max_memory, args.timeout, log
        )
        counts = parameter_counts(hf_home)

    docs = args.docs or (None if args.smoke else DOCS)
    rerun = {_base(name) for name in results}
    kept = {k: v for k, v in recorded_results(docs).items() if _base(k) not in rerun} if docs and args.only else {}
    body = section({**kept, **results}, set(results), counts, args.threads, args.smoke)
    if args.print or docs is None:
        print(body)
    else:
        write_section(SECTION, body, docs=docs)
        log(f"wrote the {SECTION} section of {docs}")
    return 0 if all(r.ok for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
