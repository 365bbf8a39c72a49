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
