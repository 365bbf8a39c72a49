"""Shared fixtures: offline by construction, tiny models saved to temporary directories."""

from __future__ import annotations

import os

# Tests never touch the network: hub ids must resolve from disk or fail at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tiny_models  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_warn_once():
    """Each test sees io's once-per-process warnings afresh."""
    from inpaint import io

    io._warned.clear()
    yield


@pytest.fixture(scope="session")
def tiny_ddpm_dir(tmp_path_factory) -> Path:
    """A tiny unconditional (3-channel) pixel DDPM in the flat hub layout."""
    return tiny_models.save_tiny_ddpm(tmp_path_factory.mktemp("tiny-ddpm"), layout="flat")


@pytest.fixture(scope="session")
def tiny_ddpm_pipeline_dir(tmp_path_factory) -> Path:
    """The same tiny DDPM in the pipeline layout (model_index.json, unet/, scheduler/)."""
    return tiny_models.save_tiny_ddpm(tmp_path_factory.mktemp("tiny-ddpm-pipe"), layout="pipeline")


@pytest.fixture(scope="session")
def tiny_unet7_dir(tmp_path_factory) -> Path:
    """A tiny 7-input-channel completion UNet (x_masked, mask, x_t) in the flat layout."""
    return tiny_models.save_tiny_ddpm(tmp_path_factory.mktemp("tiny-unet7"), layout="flat", in_channels=7)


@pytest.fixture(scope="session")
def tiny_sd_inpaint_dir(tmp_path_factory) -> Path:
    """A tiny Stable Diffusion inpainting pipeline (9-channel UNet, offline CLIP tokenizer)."""
    return tiny_models.save_tiny_sd_inpaint(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real 64x64 RGB photo (scikit-image's astronaut), uint8."""
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((64, 64), Image.BICUBIC))


@pytest.fixture
def center_mask() -> np.ndarray:
    """A 64x64 bool mask with a 24x24 hole in the centre (True = fill)."""
    mask = np.zeros((64, 64), dtype=bool)
    mask[20:44, 20:44] = True
    return mask


class CliResult:
    """Exit code and captured output of one in-process ``inpaint`` run."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return f"CliResult(code={self.code}, out={self.out[-500:]!r}, err={self.err[-1500:]!r})"


@pytest.fixture
def cli(capsys):
    """Run ``inpaint ARGS`` in this process: ``cli("complete", "a.png", ...) -> CliResult``."""
    from inpaint.cli.app import main

    def run(*args: object) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def pair(tmp_path, photo, center_mask):
    """An image file and its mask file on disk: (image_path, mask_path)."""
    from inpaint import io

    image = io.save_image(photo, tmp_path / "in" / "photo.png")
    mask = io.save_mask(center_mask, tmp_path / "in" / "photo_mask.png")
    return image, mask


@pytest.fixture(scope="session")
def train_images(tmp_path_factory) -> Path:
    """Six small real photos (scikit-image) in a folder, for training runs."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("train-images")
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera", "cat"):
        pixels = getattr(data, name)()
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        Image.fromarray(pixels).resize((40, 40), Image.BICUBIC).save(folder / f"{name}.png")
    return folder
