"""kill -9 at random moments, then re-run: the job finishes as if it had never been interrupted."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from inpaint import io

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "inpaint", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600
    )


def _kill_after(args: list[str], cwd: Path, delay: float) -> bool:
    """Start the command and SIGKILL it after ``delay`` seconds; True if it was still running."""
    return _kill_when(args, cwd, lambda: True, delay)


def _measure(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    result = _run(args, cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    return time.perf_counter() - started


def test_train_ddpm_survives_kill_9(tmp_path, train_images, tiny_ddpm_dir):
    common = [
        "train-ddpm",
        str(train_images),
        "--base",
        str(tiny_ddpm_dir),
        "--resolution",
        "32",
        "--batch-size",
        "2",
        "--max-steps",
        "12",
        "--save-every",
        "1",
        "--lr",
        "1e-3",
        "--val-images",
        "0",
        "--device",
        "cpu",
    ]
    duration = _measure([*common, "-o", "straight"], tmp_path)

    rng = random.Random(1234)
    kills = 0
    for _attempt in range(6):  # kill at random moments, resuming each time
        if _kill_after([*common, "-o", "killed"], tmp_path, rng.uniform(0.25, 0.75) * duration):
            kills += 1
        else:
            break
    assert kills >= 2, "the run finished before it could be killed twice"
    result = _run([*common, "-o", "killed"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    last = "checkpoints/step-00000012"
    for name in ("model", "ema", "optimizer"):
        a, b = load_file(straight / last / f"{name}.safetensors"), load_file(killed / last / f"{name}.safetensors")
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    for name in ("diffusion_pytorch_model.safetensors", "raw/diffusion_pytorch_model.safetensors"):  # EMA, raw
        a, b = load_file(straight / name), load_file(killed / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # No temporary folders or half checkpoints survive the finished run.
    leftovers = [p.name for p in (killed / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_folder_complete_survives_kill_9(tmp_path, photo, center_mask):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(40):
        io.save_image(np.roll(photo, 3 * i, axis=1), images / f"img{i:02d}.png")
        io.save_mask(np.roll(center_mask, i % 20, axis=0), masks / f"img{i:02d}.png")
    common = ["complete", str(images), str(masks), "-m", "biharmonic"]
    duration = _measure([*common, "-o", "straight"], tmp_path)

    rng = random.Random(99)
    for _ in range(3):
        if not _kill_after([*common, "-o", "killed"], tmp_path, rng.uniform(0.5, 0.95) * duration):
            break
    assert _run([*common, "-o", "killed"], tmp_path).returncode == 0
    done = sorted(p.name for p in (tmp_path / "killed").iterdir())
    assert done == sorted(p.name for p in (tmp_path / "straight").iterdir())  # no temp files left either
    for name in done:
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "straight" / name).read_bytes()


# ---- train-lora, caption and bench: kill when the job has reached a random point, then resume ----------


def _kill_when(args: list[str], cwd: Path, ready, delay: float, timeout: float = 120) -> bool:
    """Start the command, wait until ``ready()`` (a look at its output files) or its end, then
    SIGKILL it ``delay`` seconds later; True if it was still running. Triggering on progress
    rather than on wall time lands the kills inside the job however slow the machine is."""
    process = subprocess.Popen(
        [sys.executable, "-m", "inpaint", *args], cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and not ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        return True


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    """The uninterrupted reference run, in the background while the killed one is driven (2 cores)."""
    return subprocess.Popen(
        [sys.executable, "-m", "inpaint", *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> None:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]


def _latest_step(run: Path) -> int:
    try:
        return int((run / "checkpoints" / "latest").read_text().strip().split("-")[1])
    except (OSError, IndexError, ValueError):
        return 0


def _no_temporaries(*folders: Path) -> None:
    for folder in folders:
        leftovers = [p.name for p in folder.rglob(".*") if ".tmp" in p.name]
        assert leftovers == [], (folder, leftovers)


# The shared training loop's kill -9 resume is tested on train-ddpm in the default run.
@pytest.mark.slow
def test_train_lora_survives_kill_9(tmp_path, train_images, tiny_sd_inpaint_dir):
    common = [
        "train-lora",
        str(train_images),
        "--base",
        str(tiny_sd_inpaint_dir),
        "--resolution",
        "32",
        "--batch-size",
        "2",
        "--max-steps",
        "6",
        "--save-every",
        "1",
        "--lr",
        "1e-2",
        "--rank",
        "4",
        "--ema-decay",
        "0.9",
        "--val-images",
        "0",
        "--device",
        "cpu",
    ]
    straight = _start([*common, "-o", "straight"], tmp_path)
    killed = tmp_path / "killed"
    rng = random.Random(2024)
    kills = 0
    for target in sorted(rng.sample(range(1, 6), 2)):  # kill just after checkpoint `target`, at a random moment
        if _kill_when(
            [*common, "-o", "killed"], tmp_path, lambda t=target: _latest_step(killed) >= t, rng.uniform(0.0, 0.4)
        ):
            kills += 1
    assert kills == 2 and 1 <= _latest_step(killed) < 6
    result = _run([*common, "-o", "killed"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    _finish(straight)

    straight = tmp_path / "straight"
    for name in (
        "pytorch_lora_weights.safetensors",
        "raw/pytorch_lora_weights.safetensors",
        "checkpoints/step-00000006/model.safetensors",
        "checkpoints/step-00000006/ema.safetensors",
        "checkpoints/step-00000006/optimizer.safetensors",
    ):
        a, b = load_file(straight / name), load_file(killed / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    _no_temporaries(killed)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_caption_survives_kill_9(tmp_path, train_images, tiny_blip_dir):
    import json
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):  # twelve images: twelve atomic rewrites of captions.json with --batch-size 1
        for image in sorted(train_images.iterdir()):
            shutil.copy(image, data / f"{image.stem}{i}.png")
    common = ["caption", str(data), "--model", str(tiny_blip_dir), "--batch-size", "1", "--device", "cpu"]
    straight = _start([*common, "-o", str(tmp_path / "straight.json")], tmp_path)
    killed = tmp_path / "killed.json"

    def captioned() -> int:
        try:
            return len(json.loads(killed.read_text()))
        except (OSError, ValueError):
            return 0

    rng = random.Random(7)
    kills = 0
    for target in sorted(rng.sample(range(1, 11), 3)):
        if _kill_when([*common, "-o", str(killed)], tmp_path, lambda t=target: captioned() >= t, rng.uniform(0, 0.2)):
            kills += 1
    assert kills >= 2
    assert _run([*common, "-o", str(killed)], tmp_path).returncode == 0
    _finish(straight)
    assert killed.read_bytes() == (tmp_path / "straight.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "killed.json", "straight.json"]  # no temporaries


def test_bench_survives_kill_9(tmp_path, photo, tiny_unet7_dir):
    import csv
    import json

    data = tmp_path / "data"
    for i in range(12):
        io.save_image(np.roll(photo[::2, ::2], 3 * i, axis=1), data / f"img{i:02d}.png")
    common = [
        "bench",
        "--models",
        "ddpm",
        "--data",
        str(data),
        "--masks",
        "lama-thick",
        "--weights",
        f"ddpm={tiny_unet7_dir}",
        "--model-option",
        "ddpm.steps=8",
        "--eval-size",
        "32",
        "--no-lpips",
        "--no-fid",
        "--device",
        "cpu",
    ]
    straight = _start([*common, "-o", "straight"], tmp_path)
    outputs = tmp_path / "killed" / "outputs" / "ddpm"
    rng = random.Random(5)
    kills = 0
    # Kill while outputs are being made (a random count of them done), and once while scoring.
    for target, delay in [(n, rng.uniform(0, 0.2)) for n in sorted(rng.sample(range(1, 12), 2))] + [(12, 0.3)]:
        if _kill_when(
            [*common, "-o", "killed"], tmp_path, lambda t=target: len(list(outputs.glob("*.png"))) >= t, delay
        ):
            kills += 1
    assert kills >= 2
    assert _run([*common, "-o", "killed"], tmp_path).returncode == 0
    _finish(straight)

    a, b = tmp_path / "straight", tmp_path / "killed"
    results = [json.loads((run / "results.json").read_text()) for run in (a, b)]
    assert results[0]["models"]["ddpm"]["metrics"] == results[1]["models"]["ddpm"]["metrics"]
    assert results[0]["n_images"] == results[1]["n_images"] == 12
    masks = [{k: v for k, v in r["protocol"]["masks"].items() if k != "folder"} for r in results]
    assert masks[0] == masks[1]
    for folder in ("outputs/ddpm", "masks"):
        names = sorted(p.name for p in (a / folder).iterdir() if p.suffix == ".png")
        assert names == sorted(p.name for p in (b / folder).iterdir() if p.suffix == ".png") and len(names) == 12
        assert all((a / folder / n).read_bytes() == (b / folder / n).read_bytes() for n in names)
    rows = []
    for run in (a, b):
        with open(run / "per_image.csv", newline="") as f:
            rows.append([{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)])
    assert rows[0] == rows[1]
    _no_temporaries(b)
