"""docs/api.md, run as written: its Python blocks in order, in a project folder, on tiny models.

The tiny models sit in a private Hugging Face cache under the hub ids the page names, so the calls
resolve their defaults as after ``inpaint download``. The only edits are the few listed in
``SMALLER``: the page's first-try training runs become two steps at 32 px, and diffusion
samples take two steps.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import inpaint
from inpaint import testing

API_DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"

#: Text of the page -> what the test runs instead (each must occur on the page).
SMALLER = {
    "max_steps=100": 'max_steps=2, resolution=32, batch_size=2, val_images=1, device="cpu"',
    "DDPMOptions()": "DDPMOptions(val_steps=2)",
    "LoRAOptions()": "LoRAOptions(rank=4, val_steps=2)",
    "steps=25)": "steps=2)",
    'captions="data/captions.json")': 'captions="data/captions.json", steps=2)',
    '{"weights": "runs/ddpm"}': '{"weights": "runs/ddpm", "steps": 2}',
}


def python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", API_DOC.read_text(), re.S)
    assert blocks, "docs/api.md has no python blocks"
    return blocks


def test_every_exported_entry_point_is_shown_in_use():
    code = "\n".join(python_blocks())
    missing = [name for name in inpaint.__all__ if name != "__version__" and not re.search(rf"\b{name}\b", code)]
    assert not missing, f"docs/api.md does not use {missing}"


@pytest.fixture
def project(
    tmp_path,
    monkeypatch,
    tiny_ddpm_dir,
    tiny_sd_inpaint_dir,
    tiny_blip_dir,
    random_lpips_alex_file,
    random_fid_inception_file,
) -> Path:
    from huggingface_hub import constants
    from PIL import Image
    from skimage import data as photos

    cache = tmp_path / "hf" / "hub"
    for repo_id, folder in (
        ("google/ddpm-celebahq-256", tiny_ddpm_dir),
        ("stable-diffusion-v1-5/stable-diffusion-inpainting", tiny_sd_inpaint_dir),
        ("Salesforce/blip-image-captioning-base", tiny_blip_dir),
    ):
        testing.install_in_hub_cache(folder, repo_id, cache)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for weights in (random_lpips_alex_file, random_fid_inception_file):
        shutil.copy(weights, checkpoints / weights.name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("INPAINT_LPIPS_WEIGHTS", raising=False)
    monkeypatch.delenv("INPAINT_FID_WEIGHTS", raising=False)

    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "test").mkdir()
    names = ["astronaut", "chelsea", "coffee", "rocket", "camera", "cat", "horse", "coins", "moon", "retina"]
    for i, name in enumerate(names):
        pixels = np.asarray(getattr(photos, name)())
        pixels = np.stack([pixels] * 3, axis=-1) if pixels.ndim == 2 else pixels[..., :3]
        picture = Image.fromarray(pixels.astype(np.uint8))
        if i < 8:
            picture.resize((40 + 4 * i, 36)).save(folder / "data" / f"{name}.png")
        else:
            picture.resize((48, 48)).save(folder / "test" / f"{name}.png")
    Image.fromarray(np.asarray(photos.astronaut())).resize((48, 40)).save(folder / "photo.jpg", quality=95)
    monkeypatch.chdir(folder)
    return folder


def test_the_api_page_runs_as_written(project, capsys):
    blocks = python_blocks()
    page = "\n".join(blocks)
    for text in SMALLER:
        assert text in page, f"docs/api.md no longer says {text!r}: update SMALLER"
    namespace: dict = {"__name__": "__api_doc__"}
    for block in blocks:
        for text, smaller in SMALLER.items():
            block = block.replace(text, smaller)
        exec(compile(block, str(API_DOC), "exec"), namespace)

    for made in (
        "photo_mask.png",
        "photo_telea.png",
        "photo_done.png",
        "runs/ddpm/config.json",
        "data/captions.json",
        "runs/lora/pytorch_lora_weights.safetensors",
        "results/report.md",
        "results/results.json",
    ):
        assert (project / made).is_file(), made
    image, mask = namespace["image"], namespace["mask"]
    done = inpaint.read_image(project / "photo_done.png")
    assert np.array_equal(done[~mask], image[~mask])
    assert "missing.png: no such file" in capsys.readouterr().out
