"""The study's reproduction recipe (examples/reproduce_study.sh) end to end, offline, on tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "reproduce_study.sh"


# About a minute; tests/test_walkthrough.py runs the same commands in the default run.
@pytest.mark.slow
def test_reproduction_recipe_runs_offline_in_its_tiny_mode_and_resumes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    work = tmp_path / "work"
    first = subprocess.run(
        ["bash", str(SCRIPT), "--tiny", str(work)], env=env, capture_output=True, text=True, timeout=900
    )
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((work / "results" / "results.json").read_text())
    assert set(results["models"]) == {"ddpm", "sd"}
    for model in ("ddpm", "sd"):
        assert results["models"][model]["metrics"]["psnr"]["n"] == 4
    report = (work / "results" / "report.md").read_text()
    assert "ddpm" in report and "sd" in report
    assert (work / "runs" / "ddpm" / "config.json").is_file()
    assert (work / "runs" / "lora" / "pytorch_lora_weights.safetensors").is_file()
    captions = json.loads((work / "data" / "captions.json").read_text())  # made by train-lora itself
    assert len(captions) == 10 and all(text.endswith("sharp focus") for text in captions.values())
    assert sorted(p.name for p in (work / "masks").glob("*.png")) == sorted(
        p.name for p in (work / "test").glob("*.png")
    )

    # Every stage resumes: a second run reuses what is done and ends with the same numbers.
    second = subprocess.run(
        ["bash", str(SCRIPT), "--tiny", str(work)], env=env, capture_output=True, text=True, timeout=900
    )
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads((work / "results" / "results.json").read_text())
    assert {m: again["models"][m]["metrics"] for m in again["models"]} == {
        m: results["models"][m]["metrics"] for m in results["models"]
    }
