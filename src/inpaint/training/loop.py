"""The one training loop, shared by ``train-ddpm`` and ``train-lora``, on accelerate.

What makes a resumed run continue *exactly* as if it had never stopped:

- data: the micro-batch at position p is a pure function of (seed, p) (:class:`BatchPlan`);
- randomness: before step k the global torch RNG is reseeded from (seed, k, rank) (dropout), and
  each image's noise and timestep come from a generator seeded by (seed, k, micro-batch, image
  position), handed to the task — so no RNG state needs saving, and the draws do not depend on
  how images are split across processes;
- state: weights, AdamW moments, LR schedule, grad scaler and EMA are checkpointed exactly
  (:mod:`inpaint.training.checkpoint`, safetensors + JSON).

accelerate provides the device, mixed precision (autocast and, for fp16, the grad scaler) and
distributed data parallelism; under ``accelerate launch --num_processes N`` each process takes
its slice of every global batch and gradients are averaged. Gradient accumulation is done here
(``no_sync`` on all but the last micro-batch) so the step arithmetic stays visible.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint import atomic
from inpaint.config import TrainConfig
from inpaint.data import BatchPlan, CompletionDataset, PlannedBatches, collate, epochs_to_steps
from inpaint.errors import InputError
from inpaint.progress import NullProgress, Progress
from inpaint.seeding import derive_seed
from inpaint.training import checkpoint as ckpt
from inpaint.training.history import History
from inpaint.training.task import TrainingTask

if TYPE_CHECKING:  # pragma: no cover
    import torch

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


def mixed_precision_for(config: TrainConfig, device: torch.device) -> str:
    """``auto`` means fp16 with a grad scaler on CUDA (the study's AMP), full precision elsewhere."""
    if config.mixed_precision != "auto":
        if config.mixed_precision != "no" and device.type == "cpu":
            raise InputError(f"--mixed-precision {config.mixed_precision}: not available on the CPU; use no")
        return config.mixed_precision
    return "fp16" if device.type == "cuda" else "no"


def _accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    from inpaint.devices import resolve_device

    device = resolve_device(config.device)
    if device.type == "cuda" and (device.index or 0) != 0:
        raise InputError(f"--device {config.device}: choose the GPU with CUDA_VISIBLE_DEVICES (or accelerate launch)")
    return Accelerator(
        cpu=device.type == "cpu",
        mixed_precision=mixed_precision_for(config, device),
        dataloader_config=DataLoaderConfiguration(),
    )


def _lr_scheduler(config: TrainConfig, optimizer, total_steps: int):
    from diffusers.optimization import get_scheduler

    # diffusers' "constant" ignores num_warmup_steps: asked-for warmup would silently not happen.
    name = "constant_with_warmup" if config.lr_schedule == "constant" and config.warmup_steps > 0 else config.lr_schedule
    return get_scheduler(name, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=total_steps)


#: Schedules whose learning rate depends on the run's length: it cannot change on resume.
_DECAYING_SCHEDULES = ("linear", "cosine")


def _check_length(config: TrainConfig, total: int, saved_total: int, step: int, path: Path) -> None:
    """Refuse a resumed length that the run has passed, or that would bend a decaying schedule."""
    option = "--max-steps" if config.max_steps is not None else "--epochs"
    value = config.max_steps if config.max_steps is not None else config.epochs
    if total < step:
        raise InputError(f"{option} {value}: {path} is already at step {step} (of {total} asked); ask for at least "
                         f"{step} steps, or use the run as it is")
    if total != saved_total and config.lr_schedule in _DECAYING_SCHEDULES:
        raise InputError(
            f"{option} {value}: the run's {config.lr_schedule} schedule decays over {saved_total} steps; "
            f"{total} would restart it part-way (the learning rate would jump). Keep the length, or start a "
            "new run (-o)")


def _stop_everywhere(accelerator, requested: bool) -> bool:
    """True on every process if any asked to stop (Ctrl-C reaches them at different steps).

    Each process stopping on its own flag would leave the others waiting in the next step's
    gradient all-reduce while it waits in the checkpoint's barrier: a deadlock.
    """
    import torch

    if accelerator.num_processes == 1:
        return requested
    flag = torch.tensor([1.0 if requested else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def _generators(config: TrainConfig, step: int, micro: int, positions: list[int]):
    import torch

    return [torch.Generator().manual_seed(derive_seed(config.seed, "noise", step, micro, p)) for p in positions]


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
    does ``stop_requested()`` returning True at a step boundary (the CLI's Ctrl-C); a later call
    continues. ``resume=False`` refuses to start in a folder that already holds checkpoints.
    """
    import torch
    from diffusers.training_utils import EMAModel

    started = time.perf_counter()
    progress = progress or NullProgress()
    config.validate()
    output = Path(config.output)
    if output.resolve() == Path(config.data).resolve():
        raise InputError(f"-o {output}: is the data folder; choose another run folder (checkpoints, samples and "
                         "loss.png would be written among the training images)")
    config.method_options = task.options()

    accelerator = _accelerator(config)
    rank, world = accelerator.process_index, accelerator.num_processes
    dataset = CompletionDataset(
        config.data, resolution=config.resolution, mask_source=_mask_source(config),
        seed=config.seed, flip=config.flip, captions=task.captions(),
    )
    plan = BatchPlan(len(dataset), config.batch_size, config.seed, num_processes=world, rank=rank)
    total = config.max_steps or epochs_to_steps(config.epochs, plan.micro_batches_per_epoch, config.grad_accum)

    resume_from = ckpt.find_checkpoint(output)
    if resume_from is not None and not resume:
        raise InputError(f"{output}: already holds checkpoints; resume it or choose another -o")
    state = ckpt.load_checkpoint(resume_from) if resume_from is not None else None
    if state is not None:
        saved = TrainConfig.from_dict(state.config["train"])
        _check_resume(config, saved, state.config.get("data"), dataset.fingerprint(),
                      state.config.get("processes", world), world, resume_from)
        saved_total = saved.max_steps or epochs_to_steps(saved.epochs, plan.micro_batches_per_epoch, saved.grad_accum)
        _check_length(config, total, saved_total, state.step, resume_from)

    if accelerator.is_main_process:
        _prepare_output(output)  # before the (slow) model build: an unwritable -o fails at once
    module = task.build(accelerator.device, accelerator.mixed_precision)
    params = task.trainable_parameters(module)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    lr_scheduler = _lr_scheduler(config, optimizer, total)
    module, optimizer = accelerator.prepare(module, optimizer)
    ema = EMAModel(params, decay=config.ema_decay) if config.ema_decay > 0 else None
    if ema is not None:
        ema.to(accelerator.device)

    start = 0
    if state is not None:
        task.load_trainable_state(accelerator.unwrap_model(module), state.model)
        optimizer.load_state_dict(state.optimizer)
        lr_scheduler.load_state_dict(state.lr_scheduler)
        if accelerator.scaler is not None and state.grad_scaler is not None:
            accelerator.scaler.load_state_dict(state.grad_scaler)
        if ema is not None and state.ema is not None:
            ema.load_state_dict(state.ema)
            ema.to(accelerator.device)
        start = state.step

    record = {"train": config.to_dict(), "data": dataset.fingerprint(), "processes": world}
    if accelerator.is_main_process:
        atomic.write_json(output / CONFIG_NAME, record)
    history = History(output / "log.jsonl", resume_step=start) if accelerator.is_main_process else None

    result = TrainResult(output=output, step=start, total_steps=total, resumed_from=start if state else None,
                         last_loss=None, main_process=accelerator.is_main_process)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=PlannedBatches(plan, start * config.grad_accum, total * config.grad_accum),
        collate_fn=collate,
        num_workers=config.workers,
        generator=torch.Generator(),  # keep the global RNG out of the loader
    )
    batches = iter(loader)
    validation = _Validation(task, dataset, config, output)
    progress.start(f"Training {task.name}", total)
    progress.advance(start)
    module.train()
    for step in range(start, total):
        torch.manual_seed(derive_seed(config.seed, "step", step, rank))
        losses = []
        for micro in range(config.grad_accum):
            batch = next(batches)
            position = step * config.grad_accum + micro
            first = (position % plan.micro_batches_per_epoch) * config.batch_size * world + rank * config.batch_size
            generators = _generators(config, step, micro, list(range(first, first + config.batch_size)))
            batch = {**batch, "pixels": batch["pixels"].to(accelerator.device),
                     "masks": batch["masks"].to(accelerator.device)}
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
        loss_value = accelerator.gather(torch.stack(losses).mean()[None]).mean().item()
        if not math.isfinite(loss_value):
            from inpaint.errors import InpaintError

            raise InpaintError(f"training diverged at step {done}: the loss is {loss_value}; lower --lr")
        result.step, result.last_loss = done, loss_value
        if history is not None:
            history.log(step=done, epoch=(done * config.grad_accum) / plan.micro_batches_per_epoch,
                        loss=loss_value, lr=lr,
                        seconds=round(time.perf_counter() - started, 3))
        progress.advance(1, loss=loss_value)

        epoch_end = (done * config.grad_accum) % plan.micro_batches_per_epoch < config.grad_accum
        stop = (stop_after is not None and done - start >= stop_after) or _stop_everywhere(
            accelerator, bool(stop_requested and stop_requested()))
        saving = done % config.save_every == 0 or epoch_end or done == total or stop
        if saving:
            _save(accelerator, task, module, optimizer, lr_scheduler, ema, done, record, output, config.keep_last)
        if validation.due(done, saving, total) and accelerator.is_main_process:
            scores = validation.run(accelerator.unwrap_model(module), done)
            result.validation = scores
            history.log(step=done, **scores)
        accelerator.wait_for_everyone()
        if stop and done < total:
            result.stopped_early = True
            break
    progress.finish()
    if accelerator.is_main_process and not result.stopped_early:
        ema_state = _ema_by_name(accelerator.unwrap_model(module), params, ema) if ema is not None else None
        result.artefacts = task.export(accelerator.unwrap_model(module), output, {**record, "step": result.step},
                                       ema_state)
    if history is not None:
        history.plot(output / "loss.png")
    accelerator.wait_for_everyone()
    result.seconds = time.perf_counter() - started
    return result


def _prepare_output(output: Path) -> None:
    """Create the run folder, and delete the temporary files and folders a killed run left there.

    Checkpoint temporaries are pruned by :mod:`~inpaint.training.checkpoint`; these are the
    others: atomic writes of logs, pictures and LoRA files (``.<name>.XXXXXXXX.tmp[.suffix]``),
    and the folders an interrupted export assembles (``.ema.XXXXXXXX.tmp`` inside the run,
    ``.<run>.XXXXXXXX.tmp`` beside it).
    """
    import re
    import shutil

    atomic.ensure_folder(output, f"-o {output}")
    for folder in (output, output / "samples", output / "ema"):
        atomic.remove_stale_temporaries(folder)
    for folder, name in ((output, "ema"), (output.parent, output.name)):
        pattern = re.compile(rf"^\.{re.escape(name)}\.[A-Za-z0-9_]{{8}}\.tmp$")
        for stale in folder.glob(f".{name}.*.tmp"):
            if stale.is_dir() and pattern.match(stale.name):
                shutil.rmtree(stale, ignore_errors=True)


def _mask_source(config: TrainConfig):
    from inpaint.data import MaskSource

    specs = [config.masks] if isinstance(config.masks, str) else list(config.masks)
    return MaskSource.parse(specs)


def _check_resume(config: TrainConfig, saved: TrainConfig, saved_data: str | None, data: str,
                  saved_processes: int, processes: int, path: Path) -> None:
    """Refuse to resume a run with settings that would change its trajectory."""
    differences = config.trajectory_differences(saved)
    if saved_data is not None and saved_data != data:
        differences.append("data (the image folder changed)")
    if saved_processes != processes:
        differences.append(f"number of processes ({saved_processes} before, {processes} now)")
    if differences:
        raise InputError(
            f"{path}: cannot resume with different {', '.join(differences)}; use the original settings "
            "or another -o for a new run"
        )


def _save(accelerator, task, module, optimizer, lr_scheduler, ema, step: int, record: dict[str, Any],
          output: Path, keep_last: int) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = ckpt.TrainingState(
            step=step,
            model=task.trainable_state(accelerator.unwrap_model(module)),
            optimizer=optimizer.state_dict(),
            lr_scheduler=lr_scheduler.state_dict(),
            grad_scaler=accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
            ema=ema.state_dict() if ema is not None else None,
            config=record,
        )
        ckpt.save_checkpoint(output, state, keep_last)
    accelerator.wait_for_everyone()


def _ema_by_name(module, params, ema) -> dict[str, Any]:
    names = {id(p): name for name, p in module.named_parameters()}
    return {names[id(p)]: shadow.detach().cpu() for p, shadow in zip(params, ema.shadow_params)}


class _Validation:
    """Completes a fixed set of images (the first ``val_images`` of the data, with the masks of
    epoch -1 and fixed seeds) and scores the hole; writes ``samples/step-XXXXXXXX.png``."""

    def __init__(self, task: TrainingTask, dataset: CompletionDataset, config: TrainConfig, output: Path) -> None:
        self.task, self.dataset, self.config, self.output = task, dataset, config, output
        self.count = min(config.val_images, len(dataset))

    def due(self, step: int, saving: bool, total: int) -> bool:
        if self.count == 0:
            return False
        every = self.config.validate_every
        return (step % every == 0) if every else (saving or step == total)

    def run(self, module, step: int) -> dict[str, float]:
        import numpy as np
        import torch

        from inpaint import io, metrics
        from inpaint.grid import image_grid

        items = collate([self.dataset[(-1, i)] for i in range(self.count)])
        images = io.from_model_range(items["pixels"])
        masks = items["masks"]
        seeds = [derive_seed(self.config.seed, "val", name) for name in items["names"]]
        was_training = module.training
        module.eval()
        with torch.no_grad():
            completed = self.task.complete(module, images, masks, seeds).cpu().float()
        module.train(was_training)
        scores = {
            "val_psnr_hole": float(metrics.psnr(completed, images, masks).mean()),
            "val_ssim_hole": float(metrics.ssim(completed, images, masks).mean()),
        }
        originals, results = io.to_uint8(images), io.to_uint8(completed)
        rows = []
        for original, result, mask in zip(originals, results, masks[:, 0].bool().numpy()):
            masked = original.copy()
            masked[mask] = 255
            rows.append([original, masked, result])
        grid = image_grid(rows, column_labels=["original", "masked", f"step {step}"])
        io.save_image(np.ascontiguousarray(grid), self.output / "samples" / f"{ckpt.checkpoint_name(step)}.png")
        return scores
