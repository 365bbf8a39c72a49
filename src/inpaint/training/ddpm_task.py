"""Method 1 of the study: fine-tune a pretrained pixel DDPM, widened to 7 input channels, for completion.

One loss evaluation (docs/method.md, Method 1): draw t and eps per image, noise the clean image to
x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps, feed concat(x_masked, mask, x_t) to the UNet, and take the
spatially weighted MSE against the scheduler's target (eps for the study's epsilon-prediction
models; v or x0 for models trained that way), with hole weight 1.0 and known weight 0.05.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint.errors import InputError
from inpaint.losses import HOLE_WEIGHT, KNOWN_WEIGHT, hole_weighted_mse
from inpaint.training.task import TrainingTask

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Validation samples use ancestral DDPM on ``val_steps`` respaced steps: the best sampler at
#: <= 25 steps in docs/benchmarks.md.


@dataclass
class DDPMOptions:
    """Settings of ``train-ddpm`` beyond the shared ones."""

    hole_weight: float = HOLE_WEIGHT
    known_weight: float = KNOWN_WEIGHT
    val_steps: int = 25
    #: Recompute the UNet blocks' activations in the backward pass: less memory, one more forward.
    gradient_checkpointing: bool = False


class DDPMTask(TrainingTask):
    """Fine-tunes a ``UNet2DModel``: a 3-channel base is widened to 7 channels (exact at init);
    a 7-channel completion model (a previous ``train-ddpm`` output) is fine-tuned further."""

    name = "ddpm"

    def __init__(
        self, base: str, options: DDPMOptions | None = None, *, revision: str | None = None, variant: str | None = None
    ) -> None:
        self.base = base
        self.revision, self.variant = revision, variant  # of a hub base
        self.opts = options or DDPMOptions()
        for option, value in (("--hole-weight", self.opts.hole_weight), ("--known-weight", self.opts.known_weight)):
            if not math.isfinite(value):  # nan passes every comparison below, and the loss becomes nan
                raise InputError(f"{option} {value}: must be a finite number")
        if (
            self.opts.hole_weight < 0
            or self.opts.known_weight < 0
            or self.opts.hole_weight + self.opts.known_weight == 0
        ):
            raise InputError("--hole-weight and --known-weight must be non-negative and not both zero")
        if self.opts.val_steps < 1:
            raise InputError(f"--val-steps {self.opts.val_steps}: must be at least 1")
        self.scheduler_config: dict[str, Any] = {}
        self._noise_scheduler = None

    def options(self) -> dict[str, Any]:
        # Gradient checkpointing changes memory and time, not the gradients (a test checks it): it
        # is left out of the settings a resume must keep, so a run that ran out of memory can
        # continue with it on.
        settings = asdict(self.opts)
        settings.pop("gradient_checkpointing")
        return settings

    def build(self, device: torch.device, mixed_precision: str = "no") -> torch.nn.Module:
        from diffusers import DDPMScheduler

        from inpaint.samplers import PREDICTION_TYPES

        unet, self.scheduler_config = _load_trainable_unet(self.base, self.revision, self.variant)
        self._noise_scheduler = DDPMScheduler.from_config(self.scheduler_config)
        kind = self._noise_scheduler.config.prediction_type
        if kind not in PREDICTION_TYPES:  # before any step runs, not at the first loss
            raise InputError(
                f"{self.base}: unsupported prediction_type {kind!r}; expected one of {', '.join(PREDICTION_TYPES)}"
            )
        if self.opts.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        return unet.to(device)

    def trainable_parameters(self, module: torch.nn.Module) -> list[torch.nn.Parameter]:
        return [p for p in module.parameters() if p.requires_grad]

    def loss(
        self, module: torch.nn.Module, batch: dict[str, Any], generators: Sequence[torch.Generator]
    ) -> torch.Tensor:
        import torch

        from inpaint.samplers import completion_model_input, training_target
        from inpaint.seeding import per_image_randn

        x0, masks = batch["pixels"], batch["masks"]
        scheduler = self._noise_scheduler
        steps = scheduler.config.num_train_timesteps
        # Per image: the timestep first, then the noise, each from that image's own generator.
        t = torch.stack([torch.randint(0, steps, (), generator=g) for g in generators]).to(x0.device)
        noise = per_image_randn(generators, x0.shape[1:], x0.device, x0.dtype)
        x_t = scheduler.add_noise(x0, noise, t)
        prediction = module(completion_model_input(x_t, x0, masks), t).sample
        target = training_target(scheduler, x0, noise, t)
        return hole_weighted_mse(prediction, target, masks, self.opts.hole_weight, self.opts.known_weight)

    def trainable_state(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    def load_trainable_state(self, module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        module.load_state_dict(state, strict=True)

    def complete(
        self, module: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, seeds: Sequence[int]
    ) -> torch.Tensor:
        import torch

        from inpaint import io
        from inpaint.samplers import completion_denoiser, sample_ddpm

        device = next(module.parameters()).device
        x0 = io.to_model_range(images).to(device)
        masks = masks.to(device)
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        denoiser = completion_denoiser(module, x0, masks, dtype=torch.float32)
        result = sample_ddpm(denoiser, x0, masks, generators, self.scheduler_config, steps=self.opts.val_steps)
        return io.from_model_range(result.images)

    def export(
        self, module: torch.nn.Module, output: Path, config: dict[str, Any], ema_state: dict[str, torch.Tensor] | None
    ) -> list[Path]:
        """The fine-tuned model as a plain diffusers folder at ``output`` (stock ``from_pretrained``
        loads it): the EMA weights when the run kept an EMA, with the raw ones in ``output/raw``
        (a second such folder), else the raw weights alone. Each folder's ``inpaint_config.json``
        records which weights it holds (``"weights": "ema"`` or ``"raw"``).

        The raw folder is written first, the root (whose marker says where the raw weights are)
        last; an ``ema/`` folder of the earlier layout (root raw, EMA in ``ema/``) left by a run
        exported before is removed, since the root now holds what it held.
        """
        import copy
        import shutil

        from inpaint.models.pixel_unet import (
            EMA_SUBFOLDER,
            RAW_SUBFOLDER,
            WEIGHTS_KEY,
            save_completion_unet,
        )

        output = Path(output)
        if ema_state is None:
            return [
                save_completion_unet(module, self.scheduler_config, output, extra_config={**config, WEIGHTS_KEY: "raw"})
            ]
        raw = save_completion_unet(
            module, self.scheduler_config, output / RAW_SUBFOLDER, extra_config={**config, WEIGHTS_KEY: "raw"}
        )
        ema_unet = copy.deepcopy(module)
        ema_unet.load_state_dict({**module.state_dict(), **ema_state})
        root = save_completion_unet(
            ema_unet, self.scheduler_config, output, extra_config={**config, WEIGHTS_KEY: "ema"}
        )
        if (output / EMA_SUBFOLDER / "config.json").is_file():
            shutil.rmtree(output / EMA_SUBFOLDER, ignore_errors=True)
        return [root, raw]


def _load_trainable_unet(base: str, revision: str | None = None, variant: str | None = None):
    """A base to fine-tune, in fp32 (an fp16 variant too): a 7-channel completion model as is, or a
    3-channel DDPM widened."""
    import torch

    from inpaint.models import pixel_unet

    unet, scheduler_config = pixel_unet.load_base(base, dtype=torch.float32, revision=revision, variant=variant)
    if unet.config.in_channels == 3:
        pixel_unet.widen_conv_in(unet)
    elif unet.config.in_channels != pixel_unet.COMPLETION_CHANNELS:
        raise InputError(
            f"--base {base}: the UNet takes {unet.config.in_channels} input channels; expected an "
            "unconditional 3-channel DDPM or a 7-channel completion model"
        )
    return unet, scheduler_config
