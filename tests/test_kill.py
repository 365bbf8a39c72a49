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
import torch
from safetensors.torch import load_file

from inpaint import io

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inpaint", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=600)


def _kill_after(args: list[str], cwd: Path, delay: float) -> bool:
    """Start the command and SIGKILL it after ``delay`` seconds; True if it was still running."""
    process = subprocess.Popen([sys.executable, "-m", "inpaint", *args], cwd=cwd, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        return True


def _measure(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    result = _run(args, cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    return time.perf_counter() - started


def test_train_ddpm_survives_kill_9(tmp_path, train_images, tiny_ddpm_dir):
    common = ["train-ddpm", str(train_images), "--base", str(tiny_ddpm_dir), "--resolution", "32", "--batch-size",
              "2", "--max-steps", "12", "--save-every", "1", "--lr", "1e-3", "--val-images", "0", "--device", "cpu"]
    duration = _measure([*common, "-o", "straight"], tmp_path)

    rng = random.Random(1234)
    kills = 0
    for attempt in range(6):  # kill at random moments, resuming each time
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
    a = load_file(straight / "diffusion_pytorch_model.safetensors")
    b = load_file(killed / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
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
