"""``inpaint caption`` -> ``inpaint train-lora`` -> ``inpaint complete --model sd --lora``, end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from inpaint import io

TINY = ["--resolution", "32", "--batch-size", "2", "--lr", "1e-2", "--device", "cpu", "--val-steps", "2", "--rank", "4"]


@pytest.fixture
def data(tmp_path, train_images):
    folder = tmp_path / "data"
    shutil.copytree(train_images, folder)
    return folder


def test_caption_train_complete(cli, tmp_path, data, tiny_blip_dir, tiny_sd_inpaint_dir, photo, center_mask):
    photo, center_mask = photo[::2, ::2], center_mask[::2, ::2]  # 32 x 32: fast
    result = cli("caption", data, "--model", tiny_blip_dir, "--batch-size", "4", "--device", "cpu", "--json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["captioned"] == 6 and summary["output"] == str(data / "captions.json")
    result = cli("caption", data, "--model", tiny_blip_dir, "--device", "cpu", "--json")  # nothing left to do
    assert json.loads(result.out)["captioned"] == 0 and json.loads(result.out)["already_done"] == 6

    run = tmp_path / "run"
    result = cli(
        "train-lora",
        data,
        "-o",
        run,
        "--base",
        tiny_sd_inpaint_dir,
        "--max-steps",
        "2",
        "--val-images",
        "2",
        "--json",
        *TINY,
    )
    assert result.code == 0, result
    assert "training with the captions in" in result.err  # found DATA/captions.json by itself
    summary = json.loads(result.out)
    assert (
        summary["step"] == 2
        and summary["validation"]
        and summary["artefacts"] == [str(run / "pytorch_lora_weights.safetensors")]
    )
    saved = json.loads((run / "training_config.json").read_text())["train"]
    assert saved["method"] == "lora" and saved["method_options"]["captions_sha256"]
    assert (run / "samples" / "step-00000002.png").is_file()

    image = io.save_image(photo, tmp_path / "photo.png")
    mask = io.save_mask(center_mask, tmp_path / "mask.png")
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"photo.png": "a lowest photo"}))
    outputs = {}
    for name, extra in (
        ("base", []),
        ("lora", ["--lora", run]),
        ("captioned", ["--lora", run, "--captions", captions]),
    ):
        out = tmp_path / f"{name}.png"
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
            "--steps",
            "2",
            "--device",
            "cpu",
            "--json",
            *extra,
        )
        assert result.code == 0, result
        assert json.loads(result.out)["method"] == "sd"
        outputs[name] = io.read_image(out)
        assert outputs[name].shape == photo.shape
        assert np.array_equal(outputs[name][~center_mask], photo[~center_mask])
    assert not np.array_equal(outputs["lora"], outputs["base"])
    assert not np.array_equal(outputs["captioned"], outputs["lora"])


def test_train_lora_without_captions_resumes_and_refuses_gaps(cli, tmp_path, data, tiny_sd_inpaint_dir):
    run = tmp_path / "run"
    args = [
        "train-lora",
        data,
        "-o",
        run,
        "--base",
        tiny_sd_inpaint_dir,
        "--val-images",
        "0",
        "--ema-decay",
        "0.9",
        "--json",
        *TINY,
    ]
    assert json.loads(cli(*args, "--max-steps", "1").out)["step"] == 1
    summary = json.loads(cli(*args, "--max-steps", "2").out)
    assert summary["resumed_from"] == 1 and summary["step"] == 2
    ema, raw = (load_file(run / sub / "pytorch_lora_weights.safetensors") for sub in (".", "raw"))
    assert raw.keys() == ema.keys() and any(not torch.equal(raw[k], ema[k]) for k in raw)  # EMA lags
    result = cli(*args, "--max-steps", "3", "--prompt", "another prompt")
    assert result.code == 2 and "cannot resume with different prompt" in result.err

    (data / "captions.json").write_text(json.dumps({"cat.png": "a cat"}))
    result = cli("train-lora", data, "-o", tmp_path / "r2", "--base", tiny_sd_inpaint_dir, "--max-steps", "1", *TINY)
    assert result.code == 2 and "no caption for 5 image(s)" in result.err and "inpaint caption" in result.err
    (data / "captions.json").write_text("[1, 2]")
    result = cli("train-lora", data, "-o", tmp_path / "r3", "--base", tiny_sd_inpaint_dir, "--max-steps", "1", *TINY)
    assert result.code == 2 and "captions must be a JSON object" in result.err


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--rank", "0"], "--rank 0: must be at least 1"),
        (["--caption-dropout", "1.5"], "--caption-dropout 1.5"),
        (["--base", "nobody/no-such-sd"], "nobody/no-such-sd"),
    ],
)
def test_bad_train_lora_options(cli, tmp_path, train_images, tiny_sd_inpaint_dir, extra, needle):
    result = cli(
        "train-lora",
        train_images,
        "-o",
        tmp_path / "run",
        "--base",
        tiny_sd_inpaint_dir,
        "--max-steps",
        "1",
        *TINY,
        *extra,
    )
    assert result.code == 2 and needle in result.err, result
    assert len(result.err.strip().splitlines()) == 1


def test_complete_refuses_a_lora_for_another_base(cli, tmp_path, pair, tiny_sd_inpaint_dir):
    from peft import LoraConfig

    from inpaint.models.lora_files import save_lora
    from inpaint.models.sd_weights import load_pipeline

    pipe = load_pipeline(tiny_sd_inpaint_dir)
    pipe.unet.add_adapter(LoraConfig(r=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    save_lora(pipe.unet, tmp_path / "lora", {})
    weights = load_file(tmp_path / "lora" / "pytorch_lora_weights.safetensors")
    # The same layers one size wider: what a LoRA trained on a larger base looks like.
    wider = {k: torch.zeros(v.shape[0], v.shape[1] + 16) if "lora.down" in k else v for k, v in weights.items()}
    save_file(wider, tmp_path / "wider.safetensors")
    image, mask = pair
    result = cli(
        "complete",
        image,
        mask,
        "-o",
        tmp_path / "o.png",
        "--model",
        "sd",
        "--weights",
        tiny_sd_inpaint_dir,
        "--lora",
        tmp_path / "wider.safetensors",
        "--steps",
        "1",
        "--device",
        "cpu",
    )
    assert result.code == 2 and "was it trained for another base?" in result.err, result
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "o.png").exists()
    result = cli(
        "complete",
        image,
        mask,
        "-o",
        tmp_path / "o.png",
        "--model",
        "sd",
        "--weights",
        tiny_sd_inpaint_dir,
        "--strength",
        "2",
        "--device",
        "cpu",
    )
    assert result.code == 2 and "--strength 2.0: must be in (0, 1]" in result.err
