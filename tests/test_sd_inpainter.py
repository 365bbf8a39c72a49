"""Stable Diffusion inpainting behind the Inpainter interface, on a tiny pipeline saved to disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from inpaint import completion, io, models
from inpaint.errors import InputError
from inpaint.models.base import MethodOptions
from inpaint.samplers import SAMPLERS

STEPS = 2


def _options(base, **overrides) -> MethodOptions:
    return MethodOptions(**{"weights": str(base), "steps": STEPS, "device": "cpu", **overrides})


@pytest.fixture(scope="module")
def lora_dir(tiny_sd_inpaint_dir, tmp_path_factory):
    """A LoRA with random (non-zero) up-projections for the tiny base, saved by our writer."""
    from peft import LoraConfig

    from inpaint.models.lora_files import save_lora
    from inpaint.models.sd_weights import load_pipeline

    pipe = load_pipeline(tiny_sd_inpaint_dir)
    torch.manual_seed(0)
    pipe.unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    )
    folder = tmp_path_factory.mktemp("lora")
    save_lora(pipe.unet, folder, {"inpaint_prompt": "a lora prompt"})
    return folder


@pytest.fixture(scope="module")
def sd(tiny_sd_inpaint_dir):
    return models.load_inpainter("sd", _options(tiny_sd_inpaint_dir))


def _batch(height=32, width=32, n=2):
    images = io.to_tensor(
        [np.random.RandomState(i).randint(0, 256, (height, width, 3), dtype=np.uint8) for i in range(n)]
    )
    masks = torch.zeros(n, 1, height, width)
    masks[:, :, height // 4 : height // 2, width // 3 : 2 * width // 3] = 1
    return images, masks


def test_known_pixels_are_pasted_back_bit_exact(sd, photo, center_mask):
    done = completion.complete_arrays(sd, photo, center_mask, seed=0, name="photo")
    assert done.result.shape == photo.shape
    assert np.array_equal(done.result[~center_mask], photo[~center_mask])
    assert not np.array_equal(done.result[center_mask], photo[center_mask])
    raw = completion.complete_arrays(sd, photo, center_mask, seed=0, name="photo", paste_back=False)
    assert not np.array_equal(raw.result[~center_mask], photo[~center_mask])  # the VAE shifts them
    assert np.array_equal(raw.result[center_mask], done.result[center_mask])


def test_any_size_comes_back_at_the_input_size(sd):
    images, masks = _batch(44, 60, n=1)  # processed at 48 x 64
    out = sd(images, masks, [3])
    assert out.shape == images.shape
    keep = masks.expand_as(images) == 0
    assert torch.equal(out[keep], images[keep])
    assert sd.last_nfe == 2 * STEPS  # classifier-free guidance: two evaluations per step


def test_a_hole_thinner_than_a_latent_cell_reaches_the_unets_mask_channel(sd):
    """Every latent cell holding a hole pixel is hole: one pixel per cell, diffusers' sampling,
    would miss these strokes and tell the UNet to keep the blanked (grey) pixels."""
    factor = sd.pipe.vae_scale_factor
    images, _ = _batch(n=1)
    masks = torch.zeros(1, 1, 32, 32)
    masks[:, :, 5, :] = 1  # a one-pixel row off the sampled grid
    masks[:, :, 16:, 2 * factor + 1] = 1  # a one-pixel column off it
    seen = []
    hook = sd.pipe.unet.register_forward_pre_hook(lambda module, args: seen.append(args[0][:1, 4:5].clone()))
    try:
        sd(images, masks, [0])
    finally:
        hook.remove()
    expected = torch.nn.functional.max_pool2d(masks, factor)
    assert expected.sum() > 0 and torch.nn.functional.interpolate(masks, scale_factor=1 / factor).sum() == 0
    assert all(torch.equal(m.float(), expected) for m in seen) and seen


def test_batch_equals_singles_and_seeds_decide(sd):
    images, masks = _batch()
    batch = sd(images, masks, [1, 2])
    singles = torch.cat([sd(images[i : i + 1], masks[i : i + 1], [s]) for i, s in enumerate([1, 2])])
    assert torch.allclose(batch, singles, atol=1e-5)
    assert torch.equal(sd(images, masks, [1, 2]), batch)
    assert not torch.allclose(sd(images, masks, [5, 2])[0], batch[0], atol=1e-3)


def test_prompts_come_from_captions_by_name(tiny_sd_inpaint_dir, tmp_path, caplog):
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"a.png": "a lowest", "b.png": "a newer"}))
    sd = models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, captions=str(captions), guidance=1.0))
    assert sd.prompts(["a", "b.png"], 2) == ["a lowest", "a newer"]
    with caplog.at_level("WARNING"):
        assert sd.prompts(["zzz"], 1) == [sd.prompt]
    assert "zzz: no caption" in caplog.text
    with pytest.raises(InputError, match="names are needed"):
        sd.prompts(None, 1)
    images, masks = _batch(n=1)
    by_caption = sd(images, masks, [0], names=["a"])
    assert not torch.equal(by_caption, sd(images, masks, [0], names=["b"]))
    assert sd.last_nfe == STEPS  # guidance 1: no unconditional pass
    fixed = models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, prompt="a lowest", guidance=1.0))
    assert torch.allclose(fixed(images, masks, [0]), by_caption, atol=1e-6)
    with pytest.raises(InputError, match="--prompt and --captions"):
        models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, captions=str(captions), prompt="x"))


def test_lora_changes_the_output_and_sets_the_default_prompt(tiny_sd_inpaint_dir, lora_dir, sd):
    with_lora = models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, lora=str(lora_dir)))
    assert with_lora.prompt == "a lora prompt"  # a LoRA trained without captions brings its prompt
    images, masks = _batch(n=1)
    assert not torch.allclose(with_lora(images, masks, [0]), sd(images, masks, [0]), atol=1e-4)
    again = models.load_inpainter(
        "sd", _options(tiny_sd_inpaint_dir, lora=str(lora_dir / "pytorch_lora_weights.safetensors"))
    )
    assert torch.equal(again(images, masks, [0]), with_lora(images, masks, [0]))  # deterministic: no dropout


def test_an_empty_prompt_is_used_as_given(tiny_sd_inpaint_dir, lora_dir, sd):
    """``--prompt ""`` asks for unconditional generation: neither the LoRA's prompt nor the default replaces it."""
    with_lora = models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, lora=str(lora_dir), prompt=""))
    assert with_lora.prompt == "" and with_lora.prompts(None, 2) == ["", ""]
    guided = models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, prompt=""))  # guidance 7.5
    unguided = models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, prompt="", guidance=1.0))
    assert guided.prompt == unguided.prompt == ""
    images, masks = _batch(n=1)
    # "" reaches the pipeline: guidance has nothing to amplify (the conditional half is the
    # unconditional one), and the result is not the default prompt's.
    result = guided(images, masks, [0])
    assert torch.allclose(result, unguided(images, masks, [0]), atol=1e-5)
    assert not torch.allclose(result, sd(images, masks, [0]), atol=1e-4)


def test_wrong_or_damaged_lora_files_are_refused(tiny_sd_inpaint_dir, lora_dir, tmp_path, caplog):
    weights = load_file(lora_dir / "pytorch_lora_weights.safetensors")
    cases = {
        # A LoRA for a base whose attention layers are wider (e.g. SD 2 on SD 1.5).
        "wider": {k: torch.zeros(v.shape[0], v.shape[1] + 8) if "lora.down" in k else v for k, v in weights.items()},
        # A LoRA whose layers do not exist in this UNet (e.g. SDXL's on SD 1.5).
        "foreign": {k.replace("unet.", "unet.mid_block.extra_blocks.0."): v for k, v in weights.items()},
    }
    for name, tensors in cases.items():
        save_file(tensors, tmp_path / f"{name}.safetensors")
        caplog.clear()
        with pytest.raises(InputError, match="another base") as error:
            models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, lora=str(tmp_path / f"{name}.safetensors")))
        assert "\n" not in str(error.value) and len(str(error.value)) < 500
        # The error is ours, in one line: diffusers logs nothing of its own (it dumped the whole mismatch).
        assert not [r for r in caplog.records if r.name.startswith(("diffusers", "peft"))]
        if name == "wider":  # the message names the first mismatch, not just "Error(s) in loading…:"
            assert "size mismatch" in str(error.value)
    with pytest.raises(InputError, match="--lora loras/missing.safetensors: no such file or folder"):
        models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, lora="loras/missing.safetensors"))
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(InputError, match="not a valid safetensors file"):
        models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, lora=str(tmp_path / "broken.safetensors")))
    (tmp_path / "lora.bin").write_bytes(b"pickle")
    with pytest.raises(InputError, match="only .safetensors"):
        models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, lora=str(tmp_path / "lora.bin")))
    with pytest.raises(InputError, match="no pytorch_lora_weights.safetensors"):
        models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, lora=str(tmp_path)))


def test_crop_to_mask_blur_and_samplers(tiny_sd_inpaint_dir, sd):
    images, masks = _batch(80, 96, n=1)
    masks.zero_()
    masks[:, :, 30:42, 40:52] = 1  # a small hole in a larger image
    cropped = models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, crop_padding=4, mask_blur=2, sampler="euler-a"))
    out = cropped(images, masks, [0], composite_known=False)
    assert out.shape == images.shape
    # Outside the padded crop the pipeline itself keeps the input (its overlay), even without paste-back.
    assert torch.equal(out[..., :20, :], images[..., :20, :])
    assert not torch.equal(out[..., 30:42, 40:52], images[..., 30:42, 40:52])
    small, small_masks = _batch(n=1)
    for sampler in ("ddpm", "ddim", "dpmpp", "dpmpp-sde", "pndm"):
        method = models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, sampler=sampler))
        assert method(small, small_masks, [0]).shape == small.shape
        assert type(method.pipe.scheduler).__name__ == SAMPLERS[sampler].scheduler
        assert method.last_nfe == 2 * (STEPS + (sampler == "pndm"))  # counted: PNDM repeats its first step


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"strength": 0.0}, "--strength 0.0"),
        ({"steps": 0}, "--steps 0"),
        (
            {"sampler": "plms"},
            "--sampler 'plms': sd supports ddpm, ddim, dpmpp, dpmpp-sde, euler, euler-a, pndm, unipc$",
        ),
        ({"sampler": "fast"}, "--sampler 'fast': sd supports"),
        ({"guidance": -1.0}, "--guidance -1.0"),
        ({"mask_blur": -2}, "--mask-blur -2"),
    ],
)
def test_bad_options(tiny_sd_inpaint_dir, overrides, needle):
    with pytest.raises(InputError, match=needle):
        models.load_inpainter("sd", _options(tiny_sd_inpaint_dir, **overrides))


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A hub cache holding an unconditional DDPM and a text-to-image SD (4-channel UNet) only."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    files = {
        "google/ddpm-celebahq-256": {"config.json": {"in_channels": 3}},
        "someone/sd-text2img": {"model_index.json": {}, "unet/config.json": {"in_channels": 4}},
    }
    for repo, contents in files.items():
        folder = cache / f"models--{repo.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text("abc123")
        for name, content in contents.items():
            path = folder / "snapshots" / "abc123" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


def test_registry_availability(tiny_sd_inpaint_dir, tiny_unet7_dir, lora_dir, hub_cache):
    sd = models.get_method("sd")
    assert sd.heavy and models.method_names()[0] == "sd"
    assert sd.unavailable(MethodOptions(weights=str(tiny_sd_inpaint_dir), local_only=True)) is None
    assert "no model_index.json" in sd.unavailable(MethodOptions(weights=str(tiny_unet7_dir)))
    assert "no such file" in sd.unavailable(MethodOptions(weights=str(tiny_sd_inpaint_dir), lora="./missing"))
    assert "no such file" in sd.unavailable(MethodOptions(weights=str(tiny_sd_inpaint_dir), captions="nope.json"))
    assert "not downloaded yet" in sd.unavailable(MethodOptions(local_only=True))
    assert "not an inpainting model" in sd.unavailable(MethodOptions(weights="someone/sd-text2img"))
    # The automatic choice never lands on sd for another method's weights, cached or local.
    assert models.best_available(MethodOptions(weights="google/ddpm-celebahq-256")).name != "sd"
    assert models.best_available(MethodOptions(weights=str(tiny_unet7_dir))).name == "ddpm"
    assert models.best_available(MethodOptions(weights=str(tiny_sd_inpaint_dir))).name == "sd"
    with pytest.raises(InputError, match="is a LoRA, not a base model"):
        models.load_inpainter("sd", _options(lora_dir))
