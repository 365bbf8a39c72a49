"""SIGTERM, SIGUSR1 and Ctrl-C stop the resumable commands cleanly: the work in hand is finished
and kept (a checkpoint, for training), the command says which signal stopped it and exits with
128 + its number, and running the same command again resumes — for training, bit for bit."""

from __future__ import annotations

import json
import os
import shutil
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
from inpaint.locking import FOLDER_LOCK_NAME

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _start(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "inpaint", *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "inpaint", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600
    )


def _wait_for(ready, process: subprocess.Popen, timeout: float = 240) -> None:
    """Poll ``ready()`` (a look at the job's files) until it holds; fail if the job ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the job ended before the signal: {process.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.005)


def _signal(process: subprocess.Popen, signum: int, *, group: bool = False) -> tuple[int, str]:
    """Send ``signum`` (to the process, or to its whole process group as ``timeout`` does) and
    return its exit code and stderr."""
    if group:
        os.killpg(process.pid, signum)
    else:
        os.kill(process.pid, signum)
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]


def _lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


def _latest_step(run: Path) -> int:
    return int((run / "checkpoints" / "latest").read_text().strip().split("-")[1])


def _stopped_line(err: str, name: str) -> str:
    """The command's last line: which signal stopped it, and that the same command resumes."""
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {name} ") and last.endswith("run the same command again to resume"), err
    assert "Traceback" not in err and "error:" not in err, err
    return last


def _same_tensors(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name


def test_train_ddpm_stops_cleanly_on_sigterm_and_sigusr1(tmp_path, train_images, tiny_ddpm_dir):
    """SIGTERM to the whole process group (as ``timeout`` and SLURM send it: the data-loading
    worker gets it too), then SIGUSR1 to the process: each run checkpoints the step it is in and
    exits 143, then 138; the third run ends bit-equal to an uninterrupted one."""
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
        "16",
        "--save-every",
        "100",
        "--lr",
        "1e-3",
        "--val-images",
        "0",
        "--workers",
        "1",
        "--device",
        "cpu",
    ]
    straight = _start([*common, "-o", "straight"], tmp_path)
    run = tmp_path / "stopped"

    first = _start([*common, "-o", "stopped"], tmp_path, start_new_session=True)
    _wait_for(lambda: _lines(run / "log.jsonl") >= 3, first)
    code, err = _signal(first, signal.SIGTERM, group=True)
    assert code == 143, err[-2000:]
    step = _latest_step(run)
    assert 3 <= step < 16
    assert _stopped_line(err, "SIGTERM") == (
        f"stopped by SIGTERM at step {step} of 16 (checkpoint saved); run the same command again to resume"
    )
    assert not (run / FOLDER_LOCK_NAME).exists()

    second = _start([*common, "-o", "stopped"], tmp_path)
    _wait_for(lambda: _lines(run / "log.jsonl") >= step + 3, second)
    code, err = _signal(second, signal.SIGUSR1)
    assert code == 138, err[-2000:]
    assert f"resumed from step {step}" in err
    later = _latest_step(run)
    assert step + 3 <= later < 16
    assert f"stopped by SIGUSR1 at step {later} of 16 (checkpoint saved)" in _stopped_line(err, "SIGUSR1")

    result = _run([*common, "-o", "stopped"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    _finish(straight)
    _same_tensors(
        tmp_path / "straight",
        run,
        [f"checkpoints/step-00000016/{name}.safetensors" for name in ("model", "ema", "optimizer")],
    )
    _same_tensors(
        tmp_path / "straight", run, ["diffusion_pytorch_model.safetensors", "raw/diffusion_pytorch_model.safetensors"]
    )
    assert not (run / FOLDER_LOCK_NAME).exists()


# The shared training loop's signal handling is tested on train-ddpm in the default run.
@pytest.mark.slow
def test_train_lora_stops_cleanly_on_sigterm(tmp_path, train_images, tiny_sd_inpaint_dir):
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
        "100",
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
    run = tmp_path / "stopped"
    first = _start([*common, "-o", "stopped"], tmp_path)
    _wait_for(lambda: _lines(run / "log.jsonl") >= 1, first)
    code, err = _signal(first, signal.SIGTERM)
    assert code == 143, err[-2000:]
    step = _latest_step(run)
    assert 1 <= step < 6
    assert f"stopped by SIGTERM at step {step} of 6 (checkpoint saved)" in _stopped_line(err, "SIGTERM")

    result = _run([*common, "-o", "stopped"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    _finish(straight)
    _same_tensors(
        tmp_path / "straight",
        run,
        [
            "pytorch_lora_weights.safetensors",
            "raw/pytorch_lora_weights.safetensors",
            "checkpoints/step-00000006/optimizer.safetensors",
        ],
    )
    assert not (run / FOLDER_LOCK_NAME).exists()


def test_caption_stops_cleanly_on_sigterm_and_refuses_a_second_writer(cli, tmp_path, train_images, tiny_blip_dir):
    """A second ``caption`` into the same file while the first runs is refused (exit 2, naming the
    first's pid, nothing written); the first, stopped by SIGTERM after a batch, keeps its
    captions; the rerun keeps them and does the rest."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):  # 24 images at batch 1: the signal lands while captioning
        for image in sorted(train_images.iterdir()):
            shutil.copy(image, data / f"{image.stem}{i}.png")
    common = ["caption", str(data), "--model", str(tiny_blip_dir), "--batch-size", "1", "--device", "cpu"]
    captions = tmp_path / "stopped.json"
    lock = tmp_path / ".stopped.json.lock"

    first = _start([*common, "-o", str(captions)], tmp_path)
    _wait_for(lock.exists, first)
    second = cli(*common, "-o", captions)
    assert second.code == 2, second
    assert f"{captions}: in use by pid {first.pid} on " in second.err and "inpaint caption" in second.err, second

    def captioned() -> int:
        try:
            return len(json.loads(captions.read_text()))
        except (OSError, ValueError):
            return 0

    _wait_for(lambda: captioned() >= 1, first)
    code, err = _signal(first, signal.SIGTERM)
    assert code == 143, err[-2000:]
    kept = json.loads(captions.read_text())
    assert 1 <= len(kept) < 24
    assert f"stopped by SIGTERM with {len(kept)} of 24 images captioned" in _stopped_line(err, "SIGTERM")
    assert not lock.exists()

    result = _run([*common, "-o", str(captions)], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{24 - len(kept)} captioned, {len(kept)} already done" in result.stderr
    final = json.loads(captions.read_text())
    assert len(final) == 24 and all(final[name] == text for name, text in kept.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "stopped.json"]  # no lock, no temporaries


def test_bench_stops_cleanly_on_sigterm(tmp_path, photo, tiny_unet7_dir):
    data = tmp_path / "data"
    for i in range(12):
        io.save_image(np.roll(photo[::2, ::2], 3 * i, axis=1), data / f"img{i:02d}.png")
    args = [
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
        "-o",
        "results",
    ]
    outputs = tmp_path / "results" / "outputs" / "ddpm"
    first = _start(args, tmp_path)
    _wait_for(lambda: len(list(outputs.glob("*.png"))) >= 2, first)
    code, err = _signal(first, signal.SIGTERM)
    assert code == 143, err[-2000:]
    _stopped_line(err, "SIGTERM")
    made = {p.name: p.read_bytes() for p in outputs.glob("*.png")}
    assert 2 <= len(made) < 12
    assert [p.name for p in outputs.iterdir() if ".tmp" in p.name] == []
    results = tmp_path / "results"
    assert not (results / "results.json").exists() and not (results / FOLDER_LOCK_NAME).exists()

    result = _run(args, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"ddpm {12 - len(made)} new / {len(made)} reused" in result.stderr
    assert json.loads((tmp_path / "results" / "results.json").read_text())["n_images"] == 12
    assert all((outputs / name).read_bytes() == content for name, content in made.items())
    assert not (tmp_path / "results" / FOLDER_LOCK_NAME).exists()


def test_folder_complete_stops_cleanly_on_sigterm(tmp_path, photo, center_mask):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(40):
        io.save_image(np.roll(photo, 3 * i, axis=1), images / f"img{i:02d}.png")
        io.save_mask(np.roll(center_mask, i % 20, axis=0), masks / f"img{i:02d}.png")
    args = ["complete", str(images), str(masks), "-m", "biharmonic", "-o", "out"]
    out = tmp_path / "out"
    first = _start(args, tmp_path)
    _wait_for(lambda: out.is_dir() and len(list(out.glob("img*.png"))) >= 3, first)
    code, err = _signal(first, signal.SIGTERM)
    assert code == 143, err[-2000:]
    done = len(list(out.glob("img*.png")))
    assert 3 <= done < 40
    assert f"stopped by SIGTERM with {done} of 40 images done" in _stopped_line(err, "SIGTERM")
    assert not (out / FOLDER_LOCK_NAME).exists() and [p for p in out.iterdir() if ".tmp" in p.name] == []

    result = _run(args, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{40 - done} written, {done} already done" in result.stderr
    assert len(list(out.glob("img*.png"))) == 40 and not (out / FOLDER_LOCK_NAME).exists()


# ---- the signal plumbing itself, in this process ----------------------------------------------------


def test_a_second_signal_of_the_same_kind_aborts_and_another_kind_does_not():
    from inpaint.cli import stopping

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(stopping.Aborted) as aborted:
        with stopping.graceful_stop("this step") as stop:
            assert not stop()
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop() and stop.name == "SIGTERM" and stop.exit_code == 143
            os.kill(os.getpid(), signal.SIGUSR1)  # SLURM's warning after, or before, SIGTERM: not an abort
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.name == "SIGTERM"  # the first one is the one reported
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("a second SIGTERM must abort")
    assert aborted.value.exit_code == 143 and aborted.value.message() == "aborted by a second SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers are put back


def test_an_aborted_command_exits_with_the_signal_code(cli, tmp_path, train_images, monkeypatch):
    """A second signal ends the command at once: one ``error:`` line, exit 128 + the signal."""
    import inpaint.captions

    def signalled_twice(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)
        pytest.fail("the second SIGUSR1 must abort")

    monkeypatch.setattr(inpaint.captions, "caption_folder", signalled_twice)
    result = cli("caption", train_images, "-o", tmp_path / "c.json")
    assert result.code == 138, result
    assert result.err.strip().splitlines()[-1] == "error: aborted by a second SIGUSR1"
