"""The ``ddpm`` and ``repaint`` methods behind the Inpainter interface (inpaint.models.ddpm)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from inpaint.errors import InputError
from inpaint.io import mask_to_tensor, to_tensor
from inpaint.models import best_available, get_method, load_inpainter
from inpaint.models.base import MethodOptions
from inpaint.models.ddpm import DDPMInpainter, RePaintInpainter, ddpm_unavailable, repaint_unavailable


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """No model is cached, whatever this machine's real Hugging Face cache holds."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.fixture(scope="module")
def batch(photo) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 64x64 photos (the second flipped) with different holes."""
    images = to_tensor(np.stack([photo, photo[:, ::-1]]))
    masks = np.zeros((2, 64, 64), dtype=bool)
    masks[0, 20:44, 20:44] = True
    masks[1, :, 40:] = True
    return images, mask_to_tensor(masks)


class RecordingProgress:
    def __init__(self) -> None:
        self.total: int | None = None
        self.advanced = 0

    def start(self, description: str, total: int | None) -> None:
        self.total = total

    def advance(self, n: int = 1, **info: object) -> None:
        self.advanced += n

    def finish(self) -> None:
        pass


def ddpm(weights, **kw) -> DDPMInpainter:
    return DDPMInpainter(MethodOptions(device="cpu", weights=str(weights), **kw))


def repaint(weights, **kw) -> RePaintInpainter:
    return RePaintInpainter(MethodOptions(device="cpu", weights=str(weights), **kw))


def assert_completed(out: torch.Tensor, images: torch.Tensor, masks: torch.Tensor) -> None:
    assert out.shape == images.shape and out.dtype == torch.float32
    known = (masks < 0.5).expand_as(images)
    assert torch.equal(out[known], images[known])  # pasted back at full resolution
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.allclose(out[~known], images[~known], atol=1e-3)


# ---- defaults and options ------------------------------------------------------------------


def test_defaults(tiny_unet7_dir, tiny_ddpm_dir):
    method = ddpm(tiny_unet7_dir)
    assert (method.sampler, method.steps, method.dtype) == ("ddpm", 25, torch.float32)
    assert ddpm(tiny_unet7_dir, sampler="ddpm").steps == 1000  # named: the study's setting
    assert ddpm(tiny_unet7_dir, sampler="dpmpp").steps == 25
    assert ddpm(tiny_unet7_dir, sampler="dpmpp-sde").steps == 25
    assert ddpm(tiny_unet7_dir, sampler="ddim").steps == 50
    method = repaint(tiny_ddpm_dir)
    assert (method.sampler, method.steps, method.jump_length, method.jump_n_sample) == (
        "repaint",
        250,
        10,
        10,
    )
    method = repaint(tiny_ddpm_dir, sampler="fast")
    assert (method.sampler, method.steps, method.jump_length, method.jump_n_sample) == ("fast", 50, 5, 5)


@pytest.mark.parametrize(
    "options,flag",
    [
        (dict(sampler="euler"), "--sampler 'euler': ddpm supports ddpm, ddim, dpmpp, dpmpp-sde"),
        (dict(steps=0), "--steps"),
        (dict(steps=1001), "--steps"),
        (dict(sampler="ddim", steps=600), "--steps 600: DDIM on 600 steps would start at t = 599 of 1000"),
        (dict(sampler="ddim", steps=400), "use 333 steps"),
        (dict(dtype="fp16"), "--dtype"),
    ],
)
def test_bad_options_name_the_flag(tiny_unet7_dir, options, flag):
    with pytest.raises(InputError, match=flag):
        ddpm(tiny_unet7_dir, **options)


def test_ddim_step_counts_whose_stride_covers_the_schedule_are_accepted():
    from inpaint.samplers import steps_problem

    for steps in (1, 2, 3, 7, 10, 25, 30, 50, 100, 250, 300, 333, 500, 1000):
        assert steps_problem("ddim", steps, 1000) is None, steps
        assert (1000 // steps) * steps >= 900
    for steps in (334, 400, 501, 600, 899):
        assert "use " in steps_problem("ddim", steps, 1000)
    assert steps_problem("ddpm", 600, 1000) is None and steps_problem("dpmpp", 600, 1000) is None


@pytest.mark.parametrize("options,flag", [(dict(sampler="ddim"), "--sampler"), (dict(jump_length=0), "--jump-length")])
def test_bad_repaint_options(tiny_ddpm_dir, options, flag):
    with pytest.raises(InputError, match=flag):
        repaint(tiny_ddpm_dir, **options)


def test_wrong_kind_of_weights(tiny_unet7_dir, tiny_ddpm_dir):
    with pytest.raises(InputError, match="--model repaint"):
        ddpm(tiny_ddpm_dir)
    with pytest.raises(InputError, match="--model ddpm"):
        repaint(tiny_unet7_dir)
    with pytest.raises(InputError, match="train-ddpm"):
        DDPMInpainter(MethodOptions(device="cpu"))


# ---- completing images ---------------------------------------------------------------------


@pytest.mark.parametrize("sampler,steps", [("dpmpp", 4), ("ddim", 4), ("ddpm", 6)])
def test_ddpm_resizes_to_native_size_and_back(tiny_unet7_dir, batch, sampler, steps):
    images, masks = batch
    method = ddpm(tiny_unet7_dir, sampler=sampler, steps=steps)
    progress = RecordingProgress()
    out = method(images, masks, seeds=[0, 1], progress=progress)
    assert_completed(out, images, masks)
    assert method.last_nfe == steps == progress.total == progress.advanced


def test_native_size_input(tiny_unet7_dir, batch):
    images = torch.nn.functional.interpolate(batch[0], size=(32, 32), mode="area")
    masks = batch[1][:, :, ::2, ::2].contiguous()
    out = ddpm(tiny_unet7_dir, sampler="ddim", steps=3)(images, masks, seeds=[0, 1])
    assert_completed(out, images, masks)


def test_batch_equals_single_images_and_seeds_repeat(tiny_unet7_dir, batch):
    images, masks = batch
    method = ddpm(tiny_unet7_dir, sampler="ddpm", steps=5)
    together = method(images, masks, seeds=[3, 4])
    assert torch.allclose(together[1:], method(images[1:], masks[1:], seeds=[4]), atol=1e-4, rtol=0)
    assert torch.equal(together, method(images, masks, seeds=[3, 4]))
    assert not torch.equal(together[0], method(images[:1], masks[:1], seeds=[5])[0])


def test_repaint_completes_with_a_small_schedule(tiny_ddpm_dir, tiny_ddpm_pipeline_dir, batch):
    images, masks = batch
    method = repaint(tiny_ddpm_dir, steps=10, jump_length=3, jump_n_sample=2)
    out = method(images, masks, seeds=[0, 1])
    assert_completed(out, images, masks)
    assert method.last_nfe == 10 + 3 * 1 * 3  # jump points 0, 3 and 6, one extra pass of 3 steps each
    same = repaint(tiny_ddpm_pipeline_dir, steps=10, jump_length=3, jump_n_sample=2)(images, masks, seeds=[0, 1])
    assert torch.equal(out, same)  # both layouts hold the same model


def test_repaint_fast(tiny_ddpm_dir, batch):
    images, masks = batch
    method = repaint(tiny_ddpm_dir, sampler="fast", steps=10, jump_length=2)
    out = method(images, masks, seeds=[0, 1])
    assert_completed(out, images, masks)
    # jump points 0, 2, 4, 6 (the paper's schedule), 4 extra passes of 2 steps each
    assert method.last_nfe == 10 + 4 * 4 * 2


@pytest.mark.parametrize("method", ["ddpm", "repaint"])
def test_results_are_antialiased_when_shrunk_back_to_a_smaller_input(request, monkeypatch, method):
    """The native-size sample goes back to a smaller input through a low-pass (no moire); to a
    larger one through plain bicubic, as before."""
    from inpaint.samplers import SampleResult

    weights = request.getfixturevalue("tiny_unet7_dir" if method == "ddpm" else "tiny_ddpm_dir")
    inpainter = (ddpm if method == "ddpm" else repaint)(weights, steps=2)
    # A sampler whose result is a one-pixel checkerboard at the native 32x32, in [-1, 1].
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1
    sample = checker.expand(1, 3, 32, 32)
    monkeypatch.setattr(inpainter, "_sample", lambda x0, masks, generators, progress: SampleResult(sample, 2))
    small = inpainter(torch.zeros(1, 3, 20, 20), torch.ones(1, 1, 20, 20), seeds=[0])
    # Aliased (plain bicubic), 32 -> 20 turns the checkerboard into a beat of std 0.23.
    assert small.shape == (1, 3, 20, 20) and float(small.std()) < 0.02
    large = inpainter(torch.zeros(1, 3, 48, 48), torch.ones(1, 1, 48, 48), seeds=[0])
    plain = torch.nn.functional.interpolate((sample + 1) / 2, size=(48, 48), mode="bicubic", align_corners=False)
    assert torch.equal(large, plain.clamp(0, 1))


def test_full_mask_is_plain_generation(tiny_unet7_dir, batch):
    images = batch[0][:1]
    out = ddpm(tiny_unet7_dir, sampler="ddim", steps=2)(images, torch.ones(1, 1, 64, 64), seeds=[0])
    assert out.shape == images.shape and not torch.allclose(out, images, atol=1e-2)


# ---- the registry --------------------------------------------------------------------------


def test_ddpm_availability(tiny_unet7_dir, tiny_ddpm_dir, tmp_path, empty_hub_cache):
    assert "train-ddpm" in ddpm_unavailable(MethodOptions())
    assert ddpm_unavailable(MethodOptions(weights=str(tiny_unet7_dir))) is None
    assert "--model repaint" in ddpm_unavailable(MethodOptions(weights=str(tiny_ddpm_dir)))
    assert "no such directory" in ddpm_unavailable(MethodOptions(weights=str(tmp_path / "runs" / "ddpm")))
    assert "offline" in ddpm_unavailable(MethodOptions(weights="runs/ddpm"))
    with pytest.raises(InputError, match="train-ddpm"):
        load_inpainter("ddpm", MethodOptions(device="cpu"))
    method = load_inpainter("ddpm", MethodOptions(device="cpu", weights=str(tiny_unet7_dir)))
    assert isinstance(method, DDPMInpainter)


def test_repaint_availability(tiny_ddpm_dir, tiny_unet7_dir, empty_hub_cache):
    reason = repaint_unavailable(MethodOptions())
    assert "google/ddpm-celebahq-256" in reason and "`inpaint download ddpm`" in reason
    assert repaint_unavailable(MethodOptions(weights=str(tiny_ddpm_dir))) is None
    assert "--model ddpm" in repaint_unavailable(MethodOptions(weights=str(tiny_unet7_dir)))
    assert get_method("repaint").priority == 20 and get_method("ddpm").priority == 30
    # Offline with nothing cached and no weights, auto-selection falls back to a classical method.
    assert best_available(MethodOptions()).name not in ("ddpm", "repaint")
    assert best_available(MethodOptions(weights=str(tiny_unet7_dir))).name == "ddpm"


def test_availability_checks_import_nothing_heavy(tiny_unet7_dir):
    code = (
        "import sys; from inpaint.models import get_method; from inpaint.models.base import MethodOptions\n"
        f"assert get_method('ddpm').unavailable(MethodOptions(weights={str(tiny_unet7_dir)!r})) is None\n"
        "assert get_method('ddpm').unavailable(MethodOptions()) is not None\n"
        "get_method('repaint').unavailable(MethodOptions())\n"
        "heavy = [m for m in ('torch', 'diffusers') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
