"""FLUX.1 Fill behind ``--model flux``: a tiny ``FluxFillPipeline`` built from the published
configuration's shape (a transformer over packed latents, CLIP + T5, flow matching), loaded through
``from_pretrained`` as the real one is."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from inpaint import io, models
from inpaint.errors import InputError
from inpaint.models.base import MethodOptions
from inpaint.testing import holed_batch
from inpaint.testing import tiny_pipeline_options as _options


@pytest.fixture(scope="module")
def flux(tiny_flux_fill_dir):
    return models.load_inpainter("flux", _options(tiny_flux_fill_dir, prompt="a red door"))


def test_flux_completes_keeps_known_pixels_and_batches_like_single_images(flux):
    assert type(flux.pipe).__name__ == "FluxFillPipeline"
    assert flux.settings.guidance == 30 and not hasattr(flux.pipe, "_inpaint_max_pooled_mask")
    images, masks = holed_batch()
    together = flux(images, masks, [3, 4])
    known, hole = (masks == 0).expand_as(images), (masks > 0).expand_as(images)
    assert torch.equal(together[known], images[known])
    assert not torch.allclose(together[hole], images[hole], atol=1e-2)
    assert flux.last_nfe == 2  # guidance-distilled: one transformer call a step, whatever the guidance
    alone = torch.cat([flux(images[i : i + 1], masks[i : i + 1], [3 + i]) for i in range(2)])
    assert torch.allclose(together, alone, atol=1e-5)
    assert not torch.allclose(flux(images[:1], masks[:1], [5]), alone[:1], atol=1e-4)  # the seed matters


def test_flux_is_blind_to_the_pixels_under_the_hole(flux):
    """As tests/test_hole_independence.py checks the other methods (it has no FLUX weights):
    rounded up to 16 (40x56) or not (48x64), with mask blur or without."""
    for images, masks in (holed_batch(1), (torch.rand(1, 3, 48, 64), torch.ones(1, 1, 48, 64).tril(-10))):
        tampered = images.clone()
        under = masks.bool().expand_as(images)
        tampered[under] = torch.rand(images.shape)[under]
        for method in (flux, flux.with_options(dataclasses.replace(flux.options, mask_blur=3))):
            out = method(images, masks, [0], composite_known=False)
            assert torch.equal(out, method(tampered, masks, [0], composite_known=False))


def test_flux_call_options_without_reload(flux, tiny_flux_fill_dir):
    images, masks = holed_batch(1)
    changes = {"prompt": "lower", "guidance": 3.5, "steps": 3, "strength": 0.9, "mask_blur": 2, "sampler": "flow-euler"}
    options = dataclasses.replace(flux.options, **changes)
    twin = flux.with_options(options)
    assert twin is not flux and twin.pipe is flux.pipe and twin.options == options
    assert torch.equal(twin(images, masks, [1]), models.load_inpainter("flux", options)(images, masks, [1]))
    assert twin.last_nfe == 3  # FLUX skips floor(3 - 3 * 0.9) = 0 steps (SD: 3 - floor(2.7) = 1)
    assert flux.settings.steps == 2 and flux.prompt == "a red door"
    with pytest.raises(InputError, match="^--negative-prompt: flux takes none"):
        flux.with_options(dataclasses.replace(flux.options, negative_prompt="blur"))


def test_flux_bf16_runs(tiny_flux_fill_dir):
    images, masks = holed_batch(1)
    method = models.load_inpainter("flux", _options(tiny_flux_fill_dir, dtype="bf16"))
    assert method.pipe.transformer.dtype == method.pipe.text_encoder_2.dtype == torch.bfloat16
    out = method(images, masks, [0])
    assert out.shape == images.shape and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"negative_prompt": "blur"}, "--negative-prompt: flux takes none"),
        ({"crop_padding": 8}, "--crop-padding: flux cannot crop to the mask"),
        ({"sampler": "ddim"}, "--sampler 'ddim': flux supports flow-euler$"),
        ({"lora": "some-lora"}, "--lora: flux loads no LoRA"),
    ],
)
def test_flux_refusals_are_one_line(cli, tmp_path, pair, tiny_flux_fill_dir, changes, message):
    with pytest.raises(InputError, match=message):
        models.load_inpainter("flux", _options(tiny_flux_fill_dir, **changes))
    (flag, value), = changes.items()  # fmt: skip
    image, mask = pair
    result = cli("complete", image, mask, "-o", tmp_path / "out.png", "-m", "flux", "--weights", tiny_flux_fill_dir,
                 f"--{flag.replace('_', '-')}", value, "--device", "cpu")  # fmt: skip
    assert result.code == 2 and result.err.count("\n") == 1 and "error:" in result.err, result
    assert not (tmp_path / "out.png").exists()


def test_families_are_not_mixed_up(tiny_flux_fill_dir, tiny_sd_inpaint_dir, tmp_path):
    from inpaint.models.sd_weights import PIPELINE_FILES, check_pipeline_folder

    assert PIPELINE_FILES.missing(tiny_flux_fill_dir) == []
    assert "transformer/diffusion_pytorch_model.safetensors" in PIPELINE_FILES.patterns()
    with pytest.raises(InputError, match=r"a FluxFillPipeline \(FLUX.1 Fill: run it with --model flux\)"):
        models.load_inpainter("sd", _options(tiny_flux_fill_dir))
    with pytest.raises(InputError, match="a StableDiffusionInpaintPipeline .*--model sd.*supported: FluxFillPipeline"):
        models.load_inpainter("flux", _options(tiny_sd_inpaint_dir))
    # A FLUX text-to-image transformer (64 packed channels in and out) is no Fill model.
    folder = tmp_path / "flux-dev"
    shutil.copytree(tiny_flux_fill_dir, folder)
    config = json.loads((folder / "transformer" / "config.json").read_text())
    (folder / "transformer" / "config.json").write_text(json.dumps({**config, "in_channels": 16}))
    with pytest.raises(InputError, match="transformer takes 16 input channels, not 288.*not a Fill model"):
        check_pipeline_folder(folder, "flux-dev")


def test_cached_flux_is_available_offline(tiny_flux_fill_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from inpaint import testing

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    flux = models.get_method("flux")
    assert "not downloaded yet" in flux.unavailable(MethodOptions(local_only=True))
    testing.install_in_hub_cache(tiny_flux_fill_dir, "black-forest-labs/FLUX.1-Fill-dev", tmp_path / "hub")
    assert flux.unavailable(MethodOptions(local_only=True)) is None
    repo = MethodOptions(weights="black-forest-labs/FLUX.1-Fill-dev", local_only=True)
    assert "run it with --model flux" in models.get_method("sd").unavailable(repo)
    assert models.best_available(repo).name == "flux"


def test_registry_download_and_doctor_know_flux(cli):
    from inpaint.download import ITEMS

    names = models.method_names()
    assert names.index("sdxl") < names.index("flux") and models.get_method("flux").heavy
    item = next(item for item in ITEMS if item.name == "flux")
    assert item.source == "black-forest-labs/FLUX.1-Fill-dev" and not item.default and "hf auth login" in item.purpose
    doctor = json.loads(cli("doctor", "--json").out)
    assert "black-forest-labs/FLUX.1-Fill-dev" in json.dumps(doctor)
    ignored = models.get_method("flux").ignored_options(MethodOptions(attention_slicing=True, ema=False))
    assert ignored == ["--no-ema", "--attention-slicing"]


def test_complete_and_bench_on_sd_sdxl_and_flux(cli, tmp_path, tiny_sd_inpaint_dir, tiny_sdxl_inpaint_dir,
                                                tiny_flux_fill_dir, pair, no_metric_weights):  # fmt: skip
    image, mask = pair
    out = tmp_path / "flux.png"
    result = cli("complete", image, mask, "-o", out, "-m", "flux", "--weights", tiny_flux_fill_dir,
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
        "bench", "--models", "sd", "sdxl", "flux", "--data", data, "--masks", masks, "-o", report,
        "--eval-size", "32", "--weights", f"sd={tiny_sd_inpaint_dir}", "--weights", f"sdxl={tiny_sdxl_inpaint_dir}",
        "--weights", f"flux={tiny_flux_fill_dir}", "--model-option", "steps=2", "--device", "cpu", "--no-lpips",
        "--no-fid",
    )  # fmt: skip
    assert result.code == 0, result
    results = json.loads((report / "results.json").read_text())
    assert list(results["models"]) == ["sd", "sdxl", "flux"] and results["n_images"] == 2
    assert results["models"]["sdxl"]["nfe_per_image"] == 4 and results["models"]["flux"]["nfe_per_image"] == 2
