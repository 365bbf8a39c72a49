"""The GPU benchmark script runs end to end (on the CPU, tiny models) before a GPU session spends
its few minutes on it; it measures nothing here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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
