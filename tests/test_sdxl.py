"""SDXL Inpainting behind ``--model sdxl`` (and any supported family's folder behind ``sd``): tiny
SDXL pipelines built from the published configuration's shape, loaded through ``from_pretrained``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from inpaint import io, models
from inpaint.errors import InputError
from inpaint.testing import tiny_pipeline_options as _options


def _batch(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, 48, 64, generator=generator)
    masks = torch.zeros(n, 1, 48, 64)
    masks[0, :, 10:30, 12:40] = 1
    masks[-1, :, 20:44, 30:60] = 1
    return images, masks


def test_sdxl_completes_keeps_known_pixels_and_batches_like_single_images(tiny_sdxl_inpaint_dir):
    inpainter = models.load_inpainter("sdxl", _options(tiny_sdxl_inpaint_dir, prompt="a red door"))
    assert type(inpainter.pipe).__name__ == "StableDiffusionXLInpaintPipeline"
    images, masks = _batch()
    together = inpainter(images, masks, [3, 4])
    known = masks == 0
    assert torch.equal(together.expand_as(images)[known.expand_as(images)], images[known.expand_as(images)])
    assert not torch.equal(together[masks.expand_as(images) > 0], images[masks.expand_as(images) > 0])
    alone = torch.cat([inpainter(images[i : i + 1], masks[i : i + 1], [3 + i]) for i in range(2)])
    assert torch.allclose(together, alone, atol=1e-5)
    assert inpainter.last_nfe == 2 * 2  # two steps, classifier-free guidance doubles them


def test_sdxl_crop_to_mask_bf16_and_another_sampler(tiny_sdxl_inpaint_dir):
    images, masks = _batch(1)
    for changes in ({"crop_padding": 4, "mask_blur": 2}, {"dtype": "bf16"}, {"sampler": "dpmpp"}):
        out = models.load_inpainter("sdxl", _options(tiny_sdxl_inpaint_dir, **changes))(images, masks, [0])
        assert out.shape == images.shape and torch.isfinite(out).all(), changes


def test_an_sdxl_folder_given_to_sd_runs_as_sdxl(tiny_sdxl_inpaint_dir):
    """The pipeline class comes from the folder's model_index.json, not from the method's name."""
    images, masks = _batch(1)
    as_sd = models.load_inpainter("sd", _options(tiny_sdxl_inpaint_dir))
    as_sdxl = models.load_inpainter("sdxl", _options(tiny_sdxl_inpaint_dir))
    assert torch.equal(as_sd(images, masks, [1]), as_sdxl(images, masks, [1]))


@pytest.mark.parametrize(
    ("class_name", "named"),
    [
        ("StableDiffusion3InpaintPipeline", "Stable Diffusion 3"),
        ("KandinskyV22InpaintPipeline", "Kandinsky 2.2"),
        ("MyPipeline", ""),
    ],
)
def test_unsupported_pipeline_classes_are_one_line(cli, tmp_path, tiny_sdxl_inpaint_dir, pair, class_name, named):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_sdxl_inpaint_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": class_name}))
    with pytest.raises(InputError, match=f"a {class_name}.*not supported; supported: StableDiffusionInpaintPipeline"):
        models.load_inpainter("sdxl", _options(folder))
    image, mask = pair
    result = cli("complete", image, mask, "-o", tmp_path / "out.png", "-m", "sd", "--weights", folder)
    assert result.code == 2 and result.err.count("\n") == 1, result
    assert f"a {class_name}" in result.err and named in result.err and "StableDiffusionXLInpaintPipeline" in result.err
    assert not (tmp_path / "out.png").exists()


def test_complete_and_bench_on_sd_and_sdxl(cli, tmp_path, tiny_sd_inpaint_dir, tiny_sdxl_inpaint_dir, pair,
                                           no_metric_weights):  # fmt: skip
    image, mask = pair
    out = tmp_path / "sdxl.png"
    result = cli("complete", image, mask, "-o", out, "-m", "sdxl", "--weights", tiny_sdxl_inpaint_dir,
                 "--steps", "2", "--device", "cpu")  # fmt: skip
    assert result.code == 0, result
    completed, photo, holes = io.read_image(out), io.read_image(image), io.read_mask(mask)
    assert completed.shape == photo.shape and np.array_equal(completed[~holes], photo[~holes])
    data, masks = tmp_path / "test", tmp_path / "masks"
    data.mkdir()
    masks.mkdir()
    for index in range(2):
        Image.fromarray(photo[:, ::-1] if index else photo).save(data / f"p{index}.png")
        io.save_mask(holes, masks / f"p{index}.png")
    report = tmp_path / "results"
    result = cli(
        "bench", "--models", "sd", "sdxl", "--data", data, "--masks", masks, "-o", report, "--eval-size", "32",
        "--weights", f"sd={tiny_sd_inpaint_dir}", "--weights", f"sdxl={tiny_sdxl_inpaint_dir}",
        "--model-option", "steps=2", "--device", "cpu", "--no-lpips", "--no-fid",
    )  # fmt: skip
    assert result.code == 0, result
    results = json.loads((report / "results.json").read_text())
    assert list(results["models"]) == ["sd", "sdxl"] and results["n_images"] == 2
    assert results["models"]["sdxl"]["nfe_per_image"] == 4


def test_registry_download_and_doctor_know_sdxl(cli):
    from inpaint.download import ITEMS

    assert "sdxl" in models.method_names() and models.get_method("sdxl").heavy
    item = next(item for item in ITEMS if item.name == "sdxl")
    assert item.source == "diffusers/stable-diffusion-xl-1.0-inpainting-0.1" and not item.default
    listing = cli("complete", "--list-models", "--json")
    row = next(row for row in json.loads(listing.out) if row["name"] == "sdxl")
    assert not row["available"] and "inpaint download sdxl" in row["reason"]
    doctor = json.loads(cli("doctor", "--json").out)
    assert "diffusers/stable-diffusion-xl-1.0-inpainting-0.1" in json.dumps(doctor)


def test_train_lora_on_sdxl_loads_in_stock_diffusers_and_resumes_exactly(
    cli, tmp_path, tiny_sdxl_inpaint_dir, tiny_sd_inpaint_dir, train_images
):
    from diffusers import StableDiffusionXLInpaintPipeline

    from inpaint.config import TrainConfig

    for base, size in ((tiny_sdxl_inpaint_dir, 1024), (tiny_sd_inpaint_dir, 512)):
        assert TrainConfig(method="lora", data="d", output="o", base=str(base)).resolution == size
    tiny = ["--resolution", "32", "--batch-size", "2", "--lr", "1e-2", "--device", "cpu", "--rank", "4",
            "--val-images", "2", "--val-steps", "2", "--prompt", "a photo", "--save-every", "1"]  # fmt: skip
    run, straight = tmp_path / "run", tmp_path / "straight"
    first = cli("train-lora", train_images, "-o", run, "--base", tiny_sdxl_inpaint_dir, "--max-steps", "1", *tiny)
    assert first.code == 0, first
    resumed = cli("train-lora", train_images, "-o", run, "--base", tiny_sdxl_inpaint_dir, "--max-steps", "2", *tiny)
    assert resumed.code == 0, resumed
    whole = cli("train-lora", train_images, "-o", straight, "--base", tiny_sdxl_inpaint_dir, "--max-steps", "2", *tiny)
    assert whole.code == 0, whole
    from safetensors.torch import load_file

    resumed_lora, straight_lora = (load_file(folder / "pytorch_lora_weights.safetensors") for folder in (run, straight))
    assert resumed_lora.keys() == straight_lora.keys() and all(
        torch.equal(resumed_lora[key], straight_lora[key]) for key in resumed_lora
    )

    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1

    def generate(pipe):
        pipe.set_progress_bar_config(disable=True)
        return pipe(prompt=["a photo"], image=image, mask_image=mask, height=32, width=32, num_inference_steps=2,
                    generator=[torch.Generator().manual_seed(1)], output_type="pt").images  # fmt: skip

    stock = StableDiffusionXLInpaintPipeline.from_pretrained(tiny_sdxl_inpaint_dir)
    base = generate(stock)
    stock.load_lora_weights(run)
    adapted = generate(stock)
    assert not torch.allclose(adapted, base, atol=1e-4)
    # Ours loads the same weights: the same UNet prediction as stock diffusers' pipeline.
    ours = models.load_inpainter("sdxl", _options(tiny_sdxl_inpaint_dir, lora=str(run)))
    sample = torch.randn(1, 9, 16, 16, generator=torch.Generator().manual_seed(2))
    text = torch.randn(1, 77, 64, generator=torch.Generator().manual_seed(3))
    added = {"text_embeds": torch.randn(1, 32), "time_ids": torch.tensor([[32.0, 32, 0, 0, 32, 32]])}
    with torch.no_grad():
        expected = stock.unet(sample, 10, encoder_hidden_states=text, added_cond_kwargs=added).sample
        got = ours.pipe.unet(sample, 10, encoder_hidden_states=text, added_cond_kwargs=added).sample
    assert torch.allclose(got, expected, atol=1e-6)
