"""The README's walkthrough, run as written, in a project folder, on tiny models under the real hub ids.

The models are tiny but shaped like the study's (a 256-px DDPM with attention at 16 px, an SD
pipeline whose VAE downsamples by 8, BLIP), laid out in a Hugging Face cache under the default hub
ids, so every command resolves its defaults exactly as after `inpaint download` on a real
machine. Only the number of steps comes from the project's `inpaint.toml`.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from inpaint import testing

README = Path(__file__).resolve().parent.parent / "README.md"

PROJECT_TOML = """\
[train-ddpm]
max-steps = 2
val-images = 1
val-steps = 2

[train-lora]
max-steps = 2
val-images = 1
val-steps = 2

[complete]
steps = 2

[bench]
batch-size = 2
model-option = ["ddpm.steps=2", "sd.steps=2"]
"""


def walkthrough() -> list[list[str]]:
    """The commands of the README's walkthrough block, as argument lists (comments dropped)."""
    block = re.search(r"<!-- walkthrough -->\s*```bash\n(.*?)```", README.read_text(), re.S)
    assert block, "README.md has no walkthrough block"
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "inpaint", line
            commands.append(words[1:])
    return commands


@pytest.fixture(scope="session")
def shaped_models(tmp_path_factory) -> dict[str, Path]:
    """The tiny study-shaped models, built once: hub id -> folder."""
    root = tmp_path_factory.mktemp("shaped-models")
    return {
        "google/ddpm-celebahq-256": testing.save_celebahq_shaped_ddpm(root / "ddpm"),
        "stable-diffusion-v1-5/stable-diffusion-inpainting": testing.save_sd15_shaped_inpaint(root / "sd"),
        "Salesforce/blip-image-captioning-base": testing.save_tiny_blip(root / "blip"),
    }


@pytest.fixture
def project(tmp_path, monkeypatch, shaped_models, random_lpips_alex_file, random_fid_inception_file) -> Path:
    """A project folder (data/, test/, inpaint.toml) as the current directory, with every weight the
    walkthrough needs in a private Hugging Face cache and torch hub folder."""
    from huggingface_hub import constants
    from PIL import Image
    from skimage import data as photos

    cache = tmp_path / "hf" / "hub"
    for repo_id, folder in shaped_models.items():
        testing.install_in_hub_cache(folder, repo_id, cache)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    torch_home = tmp_path / "torch"
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for weights in (random_lpips_alex_file, random_fid_inception_file):
        shutil.copy(weights, checkpoints / weights.name)
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv("INPAINT_LPIPS_WEIGHTS", raising=False)
    monkeypatch.delenv("INPAINT_FID_WEIGHTS", raising=False)

    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "test").mkdir()
    # Ten training images (validation holds one out; train-ddpm's batch is 8) and two test images.
    names = [
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "camera",
        "cat",
        "horse",
        "immunohistochemistry",
        "hubble_deep_field",
        "retina",
        "coins",
        "moon",
    ]
    for i, name in enumerate(names):
        pixels = np.asarray(getattr(photos, name)())
        pixels = np.stack([pixels] * 3, axis=-1) if pixels.ndim == 2 else pixels[..., :3]
        picture = Image.fromarray(pixels.astype(np.uint8))
        if i < 10:  # training images of several sizes: the commands resize and crop them
            picture.resize((72 + 8 * i, 64)).save(folder / "data" / f"{name}.png")
        else:  # the test images 0001.png, 0002.png the README names
            picture.resize((64, 64)).save(folder / "test" / f"{i - 9:04d}.png")
    (folder / "inpaint.toml").write_text(PROJECT_TOML)
    monkeypatch.chdir(folder)
    return folder


def test_the_readme_walkthrough_runs_as_written(cli, project):
    commands = walkthrough()
    assert [c[0] for c in commands] == ["download", "make-masks", "train-ddpm", "train-lora", "complete", "bench"]
    for command in commands:
        result = cli(*command)
        assert result.code == 0, (command, result)
        assert "Traceback" not in result.err

    # What each step left, under the names the next one looked for.
    assert sorted(p.name for p in (project / "masks").glob("*.png")) == ["0001.png", "0002.png"]
    assert (project / "runs/ddpm/config.json").is_file()
    captions = json.loads((project / "data/captions.json").read_text())
    assert len(captions) == 10 and all(
        text.endswith(", high quality, realistic, sharp focus") for text in captions.values()
    )
    assert (project / "runs/lora/pytorch_lora_weights.safetensors").is_file()

    from inpaint import io

    done = io.read_image(project / "test/0001_inpainted.png")
    original = io.read_image(project / "test/0001.png")
    hole = io.read_mask(project / "masks/0001.png")
    assert done.shape == original.shape
    assert np.array_equal(done[~hole], original[~hole]) and not np.array_equal(done[hole], original[hole])

    results = json.loads((project / "results/results.json").read_text())
    assert set(results["models"]) == {"ddpm", "sd"}
    implicit = results["protocol"]["implicit_choices"]
    assert any(line.startswith("test images: test/") for line in implicit)
    assert any(line.startswith("test masks: masks/") for line in implicit)
    assert any(line.startswith("ddpm weights: runs/ddpm") for line in implicit)
    assert any(line.startswith("sd LoRA: runs/lora") for line in implicit)
    assert (project / "results/report.md").is_file()
    for model, key, value in (("ddpm", "weights", "runs/ddpm"), ("sd", "lora", "runs/lora")):
        run = json.loads((project / "results/outputs" / model / "run.json").read_text())
        assert run["options"][key] == value


def test_complete_writes_beside_the_image_and_never_over_it(cli, project, tmp_path):
    from inpaint import io

    mask = np.zeros((64, 64), dtype=bool)
    mask[20:40, 20:40] = True
    io.save_mask(mask, project / "hole.png")
    first = cli("complete", "test/0001.png", "hole.png", "-m", "telea")
    assert first.code == 0, first
    assert "test/0001_inpainted.png" in first.err
    assert (project / "test/0001_inpainted.png").is_file()
    again = cli("complete", "test/0001.png", "hole.png", "-m", "telea")
    assert again.code == 2 and "already exists" in again.err and "--overwrite" in again.err
    folder = cli("complete", "test", "masks_for_test", "-m", "telea")
    assert folder.code == 2  # no such mask folder: refused before anything is written
    assert not (project / "test_inpainted").exists()


def test_bench_names_the_flag_for_what_it_cannot_find(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_data = cli("bench", "--models", "telea")
    assert no_data.code == 2 and "--data" in no_data.err
    (tmp_path / "test").mkdir()
    no_weights = cli("bench", "--models", "ddpm")
    assert no_weights.code == 2 and "--weights ddpm=" in no_weights.err and "train-ddpm" in no_weights.err
    (tmp_path / "runs/ddpm/checkpoints").mkdir(parents=True)
    unfinished = cli("bench", "--models", "ddpm")
    assert unfinished.code == 2 and "not finished" in unfinished.err


def test_train_lora_without_blip_says_it_falls_back_to_one_prompt(
    cli, tmp_path, monkeypatch, tiny_sd_inpaint_dir, train_images
):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    data = tmp_path / "data"
    shutil.copytree(train_images, data)
    monkeypatch.chdir(tmp_path)
    result = cli(
        "train-lora",
        "data",
        "--base",
        tiny_sd_inpaint_dir,
        "--resolution",
        "32",
        "--max-steps",
        "1",
        "--val-images",
        "0",
        "--batch-size",
        "2",
    )
    assert result.code == 0, result
    assert result.err.count("trains on the prompt") == 1 and "inpaint caption data" in result.err
    assert not (data / "captions.json").exists()
    assert (tmp_path / "runs/lora/pytorch_lora_weights.safetensors").is_file()
