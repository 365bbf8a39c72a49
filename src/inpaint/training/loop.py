"""The one training loop, shared by ``train-ddpm`` and ``train-lora``, on accelerate.

What makes a resumed run continue *exactly* as if it had never stopped:

- data: the micro-batch at position p is a pure function of (seed, p) (:class:`BatchPlan`);
- randomness: before step k the global torch RNG is reseeded from (seed, k, rank) (dropout), and
  each image's noise and timestep come from a generator seeded by (seed, k, micro-batch, image
  position), handed to the task — so no RNG state needs saving, and the draws do not depend on
  how images are split across processes;
- state: weights, AdamW moments, LR schedule, grad scaler and EMA are checkpointed exactly
  (:mod:`inpaint.training.checkpoint`, safetensors + JSON);
- validation: it runs after the step's checkpoint, swaps the EMA weights in and the trained ones
  back bit for bit, and the next step reseeds every RNG it may have drawn from — so a run with
  validation follows the same trajectory as one without.

Validation images (:mod:`inpaint.training.validation`) are held out of training
(:func:`inpaint.data.split_validation`): ``val_images`` of the folder chosen by a seeded order,
or a separate ``val_data`` folder; the run records which (``val_source``, ``val_names`` in
``training_config.json``), and a resumed run recomputes the same split — one that would train on
other images is refused.

accelerate provides the device, mixed precision (autocast and, for fp16, the grad scaler) and
distributed data parallelism; under ``accelerate launch --num_processes N`` each process takes
its slice of every global batch and gradients are averaged. Gradient accumulation is done here
(``no_sync`` on all but the last micro-batch) so the step arithmetic stays visible.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint import atomic, locking
from inpaint.config import TrainConfig
from inpaint.data import (
    BatchPlan,
    CompletionDataset,
    PlannedBatches,
    ValidationSplit,
    collate,
    epochs_to_steps,
    list_folder_images,
    split_validation,
)
from inpaint.errors import InputError
from inpaint.progress import NullProgress, Progress
from inpaint.seeding import derive_seed
from inpaint.training import checkpoint as ckpt
from inpaint.training.history import History
from inpaint.training.precision import forget_other_precision, mixed_precision_for
from inpaint.training.task import TrainingTask
from inpaint.training.validation import Validation, check_val_data, ema_weights, explain_split

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

CONFIG_NAME = "training_config.json"


@dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    output: Path
    step: int
    total_steps: int
    resumed_from: int | None
    last_loss: float | None
    artefacts: list[Path] = field(default_factory=list)
    stopped_early: bool = False
    seconds: float = 0.0
    validation: dict[str, float] = field(default_factory=dict)
    #: False in the other processes of a multi-process run (they should stay quiet).
    main_process: bool = True


def _accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    from inpaint.devices import resolve_device

    device = resolve_device(config.device)
    if device.type == "cuda" and (device.index or 0) != 0:
        raise InputError(f"--device {config.device}: choose the GPU with CUDA_VISIBLE_DEVICES (or accelerate launch)")
    mixed_precision = mixed_precision_for(config, device)
    forget_other_precision(mixed_precision)
    return Accelerator(
        cpu=device.type == "cpu",
        mixed_precision=mixed_precision,
        dataloader_config=DataLoaderConfiguration(),
    )


def _lr_scheduler(config: TrainConfig, optimizer, total_steps: int):
    from diffusers.optimization import get_scheduler

    # diffusers' "constant" ignores num_warmup_steps: asked-for warmup would silently not happen.
    name = (
        "constant_with_warmup" if config.lr_schedule == "constant" and config.warmup_steps > 0 else config.lr_schedule
    )
    return get_scheduler(name, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=total_steps)


#: Schedules whose learning rate depends on the run's length: it cannot change on resume.
_DECAYING_SCHEDULES = ("linear", "cosine")


def _check_length(config: TrainConfig, total: int, saved_total: int, step: int, path: Path) -> None:
    """Refuse a resumed length that the run has passed, or that would bend a decaying schedule."""
    option = "--max-steps" if config.max_steps is not None else "--epochs"
    value = config.max_steps if config.max_steps is not None else config.epochs
    if total < step:
        raise InputError(
            f"{option} {value}: {path} is already at step {step} (of {total} asked); ask for at least "
            f"{step} steps, or use the run as it is"
        )
    if total != saved_total and config.lr_schedule in _DECAYING_SCHEDULES:
        raise InputError(
            f"{option} {value}: the run's {config.lr_schedule} schedule decays over {saved_total} steps; "
            f"{total} would restart it part-way (the learning rate would jump). Keep the length, or start a "
            "new run (-o)"
        )


def _stop_everywhere(accelerator, requested: bool) -> bool:
    """True on every process if any asked to stop (a signal reaches them at different steps, or
    only one of them: ``kill`` of one pid).

    Each process stopping on its own flag would leave the others waiting in the next step's
    gradient all-reduce while it waits in the checkpoint's barrier: a deadlock.
    """
    import torch

    if accelerator.num_processes == 1:
        return requested
    flag = torch.tensor([1.0 if requested else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def _generators(config: TrainConfig, step: int, micro: int, rank: int, world: int, per_epoch: int):
    """One generator per image of this process's micro-batch, seeded by the image's position in the
    global batch: the draws do not depend on how the images are split across processes."""
    import torch

    position = step * config.grad_accum + micro
    first = (position % per_epoch) * config.batch_size * world + rank * config.batch_size
    return [
        torch.Generator().manual_seed(derive_seed(config.seed, "noise", step, micro, p))
        for p in range(first, first + config.batch_size)
    ]


def train(
    task: TrainingTask,
    config: TrainConfig,
    *,
    progress: Progress | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``task`` on ``config.data`` into ``config.output``; resume from its latest checkpoint.

    ``stop_after`` ends the call after that many steps of this call (a checkpoint is saved), as
    does ``stop_requested()`` returning True at a step boundary (the CLI's stop signals: Ctrl-C,
    SIGTERM, SIGUSR1); a later call continues. ``resume=False`` refuses to start in a folder that
    already holds checkpoints. The main process holds the folder's lock
    (:func:`inpaint.locking.lock_folder`) for the whole call: a second run on it is refused.
    ``config`` is not changed: the run records a copy with the task's settings
    (:func:`_run_config`).
    """
    started = time.perf_counter()
    config = _run_config(task, config)
    accelerator = _accelerator(config)
    lock = _lock_run(accelerator, Path(config.output))
    try:
        return _train(
            task,
            config,
            accelerator,
            progress or NullProgress(),
            resume=resume,
            stop_after=stop_after,
            stop_requested=stop_requested,
            started=started,
        )
    finally:
        if lock is not None:
            lock.release()


def _run_config(task: TrainingTask, config: TrainConfig) -> TrainConfig:
    """The configuration a run of ``task`` records: a validated copy of ``config`` with the task's
    method options, base, revision and variant (the task loads those; a config that names others
    is refused)."""
    config.validate()
    if config.method != task.name:
        raise InputError(
            f"TrainConfig method {config.method!r}: the task trains {task.name!r}; its defaults would be "
            "another method's"
        )
    weights = {}
    if task.base is not None:
        for name in ("base", "revision", "variant"):
            given, used = getattr(config, name), getattr(task, name)
            if given is not None and str(given) != str(used):
                raise InputError(
                    f"TrainConfig {name} {given!r}: the task loads {used!r}; leave it out or give the task the same"
                )
            weights[name] = used
    output = Path(config.output)
    if output.resolve() == Path(config.data).resolve():
        raise InputError(
            f"-o {output}: is the data folder; choose another run folder (checkpoints, samples and "
            "loss.png would be written among the training images)"
        )
    check_val_data(config, output)
    return replace(config, method_options=task.options(), **weights)


def _lock_run(accelerator, output: Path) -> locking.OutputLock | None:
    """One run per folder: the main process locks it before reading its checkpoints (the other
    processes of a launch are part of the same run). When it cannot, every process raises its
    one-line error, rather than the others waiting for it in the first collective."""
    lock, message = None, None
    if accelerator.is_main_process:
        try:
            lock = locking.lock_folder(output, create_label=f"-o {output}")
        except InputError as e:
            if accelerator.num_processes == 1:
                raise
            message = str(e)
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        message = broadcast_object_list([message], from_process=0)[0]
        if message is not None:
            raise InputError(message)
    return lock


def _train(
    task: TrainingTask,
    config: TrainConfig,
    accelerator,
    progress: Progress,
    *,
    resume: bool,
    stop_after: int | None,
    stop_requested: Callable[[], bool] | None,
    started: float,
) -> TrainResult:
    """:func:`train` once the run folder is locked: set up, the step loop, export."""
    import torch

    run = _set_up(task, config, accelerator, resume)
    module, params, optimizer, lr_scheduler, ema, history = (
        run.module,
        run.params,
        run.optimizer,
        run.lr_scheduler,
        run.ema,
        run.history,
    )
    rank, world, total = accelerator.process_index, accelerator.num_processes, run.total
    per_epoch = run.plan.micro_batches_per_epoch
    result = TrainResult(
        output=run.output,
        step=run.start,
        total_steps=total,
        resumed_from=run.start if run.resumed else None,
        last_loss=None,
        main_process=accelerator.is_main_process,
    )
    batches = iter(_loader(run, config))
    validation = Validation(task, run.val_dataset, config, run.output, ema=ema is not None)
    progress.start(f"Training {task.name}", total)
    progress.advance(run.start)
    module.train()
    for step in range(run.start, total):
        torch.manual_seed(derive_seed(config.seed, "step", step, rank))  # dropout
        losses = []
        for micro in range(config.grad_accum):
            batch = _on_device(next(batches), accelerator.device)
            generators = _generators(config, step, micro, rank, world, per_epoch)
            # Gradients are all-reduced once per step, on its last micro-batch.
            sync = contextlib.nullcontext() if micro == config.grad_accum - 1 else accelerator.no_sync(module)
            with sync:
                with accelerator.autocast():
                    loss = task.loss(module, batch, generators)
                accelerator.backward(loss / config.grad_accum)
            losses.append(loss.detach().float())
        if config.clip_grad_norm > 0:
            accelerator.clip_grad_norm_(params, config.clip_grad_norm)
        optimizer.step()
        lr = lr_scheduler.get_last_lr()[0]  # the rate this step ran at (the logged one)
        # An fp16 step the grad scaler skipped (inf/NaN gradients) changed nothing: the schedule
        # and the EMA do not advance either, as accelerate's own scheduler wrapper does.
        if not accelerator.optimizer_step_was_skipped:
            lr_scheduler.step()
            if ema is not None:
                ema.step(params)
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        result.step, result.last_loss = done, _step_loss(accelerator, losses, done)
        if history is not None:
            history.log(
                step=done,
                epoch=(done * config.grad_accum) / per_epoch,
                loss=result.last_loss,
                lr=lr,
                seconds=round(time.perf_counter() - started, 3),
            )
        progress.advance(1, loss=result.last_loss)

        epoch_end = (done * config.grad_accum) % per_epoch < config.grad_accum
        stop = (stop_after is not None and done - run.start >= stop_after) or _stop_everywhere(
            accelerator, bool(stop_requested and stop_requested())
        )
        saving = done % config.save_every == 0 or epoch_end or done == total or stop
        if saving:
            _save(accelerator, task, run, done, config.keep_last)
        if validation.due(done, saving, total) and accelerator.is_main_process:
            with ema_weights(ema, params):
                result.validation = validation.run(accelerator.unwrap_model(module), done)
            history.log(step=done, **result.validation)
        accelerator.wait_for_everyone()
        if stop and done < total:
            result.stopped_early = True
            break
    progress.finish()
    _finish(task, run, accelerator, result)
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class _Run:
    """What :func:`_set_up` builds for the step loop."""

    output: Path
    #: The training images, and the validation images (None: no validation).
    dataset: CompletionDataset
    val_dataset: CompletionDataset | None
    #: Which images each micro-batch of each process holds.
    plan: BatchPlan
    #: Optimizer steps of the whole run, and those done before this call (a checkpoint's).
    total: int
    start: int
    resumed: bool
    #: The module as accelerate prepared it (wrapped for several processes), and its trainable parameters.
    module: Any
    params: list[Any]
    optimizer: Any
    lr_scheduler: Any
    #: diffusers' ``EMAModel`` of ``params`` (fp32), or None with ``ema_decay`` 0.
    ema: Any
    #: ``training_config.json``: the configuration, the data's fingerprint, the processes, the split.
    record: dict[str, Any]
    #: The log (the main process's; None in the others).
    history: History | None


def _set_up(task: TrainingTask, config: TrainConfig, accelerator, resume: bool) -> _Run:
    """Everything before the first step: the latest checkpoint and the checks it must pass, the
    data, the model, optimiser, schedule and EMA (restored from the checkpoint), the run's record."""
    output = Path(config.output)
    checkpoint = ckpt.find_checkpoint(output)
    if checkpoint is not None and not resume:
        raise InputError(f"{output}: already holds checkpoints; resume it or choose another -o")
    state = ckpt.load_checkpoint(checkpoint) if checkpoint is not None else None
    # A run started before validation images were held out trained on the whole folder: it goes on
    # doing so (and its records stay without a split), or it could not continue exactly.
    legacy = state is not None and "val_source" not in state.config
    split = split_validation(
        list_folder_images(Path(config.data)), config.val_images, config.seed, config.val_data, held_out=not legacy
    )
    dataset = _dataset(config, task, config.data, split.train)
    # Built now, not when first used: an unreadable validation image fails before the model loads.
    val_folder = config.val_data if split.source == "val-data" else config.data
    val_dataset = _dataset(config, task, val_folder, split.val) if split.val else None
    plan = BatchPlan(
        len(dataset),
        config.batch_size,
        config.seed,
        num_processes=accelerator.num_processes,
        rank=accelerator.process_index,
    )
    total = _total_steps(config, plan)
    if state is not None:
        _check_resume(config, state, dataset.fingerprint(), split, plan, accelerator.num_processes, checkpoint)

    if accelerator.is_main_process:
        _prepare_output(output)  # before the (slow) model build: an unwritable -o fails at once
    module, params, optimizer, lr_scheduler, ema = _model(task, config, accelerator, total)
    if state is not None:
        _restore(task, state, accelerator, module, optimizer, lr_scheduler, ema)

    record = {"train": config.to_dict(), "data": dataset.fingerprint(), "processes": accelerator.num_processes}
    if not legacy:
        record.update(val_source=split.source, val_names=[p.name for p in split.val])
    start = state.step if state is not None else 0
    history = None
    if accelerator.is_main_process:
        atomic.write_json(output / CONFIG_NAME, record)
        explain_split(config, split, legacy, output)
        history = History(output / "log.jsonl", resume_step=start)
    return _Run(
        output=output,
        dataset=dataset,
        val_dataset=val_dataset,
        plan=plan,
        total=total,
        start=start,
        resumed=state is not None,
        module=module,
        params=params,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        ema=ema,
        record=record,
        history=history,
    )


def _total_steps(config: TrainConfig, plan: BatchPlan) -> int:
    return config.max_steps or epochs_to_steps(config.epochs, plan.micro_batches_per_epoch, config.grad_accum)


def _model(task: TrainingTask, config: TrainConfig, accelerator, total: int):
    """The task's module and its trainable parameters, AdamW, the LR schedule and the EMA (fp32)."""
    import torch
    from diffusers.training_utils import EMAModel

    module = task.build(accelerator.device, accelerator.mixed_precision)
    params = task.trainable_parameters(module)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    lr_scheduler = _lr_scheduler(config, optimizer, total)
    module, optimizer = accelerator.prepare(module, optimizer)
    ema = EMAModel(params, decay=config.ema_decay) if config.ema_decay > 0 else None
    if ema is not None:
        ema.to(accelerator.device)
    return module, params, optimizer, lr_scheduler, ema


def _restore(task: TrainingTask, state: ckpt.TrainingState, accelerator, module, optimizer, lr_scheduler, ema) -> None:
    """Put a checkpoint's weights, AdamW moments, schedule, grad scale and EMA back, exactly."""
    task.load_trainable_state(accelerator.unwrap_model(module), state.model)
    optimizer.load_state_dict(state.optimizer)
    lr_scheduler.load_state_dict(state.lr_scheduler)
    if accelerator.scaler is not None and state.grad_scaler is not None:
        accelerator.scaler.load_state_dict(state.grad_scaler)
    if ema is not None and state.ema is not None:
        ema.load_state_dict(state.ema)
        ema.to(accelerator.device)


def _loader(run: _Run, config: TrainConfig):
    """The micro-batches of this process from the run's position on (:class:`PlannedBatches`)."""
    import torch

    return torch.utils.data.DataLoader(
        run.dataset,
        batch_sampler=PlannedBatches(run.plan, run.start * config.grad_accum, run.total * config.grad_accum),
        collate_fn=collate,
        num_workers=config.workers,
        generator=torch.Generator(),  # keep the global RNG out of the loader
        worker_init_fn=_leave_stop_signals_to_the_main_process if config.workers else None,
    )


def _on_device(batch: dict[str, Any], device) -> dict[str, Any]:
    return {**batch, "pixels": batch["pixels"].to(device), "masks": batch["masks"].to(device)}


def _step_loss(accelerator, losses: list[torch.Tensor], step: int) -> float:
    """The step's loss averaged over micro-batches and processes; an error when it is not finite."""
    import torch

    value = accelerator.gather(torch.stack(losses).mean()[None]).mean().item()
    if not math.isfinite(value):
        from inpaint.errors import InpaintError

        raise InpaintError(f"training diverged at step {step}: the loss is {value}; lower --lr")
    return value


def _finish(task: TrainingTask, run: _Run, accelerator, result: TrainResult) -> None:
    """Export the trained weights (and the EMA's) when the run reached its end; draw the plots."""
    if accelerator.is_main_process and not result.stopped_early:
        module = accelerator.unwrap_model(run.module)
        ema_state = _ema_by_name(module, run.params, run.ema) if run.ema is not None else None
        result.artefacts = task.export(module, run.output, {**run.record, "step": result.step}, ema_state)
    if run.history is not None:
        run.history.plot(run.output / "loss.png")
        run.history.plot_validation(run.output / "validation.png")
    accelerator.wait_for_everyone()


def _leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """In a data-loading worker: ignore SIGINT, SIGTERM and SIGUSR1 unless the loader sends them.

    Workers share the main process's process group, so a signal sent to the group reaches them
    too: Ctrl-C in a terminal, ``timeout`` (it signals its whole group), SLURM (every process of
    the job step). The main process stops the run at a step boundary with a checkpoint and shuts
    the workers down itself; a worker ended by the signal would instead fail the run ("DataLoader
    worker exited unexpectedly") before the checkpoint. Torch's own worker handler ends a worker
    on any SIGTERM; here only the loader's (the parent's, when a worker does not exit on its
    own) does, as torch does for it. This touches the worker processes only, never the caller's.
    """
    import os
    import signal
    import threading

    for name in ("SIGINT", "SIGUSR1"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):  # pragma: no cover - no siginfo (macOS): ignore them all
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return
    parent = os.getppid()
    # Blocked in this thread (and the threads it starts), SIGTERM waits for the thread below.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait_for_the_loader() -> None:
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
                os._exit(0)

    threading.Thread(target=wait_for_the_loader, name="inpaint-sigterm", daemon=True).start()


def _prepare_output(output: Path) -> None:
    """Create the run folder, and delete the temporary files and folders a killed run left there.

    Checkpoint temporaries are pruned by :mod:`~inpaint.training.checkpoint`; these are the
    others: atomic writes of logs, pictures and LoRA files (``.<name>.XXXXXXXX.tmp[.suffix]``),
    and the folders an interrupted export assembles (``.raw.XXXXXXXX.tmp`` inside the run — or
    ``.ema.XXXXXXXX.tmp`` from earlier versions — and ``.<run>.XXXXXXXX.tmp`` beside it).
    """
    import re
    import shutil

    atomic.ensure_folder(output, f"-o {output}")
    for folder in (output, output / "samples", output / "raw", output / "ema"):
        atomic.remove_stale_temporaries(folder)
    for folder, name in ((output, "raw"), (output, "ema"), (output.parent, output.name)):
        pattern = re.compile(rf"^\.{re.escape(name)}\.[A-Za-z0-9_]{{8}}\.tmp$")
        for stale in folder.glob(f".{name}.*.tmp"):
            if stale.is_dir() and pattern.match(stale.name):
                shutil.rmtree(stale, ignore_errors=True)


def _mask_source(config: TrainConfig):
    from inpaint.data import MaskSource

    specs = [config.masks] if isinstance(config.masks, str) else list(config.masks)
    return MaskSource.parse(specs)


def _dataset(config: TrainConfig, task: TrainingTask, folder: str, images) -> CompletionDataset:
    return CompletionDataset(
        folder,
        resolution=config.resolution,
        mask_source=_mask_source(config),
        seed=config.seed,
        flip=config.flip,
        captions=task.captions(),
        images=images,
    )


def _check_resume(
    config: TrainConfig,
    state: ckpt.TrainingState,
    data: str,
    split: ValidationSplit,
    plan: BatchPlan,
    processes: int,
    path: Path,
) -> None:
    """Refuse to resume a run with settings that would change its trajectory, or a length that
    does not fit it (:func:`_check_length`).

    The validation split is compared by the images it keeps out of training: ``--val-images``
    and ``--val-data`` may change as long as those stay the same.
    """
    saved_record = state.config
    saved = TrainConfig.from_dict(saved_record["train"])
    differences = config.trajectory_differences(saved)
    saved_held_out = saved_record.get("val_names", []) if saved_record.get("val_source") == "held-out" else []
    saved_data, saved_processes = saved_record.get("data"), saved_record.get("processes", processes)
    if sorted(saved_held_out) != sorted(split.held_out):

        def names(held: list[str]) -> str:
            return ", ".join(sorted(held)) or "none"

        differences.append(
            f"validation images held out of training (--val-images, --val-data: "
            f"{names(saved_held_out)} before, {names(split.held_out)} now)"
        )
    elif saved_data is not None and saved_data != data:
        differences.append("data (the image folder changed)")
    if saved_processes != processes:
        differences.append(f"number of processes ({saved_processes} before, {processes} now)")
    if differences:
        raise InputError(
            f"{path}: cannot resume with different {', '.join(differences)}; use the original settings "
            "or another -o for a new run"
        )
    _check_length(config, _total_steps(config, plan), _total_steps(saved, plan), state.step, path)


def _save(accelerator, task: TrainingTask, run: _Run, step: int, keep_last: int) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = ckpt.TrainingState(
            step=step,
            model=task.trainable_state(accelerator.unwrap_model(run.module)),
            optimizer=run.optimizer.state_dict(),
            lr_scheduler=run.lr_scheduler.state_dict(),
            grad_scaler=accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
            ema=run.ema.state_dict() if run.ema is not None else None,
            config=run.record,
        )
        ckpt.save_checkpoint(run.output, state, keep_last)
    accelerator.wait_for_everyone()


def _ema_by_name(module, params, ema) -> dict[str, Any]:
    names = {id(p): name for name, p in module.named_parameters()}
    return {names[id(p)]: shadow.detach().cpu() for p, shadow in zip(params, ema.shadow_params)}
