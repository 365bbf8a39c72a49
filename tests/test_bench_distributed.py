"""`inpaint bench` under torchrun with 2 CPU processes (gloo) equals a single-process run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

# The Fréchet distance's 2048x2048 sqrtm takes ~40 s on a small CPU; the entry point swaps in a cheap
# function of the same statistics (mean and covariance of the gathered features), which is what a
# split run could get wrong. FID itself equals pytorch-fid in test_metrics_features.py.
ENTRY = textwrap.dedent("""
    import sys

    import numpy as np
    from pytorch_fid import fid_score

    fid_score.calculate_frechet_distance = lambda mu1, s1, mu2, s2: float(
        ((mu1 - mu2) ** 2).sum() + np.trace(s1) - np.trace(s2) + np.abs(s1 - s2).sum())

    from inpaint.cli.app import main

    raise SystemExit(main(sys.argv[1:]))
""")


@pytest.fixture(scope="module")
def seven_images(tmp_path_factory):
    """Seven 40 px photos (an odd count: the processes get 4 and 3)."""
    from skimage import data

    folder = tmp_path_factory.mktemp("bench-dist") / "test"
    folder.mkdir()
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera", "cat", "horse"):
        pixels = getattr(data, name)()
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        if pixels.dtype == bool:
            pixels = pixels.astype(np.uint8) * 255
        Image.fromarray(pixels).resize((40, 40), Image.BICUBIC).save(folder / f"{name}.png")
    return folder


def read(folder):
    with open(folder / "per_image.csv", newline="") as f:
        rows = [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]
    return json.loads((folder / "results.json").read_text()), rows


def test_two_processes_equal_one_process(tmp_path, seven_images, random_lpips_alex_file, random_fid_inception_file):
    entry = tmp_path / "bench_entry.py"
    entry.write_text(ENTRY)
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    common = [
        "bench",
        "--models",
        "telea",
        "biharmonic",
        "--data",
        str(seven_images),
        "--masks",
        "lama-medium",
        "--eval-size",
        "32",
        "--lpips-weights",
        str(random_lpips_alex_file),
        "--fid-weights",
        str(random_fid_inception_file),
        "--kid-subsets",
        "5",
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    two = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(entry), *common, "-o", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert len([line for line in two.stdout.splitlines() if line.startswith("{")]) == 1  # only rank 0 reports
    one = subprocess.run(
        [sys.executable, str(entry), *common, "-o", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]

    (results_two, rows_two), (results_one, rows_one) = read(tmp_path / "two"), read(tmp_path / "one")
    assert results_two["protocol"]["processes"] == 2 and results_one["protocol"]["processes"] == 1
    # Both processes wrote their share of the outputs; together they are the single run's, byte for byte.
    for model in ("telea", "biharmonic"):
        logs = sorted(p.name for p in (tmp_path / "two" / "outputs" / model).glob("log-rank*.jsonl"))
        assert logs == ["log-rank0.jsonl", "log-rank1.jsonl"]
        for path in (tmp_path / "one" / "outputs" / model).glob("*.png"):
            assert path.read_bytes() == (tmp_path / "two" / "outputs" / model / path.name).read_bytes()
    assert (tmp_path / "one" / "masks" / "manifest.json").read_bytes() != b""
    # Per-image scores: the same images in the same order, the same values (LPIPS and Inception run
    # on differently composed batches, hence the tolerance; pixel metrics are exact).
    assert [(r["image"], r["model"]) for r in rows_two] == [(r["image"], r["model"]) for r in rows_one]
    for a, b in zip(rows_two, rows_one):
        for key in a:
            if key.startswith("lpips"):
                assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-6)
            else:
                assert a[key] == b[key], key
    for model in ("telea", "biharmonic"):
        metrics_two, metrics_one = results_two["models"][model]["metrics"], results_one["models"][model]["metrics"]
        assert metrics_two.keys() == metrics_one.keys() and "fid" in metrics_one and "kid" in metrics_one
        for name, value in metrics_one.items():
            assert metrics_two[name]["n"] == value["n"] == 7
            assert metrics_two[name]["value"] == pytest.approx(value["value"], rel=1e-6, abs=1e-9), name


# A caller that goes on after an error (a notebook, a sweep over settings) rather than exiting: a
# process left waiting for the others shows up as a missing error file or a hang, not as a kill by
# the launcher.
FAILING_ENTRY = textwrap.dedent("""
    import os
    import sys
    from pathlib import Path

    from inpaint.bench import BenchConfig, run_bench
    from inpaint.errors import InputError

    data, output = Path(sys.argv[1]), Path(sys.argv[2])
    config = BenchConfig(models=["telea"], data=data, masks="lama-thin", output=output, lpips=False, fid=False,
                         device="cpu")
    try:
        run_bench(config)
    except InputError as e:
        (output.parent / f"error-rank{os.environ['RANK']}.txt").write_text(str(e))
""")


def test_a_preset_mask_failure_on_the_main_process_fails_every_process(tmp_path):
    import signal

    from inpaint import io

    data = tmp_path / "test"
    data.mkdir()
    for name in ("a.png", "a.jpg", "b.png"):  # two images of one stem: the main process cannot draw masks
        io.save_image(np.zeros((16, 16, 3), np.uint8), data / name)
    entry = tmp_path / "failing_entry.py"
    entry.write_text(FAILING_ENTRY)
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launched = subprocess.Popen(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(entry), str(data), str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        _, stderr = launched.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(launched.pid, signal.SIGKILL)  # the launcher and every process it started
        launched.communicate()
        raise AssertionError("a process is still waiting for the others") from None
    assert launched.returncode == 0, stderr[-3000:]
    expected = "a.jpg and a.png would both get the mask a.png; rename one"
    for rank in (0, 1):
        assert (tmp_path / f"error-rank{rank}.txt").read_text() == expected
    assert not (tmp_path / "out" / "outputs").exists()
