"""Kandinsky 2.2 inpainting behind ``--model kandinsky``: a tiny ``KandinskyV22InpaintCombinedPipeline``
shaped as the published one (a prior over CLIP embeddings; a 9-channel UNet decoder over a MoVQ that
downsamples by 8), loaded through ``from_pretrained`` as the real one is."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from inpaint import io, models
from inpaint.errors import InputError
from inpaint.models.base import MethodOptions
from inpaint.testing import holed_batch
from inpaint.testing import tiny_pipeline_options as _options

DECODER = "kandinsky-community/kandinsky-2-2-decoder-inpaint"
PRIOR = "kandinsky-community/kandinsky-2-2-prior"


@pytest.fixture(scope="module")
def kandinsky(tiny_kandinsky_inpaint_dir):
    return models.load_inpainter("kandinsky", _options(tiny_kandinsky_inpaint_dir, prompt="a red door"))


def test_kandinsky_completes_keeps_known_pixels_and_batches_like_single_images(kandinsky):
    assert type(kandinsky.pipe).__name__ == "KandinskyV22InpaintCombinedPipeline"
    assert kandinsky.settings.guidance == 4 and kandinsky.settings.steps == 2
    images, masks = holed_batch()
    together = kandinsky(images, masks, [3, 4])
    known, hole = (masks == 0).expand_as(images), (masks > 0).expand_as(images)
    assert torch.equal(together[known], images[known])
    assert not torch.allclose(together[hole], images[hole], atol=1e-2)
    assert kandinsky.last_nfe == 4  # the decoder UNet: 2 steps, x2 for classifier-free guidance
    alone = torch.cat([kandinsky(images[i : i + 1], masks[i : i + 1], [3 + i]) for i in range(2)])
    assert torch.allclose(together, alone, atol=1e-6)
    assert not torch.allclose(kandinsky(images[:1], masks[:1], [5]), alone[:1], atol=1e-4)  # the seed matters


def test_kandinsky_mask_polarity_and_whole_cells(kandinsky):
    """Ours is 1 = fill; the decoder's UNet reads 1 = keep (diffusers inverts a 1 = fill mask). The
    mask channel must be 0 on every cell the hole touches (the decoder grows it by up to one cell)
    and 1 further away; a one-pixel stroke that nearest sampling would miss still makes its cells hole."""
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(1, 1, 64, 64)
    masks[..., 16:32, 24:40] = 1  # cells [2:4, 3:5]
    masks[..., 53, 8:20] = 1  # a stroke in cell row 6 that misses its first pixel row (48)
    seen = []
    hook = kandinsky.pipe.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["sample"].clone()), with_kwargs=True
    )
    try:
        kandinsky(images, masks, [0], composite_known=False)
    finally:
        hook.remove()
    sample = seen[0]  # (2 for guidance, 4 latent + 4 masked-image latent + 1 mask, 8, 8)
    hole = torch.zeros(8, 8, dtype=torch.bool)
    hole[2:4, 3:5] = True  # the square's cells
    hole[6, 1:3] = True  # the stroke's
    near = torch.nn.functional.max_pool2d(hole[None].float(), 3, stride=1, padding=1)[0].bool()
    for mask in sample[:, 8]:
        assert set(mask.unique().tolist()) == {0.0, 1.0}
        assert torch.all(mask[hole] == 0) and torch.all(mask[~near] == 1)
    assert torch.all(sample[:, 4:8][:, :, hole] == 0)  # the masked image is blank in the hole
    assert torch.any(sample[:, 4:8][:, :, ~near] != 0)


def test_kandinsky_is_blind_to_the_pixels_under_the_hole(kandinsky):
    """As tests/test_hole_independence.py, also with mask blur and a size that is rounded up."""
    for images, masks in (holed_batch(1), (torch.rand(1, 3, 64, 64), torch.ones(1, 1, 64, 64).tril(-10))):
        tampered = images.clone()
        under = masks.bool().expand_as(images)
        tampered[under] = torch.rand(images.shape)[under]
        for method in (kandinsky, kandinsky.with_options(dataclasses.replace(kandinsky.options, mask_blur=3))):
            out = method(images, masks, [0], composite_known=False)
            assert torch.equal(out, method(tampered, masks, [0], composite_known=False))


def test_kandinsky_call_options_without_reload(kandinsky):
    images, masks = holed_batch(1)
    changes = {"prompt": "lower", "negative_prompt": "blur", "guidance": 1.0, "steps": 3, "mask_blur": 2}
    options = dataclasses.replace(kandinsky.options, sampler="ddpm", **changes)
    twin = kandinsky.with_options(options)
    assert twin is not kandinsky and twin.pipe is kandinsky.pipe and twin.options == options
    assert torch.equal(twin(images, masks, [1]), models.load_inpainter("kandinsky", options)(images, masks, [1]))
    assert twin.last_nfe == 3  # guidance 1: no classifier-free guidance in the decoder
    assert kandinsky.settings.steps == 2 and kandinsky.prompt == "a red door"
    with pytest.raises(InputError, match="^--strength 0.5: kandinsky always starts from noise"):
        kandinsky.with_options(dataclasses.replace(kandinsky.options, strength=0.5))


def test_kandinsky_bf16_runs(tiny_kandinsky_inpaint_dir):
    images, masks = holed_batch(1)
    method = models.load_inpainter("kandinsky", _options(tiny_kandinsky_inpaint_dir, dtype="bf16"))
    assert method.pipe.unet.dtype == method.pipe.movq.dtype == method.pipe.prior_prior.dtype == torch.bfloat16
    out = method(images, masks, [0])
    assert out.shape == images.shape and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("changes", "flags", "message"),
    [
        ({"strength": 0.5}, ["--strength", "0.5"], "--strength 0.5: kandinsky always starts from noise"),
        ({"crop_padding": 8}, ["--crop-padding", "8"], "--crop-padding: kandinsky cannot crop to the mask"),
        ({"sampler": "ddim"}, ["--sampler", "ddim"], "--sampler 'ddim': kandinsky supports ddpm$"),
        ({"lora": "some-lora"}, ["--lora", "some-lora"], "--lora: kandinsky loads no LoRA"),
        ({"attention_slicing": True}, ["--attention-slicing"], "--attention-slicing: kandinsky's combined"),
        ({"vae_tiling": True}, ["--vae-tiling"], "--vae-tiling: Kandinsky 2.2's MoVQ"),
    ],
)
def test_kandinsky_refusals_are_one_line(cli, tmp_path, pair, tiny_kandinsky_inpaint_dir, changes, flags, message):
    with pytest.raises(InputError, match=message):
        models.load_inpainter("kandinsky", _options(tiny_kandinsky_inpaint_dir, **changes))
    image, mask = pair
    result = cli("complete", image, mask, "-o", tmp_path / "out.png", "-m", "kandinsky",
                 "--weights", tiny_kandinsky_inpaint_dir, *flags, "--device", "cpu")  # fmt: skip
    assert result.code == 2 and result.err.count("\n") == 1 and "error:" in result.err, result
    assert not (tmp_path / "out.png").exists()


def test_families_are_not_mixed_up(tiny_kandinsky_inpaint_dir, tiny_sd_inpaint_dir):
    from inpaint.models.sd_weights import PIPELINE_FILES

    assert PIPELINE_FILES.missing(tiny_kandinsky_inpaint_dir) == []
    assert "movq/diffusion_pytorch_model.safetensors" in PIPELINE_FILES.patterns()
    with pytest.raises(
        InputError,
        match=r"a KandinskyV22InpaintCombinedPipeline \(Kandinsky 2.2 Inpainting: run it with --model kandinsky\)",
    ):
        models.load_inpainter("sd", _options(tiny_kandinsky_inpaint_dir))
    with pytest.raises(
        InputError, match="a StableDiffusionInpaintPipeline .*supported: KandinskyV22InpaintCombinedPipeline"
    ):
        models.load_inpainter("kandinsky", _options(tiny_sd_inpaint_dir))


def test_hub_decoder_loads_with_the_cached_prior_offline(kandinsky, tmp_path, monkeypatch):
    """The hub's decoder repository holds no prior: it is loaded from the prior's own repository."""
    from huggingface_hub import constants

    from inpaint import testing

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    method = models.get_method("kandinsky")
    assert "not downloaded yet" in method.unavailable(MethodOptions(local_only=True))
    parts = testing.save_tiny_kandinsky_inpaint(tmp_path / "parts", combined=False)  # the same weights
    testing.install_in_hub_cache(parts / "decoder", DECODER, tmp_path / "hub")
    problem = method.unavailable(MethodOptions(local_only=True))
    assert problem.startswith(f"{PRIOR}: not downloaded yet") and "`inpaint download kandinsky-prior`" in problem
    with pytest.raises(InputError, match=f"^kandinsky: {PRIOR}: .*offline.*inpaint download kandinsky"):
        models.load_inpainter("kandinsky", MethodOptions(device="cpu", steps=2))
    testing.install_in_hub_cache(parts / "prior", PRIOR, tmp_path / "hub")
    assert method.unavailable(MethodOptions(local_only=True)) is None
    assert models.best_available(MethodOptions(weights=DECODER, local_only=True)).name == "kandinsky"
    loaded = models.load_inpainter("kandinsky", MethodOptions(device="cpu", steps=2, prompt="a red door"))
    assert type(loaded.pipe).__name__ == "KandinskyV22InpaintCombinedPipeline"
    images, masks = holed_batch(1)
    assert torch.allclose(loaded(images, masks, [2]), kandinsky(images, masks, [2]), atol=1e-6)


def test_registry_download_and_doctor_know_kandinsky(cli):
    from inpaint.download import ITEMS

    names = models.method_names()
    assert names.index("flux") < names.index("kandinsky") and models.get_method("kandinsky").heavy
    item = next(item for item in ITEMS if item.name == "kandinsky")
    assert item.source == DECODER and not item.default and item.also == ("kandinsky-prior",)
    doctor = json.dumps(json.loads(cli("doctor", "--json").out))
    assert DECODER in doctor and PRIOR in doctor
    assert models.get_method("kandinsky").ignored_options(MethodOptions(ema=False)) == ["--no-ema"]


def test_complete_and_bench_on_sd_and_kandinsky(cli, tmp_path, tiny_sd_inpaint_dir, tiny_kandinsky_inpaint_dir,
                                                pair, no_metric_weights):  # fmt: skip
    image, mask = pair
    out = tmp_path / "kandinsky.png"
    result = cli("complete", image, mask, "-o", out, "-m", "kandinsky", "--weights", tiny_kandinsky_inpaint_dir,
                 "--steps", "2", "--device", "cpu")  # fmt: skip
    assert result.code == 0, result
    completed, photo, holes = io.read_image(out), io.read_image(image), io.read_mask(mask)
    assert completed.shape == photo.shape and np.array_equal(completed[~holes], photo[~holes])
    assert not np.array_equal(completed[holes], photo[holes])
    data, masks = tmp_path / "test", tmp_path / "masks"
    data.mkdir()
    masks.mkdir()
    for index in range(2):
        Image.fromarray(photo[:, ::-1] if index else photo).save(data / f"p{index}.png")
        io.save_mask(holes, masks / f"p{index}.png")
    report = tmp_path / "results"
    result = cli(
        "bench", "--models", "sd", "kandinsky", "--data", data, "--masks", masks, "-o", report,
        "--eval-size", "32", "--weights", f"sd={tiny_sd_inpaint_dir}",
        "--weights", f"kandinsky={tiny_kandinsky_inpaint_dir}", "--model-option", "steps=2", "--device", "cpu",
        "--no-lpips", "--no-fid",
    )  # fmt: skip
    assert result.code == 0, result
    results = json.loads((report / "results.json").read_text())
    assert list(results["models"]) == ["sd", "kandinsky"] and results["n_images"] == 2
    assert results["models"]["kandinsky"]["nfe_per_image"] == 4
