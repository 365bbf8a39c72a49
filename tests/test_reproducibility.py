"""Reproducible results: one generator per image, seeded from (seed, image name).

- the same ``inpaint complete`` command twice gives byte-identical PNGs on the CPU, whatever the
  global random state in between (diffusion methods: ddpm and sd);
- a folder run equals single-file runs of the same images, whatever else is in the folder and in
  what order, because an image's seed depends on its name only;
- at the Inpainter level a batch equals single-image runs within 1e-4 (ddpm, repaint, sd), in any
  order within the batch.

Tiny random models at 32 px keep this fast; they exercise the same code paths as real weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inpaint import io, models
from inpaint.models.base import MethodOptions

SIZE = 32


def _images(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.RandomState(seed)
    base = np.asarray(np.linspace(0, 255, SIZE * SIZE * 3).reshape(SIZE, SIZE, 3), dtype=np.uint8)
    return [np.clip(base.astype(int) + rng.randint(-40, 40, base.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def _masks(count: int) -> list[np.ndarray]:
    masks = []
    for i in range(count):
        mask = np.zeros((SIZE, SIZE), dtype=bool)
        mask[4 + 2 * i : 16 + 2 * i, 6 + 3 * i : 20 + i] = True
        masks.append(mask)
    return masks


def _method_args(name: str, tiny_unet7_dir, tiny_sd_inpaint_dir) -> list[str]:
    if name == "ddpm":  # ancestral sampling: fresh noise at every step, from the image's generator
        return ["--model", "ddpm", "--weights", tiny_unet7_dir, "--steps", "4"]
    return ["--model", "sd", "--weights", tiny_sd_inpaint_dir, "--steps", "2", "--sampler", "euler-a"]


@pytest.mark.parametrize("method", ["ddpm", "sd"])
def test_the_same_command_twice_gives_identical_pngs(cli, tmp_path, method, tiny_unet7_dir, tiny_sd_inpaint_dir):
    image = io.save_image(_images(1)[0], tmp_path / "photo.png")
    mask = io.save_mask(_masks(1)[0], tmp_path / "mask.png")
    args = _method_args(method, tiny_unet7_dir, tiny_sd_inpaint_dir)
    torch.manual_seed(1)
    assert cli("complete", image, mask, "-o", tmp_path / "a.png", *args, "--seed", "3", "--device", "cpu").code == 0
    torch.manual_seed(999)  # the global random state must not matter
    torch.rand(1000)
    np.random.seed(5)
    assert cli("complete", image, mask, "-o", tmp_path / "b.png", *args, "--seed", "3", "--device", "cpu").code == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    # ... while the seed does: another seed, another fill.
    assert cli("complete", image, mask, "-o", tmp_path / "c.png", *args, "--seed", "4", "--device", "cpu").code == 0
    assert (tmp_path / "c.png").read_bytes() != (tmp_path / "a.png").read_bytes()


@pytest.mark.parametrize("method", ["ddpm", "sd"])
def test_a_folder_run_equals_single_file_runs_whatever_else_is_in_it(
    cli, tmp_path, method, tiny_unet7_dir, tiny_sd_inpaint_dir
):
    images, masks = _images(4), _masks(4)
    names = ["b", "d", "a", "c"]
    args = [*_method_args(method, tiny_unet7_dir, tiny_sd_inpaint_dir), "--seed", "11", "--device", "cpu"]
    # Folder 1 holds b, d, a; folder 2 holds a, c, b: other companions, another processing order.
    for folder, chosen in (("one", ["b", "d", "a"]), ("two", ["a", "c", "b"])):
        for name in chosen:
            i = names.index(name)
            io.save_image(images[i], tmp_path / folder / "images" / f"{name}.png")
            io.save_mask(masks[i], tmp_path / folder / "masks" / f"{name}.png")
        result = cli(
            "complete",
            tmp_path / folder / "images",
            tmp_path / folder / "masks",
            "-o",
            tmp_path / folder / "out",
            *args,
        )
        assert result.code == 0, result
    for name in ("a", "b"):
        single = tmp_path / f"single-{name}.png"
        one = tmp_path / "one"
        result = cli("complete", one / "images" / f"{name}.png", one / "masks" / f"{name}.png", "-o", single, *args)
        assert result.code == 0, result
        assert (tmp_path / "one" / "out" / f"{name}.png").read_bytes() == single.read_bytes()
        assert (tmp_path / "two" / "out" / f"{name}.png").read_bytes() == single.read_bytes()


@pytest.fixture(scope="module")
def inpainters(tiny_unet7_dir, tiny_ddpm_dir, tiny_sd_inpaint_dir):
    return {
        "ddpm": models.load_inpainter("ddpm", MethodOptions(weights=str(tiny_unet7_dir), steps=5, device="cpu")),
        "repaint": models.load_inpainter(
            "repaint", MethodOptions(weights=str(tiny_ddpm_dir), steps=8, jump_length=3, jump_n_sample=2, device="cpu")
        ),
        "sd": models.load_inpainter(
            "sd", MethodOptions(weights=str(tiny_sd_inpaint_dir), steps=2, sampler="euler-a", device="cpu")
        ),
    }


@pytest.mark.parametrize("method", ["ddpm", "repaint", "sd"])
def test_a_batch_equals_single_image_runs_within_1e_4(inpainters, method):
    inpainter = inpainters[method]
    images, masks = io.to_tensor(_images(3, seed=1)), io.mask_to_tensor(_masks(3))
    seeds = [101, 202, 303]
    names = ["x", "y", "z"]
    batch = inpainter(images, masks, seeds, names=names)
    singles = torch.cat(
        [inpainter(images[i : i + 1], masks[i : i + 1], seeds[i : i + 1], names=names[i : i + 1]) for i in range(3)]
    )
    assert float((batch - singles).abs().max()) <= 1e-4
    order = [2, 0, 1]  # the same images in another order: each keeps its own result
    shuffled = inpainter(images[order], masks[order], [seeds[i] for i in order], names=[names[i] for i in order])
    assert float((shuffled - batch[order]).abs().max()) <= 1e-4
    assert not torch.allclose(batch[0], inpainter(images[:1], masks[:1], [7], names=names[:1])[0], atol=1e-3)
