"""A training run's folder holds the weights to use at its root — the EMA when the run kept one —
and the raw weights in raw/; complete, bench and the Python API load the EMA by default."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from inpaint import io
from inpaint.config import TrainConfig
from inpaint.testing import tiny_train_config
from inpaint.training import checkpoint as ckpt
from inpaint.training.loop import train


def _ddpm_config(train_images, base, output, **overrides) -> TrainConfig:
    return tiny_train_config(
        "ddpm",
        train_images,
        output,
        base,
        **{"lr": 1e-3, "max_steps": 2, "save_every": 1, "ema_decay": 0.9, **overrides},
    )


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory, train_images, tiny_ddpm_dir):
    """A 2-step run with EMA, interrupted after step 1 with an earlier version's ema/ in its folder."""
    from inpaint.training.ddpm_task import DDPMOptions, DDPMTask

    run = tmp_path_factory.mktemp("ddpm-ema") / "run"
    task = lambda: DDPMTask(str(tiny_ddpm_dir), DDPMOptions(val_steps=2))  # noqa: E731
    assert train(task(), _ddpm_config(train_images, tiny_ddpm_dir, run), stop_after=1).stopped_early
    (run / "ema").mkdir()
    (run / "ema" / "config.json").write_text("{}")  # what an export of the earlier layout left
    result = train(task(), _ddpm_config(train_images, tiny_ddpm_dir, run))
    assert result.step == 2 and result.artefacts == [run, run / "raw"]
    return run


def _checkpoint(run, step: int = 2) -> dict[str, dict[str, torch.Tensor]]:
    folder = run / "checkpoints" / ckpt.checkpoint_name(step)
    return {name: load_file(folder / f"{name}.safetensors") for name in ("model", "ema")}


def test_the_root_holds_the_ema_weights_and_raw_the_raw_ones(ddpm_run):
    from diffusers import UNet2DModel

    saved = _checkpoint(ddpm_run)
    root = UNet2DModel.from_pretrained(ddpm_run)  # stock diffusers: the weights to use
    raw = UNet2DModel.from_pretrained(ddpm_run / "raw")
    names = [name for name, _ in root.named_parameters()]
    assert len(names) == len(saved["ema"])  # the EMA tracks every parameter, in this order
    for i, name in enumerate(names):
        assert torch.equal(root.state_dict()[name], saved["ema"][f"shadow.{i}"]), name
    for name, tensor in raw.state_dict().items():
        assert torch.equal(tensor, saved["model"][name]), name
    assert not torch.equal(root.conv_in.weight, raw.conv_in.weight)
    markers = [
        json.loads((folder / "inpaint_config.json").read_text())["weights"] for folder in (ddpm_run, ddpm_run / "raw")
    ]
    assert markers == ["ema", "raw"]
    assert (ddpm_run / "raw" / "scheduler_config.json").is_file()  # a complete model folder on its own
    assert not (ddpm_run / "ema").exists()  # the earlier layout's folder went with the new export


def test_loading_picks_ema_by_default_and_raw_on_request(ddpm_run, tmp_path):
    from diffusers import UNet2DModel

    from inpaint.models import load_inpainter
    from inpaint.models.base import MethodOptions
    from inpaint.models.pixel_unet import load_completion_unet

    ema = UNet2DModel.from_pretrained(ddpm_run).conv_in.weight
    raw = UNet2DModel.from_pretrained(ddpm_run / "raw").conv_in.weight
    assert torch.equal(load_completion_unet(ddpm_run)[0].conv_in.weight, ema)
    assert torch.equal(load_completion_unet(ddpm_run, use_ema=False)[0].conv_in.weight, raw)
    assert torch.equal(load_completion_unet(ddpm_run / "raw")[0].conv_in.weight, raw)  # no EMA there: ignored
    inpainter = load_inpainter("ddpm", MethodOptions(weights=str(ddpm_run), device="cpu"))
    assert torch.equal(inpainter.unet.conv_in.weight, ema)
    inpainter = load_inpainter("ddpm", MethodOptions(weights=str(ddpm_run), device="cpu", ema=False))
    assert torch.equal(inpainter.unet.conv_in.weight, raw)

    # The earlier layout: raw weights at an unmarked root, the EMA in ema/. EMA by default still.
    old = tmp_path / "old"
    shutil.copytree(ddpm_run / "raw", old)
    shutil.copytree(
        ddpm_run, old / "ema", ignore=shutil.ignore_patterns("raw", "checkpoints", "samples", "*.png", "*.jsonl")
    )
    for folder in (old, old / "ema"):
        config = json.loads((folder / "inpaint_config.json").read_text())
        del config["weights"]
        (folder / "inpaint_config.json").write_text(json.dumps(config))
    assert torch.equal(load_completion_unet(old)[0].conv_in.weight, ema)
    assert torch.equal(load_completion_unet(old, use_ema=False)[0].conv_in.weight, raw)
    assert torch.equal(load_inpainter("ddpm", MethodOptions(weights=str(old), device="cpu")).unet.conv_in.weight, ema)


def test_complete_uses_the_ema_weights_and_no_ema_the_raw_ones(cli, ddpm_run, tmp_path, photo, center_mask):
    image = io.save_image(photo, tmp_path / "photo.png")
    mask = io.save_mask(center_mask, tmp_path / "mask.png")
    ema_only = tmp_path / "ema-only"  # the root's model files alone: a folder with one set of weights
    ema_only.mkdir()
    for name in ("config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"):
        shutil.copy(ddpm_run / name, ema_only / name)

    def complete(weights, *extra) -> np.ndarray:
        out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}.png"
        result = cli(
            "complete",
            image,
            mask,
            "-o",
            out,
            "--model",
            "ddpm",
            "--weights",
            weights,
            "--steps",
            "3",
            "--device",
            "cpu",
            *extra,
        )
        assert result.code == 0, result
        return io.read_image(out)

    ema, raw = complete(ddpm_run), complete(ddpm_run, "--no-ema")
    assert not np.array_equal(ema, raw)
    assert np.array_equal(ema, complete(ema_only))
    assert np.array_equal(raw, complete(ddpm_run / "raw"))
    assert np.array_equal(ema, complete(ema_only, "--no-ema"))  # no EMA to choose from: its only weights
    result = cli("complete", image, mask, "-o", tmp_path / "t.png", "--model", "telea", "--no-ema")
    assert result.code == 0 and "telea does not use --no-ema: ignored" in result.err


def test_bench_takes_ema_as_a_model_option(ddpm_run, tmp_path):
    from inpaint.bench.config import BenchConfig, parse_method_settings
    from inpaint.bench.runner import run_settings

    assert parse_method_settings([], ["ddpm.ema=false"], ["ddpm"]) == {"ddpm": {"ema": False}}

    # run.json names the weights read inside the run folder: outputs of the EMA and of the raw
    # weights (or of a folder laid out by an earlier version) are never taken for one another.
    def used(**options):
        config = BenchConfig(
            models=["ddpm"],
            data=tmp_path,
            masks="lama-thick",
            output=tmp_path / "out",
            method_options={"ddpm": {"weights": str(ddpm_run), **options}},
        )
        return run_settings(config, "ddpm")["weights_used"]

    assert used() == {"weights": "."} and used(ema=False) == {"weights": "raw"}


# ---- LoRA ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, train_images, tiny_sd_inpaint_dir):
    from inpaint.training.lora_task import LoRAOptions, LoRATask

    run = tmp_path_factory.mktemp("lora-ema") / "run"
    config = TrainConfig(
        method="lora",
        data=str(train_images),
        output=str(run),
        base=str(tiny_sd_inpaint_dir),
        resolution=32,
        batch_size=2,
        lr=1e-2,
        max_steps=2,
        save_every=100,
        val_images=0,
        ema_decay=0.9,
        device="cpu",
    )
    result = train(LoRATask(str(tiny_sd_inpaint_dir), LoRAOptions(rank=4, val_steps=2)), config)
    assert result.artefacts == [
        run / "pytorch_lora_weights.safetensors",
        run / "raw" / "pytorch_lora_weights.safetensors",
    ]
    return run


def _values(tensors) -> list[bytes]:
    return sorted(t.float().contiguous().numpy().tobytes() for t in tensors)


def test_lora_root_holds_the_ema_lora_and_raw_the_raw_one(lora_run):
    saved = _checkpoint(lora_run)
    root = load_file(lora_run / "pytorch_lora_weights.safetensors")
    raw = load_file(lora_run / "raw" / "pytorch_lora_weights.safetensors")
    assert root.keys() == raw.keys()
    # Names differ between peft's parameters and diffusers' file format; the values do not.
    assert _values(root.values()) == _values(saved["ema"].values())
    assert _values(raw.values()) == _values(saved["model"].values())
    assert _values(root.values()) != _values(raw.values())
    for path, marker in (
        (lora_run / "pytorch_lora_weights.safetensors", "ema"),
        (lora_run / "raw" / "pytorch_lora_weights.safetensors", "raw"),
    ):
        with safe_open(str(path), framework="pt") as f:
            assert f.metadata()["inpaint_weights"] == marker


def test_lora_loading_in_stock_diffusers_and_ours(lora_run, tiny_sd_inpaint_dir, tmp_path):
    from diffusers import StableDiffusionInpaintPipeline

    from inpaint.models.lora_files import lora_file

    root, raw = lora_run / "pytorch_lora_weights.safetensors", lora_run / "raw" / "pytorch_lora_weights.safetensors"
    assert lora_file(lora_run) == root and lora_file(lora_run, use_ema=False) == raw
    assert lora_file(raw, use_ema=True) == raw  # a file is its own weights

    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1

    def run(lora, **kwargs) -> torch.Tensor:
        pipe = StableDiffusionInpaintPipeline.from_pretrained(tiny_sd_inpaint_dir, safety_checker=None)
        pipe.set_progress_bar_config(disable=True)
        pipe.load_lora_weights(str(lora), **kwargs)
        return pipe(
            prompt=["a photo"],
            image=image,
            mask_image=mask,
            height=32,
            width=32,
            num_inference_steps=2,
            generator=[torch.Generator().manual_seed(1)],
            output_type="pt",
        ).images

    stock = run(lora_run)  # stock diffusers reads the root: the EMA LoRA
    assert torch.equal(stock, run(lora_run, weight_name="pytorch_lora_weights.safetensors"))
    assert not torch.allclose(stock, run(lora_run / "raw"), atol=1e-5)

    # The earlier layout: the raw LoRA at the root without inpaint_weights, the EMA in ema/.
    old = tmp_path / "old"
    (old / "ema").mkdir(parents=True)
    for source, target in (
        (raw, old / "pytorch_lora_weights.safetensors"),
        (root, old / "ema" / "pytorch_lora_weights.safetensors"),
    ):
        with safe_open(str(source), framework="pt") as f:
            metadata = {k: v for k, v in f.metadata().items() if k != "inpaint_weights"}
        save_file(load_file(source), target, metadata=metadata)
    assert lora_file(old) == old / "ema" / "pytorch_lora_weights.safetensors"
    assert lora_file(old, use_ema=False) == old / "pytorch_lora_weights.safetensors"


def test_complete_sd_lora_ema_and_no_ema(cli, lora_run, tiny_sd_inpaint_dir, tmp_path, photo, center_mask):
    image = io.save_image(photo[::2, ::2], tmp_path / "photo.png")
    mask = io.save_mask(center_mask[::2, ::2], tmp_path / "mask.png")

    def complete(lora, *extra) -> np.ndarray:
        out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}.png"
        result = cli(
            "complete",
            image,
            mask,
            "-o",
            out,
            "--model",
            "sd",
            "--weights",
            tiny_sd_inpaint_dir,
            "--lora",
            lora,
            "--steps",
            "2",
            "--device",
            "cpu",
            "--prompt",
            "a photo",
            *extra,
        )
        assert result.code == 0, result
        return io.read_image(out)

    ema, raw = complete(lora_run), complete(lora_run, "--no-ema")
    assert not np.array_equal(ema, raw)
    assert np.array_equal(ema, complete(lora_run / "pytorch_lora_weights.safetensors"))
    assert np.array_equal(raw, complete(lora_run / "raw"))
