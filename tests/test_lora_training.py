"""LoRA training on a tiny SD inpainting base, through the shared loop."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from inpaint.config import TrainConfig
from inpaint.data import CompletionDataset, MaskSource, collate
from inpaint.errors import InputError
from inpaint.testing import tiny_train_config
from inpaint.training import checkpoint as ckpt
from inpaint.training.loop import train
from inpaint.training.lora_task import LoRAOptions, LoRATask, drop_prompts


def _config(train_images, base, output, **overrides) -> TrainConfig:
    return tiny_train_config(
        "lora", train_images, output, base, **{"lr": 1e-2, "max_steps": 3, "save_every": 100, **overrides}
    )


def _task(base, **options) -> LoRATask:
    return LoRATask(str(base), LoRAOptions(**{"rank": 4, "val_steps": 2, **options}))


def _generators(first: int, n: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(first + i) for i in range(n)]


@pytest.fixture(scope="module")
def batch(train_images):
    dataset = CompletionDataset(train_images, resolution=32, mask_source=MaskSource(("box-center",)), seed=0)
    return collate([dataset[(0, i)] for i in range(len(dataset))])


@pytest.fixture(scope="module")
def straight(tmp_path_factory, train_images, tiny_sd_inpaint_dir):
    """An uninterrupted 3-step run (with validation at the end)."""
    output = tmp_path_factory.mktemp("lora-run") / "run"
    result = train(_task(tiny_sd_inpaint_dir), _config(train_images, tiny_sd_inpaint_dir, output, val_images=2))
    return output, result


def test_only_lora_parameters_train(tiny_sd_inpaint_dir, batch):
    task = _task(tiny_sd_inpaint_dir)
    unet = task.build(torch.device("cpu"))
    params = task.trainable_parameters(unet)
    names = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert all(p.dtype == torch.float32 for p in params)
    assert not any(p.requires_grad for part in ("vae", "text_encoder") for p in task._parts[part].parameters())
    frozen = {n: p.detach().clone() for n, p in unet.named_parameters() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in unet.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    for step in range(2):
        task.loss(unet, batch, _generators(10 * step, 6)).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert all(torch.equal(p, frozen[n]) for n, p in unet.named_parameters() if not p.requires_grad)
    assert any(not torch.equal(p, lora[n]) for n, p in unet.named_parameters() if p.requires_grad)


def test_a_few_steps_lower_the_loss(tiny_sd_inpaint_dir, batch):
    task = _task(tiny_sd_inpaint_dir, rank=16, alpha=16.0, caption_dropout=0.0)
    unet = task.build(torch.device("cpu"))

    def held_out() -> float:
        unet.eval()
        with torch.no_grad():
            losses = [task.loss(unet, batch, _generators(1000 + 10 * k, 6)) for k in range(3)]
        unet.train()
        return float(torch.stack(losses).mean())

    before = held_out()
    optimizer = torch.optim.AdamW(task.trainable_parameters(unet), lr=3e-2)
    for step in range(12):
        task.loss(unet, batch, _generators(100 * step, 6)).backward()
        optimizer.step()
        optimizer.zero_grad()
    after = held_out()
    assert after < 0.95 * before, (before, after)


def test_resume_is_bit_exact(tmp_path, train_images, tiny_sd_inpaint_dir, straight):
    """LoRA dropout is on (0.05): the loop reseeds the global RNG per step, so it replays exactly."""
    output, result = straight
    assert result.step == 3 and set(result.validation) - {"val_lpips_hole"} == {"val_psnr_hole", "val_ssim_hole"}
    resumed = tmp_path / "resumed"
    first = train(
        _task(tiny_sd_inpaint_dir), _config(train_images, tiny_sd_inpaint_dir, resumed, val_images=2), stop_after=1
    )
    assert first.stopped_early and first.step == 1
    second = train(_task(tiny_sd_inpaint_dir), _config(train_images, tiny_sd_inpaint_dir, resumed, val_images=2))
    assert second.resumed_from == 1 and second.step == 3
    for part in ("model", "optimizer"):
        a = load_file(output / "checkpoints" / ckpt.checkpoint_name(3) / f"{part}.safetensors")
        b = load_file(resumed / "checkpoints" / ckpt.checkpoint_name(3) / f"{part}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    model = load_file(output / "checkpoints" / ckpt.checkpoint_name(3) / "model.safetensors")
    assert model and all(".lora_" in key for key in model)  # checkpoints hold the LoRA only
    a = load_file(output / "pytorch_lora_weights.safetensors")
    b = load_file(resumed / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Changing a LoRA setting cannot continue the run.
    with pytest.raises(InputError, match="cannot resume with different rank"):
        train(_task(tiny_sd_inpaint_dir, rank=8), _config(train_images, tiny_sd_inpaint_dir, resumed, max_steps=4))


def test_the_lora_file_works_in_stock_diffusers(tiny_sd_inpaint_dir, straight):
    from diffusers import StableDiffusionInpaintPipeline

    output, _ = straight
    path = output / "pytorch_lora_weights.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        keys = list(f.keys())
    assert all(k.startswith("unet.") and ".lora." in k for k in keys)
    assert metadata["inpaint_rank"] == "4" and metadata["inpaint_alpha"] == "16.0"
    assert metadata["inpaint_base"] == str(tiny_sd_inpaint_dir) and metadata["inpaint_steps"] == "3"
    assert metadata["inpaint_seed"] == "0" and len(metadata["inpaint_data_hash"]) == 16
    assert json.loads(metadata["inpaint_config"])["train"]["method"] == "lora"
    assert json.loads(metadata["lora_adapter_metadata"])["unet.r"] == 4

    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1

    def run(pipe):
        pipe.set_progress_bar_config(disable=True)
        return pipe(
            prompt=["a photo"],
            image=image,
            mask_image=mask,
            height=32,
            width=32,
            num_inference_steps=2,
            generator=[torch.Generator().manual_seed(1)],
            output_type="pt",
        ).images

    pipe = StableDiffusionInpaintPipeline.from_pretrained(tiny_sd_inpaint_dir, safety_checker=None)
    base = run(pipe)
    pipe.load_lora_weights(output)
    adapted = run(pipe)
    assert not torch.allclose(adapted, base, atol=1e-4)
    fresh = StableDiffusionInpaintPipeline.from_pretrained(tiny_sd_inpaint_dir, safety_checker=None)
    fresh.load_lora_weights(output)
    assert torch.equal(run(fresh), adapted)


def test_prompt_dropout_rate_is_as_configured():
    prompts = ["a face"] * 4000
    for rate in (0.15, 0.5):
        kept = drop_prompts(prompts, _generators(0, 4000), rate)
        dropped = sum(p == "" for p in kept) / len(kept)
        assert abs(dropped - rate) < 0.025, (rate, dropped)  # > 3 standard deviations
        assert set(kept) == {"", "a face"}
    assert drop_prompts(prompts[:50], _generators(0, 50), 0.0) == prompts[:50]
    assert drop_prompts(prompts[:50], _generators(0, 50), 1.0) == [""] * 50
    # Each image's draw comes from its own generator: the batch does not matter.
    assert drop_prompts(prompts[:10], _generators(0, 10), 0.5)[3:5] == drop_prompts(
        prompts[3:5], _generators(3, 2), 0.5
    )


def test_the_loss_uses_captions_dropout_and_the_fixed_prompt(tiny_sd_inpaint_dir, batch, monkeypatch):
    captions = {f"{name}.png": f"caption of {name}" for name in batch["names"]}
    task = LoRATask(str(tiny_sd_inpaint_dir), LoRAOptions(rank=4), captions=captions)
    unet = task.build(torch.device("cpu"))
    seen = []
    encode = task.encode_text
    monkeypatch.setattr(task, "encode_text", lambda prompts: seen.append(list(prompts)) or encode(prompts))
    batch = {**batch, "captions": [f"caption of {n}" for n in batch["names"]]}
    for rate, expected in ((0.0, batch["captions"]), (1.0, [""] * 6)):
        task.opts.caption_dropout = rate
        with torch.no_grad():
            task.loss(unet, batch, _generators(0, 6))
        assert seen[-1] == expected
    assert task.captions() == captions and task.options()["captions_sha256"] and "prompt" not in task.options()
    fixed = LoRATask(str(tiny_sd_inpaint_dir), LoRAOptions(rank=4, caption_dropout=0.0, prompt="lowest"))
    fixed._parts, seen[:] = task._parts, []
    monkeypatch.setattr(fixed, "encode_text", lambda prompts: seen.append(list(prompts)) or encode(prompts))
    with torch.no_grad():
        fixed.loss(unet, batch, _generators(0, 6))
    assert seen == [["lowest"] * 6] and fixed.captions() is None and fixed.options()["prompt"] == "lowest"


def test_cached_latents_checkpointing_snr_and_offset(tiny_sd_inpaint_dir, batch):
    plain = _task(tiny_sd_inpaint_dir, dropout=0.0)
    unet = plain.build(torch.device("cpu"))
    reference = plain.loss(unet, batch, _generators(0, 6))
    reference.backward()
    grads = [p.grad.clone() for p in plain.trainable_parameters(unet)]

    cached = _task(tiny_sd_inpaint_dir, dropout=0.0, cache_latents=True, gradient_checkpointing=True)
    unet2 = cached.build(torch.device("cpu"))
    for _ in range(2):  # computed, then read from the cache
        loss = cached.loss(unet2, batch, _generators(0, 6))
        assert torch.allclose(loss, reference, rtol=1e-4), (loss, reference)
    assert len(cached._latent_cache) == 6
    flipped = {**batch, "pixels": batch["pixels"].flip(-1)}
    cached.loss(unet2, flipped, _generators(0, 6))
    # A flipped image is another entry (skimage's "cat" is "chelsea" mirrored: they share theirs).
    distinct = {x.numpy().tobytes() for x in torch.cat([batch["pixels"], flipped["pixels"]])}
    assert len(cached._latent_cache) == len(distinct) > 6
    loss = cached.loss(unet2, batch, _generators(0, 6))
    loss.backward()  # through gradient checkpointing: the same gradients
    for a, b in zip(grads, [p.grad for p in cached.trainable_parameters(unet2)]):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-6)

    weighted = _task(tiny_sd_inpaint_dir, dropout=0.0, snr_gamma=5.0, noise_offset=0.1)
    unet3 = weighted.build(torch.device("cpu"))
    with torch.no_grad():
        other = weighted.loss(unet3, batch, _generators(0, 6))
    assert torch.isfinite(other) and not torch.allclose(other, reference)
