"""``inpaint train-ddpm`` end to end on a tiny model, then ``complete --model ddpm`` with the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import load_file

from inpaint import io

TINY = ["--resolution", "32", "--lr", "1e-3", "--device", "cpu", "--val-steps", "2"]


def test_train_then_complete_with_the_trained_model(
    cli, tmp_path, train_images, tiny_ddpm_pipeline_dir, photo, center_mask
):
    run = tmp_path / "run"
    result = cli(
        "train-ddpm",
        train_images,
        "-o",
        run,
        "--base",
        tiny_ddpm_pipeline_dir,
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--val-images",
        "2",
        "--json",
        *TINY,
    )
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["step"] == 2 and summary["total_steps"] == 2 and summary["validation"]
    assert (run / "config.json").is_file() and (run / "raw" / "config.json").is_file()  # EMA at the root, raw

    image = io.save_image(photo, tmp_path / "photo.png")
    mask = io.save_mask(center_mask, tmp_path / "mask.png")
    out = tmp_path / "done.png"
    result = cli("complete", image, mask, "-o", out, "--weights", run, "--steps", "3", "--json")
    assert result.code == 0, result
    assert json.loads(result.out)["method"] == "ddpm"  # the best method once its weights are given
    done = io.read_image(out)
    assert done.shape == photo.shape and np.array_equal(done[~center_mask], photo[~center_mask])


def test_rerun_continues_and_extends(cli, tmp_path, train_images, tiny_ddpm_dir):
    run = tmp_path / "run"
    args = [
        "train-ddpm",
        train_images,
        "-o",
        run,
        "--base",
        tiny_ddpm_dir,
        "--batch-size",
        "2",
        "--val-images",
        "0",
        "--json",
        *TINY,
    ]
    assert json.loads(cli(*args, "--max-steps", "1").out)["step"] == 1
    summary = json.loads(cli(*args, "--max-steps", "2").out)
    assert summary["resumed_from"] == 1 and summary["step"] == 2
    result = cli(*args, "--max-steps", "3", "--no-resume")
    assert result.code == 2 and "already holds checkpoints" in result.err


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
        (["--resolution", "30"], "--resolution 30: must be a multiple of 8"),
        (["--masks", "lama-huge"], "unknown mask preset 'lama-huge'"),
        (["--batch-size", "7"], "6 training images cannot fill one batch of 7"),
        (["--mixed-precision", "fp16"], "not available on the CPU"),
    ],
)
def test_bad_training_options(cli, tmp_path, train_images, tiny_ddpm_dir, extra, needle):
    result = cli(
        "train-ddpm", train_images, "-o", tmp_path / "run", "--base", tiny_ddpm_dir, "--max-steps", "1", *TINY, *extra
    )
    assert result.code == 2 and needle in result.err, result
    assert len(result.err.strip().splitlines()) == 1


def test_a_seven_channel_base_is_fine_tuned_further_and_a_missing_base_is_one_line(
    cli, tmp_path, train_images, tiny_unet7_dir
):
    result = cli(
        "train-ddpm",
        train_images,
        "-o",
        tmp_path / "run",
        "--base",
        tiny_unet7_dir,
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--val-images",
        "0",
        *TINY,
    )
    assert result.code == 0, result
    result = cli(
        "train-ddpm",
        train_images,
        "-o",
        tmp_path / "r2",
        "--base",
        "nobody/no-such-model",
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        *TINY,
    )
    assert result.code == 2 and "nobody/no-such-model" in result.err and "Traceback" not in result.err


def test_two_processes_equal_one_process(tmp_path, train_images, tiny_ddpm_dir):
    """Under a 2-process launch (gloo on the CPU) each process takes half of every batch; the
    result equals one process with the whole batch (up to float summation order)."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    # fp32 whatever this CPU is (auto picks bf16 autocast on one with native bf16, whose rounding
    # differs between the two batch splits far more than the summation order does).
    common = [
        "train-ddpm",
        str(train_images),
        "--base",
        str(tiny_ddpm_dir),
        "--max-steps",
        "2",
        "--val-images",
        "0",
        "--ema-decay",
        "0",
        "--mixed-precision",
        "no",
        *TINY,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "inpaint",
            *common,
            "-o",
            str(tmp_path / "two"),
            "--batch-size",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert len([line for line in two.stdout.splitlines() if line.startswith("{")]) == 1  # only rank 0 reports
    one = subprocess.run(
        [sys.executable, "-m", "inpaint", *common, "-o", str(tmp_path / "one"), "--batch-size", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    a = load_file(tmp_path / "one" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "two" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


@pytest.mark.parametrize("method", ["ddpm", "lora"])
def test_the_train_commands_default_to_the_librarys_run(method):
    """Each option of train-METHOD defaults to what TrainConfig(method=...) and the task's options hold."""
    import dataclasses
    import inspect

    from inpaint.cli.train_ddpm import train_ddpm
    from inpaint.cli.train_lora import train_lora
    from inpaint.config import METHOD_DEFAULTS, TrainConfig
    from inpaint.training.ddpm_task import DDPMOptions
    from inpaint.training.lora_task import LoRAOptions

    command, task_options = {"ddpm": (train_ddpm, DDPMOptions()), "lora": (train_lora, LoRAOptions())}[method]
    defaults = {name: p.default for name, p in inspect.signature(command).parameters.items()}
    library = TrainConfig(method=method, data="d", output=str(METHOD_DEFAULTS[method].run))
    shared = [
        f.name
        for f in dataclasses.fields(TrainConfig)
        if f.name in defaults and f.name not in ("data", "output", "base", "masks", "val_data")
    ]
    assert len(shared) > 20
    # None where the library fills a value in: the library decides (train-lora's --resolution: the
    # base's native size, 512 for SD 1.5).
    decided = {name for name in shared if defaults[name] is None and getattr(library, name) is not None}
    assert decided == ({"resolution"} if method == "lora" else set())
    assert {name: defaults[name] for name in shared if name not in decided} == {
        name: getattr(library, name) for name in shared if name not in decided
    }
    assert defaults["base"] == METHOD_DEFAULTS[method].base and str(defaults["output"]) == library.output
    renamed = {"dropout": "lora_dropout"}
    for f in dataclasses.fields(task_options):
        name = renamed.get(f.name, f.name)
        if name in defaults and name != "prompt":
            assert defaults[name] == getattr(task_options, f.name), name
