"""Validation during training: the held-out images a run completes at its checkpoints.

:class:`Validation` completes a fixed set of images (each with its mask of epoch -1 and a seed
from its name) with the weights the run exports — the EMA weights, swapped in by
:func:`ema_weights` and out again bit for bit, so validating never changes the training
trajectory — scores the hole and writes ``samples/step-XXXXXXXX.png``. Which images those are
is :func:`inpaint.data.split_validation`'s choice; :func:`check_val_data` and
:func:`explain_split` check and explain it.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from inpaint.config import TrainConfig
from inpaint.data import HOLD_OUT_FACTOR, CompletionDataset, ValidationSplit, collate
from inpaint.errors import InputError
from inpaint.seeding import derive_seed
from inpaint.training import checkpoint as ckpt
from inpaint.training.task import TrainingTask

log = logging.getLogger(__name__)


def check_val_data(config: TrainConfig, output: Path) -> None:
    """Refuse a ``--val-data`` that is missing, or is the training or the run folder."""
    if config.val_data is None:
        return
    folder = Path(config.val_data)
    if not folder.is_dir():
        raise InputError(f"--val-data {folder}: no such folder")
    if folder.resolve() == Path(config.data).resolve():
        raise InputError(
            f"--val-data {folder}: is the training folder; leave --val-data out to hold "
            f"--val-images {config.val_images} of its images out of training instead"
        )
    if folder.resolve() == output.resolve():
        raise InputError(
            f"--val-data {folder}: is the run folder (-o); its pictures would be read as validation images"
        )


def explain_split(config: TrainConfig, split: ValidationSplit, legacy: bool, output: Path) -> None:
    """Warn, once per call, when validation scores training images: they measure fit."""
    if split.source != "training":
        return
    if legacy:
        log.warning(
            f"{output}: this run was started by an earlier version that validated on training images and "
            "trained on all of them; it goes on that way, so its validation scores measure fit, not "
            "generalisation"
        )
        return
    log.warning(
        f"{config.data}: {len(split.train)} images are fewer than {HOLD_OUT_FACTOR} x --val-images "
        f"{config.val_images}, too few to hold validation images out of training: validating on "
        f"{len(split.val)} training images, so the scores measure fit, not generalisation; pass "
        "--val-data DIR with other images for a real validation"
    )


@contextlib.contextmanager
def ema_weights(ema, params):
    """Swap the EMA weights into ``params`` for the duration (validation samples the weights the
    run exports), then put the trained weights back bit for bit (diffusers' ``store``/
    ``copy_to``/``restore``): validating never changes what training does next."""
    if ema is None:
        yield
        return
    ema.store(params)
    ema.copy_to(params)
    try:
        yield
    finally:
        ema.restore(params)


class Validation:
    """Completes a fixed set of images and scores the hole; writes ``samples/step-XXXXXXXX.png``.

    The images are the run's validation images (:func:`inpaint.data.split_validation`), each
    with its mask of epoch -1 and a seed from its name, so every validation sees the same
    inputs. Scores: hole PSNR and SSIM, and hole LPIPS (AlexNet) when its weight file is on this
    machine (:func:`inpaint.metrics.resolve_weights`; never downloaded, said once when skipped).
    """

    def __init__(
        self,
        task: TrainingTask,
        dataset: CompletionDataset | None,
        config: TrainConfig,
        output: Path,
        *,
        ema: bool = False,
    ) -> None:
        self.task, self.dataset, self.config, self.output = task, dataset, config, output
        self.count = len(dataset) if dataset is not None else 0
        self.ema = ema
        self._lpips: Any = None
        self._lpips_checked = False

    def due(self, step: int, saving: bool, total: int) -> bool:
        if self.count == 0:
            return False
        every = self.config.validate_every
        return (step % every == 0) if every else (saving or step == total)

    def lpips(self):
        """The LPIPS metric, or ``None`` when its weights are not here (looked for once)."""
        if not self._lpips_checked:
            self._lpips_checked = True
            from inpaint.metrics import LPIPS_ALEX, LPIPSMetric, MetricWeightsMissing, resolve_weights
            from inpaint.metrics.weights import hub_cache_path

            try:
                self._lpips = LPIPSMetric("alex", resolve_weights(LPIPS_ALEX))
            except MetricWeightsMissing:
                log.info(
                    f"validation: no LPIPS, {LPIPS_ALEX.filename} is not on this machine (set "
                    f"{LPIPS_ALEX.env_var}=FILE or copy it to {hub_cache_path(LPIPS_ALEX)}); hole PSNR and "
                    "SSIM only"
                )
            except InputError as e:
                log.info(f"validation: no LPIPS ({e}); hole PSNR and SSIM only")
        return self._lpips

    def run(self, module, step: int) -> dict[str, float]:
        """Complete the validation images with ``module`` as it is (the caller swaps EMA weights in)."""
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
        lpips = self.lpips()
        if lpips is not None:
            scores["val_lpips_hole"] = float(lpips(completed, images, masks).mean())
        originals, results = io.to_uint8(images), io.to_uint8(completed)
        rows = []
        for original, result, mask in zip(originals, results, masks[:, 0].bool().numpy()):
            masked = original.copy()
            masked[mask] = 255
            rows.append([original, masked, result])
        label = f"step {step}" + (" (EMA)" if self.ema else "")
        grid = image_grid(rows, column_labels=["original", "masked", label])
        io.save_image(np.ascontiguousarray(grid), self.output / "samples" / f"{ckpt.checkpoint_name(step)}.png")
        return scores
