"""Method 2 of the study: LoRA on the attention projections of SD 1.5 *Inpainting*'s 9-channel UNet
(and of SDXL Inpainting's, whose two text encoders and size/crop conditioning its pipeline computes).

One loss evaluation (docs/method.md, Method 2), per image i with its own generator ``g_i``:

1. prompt: the image's caption (or the fixed prompt), replaced by "" with probability
   ``caption_dropout`` (classifier-free guidance training);
2. ``z0 = scale * sample(VAE(x))`` and ``z_masked = scale * sample(VAE(x * (mask < 0.5)))`` — the
   masked image has the hole set to 0 in [-1, 1], exactly as the inpainting pipeline builds it;
3. ``mask_lat``: the mask max-pooled to the latent size (:func:`inpaint.models.sd_pipeline.latent_mask`:
   a cell is hole if any of its pixels is), as ``complete -m sd`` does at inference;
4. ``t ~ U{0..T-1}``, ``eps ~ N(0, I)`` (+ ``noise_offset * N(0, 1)`` per channel), ``z_t = q(z0, t, eps)``;
5. ``pred = UNet(concat(z_t [4], mask_lat [1], z_masked [4]), t, text)`` — diffusers' channel order;
6. MSE against the scheduler's target (eps, v or z0), optionally min-SNR-gamma weighted
   (Hang et al. 2023).

Only the LoRA matrices train (fp32); the VAE, text encoder and UNet are frozen and kept in the
mixed-precision dtype. ``cache_latents`` keeps each distinct training image's VAE posterior
(mean, std), keyed by a hash of its pixels — so random flips still work (a flipped image is
another key) — and still *samples* z0 from it with ``g_i``: the loss is the uncached one. The
masked-image latent cannot be cached: the masks are drawn anew every epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint.errors import InputError
from inpaint.models.sd import DEFAULT_PROMPT
from inpaint.models.sd_pipeline import latent_mask
from inpaint.models.sd_weights import DEFAULT_SD_BASE
from inpaint.training.task import TrainingTask

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The study's LoRA targets: the attention projections of every transformer block of the UNet.
TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
#: Sampler for validation samples (few steps, see ``val_steps``): the deterministic DPM-Solver++(2M),
#: a name of :data:`inpaint.samplers.SAMPLERS` as ``complete -m sd --sampler`` reads it.
VALIDATION_SAMPLER = "dpmpp"


@dataclass
class LoRAOptions:
    """Settings of ``train-lora`` beyond the shared ones (defaults: the study's)."""

    rank: int = 16
    alpha: float = 16.0
    dropout: float = 0.05
    caption_dropout: float = 0.15
    #: The prompt of every image when there are no captions.
    prompt: str = DEFAULT_PROMPT
    noise_offset: float = 0.0
    #: Min-SNR-gamma loss weighting (0: off; 5 is the paper's choice).
    snr_gamma: float = 0.0
    gradient_checkpointing: bool = False
    cache_latents: bool = False
    val_steps: int = 20
    val_guidance: float = 7.5

    def validate(self) -> None:
        checks = [
            ("--rank", self.rank, self.rank >= 1, "at least 1"),
            ("--alpha", self.alpha, self.alpha > 0, "positive"),
            ("--lora-dropout", self.dropout, 0 <= self.dropout < 1, "in [0, 1)"),
            ("--caption-dropout", self.caption_dropout, 0 <= self.caption_dropout <= 1, "in [0, 1]"),
            ("--noise-offset", self.noise_offset, self.noise_offset >= 0, "0 (off) or more"),
            ("--snr-gamma", self.snr_gamma, self.snr_gamma >= 0, "0 (off) or more"),
            ("--val-steps", self.val_steps, self.val_steps >= 1, "at least 1"),
        ]
        for option, value, ok, expected in checks:
            if isinstance(value, float) and not math.isfinite(value):  # inf passes ">= 0"
                raise InputError(f"{option} {value}: must be a finite number")
            if not ok:
                raise InputError(f"{option} {value}: must be {expected}")


def drop_prompts(prompts: Sequence[str], generators: Sequence[torch.Generator], probability: float) -> list[str]:
    """Replace each prompt by "" with ``probability``, drawing one uniform from its image's generator."""
    import torch

    return ["" if float(torch.rand((), generator=g)) < probability else p for p, g in zip(prompts, generators)]


class LoRATask(TrainingTask):
    """Trains a LoRA on an SD inpainting base (hub id or pipeline folder)."""

    name = "lora"

    def __init__(
        self,
        base: str = DEFAULT_SD_BASE,
        options: LoRAOptions | None = None,
        captions: dict[str, str] | None = None,
        seed: int = 0,
        *,
        revision: str | None = None,
        variant: str | None = None,
    ) -> None:
        self.base = base
        self.revision, self.variant = revision, variant  # of a hub base
        self.opts = options or LoRAOptions()
        self.opts.validate()
        self._captions = captions
        self.seed = seed  # of the LoRA initialisation
        self._parts: dict[str, Any] = {}
        self._latent_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # ---- what the loop records and feeds ------------------------------------------------------

    def options(self) -> dict[str, Any]:
        settings = asdict(self.opts)
        # Memory/time levers that leave the loss and gradients unchanged (tests check both) are not
        # part of what a resume must keep: a run that ran out of memory can continue with them on.
        settings.pop("gradient_checkpointing")
        settings.pop("cache_latents")
        settings["captions_sha256"] = _captions_hash(self._captions) if self._captions is not None else None
        if self._captions is not None:
            settings.pop("prompt")  # unused with captions
        return settings

    def captions(self) -> dict[str, str] | None:
        return self._captions

    # ---- model ----------------------------------------------------------------------------------

    def build(self, device: torch.device, mixed_precision: str = "no") -> torch.nn.Module:
        import torch
        from diffusers import DDPMScheduler
        from peft import LoraConfig

        from inpaint.models.hub import quiet_loading
        from inpaint.models.sd_weights import load_pipeline
        from inpaint.samplers import PREDICTION_TYPES
        from inpaint.seeding import derive_seed

        # fp32 whatever the weights variant: the frozen parts are cast to the run's precision below.
        pipe = load_pipeline(self.base, dtype=torch.float32, revision=self.revision, variant=self.variant)
        kind = pipe.scheduler.config.get("prediction_type", "epsilon")
        if kind not in PREDICTION_TYPES:  # before any step runs, not at the first loss
            raise InputError(
                f"{self.base}: unsupported prediction_type {kind!r}; expected one of {', '.join(PREDICTION_TYPES)}"
            )
        weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)
        unet, vae = pipe.unet, pipe.vae
        # SD has one text encoder; SDXL two, whose hidden states are concatenated (its pipeline's
        # encode_prompt computes them, with the pooled embedding of the second).
        text_encoders = [
            getattr(pipe, name) for name in ("text_encoder", "text_encoder_2") if getattr(pipe, name, None)
        ]
        for part in (unet, vae, *text_encoders):
            part.requires_grad_(False)
        # SDXL's VAE overflows in fp16: its pipeline upcasts it (force_upcast), and so do we under fp16.
        sdxl = type(pipe).__name__ == "StableDiffusionXLInpaintPipeline"
        upcast = sdxl and weight_dtype == torch.float16 and vae.config.get("force_upcast", False)
        vae_dtype = torch.float32 if upcast else weight_dtype
        config = LoraConfig(
            r=self.opts.rank,
            lora_alpha=self.opts.alpha,
            lora_dropout=self.opts.dropout,
            init_lora_weights=True,
            target_modules=list(TARGET_MODULES),
        )
        # LoRA B starts at zero, so the adapted UNet equals the base at step 0; A's random start
        # is drawn on the CPU from the seed, the same on every device and in every process.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "lora-init"))
            unet.add_adapter(config)
        with quiet_loading():  # diffusers warns about any dtype cast, even when nothing must stay fp32
            unet.to(device, weight_dtype)
            vae.to(device, vae_dtype).eval()
            for text_encoder in text_encoders:
                text_encoder.to(device, weight_dtype).eval()
        for parameter in unet.parameters():
            if parameter.requires_grad:  # the LoRA matrices: fp32, autocast does the compute
                parameter.data = parameter.data.float()
        if self.opts.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        self._parts = {
            "pipe": pipe,  # its components (the trained UNet among them) and its prompt encoding
            "sdxl": sdxl,
            "vae": vae,
            "text_encoder": pipe.text_encoder,
            "tokenizer": pipe.tokenizer,
            "scheduler_config": dict(pipe.scheduler.config),
            "noise": DDPMScheduler.from_config(pipe.scheduler.config),
            "dtype": weight_dtype,
        }
        self._latent_cache.clear()
        unet.train()
        return unet

    def trainable_parameters(self, module: torch.nn.Module) -> list[torch.nn.Parameter]:
        return [p for p in module.parameters() if p.requires_grad]

    def trainable_state(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: p.detach().cpu().clone() for k, p in module.named_parameters() if p.requires_grad}

    def load_trainable_state(self, module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        import torch

        params = {k: p for k, p in module.named_parameters() if p.requires_grad}
        if params.keys() != state.keys():
            raise InputError("the checkpoint's LoRA layers do not match this model (another --rank or base?)")
        with torch.no_grad():
            for key, parameter in params.items():
                parameter.copy_(state[key])

    # ---- one loss evaluation ---------------------------------------------------------------------

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """CLIP text embeddings (N, 77, D) of ``prompts``, as the pipeline computes them (SD's one
        encoder; for SDXL see :meth:`encode_sdxl_text`)."""
        tokenizer, encoder = self._parts["tokenizer"], self._parts["text_encoder"]
        ids = tokenizer(
            list(prompts),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return encoder(ids.to(encoder.device))[0]

    def encode_sdxl_text(self, prompts: Sequence[str], height: int, width: int) -> tuple[torch.Tensor, dict]:
        """SDXL's conditioning of ``prompts`` for images of ``height`` x ``width``, as its pipeline
        computes it at that size: the two encoders' penultimate hidden states concatenated
        (N, 77, D1 + D2), and the added conditioning — the second encoder's pooled embedding and
        the size/crop ids (original size, top-left crop (0, 0), target size: the whole image)."""
        import torch

        pipe = self._parts["pipe"]
        device = next(pipe.text_encoder_2.parameters()).device
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=list(prompts), device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        ids = [height, width, 0, 0, height, width]
        if pipe.config.requires_aesthetics_score:  # original size, crop, aesthetic score (6 by default)
            ids = [height, width, 0, 0, 6.0]
        time_ids = torch.tensor([ids] * len(prompts), dtype=embeds.dtype, device=device)
        return embeds, {"text_embeds": pooled, "time_ids": time_ids}

    def _posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """VAE posterior (mean, std) of pixels (N, 3, R, R) in [-1, 1]."""
        vae = self._parts["vae"]
        dist = vae.encode(pixels.to(vae.dtype)).latent_dist
        return dist.mean, dist.std

    def _cached_posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        means, stds = [], []
        for image in pixels:
            key = hashlib.sha1(image.detach().float().cpu().numpy().tobytes()).hexdigest()
            if key not in self._latent_cache:  # one image at a time: independent of batch composition
                mean, std = self._posterior(image[None])
                self._latent_cache[key] = (mean[0].cpu(), std[0].cpu())
            mean, std = self._latent_cache[key]
            means.append(mean)
            stds.append(std)
        return torch.stack(means).to(pixels.device), torch.stack(stds).to(pixels.device)

    def loss(
        self, module: torch.nn.Module, batch: dict[str, Any], generators: Sequence[torch.Generator]
    ) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        from inpaint.samplers import training_target
        from inpaint.seeding import per_image_randn

        x0, masks = batch["pixels"], batch["masks"]
        device = x0.device
        prompts = batch["captions"] if self._captions is not None else [self.opts.prompt] * len(generators)
        prompts = drop_prompts(prompts, generators, self.opts.caption_dropout)
        scale = self._parts["vae"].config.scaling_factor
        with torch.no_grad():
            mean, std = (self._cached_posterior if self.opts.cache_latents else self._posterior)(x0)
            z0 = (mean + std * per_image_randn(generators, mean.shape[1:], device, mean.dtype)) * scale
            masked_mean, masked_std = self._posterior(x0 * (masks < 0.5))
            z_masked = masked_mean + masked_std * per_image_randn(generators, mean.shape[1:], device, mean.dtype)
            z_masked = z_masked * scale
            mask_latent = latent_mask(masks, z0.shape[2:])  # max-pooled, as at inference
            if self._parts["sdxl"]:
                text, added = self.encode_sdxl_text(prompts, *x0.shape[2:])
            else:
                text, added = self.encode_text(prompts), None
        scheduler = self._parts["noise"]
        t = torch.stack(
            [torch.randint(0, scheduler.config.num_train_timesteps, (), generator=g) for g in generators]
        ).to(device)
        noise = per_image_randn(generators, z0.shape[1:])
        if self.opts.noise_offset > 0:  # a per-channel shift (Guttenberg 2023): learn darker/brighter images
            noise = noise + self.opts.noise_offset * per_image_randn(generators, (z0.shape[1], 1, 1))
        noise = noise.to(device, z0.dtype)
        z_t = scheduler.add_noise(z0, noise, t)
        model_input = torch.cat([z_t, mask_latent.to(z_t.dtype), z_masked], dim=1)
        extra = {"added_cond_kwargs": added} if added is not None else {}
        prediction = module(model_input, t, encoder_hidden_states=text, **extra).sample
        target = training_target(scheduler, z0, noise, t)
        per_image = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        if self.opts.snr_gamma > 0:
            per_image = per_image * self._snr_weights(t)
        return per_image.mean()

    def _snr_weights(self, t: torch.Tensor) -> torch.Tensor:
        """min(SNR, gamma) / SNR for epsilon targets, / (SNR + 1) for v (Hang et al. 2023)."""
        import torch
        from diffusers.training_utils import compute_snr

        scheduler = self._parts["noise"]
        snr = compute_snr(scheduler, t)
        weights = torch.clamp(snr, max=self.opts.snr_gamma)
        kind = scheduler.config.prediction_type
        if kind == "v_prediction":
            return weights / (snr + 1)
        return weights / snr if kind == "epsilon" else weights

    # ---- validation and export -------------------------------------------------------------------

    def complete(
        self, module: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, seeds: Sequence[int]
    ) -> torch.Tensor:
        """Validation samples with the fixed prompt (deterministic DPM-Solver++(2M), ``val_steps``,
        guidance ``val_guidance``)."""
        import contextlib

        import torch

        from inpaint.models.sd_pipeline import Generation, run_pipeline
        from inpaint.samplers import make_scheduler

        parts = self._parts
        base = parts["pipe"]
        # The base's own pipeline class and settings, with the trained UNet and the validation sampler.
        settings_of = ("requires_aesthetics_score", "force_zeros_for_empty_prompt", "requires_safety_checker")
        pipe = type(base)(
            **{**base.components, "unet": module},
            **{key: base.config[key] for key in settings_of if key in base.config},
        )
        pipe.scheduler = make_scheduler(VALIDATION_SAMPLER, parts["scheduler_config"], "sd")
        pipe.set_progress_bar_config(disable=True)
        device = next(module.parameters()).device
        autocast = (
            torch.autocast(device.type, dtype=parts["dtype"])
            if parts["dtype"] != torch.float32
            else contextlib.nullcontext()
        )
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        settings = Generation(steps=self.opts.val_steps, guidance=self.opts.val_guidance)
        with autocast:
            out, _ = run_pipeline(
                pipe, images.cpu().float(), masks.cpu().float(), [self.opts.prompt] * len(seeds), generators, settings
            )
        return out

    def export(
        self, module: torch.nn.Module, output: Path, config: dict[str, Any], ema_state: dict[str, torch.Tensor] | None
    ) -> list[Path]:
        """``output/pytorch_lora_weights.safetensors`` in diffusers' format (training config in its
        metadata): the EMA LoRA when the run kept an EMA, with the raw one the same way in
        ``output/raw/``, else the raw LoRA alone — so stock ``load_lora_weights(output)`` gets
        the weights to use. The ``inpaint_weights`` metadata key says which (``ema`` or ``raw``).

        The raw file is written first; an ``ema/`` folder of the earlier layout (root raw, EMA in
        ``ema/``) left by a run exported before is removed.
        """
        import shutil

        from inpaint.models.lora_files import EMA_SUBFOLDER, LORA_WEIGHT_NAME, RAW_SUBFOLDER, WEIGHTS_KEY, save_lora

        output = Path(output)
        metadata = self._metadata(output, config)
        if ema_state is None:
            return [save_lora(module, output, {**metadata, WEIGHTS_KEY: "raw"})]
        written = [save_lora(module, output / RAW_SUBFOLDER, {**metadata, WEIGHTS_KEY: "raw"})]
        raw = self.trainable_state(module)
        self.load_trainable_state(module, {k: ema_state[k] for k in raw})
        try:
            written.insert(0, save_lora(module, output, {**metadata, WEIGHTS_KEY: "ema"}))
        finally:
            self.load_trainable_state(module, raw)
        old = output / EMA_SUBFOLDER
        if old.is_dir() and {p.name for p in old.iterdir()} <= {LORA_WEIGHT_NAME}:
            shutil.rmtree(old, ignore_errors=True)
        return written

    def _metadata(self, output: Path, config: dict[str, Any]) -> dict[str, str]:
        train = config.get("train", {})
        metadata = {
            "inpaint_method": "lora",
            "inpaint_base": self.base,
            "inpaint_rank": self.opts.rank,
            "inpaint_alpha": self.opts.alpha,
            "inpaint_lora_dropout": self.opts.dropout,
            "inpaint_target_modules": ",".join(TARGET_MODULES),
            "inpaint_steps": config.get("step", ""),
            "inpaint_seed": train.get("seed", self.seed),
            "inpaint_resolution": train.get("resolution", ""),
            "inpaint_data_hash": config.get("data", ""),
            "inpaint_captions_sha256": _captions_hash(self._captions) if self._captions is not None else "none",
            "inpaint_config": json.dumps(config, default=str, sort_keys=True),
        }
        if self._captions is None:
            metadata["inpaint_prompt"] = self.opts.prompt  # completion uses it as its default prompt
        return {k: str(v) for k, v in metadata.items()}


def _captions_hash(captions: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(captions, sort_keys=True).encode()).hexdigest()[:16]
