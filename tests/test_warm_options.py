"""``Inpainter.with_options``: a loaded method run with other steps, samplers or prompts without a
reload (what keeps a server's models warm) gives what a fresh load with those options gives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from inpaint.errors import InputError
from inpaint.io import mask_to_tensor, to_tensor
from inpaint.models import load_inpainter
from inpaint.models.base import MethodOptions


@pytest.fixture(scope="module")
def batch(photo):
    masks = np.zeros((1, 64, 64), dtype=bool)
    masks[0, 16:40, 20:44] = True
    return to_tensor(photo[None]), mask_to_tensor(masks)


def _same_as_fresh(method: str, base: MethodOptions, changes: dict, batch) -> None:
    images, masks = batch
    loaded = load_inpainter(method, base)
    before = loaded(images, masks, [3])
    options = dataclasses.replace(base, **changes)
    twin = loaded.with_options(options)
    assert twin is not loaded and twin.options == options
    assert torch.equal(twin(images, masks, [3]), load_inpainter(method, options)(images, masks, [3]))
    # The loaded method is untouched by its twin's calls.
    assert loaded.options == base
    assert torch.equal(loaded(images, masks, [3]), before)
    assert loaded.with_options(base) is loaded


def test_ddpm_steps_and_sampler(tiny_unet7_dir, batch):
    base = MethodOptions(weights=str(tiny_unet7_dir), device="cpu", dtype="fp32", steps=2)
    _same_as_fresh("ddpm", base, {"steps": 3, "sampler": "ddim"}, batch)


def test_repaint_schedule(tiny_ddpm_dir, batch):
    base = MethodOptions(weights=str(tiny_ddpm_dir), device="cpu", dtype="fp32", sampler="fast", steps=4)
    _same_as_fresh("repaint", base, {"steps": 3, "jump_length": 1, "jump_n_sample": 2}, batch)


def test_sd_prompt_guidance_sampler(tiny_sd_inpaint_dir, batch):
    base = MethodOptions(weights=str(tiny_sd_inpaint_dir), device="cpu", dtype="fp32", steps=2)
    changes = {"prompt": "a red door", "guidance": 3.0, "sampler": "ddim", "steps": 3, "negative_prompt": "blur"}
    _same_as_fresh("sd", base, changes, batch)


def test_load_time_options_and_bad_values_are_refused(tiny_unet7_dir):
    base = MethodOptions(weights=str(tiny_unet7_dir), device="cpu", dtype="fp32", steps=2)
    loaded = load_inpainter("ddpm", base)
    with pytest.raises(ValueError, match="weights need a new load"):
        loaded.with_options(dataclasses.replace(base, weights="elsewhere"))
    with pytest.raises(InputError, match="--steps 0"):
        loaded.with_options(dataclasses.replace(base, steps=0))
    with pytest.raises(InputError, match="--steps 5000: the model was trained with"):
        loaded.with_options(dataclasses.replace(base, steps=5000))
    classical = load_inpainter("telea", MethodOptions())
    assert classical.with_options(MethodOptions()) is classical
    with pytest.raises(ValueError, match="steps need a new load"):
        classical.with_options(MethodOptions(steps=3))
