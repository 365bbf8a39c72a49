"""The GPU benchmark script runs end to end (on the CPU, tiny models) before a GPU session spends
its few minutes on it, and the real-size script's stages run on tiny look-alikes of the real bases;
they measure nothing here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_benchmark_smoke_run_exercises_every_part():
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_bytes()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--repeats", "1"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "smoke run: tiny models, nothing measured" in out
    # The sd table compares with a bare diffusers call at every batch size, then with the references.
    assert len(re.findall(r"\| sd 64 px, 2 steps, fp32 \| \d \| .* \| [\d.]+x \([\d.]+ s\) \|", out)) == 2
    assert "Against the references" in out
    assert out.count("| ddpm 32 px, DDPM 2 steps") == 2
    assert out.count("| train-lora step, batch 2, 64 px") == 2
    assert all(f"| sd batch 2, {lever} |" in out for lever in ("default", "--channels-last", "--vae-slicing",
                                                                "--attention-slicing"))
    assert docs.read_bytes() == before  # a smoke run prints; it never overwrites the recorded figures


def test_gpu_parts_run_separately_accumulate_in_the_docs(tmp_path):
    """A GPU session runs `--only sd`, then `--only ddpm`, …: each run keeps the others' figures."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu
    from _report import write_section

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
    assert text.count("Not measured yet.") == 2  # lora and levers
    assert text.count("<!-- gpu:begin -->") == 1 and text.startswith("# Benchmarks")


@pytest.mark.slow  # eleven `python -m inpaint` processes and three model builds: about two minutes on two cores
def test_real_size_smoke_run_runs_every_stage_as_a_user_types_it(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import real_size

    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_bytes()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "real_size.py"), "--smoke", "--print",
                             "--cache", str(tmp_path)], capture_output=True, text=True, env=env, timeout=900)
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
