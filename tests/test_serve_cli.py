"""``inpaint serve`` as a user starts it (a real server process on a free port) and its queue."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from inpaint.errors import InputError
from inpaint.serve.jobs import CANCELLED, DONE, FAILED, Cancelled, Job, JobQueue


def _start(*args: str) -> tuple[subprocess.Popen, str, str]:
    """Start ``inpaint serve ARGS`` and wait for the address it prints; returns the process, the
    address and what it printed until then."""
    process = subprocess.Popen(
        [sys.executable, "-m", "inpaint", "serve", "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        found = re.search(r"serving on (http://\S+/) ", line)
        if found:
            return process, found.group(1), "".join(lines)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"no address printed: {''.join(lines)}")


def test_serve_starts_answers_and_stops_on_ctrl_c(photo, center_mask):
    """Listening on every address (with the warning), the page's API answers a completion, and
    Ctrl-C stops the server cleanly: exit 0, "stopped", no traceback."""
    from inpaint import io

    process, url, said = _start("--host", "0.0.0.0", "-m", "telea", "-m", "biharmonic")
    assert "warning: listening on 0.0.0.0: anyone who can reach this machine" in said
    try:
        local = re.sub(r"//[^:/]+:", "//127.0.0.1:", url)
        with urllib.request.urlopen(local + "api/v1/models", timeout=30) as answer:
            listing = json.load(answer)
        assert [row["name"] for row in listing["models"]] == ["telea", "biharmonic"]
        assert listing["default"] == "telea"
        boundary = "inpaintboundary"
        parts = [("image", "photo.png", io.encode_image(photo)), ("mask", "mask.png", io.encode_image(center_mask))]
        body = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: image/png\r\n\r\n".encode()
            + data
            + b"\r\n"
            for name, filename, data in parts
        )
        body += f"--{boundary}--\r\n".encode()
        request = urllib.request.Request(
            local + "api/v1/complete", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.headers["Content-Type"] == "image/png"
            assert answer.read().startswith(b"\x89PNG")
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert err.strip().splitlines() == ["stopped"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port 70000: must be in 0..65535"),
        (["-m", "nope"], "unknown method 'nope'"),
        (["-m", "ddpm", "-m", "sd", "--weights", "somewhere"], "say which method it is for"),
        (["--weights", "ddpm=/no/such/folder"], "--weights /no/such/folder"),
        (["--lora", "/no/such/lora.safetensors"], "no such file"),
        (["--lora", "none=/x"], "'none' means no LoRA"),
        (["--max-upload-mb", "0"], "--max-upload-mb 0"),
    ],
)
def test_bad_options_are_one_line(cli, args, message):
    result = cli("serve", *args)
    assert result.code == 2, result
    assert message in result.err and result.err.count("\n") == 1


def test_a_port_in_use_is_one_line(cli):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        result = cli("serve", "--port", str(taken.getsockname()[1]))
    finally:
        taken.close()
    assert result.code == 2 and "cannot listen on 127.0.0.1:" in result.err and "--port" in result.err


# ---- the queue on its own ---------------------------------------------------------------------------


def _job(run, lane="cpu") -> Job:
    return Job(model="test", seed=0, name="x", run=run, lane=lane)


def _wait(job: Job) -> None:
    assert job.finished.wait(10), job


def test_queue_runs_one_at_a_time_in_order_and_reports_positions():
    queue = JobQueue()
    release = threading.Event()
    order: list[str] = []

    def slow(progress):
        progress.start("blocked", 1)
        release.wait(10)
        order.append("slow")
        return b"slow"

    def quick(name):
        def run(progress):
            order.append(name)
            return name.encode()

        return run

    first = queue.submit(_job(slow))
    while first.state != "running":
        time.sleep(0.01)
    second, third = queue.submit(_job(quick("second"))), queue.submit(_job(quick("third")))
    assert [queue.position(job) for job in (first, second, third)] == [0, 1, 2]
    queue.cancel(second)  # a waiting job leaves the queue at once
    assert second.state == CANCELLED and queue.position(third) == 1
    release.set()
    _wait(third)
    assert order == ["slow", "third"] and third.result == b"third" and first.state == DONE
    assert queue.position(third) is None
    queue.close()


def test_running_job_stops_at_its_next_step_and_failures_are_one_line():
    queue = JobQueue()
    steps = []

    def endless(progress):
        progress.start("steps", None)
        while True:
            steps.append(1)
            progress.advance()
            time.sleep(0.001)

    job = queue.submit(_job(endless))
    while len(steps) < 3:
        time.sleep(0.01)
    queue.cancel(job)
    _wait(job)
    assert job.state == CANCELLED and job.result is None

    def bad_input(progress):
        raise InputError("image: not an image")

    def bug(progress):
        raise RuntimeError("something broke\nsecond line")

    failed, broken = queue.submit(_job(bad_input)), queue.submit(_job(bug))
    _wait(failed)
    _wait(broken)
    assert (failed.state, failed.status, failed.error) == (FAILED, 422, "image: not an image")
    assert (broken.state, broken.status, broken.error) == (FAILED, 500, "unexpected RuntimeError: something broke")
    queue.close()


def test_finished_jobs_are_forgotten_and_closing_cancels_the_waiting():
    queue = JobQueue(keep_finished=1)
    done = [queue.submit(_job(lambda progress: b"x")) for _ in range(3)]
    for job in done:
        _wait(job)
    queue.submit(_job(lambda progress: b"x"))  # pruning happens at a submit
    assert [queue.get(job.id) for job in done[:2]] == [None, None]
    release = threading.Event()
    running = queue.submit(_job(lambda progress: release.wait(10) and progress.advance() or b""))
    waiting = queue.submit(_job(lambda progress: b""))
    while running.state != "running":
        time.sleep(0.01)
    release.set()
    queue.close()
    assert waiting.state == CANCELLED
    with pytest.raises(Cancelled):  # what a job started after closing would meet
        from inpaint.serve.jobs import JobProgress

        late = _job(lambda progress: b"")
        late.cancel_requested.set()
        JobProgress(late).advance()


def test_sigterm_stops_the_server_cleanly():
    process, url, said = _start("-m", "telea")
    assert "warning" not in said  # loopback: nothing to warn about
    with urllib.request.urlopen(url + "api/v1/health", timeout=30) as answer:
        assert json.load(answer)["status"] == "ok"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0 and err.strip().splitlines() == ["stopped"], err
