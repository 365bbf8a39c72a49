"""The benchmarks run as the docs say (``python -m benchmarks.NAME`` from the repository root): the GPU
benchmark end to end on the CPU with tiny models, so that it is known to work before GPU time is spent
on it, and the real-size stages on tiny look-alikes of the real bases. They measure nothing here."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu, real_size
from benchmarks._report import write_section

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(path.stem for path in (ROOT / "benchmarks").glob("*.py") if path.stem != "__init__")


def run_module(name: str, *args: str, timeout: int) -> subprocess.CompletedProcess:
    """``python -m benchmarks.NAME ARGS`` from the repository root, offline, as benchmarks/README.md has it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_module_imports_as_part_of_the_package(name):
    importlib.import_module(f"benchmarks.{name}")


def test_the_docs_give_benchmark_commands_as_modules_that_exist():
    """`python benchmarks/NAME.py` cannot import the package's shared modules, so no doc may show it."""
    docs = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for doc in docs:
        text = doc.read_text()
        assert "python benchmarks/" not in text, doc
        for name in re.findall(r"python -m benchmarks\.([a-z_]+)", text):  # NAME stands for any of them
            assert name in MODULES, (doc, name)


# A GPU benchmark's smoke run on the CPU; the imports and docs commands are tested in the default run.
@pytest.mark.slow
def test_gpu_benchmark_smoke_run_exercises_every_part():
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_bytes()
    result = run_module("gpu", "--smoke", "--repeats", "1", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "smoke run: tiny models, nothing measured" in out
    # The sd table compares with a bare diffusers call at every batch size, then with the references.
    assert len(re.findall(r"\| sd 64 px, 2 steps, fp32 \| \d \| .* \| [\d.]+x \([\d.]+ s\) \|", out)) == 2
    assert "Against the references" in out
    assert out.count("| ddpm 32 px, DDPM 2 steps") == 2
    assert out.count("| train-lora step, batch 2, 64 px") == 2
    assert all(
        f"| sd batch 2, {lever} |" in out
        for lever in ("default", "--channels-last", "--vae-slicing", "--attention-slicing")
    )
    assert docs.read_bytes() == before  # a smoke run prints; it never overwrites the recorded figures


def test_gpu_parts_run_separately_accumulate_in_the_docs(tmp_path):
    """Runs of `--only sd`, then `--only ddpm`, …: each keeps the others' figures."""
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- gpu:begin -->\n## GPU figures\n\nNot measured yet.\n<!-- gpu:end -->\n")

    def run(part: str, figure: str) -> None:  # what main() does after measuring `part`
        blocks = {part: f"### {gpu.PARTS[part]}\n\n*Measured today.*\n\n{figure}"}
        kept = {p: b for p, b in gpu.recorded_parts(docs).items() if p not in blocks}
        write_section("gpu", gpu.gpu_section({**kept, **blocks}), docs=docs)

    run("sd", "| sd row | 1.0 s |")
    run("ddpm", "| ddpm row | 2.0 s |")
    run("sd", "| sd row again | 0.9 s |")
    text = docs.read_text()
    assert "| ddpm row | 2.0 s |" in text and "| sd row again | 0.9 s |" in text and "| sd row | 1.0 s |" not in text
    # lora and levers: what they will measure, and the command that measures each.
    assert text.count(gpu.NOT_MEASURED) == 2
    assert "python -m benchmarks.gpu --only lora`" in text and "python -m benchmarks.gpu --only levers`" in text
    assert text.count("<!-- gpu:begin -->") == 1 and text.startswith("# Benchmarks")


@pytest.mark.slow  # eleven `python -m inpaint` processes and three model builds: about two minutes on two cores
def test_real_size_smoke_run_runs_every_stage_as_a_user_types_it(tmp_path):
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_bytes()
    result = run_module("real_size", "--smoke", "--print", "--cache", str(tmp_path), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out, data = result.stdout.split("<!-- real-size-results")  # the table, and the rows as JSON for --only
    assert "**Smoke run**" in out and len(data.strip().splitlines()) == len(real_size.stages()) + 1
    for stage in real_size.stages():  # every stage ran, with its command as typed, and succeeded
        assert f"| {stage.name} | `{stage.command}` |" in out
    assert "**failed**" not in out and "**not run**" not in out
    # The figures derived from the commands' own records: training steps, sampling steps, bench images.
    assert out.count("CPU s per image (this row minus") == 2 and out.count("; a step: ") == 2
    assert "CPU of the second image: ddpm" in out
    # The hub ids resolved from the private cache: parameter counts read from its snapshots.
    assert re.search(r"SD 1\.5 Inpainting UNet [\d.]+ M", out)
    assert docs.read_bytes() == before  # a smoke run prints; it never overwrites the recorded figures


def test_serve_load_smoke_run_checks_every_answer(tmp_path):
    docs = tmp_path / "benchmarks.md"
    result = run_module("serve_load", "--quick", "--size", "64", "--docs", str(docs), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    section = docs.read_text()
    assert "| 10 | 4 | 0 | 0 | 1 |" in section and "Every answer was a 200 with the same bytes." in section
