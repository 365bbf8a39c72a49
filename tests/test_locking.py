"""One writer per output: a second run on an output in use is refused with one line naming the
owner, a lock left by a dead process is taken over, and no lock survives the run that took it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inpaint import io, locking
from inpaint.errors import InputError

HOST = socket.gethostname()


def _dead_pid() -> int:
    """The pid of a process that has ended (not reused this soon)."""
    process = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(process.stdout)


def _leave_lock(path: Path, pid: int, host: str = HOST) -> None:
    """A lock file as a run killed with -9 leaves it: its record, and no flock held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"pid": pid, "host": host, "command": "inpaint complete a/ b/ -o out", "started": "2024-05-01 10:00:00"}
        )
    )


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_train_ddpm_on_a_run_in_use_is_refused_and_the_run_finishes_intact(
    cli, tmp_path, train_images, tiny_ddpm_dir
):
    """The run in use is held by this process (as a run in progress would hold it): the second
    command is refused before it writes or deletes anything, and the run then goes on."""
    run = tmp_path / "run"
    args = [
        "train-ddpm",
        train_images,
        "-o",
        run,
        "--base",
        tiny_ddpm_dir,
        "--resolution",
        "32",
        "--batch-size",
        "2",
        "--save-every",
        "1",
        "--val-images",
        "0",
        "--device",
        "cpu",
    ]
    assert cli(*args, "--max-steps", "2").code == 0  # the first run's first part
    before = _snapshot(run)

    with locking.lock_folder(run, command="inpaint train-ddpm faces -o run") as held:
        started = json.loads(held.path.read_text())["started"]
        result = cli(*args, "--max-steps", "4")
    assert result.code == 2 and "Traceback" not in result.err, result
    assert result.err.strip().splitlines()[-1] == (
        f"error: {run}: in use by pid {os.getpid()} on {HOST} (inpaint train-ddpm faces -o run, since {started}); "
        "wait for it to finish or use another -o"
    )
    assert _snapshot(run) == before

    result = cli(*args, "--max-steps", "4")
    assert result.code == 0, result
    assert "resumed from step 2" in result.err and "step 4/4" in result.err
    assert not (run / locking.FOLDER_LOCK_NAME).exists()


def _folders(tmp_path: Path, photo, center_mask) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(2):
        io.save_image(np.roll(photo, 5 * i, axis=1), images / f"img{i}.png")
        io.save_mask(center_mask, masks / f"img{i}.png")
    return images, masks


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(cli, tmp_path, photo, center_mask):
    images, masks = _folders(tmp_path, photo, center_mask)
    out = tmp_path / "out"
    pid = _dead_pid()
    _leave_lock(out / locking.FOLDER_LOCK_NAME, pid)
    result = cli("complete", images, masks, "-o", out, "-m", "telea")
    assert result.code == 0, result
    assert (
        f"warning: {out}: taking over the lock of pid {pid} (inpaint complete a/ b/ -o out, since 2024-05-01 "
        "10:00:00), which is no longer running (it was killed or crashed)"
    ) in result.err.splitlines()
    assert (out / "img1.png").is_file() and not (out / locking.FOLDER_LOCK_NAME).exists()


@pytest.mark.parametrize("flock", [True, False], ids=["flock", "no-flock"])
def test_who_holds_a_lock_decides_whether_it_is_refused(tmp_path, monkeypatch, flock):
    """With flock, a free flock on this host means the owner is gone; without it (some cluster
    file systems), the pid is checked. A record from another host cannot be checked from here:
    refused either way, naming the file to delete once that run is over."""
    if not flock:
        monkeypatch.setattr(locking, "_try_flock", lambda fd: None)
    folder = tmp_path / "run"
    lock_path = folder / locking.FOLDER_LOCK_NAME

    _leave_lock(lock_path, 4321, host="node-7")
    with pytest.raises(InputError) as refused:
        locking.lock_folder(folder)
    assert str(refused.value) == (
        f"{folder}: in use by pid 4321 on node-7 (inpaint complete a/ b/ -o out, since 2024-05-01 10:00:00), a "
        f"process this machine cannot check; wait for it to finish or use another -o (if it is no longer running, "
        f"delete {lock_path})"
    )
    assert json.loads(lock_path.read_text())["host"] == "node-7"  # left as it was

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _leave_lock(lock_path, sleeper.pid)
        if flock:  # the flock is free: the pid is not this lock's owner any more, whatever runs under it
            with locking.lock_folder(folder):
                assert json.loads(lock_path.read_text())["pid"] == os.getpid()
        else:
            with pytest.raises(InputError, match=f"in use by pid {sleeper.pid} on {HOST}"):
                locking.lock_folder(folder)
    finally:
        sleeper.kill()
        sleeper.wait()

    _leave_lock(lock_path, _dead_pid())
    with locking.lock_folder(folder) as held:
        assert json.loads(held.path.read_text())["pid"] == os.getpid()
    assert not lock_path.exists()


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_the_lock_never_survives_the_run_that_took_it(tmp_path, error):
    """Released on every way out; the folders made to hold it go too when the run left them empty."""
    out = tmp_path / "new" / "results"
    with pytest.raises(error):
        with locking.lock_folder(out):
            assert (out / locking.FOLDER_LOCK_NAME).is_file()
            with pytest.raises(InputError, match="in use by pid"):  # a second writer, even in this process
                locking.lock_folder(out)
            raise error
    assert not (tmp_path / "new").exists()

    captions = tmp_path / "data" / "captions.json"
    captions.parent.mkdir()
    with locking.lock_file(captions):
        assert (captions.parent / ".captions.json.lock").is_file()
        captions.write_text("{}")
    assert sorted(p.name for p in captions.parent.iterdir()) == ["captions.json"]


def test_a_finished_run_leaves_no_lock(cli, tmp_path, photo, center_mask):
    images, masks = _folders(tmp_path, photo, center_mask)
    for args in (
        ["complete", images, masks, "-o", tmp_path / "out", "-m", "telea"],
        [
            "bench",
            "--models",
            "telea",
            "--data",
            images,
            "--masks",
            masks,
            "-o",
            tmp_path / "results",
            "--eval-size",
            "32",
            "--no-lpips",
            "--no-fid",
        ],
    ):
        result = cli(*args)
        assert result.code == 0, result
    assert not list(tmp_path.rglob("*.lock"))
