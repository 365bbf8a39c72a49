"""A bounded load test of ``inpaint serve`` on loopback.

One command, offline::

    HF_HUB_OFFLINE=1 python -m benchmarks.serve_load [--requests 50] [--concurrency 8] [--size 512]
                                                     [--model telea] [--quick] [--docs FILE]

Starts ``inpaint serve`` as a user does (a separate process, ``--port 0``), then sends
``--requests`` ``POST /api/v1/complete`` requests, ``--concurrency`` at a time, each the same
``--size`` px photo (scikit-image's astronaut) with a LaMa-thick mask, and checks every answer:
a 200, and the same PNG bytes each time (no request lost, none answered with another's result).
Reports the latency of a request seen by its client (p50, p90, p99, max), the throughput, and the
server process's peak resident memory (VmHWM) and its memory when the load is over (VmRSS), read
from /proc (Linux). Writes the section between ``<!-- serve-load:begin -->`` and
``<!-- serve-load:end -->`` of docs/benchmarks.md (``--quick``, 10 requests 4 at a time, writes
nowhere unless ``--docs`` is given).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from inpaint import io  # noqa: E402
from inpaint.masks import make_mask  # noqa: E402

from ._report import DOCS, machine, write_section  # noqa: E402

SECTION = "serve-load"
PACKAGES = ("torch", "fastapi", "starlette", "uvicorn", "opencv-python-headless")


def log(message: str) -> None:
    print(f"[serve-load] {message}", file=sys.stderr, flush=True)


def inputs(size: int) -> tuple[bytes, bytes, float]:
    """The photo and mask PNGs, and the mask's hole ratio."""
    from skimage import data

    photo = np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC))
    mask, _ = make_mask("lama-thick", seed=0, name="load", height=size, width=size)
    return io.encode_image(photo), io.encode_image(mask), float(mask.mean())


def start_server(model: str, max_waiting: int) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "inpaint", "serve", "--port", "0", "-m", model, "--max-waiting", str(max_waiting)]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        found = re.search(r"serving on (http://\S+/) ", line)
        if found:
            return server, found.group(1)
        if not line and server.poll() is not None:
            break
    server.kill()
    raise SystemExit("the server did not start")


def multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts += [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files.items()
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def memory(pid: int) -> dict[str, float]:
    """The process's peak and current resident memory in MiB (VmHWM, VmRSS)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def load(url: str, body: bytes, kind: str, requests: int, concurrency: int) -> dict[str, object]:
    def one(index: int) -> tuple[float, int, bytes]:
        request = urllib.request.Request(url + "api/v1/complete", data=body, headers={"Content-Type": kind})
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=600) as answer:
                status, content = answer.status, answer.read()
        except urllib.error.HTTPError as e:
            status, content = e.code, e.read()
        return time.perf_counter() - started, status, content

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    latencies = sorted(seconds for seconds, _, _ in outcomes)
    errors = [status for _, status, _ in outcomes if status != 200]
    results = {content for _, status, content in outcomes if status == 200}

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, round(p / 100 * (len(latencies) - 1)))]

    return {
        "requests": requests,
        "concurrency": concurrency,
        "answered": len(outcomes),
        "errors": len(errors),
        "distinct_results": len(results),
        "wall": wall,
        "throughput": requests / wall,
        "p50": percentile(50),
        "p90": percentile(90),
        "p99": percentile(99),
        "max": latencies[-1],
        "mean": statistics.fmean(latencies),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--model", default="telea")
    parser.add_argument("--quick", action="store_true", help="10 requests, 4 at a time; writes nowhere unless --docs")
    parser.add_argument("--docs", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.concurrency = 10, 4
    docs = args.docs if args.docs is not None else (None if args.quick else DOCS)
    image, mask, ratio = inputs(args.size)
    body, kind = multipart({"model": args.model, "seed": "0"}, {"image": image, "mask": mask})
    server, url = start_server(args.model, max_waiting=args.requests)
    try:
        log(f"serving on {url}; two requests alone")
        first = load(url, body, kind, 1, 1)["max"]  # imports and the method's first use
        single = load(url, body, kind, 1, 1)["max"]
        after_warmup = memory(server.pid)
        log(f"{args.requests} requests, {args.concurrency} at a time")
        result = load(url, body, kind, args.requests, args.concurrency)
        used = memory(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    ok = result["errors"] == 0 and result["answered"] == args.requests and result["distinct_results"] == 1
    table = (
        f"| requests | at a time | errors | lost | distinct results | p50 | p90 | p99 | max | throughput |\n"
        f"|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {args.requests} | {args.concurrency} | {result['errors']} | {args.requests - result['answered']} "
        f"| {result['distinct_results']} | {result['p50']:.3f} s | {result['p90']:.3f} s | {result['p99']:.3f} s "
        f"| {result['max']:.3f} s | {result['throughput']:.1f} requests/s |"
    )
    verdict = (
        "Every answer was a 200 with the same bytes." if ok else "NOT every answer was the same 200: see the table."
    )
    body_text = f"""## `inpaint serve` under load

**Machine.** {machine(PACKAGES)}

`python -m benchmarks.serve_load --requests {args.requests} --concurrency {args.concurrency} --size {args.size} \
--model {args.model}`: `inpaint serve -m {args.model}` in its own process on loopback; {args.requests} `POST
/api/v1/complete` requests ({args.size} px photo, a LaMa-thick mask filling {ratio:.0%}, {len(body) / 2**20:.2f} MiB
each), {args.concurrency} at a time from one client process. Latency is what a client waits, queueing included:
the server runs one job at a time per device, so with {args.concurrency} at a time a request waits for the ones
ahead of it. Alone, the first request took {first:.3f} s (imports, the method's first use) and the next
{single:.3f} s.

{table}

Server memory: {after_warmup["VmRSS"]:.0f} MiB resident after the warm-up request, peak {used["VmHWM"]:.0f} MiB
during the load, {used["VmRSS"]:.0f} MiB after it. {verdict}
"""
    print(body_text)
    if docs is not None:
        write_section(SECTION, body_text, docs)
        log(f"wrote {docs}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
