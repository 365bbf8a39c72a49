"""Folder ``complete`` split over processes (``accelerate launch``, ``torchrun``; gloo on the CPU).

Two processes write what one process writes, byte for byte, and leave the same record, which
either kind of run resumes; the summary is printed once; a refusal stops every process with one
line; one image (or a pipe) is refused under a launcher.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from inpaint import io, locking
from inpaint.distributed import Dist, SharedError, SharedInputError
from inpaint.folder_record import LOG_FILE, PART_FILE, RUN_FILE

NAMES = [f"img{i}" for i in range(5)]  # an odd count: the processes get 3 and 2
TIMEOUT = 180

# Runs the CLI and writes its exit code, instead of exiting with it: a launcher stops the other
# processes once one has failed, possibly before they have finished (or written their code).
ENTRY = textwrap.dedent("""
    import os
    import sys
    from pathlib import Path

    from inpaint.cli.app import main

    code = main(sys.argv[2:])
    Path(sys.argv[1], f"exit-rank{os.environ['RANK']}").write_text(str(code))
""")


@pytest.fixture
def folders(tmp_path, photo, center_mask):
    """Five 32x32 images and their masks: (images/, masks/)."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i, name in enumerate(NAMES):
        io.save_image(np.ascontiguousarray(np.roll(photo, 7 * i, axis=1)[16:48, 16:48]), images / f"{name}.png")
        io.save_mask(np.roll(center_mask, 3 * i, axis=0)[16:48, 16:48], masks / f"{name}.png")
    return images, masks


def _launch(launcher: str, *argv: object, entry=None) -> subprocess.CompletedProcess:
    """``inpaint ARGV`` in two CPU processes; with ``entry``, that script runs it (see ENTRY)."""
    bin_dir = os.path.dirname(sys.executable)
    if launcher == "accelerate":  # --multi_gpu: without it, a CPU-only machine gets one process
        command = [os.path.join(bin_dir, "accelerate"), "launch", "--multi_gpu", "--num_processes", "2"]
    else:
        command = [os.path.join(bin_dir, "torchrun"), "--standalone", "--nproc_per_node", "2"]
    target = ["-m", "inpaint"] if entry is None else [str(entry), str(entry.parent)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [*command, *target, *map(str, argv)], capture_output=True, text=True, env=env, timeout=TIMEOUT
    )


def _entry(folder):
    """ENTRY as a script in ``folder``, where it writes each process's exit code."""
    entry = folder / "entry.py"
    entry.write_text(ENTRY)
    return entry


def _json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def _record(folder) -> tuple[bytes, list[str]]:
    """The folder's settings file and its log lines (in any order: processes interleave)."""
    assert not list(folder.glob(PART_FILE.format(rank="*"))), "a part of the log was left unmerged"
    return (folder / RUN_FILE).read_bytes(), sorted((folder / LOG_FILE).read_text().splitlines())


def test_two_processes_write_what_one_writes_and_either_resumes_the_other(cli, tmp_path, folders, tiny_unet7_dir):
    images, masks = folders
    # fp32: the launched processes are not under the tests' CPU patch, where auto would pick bf16.
    ddpm = ["-m", "ddpm", "--weights", tiny_unet7_dir, "--steps", "2", "--device", "cpu", "--dtype", "fp32"]
    two, one = tmp_path / "two", tmp_path / "one"

    launched = _launch("accelerate", "complete", images, masks, "-o", two, *ddpm, "--json")
    assert launched.returncode == 0, launched.stderr[-3000:]
    [summary] = _json_lines(launched.stdout)  # printed once, by the main process
    assert summary["written"] == NAMES and summary["files"] == [str(two / f"{n}.png") for n in NAMES]
    assert not _error_lines(launched.stderr) and not (two / locking.FOLDER_LOCK_NAME).exists()

    single = cli("complete", images, masks, "-o", one, *ddpm, "--json")
    assert single.code == 0, single
    expected = json.loads(single.out)
    ignore = ("seconds", "files")
    assert {k: v for k, v in summary.items() if k not in ignore} == {
        k: v for k, v in expected.items() if k not in ignore
    }
    for name in NAMES:
        assert (two / f"{name}.png").read_bytes() == (one / f"{name}.png").read_bytes(), name
    assert _record(two) == _record(one)

    # One process resumes what two made: nothing left to do.
    rerun = cli("complete", images, masks, "-o", two, *ddpm, "--json")
    assert rerun.code == 0, rerun
    assert json.loads(rerun.out)["skipped_existing"] == NAMES and json.loads(rerun.out)["written"] == []

    # And two processes resume it too (torchrun this time).
    (two / f"{NAMES[3]}.png").unlink()  # ... but for one output, which process 1 redoes
    again = _launch("torchrun", "complete", images, masks, "-o", two, *ddpm, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    [resumed] = _json_lines(again.stdout)
    assert resumed["written"] == [NAMES[3]]
    assert resumed["skipped_existing"] == [n for n in NAMES if n != NAMES[3]]
    assert (two / f"{NAMES[3]}.png").read_bytes() == (one / f"{NAMES[3]}.png").read_bytes()
    assert _record(two)[0] == _record(one)[0] and set(_record(two)[1]) == set(_record(one)[1])


@pytest.mark.parametrize("refusal", ["other settings", "folder in use"])
def test_a_refused_run_is_refused_by_every_process_in_one_line(cli, tmp_path, folders, refusal):
    images, masks = folders
    out = tmp_path / "out"
    assert cli("complete", images, masks, "-o", out, "-m", "telea").code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    model = "biharmonic" if refusal == "other settings" else "telea"
    with locking.lock_folder(out) if refusal == "folder in use" else contextlib.nullcontext():
        launched = _launch("torchrun", "complete", images, masks, "-o", out, "-m", model, entry=_entry(tmp_path))
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert [(tmp_path / f"exit-rank{rank}").read_text() for rank in (0, 1)] == ["2", "2"]
    expected = {
        "other settings": f"error: {out}/: made with --model telea; this run asks for biharmonic",
        "folder in use": f"error: {out}: in use by pid {os.getpid()} on ",
    }[refusal]
    [line] = _error_lines(launched.stderr)
    assert line.startswith(expected), line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written


def test_a_failed_image_in_one_process_fails_every_process(cli, tmp_path, folders):
    images, masks = folders
    (images / f"{NAMES[1]}.png").write_bytes(b"not a png")  # process 1's share
    out = tmp_path / "out"
    launched = _launch("torchrun", "complete", images, masks, "-o", out, "-m", "telea", entry=_entry(tmp_path))
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert [(tmp_path / f"exit-rank{rank}").read_text() for rank in (0, 1)] == ["1", "1"]
    assert _error_lines(launched.stderr) == ["error: 1 of 5 images failed (see the warnings above)"]
    assert sum(NAMES[1] in line for line in launched.stderr.splitlines() if line.startswith("warning: ")) == 1
    assert sorted(p.stem for p in out.glob("*.png")) == [n for n in NAMES if n != NAMES[1]]

    # As launched: process 1 lets the main process print the summary before the launcher,
    # seeing a process fail, stops the others.
    again = _launch("torchrun", "complete", images, masks, "-o", out, "-m", "telea", "--json")
    assert again.returncode != 0
    [summary] = _json_lines(again.stdout)
    assert list(summary["failed"]) == [NAMES[1]] and len(summary["skipped_existing"]) == 4
    assert _error_lines(again.stderr) == ["error: 1 of 5 images failed (see the warnings above)"]


@pytest.mark.parametrize("rank", ["0", "1"])
@pytest.mark.parametrize("image", ["file", "stdin"])
def test_one_image_under_a_launcher_is_refused_in_one_line_by_the_main_process(
    cli, tmp_path, pair, monkeypatch, rank, image
):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    source = pair[0] if image == "file" else "-"
    result = cli("complete", source, pair[1], "-o", tmp_path / "out.png", "-m", "telea")
    assert result.code == 2 and result.out == ""
    if rank == "1":
        assert result.err == ""  # the main process says it
    else:
        [line] = result.err.splitlines()
        assert line == (
            f"error: {source}: several processes split folders of images, not one image or a pipe; "
            "give folders (IMAGES/ MASKS/ -o OUT/), or run one process"
        )
    assert not (tmp_path / "out.png").exists()


def test_a_split_run_killed_before_merging_its_record_resumes(cli, tmp_path, folders):
    """Process 1's lines still in its own part of the log, its last line torn by the kill."""
    images, masks = folders
    out = tmp_path / "out"
    first = cli("complete", images, masks, "-o", out, "-m", "telea", "--json")
    assert first.code == 0, first
    made = {p.name: p.read_bytes() for p in out.glob("*.png")}
    lines = (out / LOG_FILE).read_text().splitlines(keepends=True)
    (out / LOG_FILE).write_text("".join(lines[0::2]))
    (out / PART_FILE.format(rank=1)).write_text("".join(lines[1::2])[:-20])  # NAMES[3]'s line torn

    rerun = json.loads(cli("complete", images, masks, "-o", out, "-m", "telea", "--json").out)
    assert rerun["skipped_existing"] == [n for n in NAMES if n != NAMES[3]]
    assert rerun["written"] == rerun["redone_unrecorded"] == [NAMES[3]]
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == made
    assert not (out / PART_FILE.format(rank=1)).exists()
    assert sorted(json.loads(line)["name"] for line in (out / LOG_FILE).read_text().splitlines()) == NAMES


class TwoProcesses(Dist):
    """Rank ``rank`` of two processes; ``gather`` returns what the other rank is said to send."""

    def __init__(self, rank: int, other: object = None) -> None:
        super().__init__(rank=rank, world=2)
        self.other = other

    def gather(self, obj):
        return [obj, self.other] if self.rank == 0 else [self.other, obj]


def test_a_failure_in_any_process_is_raised_in_every_process_with_its_exit_code():
    # The main process passed; process 1 could not load its weights (what it sends: Dist.agree).
    with pytest.raises(SharedInputError, match=r"^process 1 of 2: weights/: cannot read$") as raised:
        with TwoProcesses(rank=0, other=("weights/: cannot read", 2, True)).agree():
            pass
    assert raised.value.exit_code == 2 and raised.value.__cause__ is None
    # Where it happened, the original error is the cause; not bad input: exit code 1.
    with pytest.raises(SharedError) as raised:
        with TwoProcesses(rank=1).agree():
            raise OSError("disk full")
    assert not isinstance(raised.value, SharedInputError) and raised.value.exit_code == 1
    assert str(raised.value) == "process 1 of 2: OSError: disk full" and isinstance(raised.value.__cause__, OSError)
    with TwoProcesses(rank=1).agree():  # nobody failed
        pass
