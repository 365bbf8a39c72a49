"""Shared fixtures: offline by construction, tiny models saved to temporary directories."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Tests never touch the network: hub ids must resolve from disk or fail at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Weights converted from .bin go to a cache of the test run, never the user's ~/.cache/inpaint.
os.environ["INPAINT_CACHE"] = tempfile.mkdtemp(prefix="inpaint-test-cache-")
atexit.register(shutil.rmtree, os.environ["INPAINT_CACHE"], True)

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from inpaint import testing  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_warn_once():
    """Each test sees io's once-per-process warnings afresh."""
    from inpaint import io

    io._warned.clear()
    yield


@pytest.fixture(autouse=True, scope="session")
def _same_cpu_everywhere():
    """Precision choices as on a CPU with oneDNN's bf16 kernels, no native bf16 and no fp16 ones,
    whatever machine runs the tests: ``--dtype auto`` and ``--mixed-precision auto`` stay fp32
    (they pick bf16 on CPUs with native bf16), ``--dtype bf16`` runs, fp16 is refused. Tests of
    the other cases patch these probes themselves. Session-scoped, so that module- and
    session-scoped fixtures (a training run several tests read) see the same CPU as the tests."""
    from inpaint import devices

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(devices, "cpu_capabilities", lambda: {})  # so no native bf16
        patch.setattr(devices, "cpu_half_kernels", lambda dtype: str(dtype) == "torch.bfloat16")  # torch unimported
        yield


@pytest.fixture(autouse=True)
def _announce_afresh(monkeypatch):
    """Each test sees the once-per-process notes (``--dtype auto: bf16 ...``) as a new process would."""
    from inpaint import devices

    monkeypatch.setattr(devices, "_announced", set())


@pytest.fixture(scope="session")
def tiny_ddpm_dir(tmp_path_factory) -> Path:
    """A tiny unconditional (3-channel) pixel DDPM in the flat hub layout."""
    return testing.save_tiny_ddpm(tmp_path_factory.mktemp("tiny-ddpm"), layout="flat")


@pytest.fixture(scope="session")
def tiny_ddpm_pipeline_dir(tmp_path_factory) -> Path:
    """The same tiny DDPM in the pipeline layout (model_index.json, unet/, scheduler/)."""
    return testing.save_tiny_ddpm(tmp_path_factory.mktemp("tiny-ddpm-pipe"), layout="pipeline")


@pytest.fixture(scope="session")
def tiny_unet7_dir(tmp_path_factory) -> Path:
    """A tiny 7-input-channel completion UNet (x_masked, mask, x_t) in the flat layout."""
    return testing.save_tiny_ddpm(tmp_path_factory.mktemp("tiny-unet7"), layout="flat", in_channels=7)


@pytest.fixture(scope="session")
def tiny_sd_inpaint_dir(tmp_path_factory) -> Path:
    """A tiny Stable Diffusion inpainting pipeline (9-channel UNet, offline CLIP tokenizer)."""
    return testing.save_tiny_sd_inpaint(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_sdxl_inpaint_dir(tmp_path_factory) -> Path:
    """A tiny SDXL inpainting pipeline (two text encoders, size/crop conditioning)."""
    return testing.save_tiny_sdxl_inpaint(tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture(scope="session")
def tiny_flux_fill_dir(tmp_path_factory) -> Path:
    """A tiny FLUX.1 Fill pipeline (a transformer over packed latents, CLIP + T5, flow matching)."""
    return testing.save_tiny_flux_fill(tmp_path_factory.mktemp("tiny-flux"))


@pytest.fixture(scope="session")
def tiny_kandinsky_inpaint_dir(tmp_path_factory) -> Path:
    """A tiny Kandinsky 2.2 combined inpainting pipeline (a prior over CLIP embeddings, a 9-channel UNet decoder)."""
    return testing.save_tiny_kandinsky_inpaint(tmp_path_factory.mktemp("tiny-kandinsky"))


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


# ---- metric backbones with random weights, saved like the real files (bench, doctor) -----------


@pytest.fixture(scope="session")
def random_lpips_alex_file(tmp_path_factory) -> Path:
    """torchvision AlexNet ``features`` with random weights (seed 0), saved under the real file name.

    LPIPS reads only ``features.*``; leaving out the 230 MB classifier keeps the file at ~10 MB.
    """
    import torch
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).features.state_dict()
    path = tmp_path_factory.mktemp("lpips-weights") / "alexnet-owt-7be5be79.pth"
    torch.save({f"features.{k}": v for k, v in state.items()}, path)
    return path


@pytest.fixture(scope="session")
def random_fid_inception_file(tmp_path_factory) -> Path:
    """pytorch-fid's Inception with random He-normal convolutions, saved under the real file name.

    With PyTorch's default init the activations shrink ~1e-8 over Inception's depth and every
    feature would be ~0; He init keeps them informative.
    """
    import torch

    from inpaint.metrics.features import inception_backbone

    torch.manual_seed(0)
    net = inception_backbone()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("fid-weights") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def no_metric_weights(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache and no weight environment variables: LPIPS and FID weights are missing."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("INPAINT_LPIPS_WEIGHTS", raising=False)
    monkeypatch.delenv("INPAINT_FID_WEIGHTS", raising=False)
    return home


# ---- Stable Diffusion + LoRA, captions ---------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory) -> Path:
    """A tiny BLIP captioning model with its processor (offline BERT vocabulary)."""
    return testing.save_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))
