"""What every benchmark shares: the machine description, the docs writer and the timing loops.

Each section of docs/benchmarks.md names the machine it was measured on in one line made here, so
that figures from different scripts and days can be told apart the same way.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
TITLE = "# Benchmarks\n\nMeasurements of `inpaint` itself; each section says how to rerun it and on which machine.\n"


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def code_version() -> str:
    """``inpaint X`` and, when it runs from a git checkout, the commit (and whether its tree has local changes)."""
    import inpaint

    folder = Path(inpaint.__file__).resolve().parent
    text = f"inpaint {inpaint.__version__}"
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(folder), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return text
    return f"{text} at commit {commit}" + (" with local changes" if changes else "")


def machine(packages: Iterable[str] = ("torch",)) -> str:
    """One line: CPU model, cores, GPU (if any), torch threads; Python and ``packages`` versions; the
    ``inpaint`` version and commit; the date. Every section's **Machine.** line is this."""
    from importlib import metadata

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    # torch's own version string names its CUDA or CPU build (2.6.0+cu124), which its metadata may not.
    versions = ", ".join(
        f"{name} {torch.__version__ if name == 'torch' else metadata.version(name)}" for name in packages
    )
    return (
        f"{cpu_name()}, {os.cpu_count()} cores, {gpu}, torch threads: {torch.get_num_threads()}; "
        f"Python {platform.python_version()}, {versions}; {code_version()}; "
        f"measured {datetime.date.today().isoformat()}"
    )


def write_section(name: str, body: str, docs: Path = DOCS) -> None:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` (append if absent)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = docs.read_text() if docs.exists() else TITLE
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    from inpaint import atomic

    atomic.write_text(docs, text)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 1) -> dict[str, float]:
    """Median times of several functions, run alternately so that load on a shared machine hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}
