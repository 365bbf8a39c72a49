"""``inpaint demo`` end to end, small."""

from __future__ import annotations

import json

import numpy as np

from inpaint import io


def test_demo_writes_grid_and_table(cli, tmp_path):
    out = tmp_path / "demo"
    result = cli(
        "demo",
        "-o",
        out,
        "--size",
        "48",
        "--photo",
        "astronaut",
        "--photo",
        "coffee",
        "--photo",
        "coffee",
        "--model",
        "biharmonic",
        "--model",
        "telea",
        "--model",
        "telea",
        "--json",
    )  # repeats count once
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert [s["method"] for s in summary["scores"]] == ["biharmonic", "telea"]
    assert sorted(p.name for p in (out / "photos").iterdir()) == ["astronaut.png", "coffee.png"]
    grid = io.read_image(out / "grid.png")
    # 2 rows of 48 px, 4 columns (original, masked, two methods), plus gaps and a label strip.
    assert grid.shape[1] == 4 * 48 + 5 * 4 and grid.shape[0] > 2 * 48
    table = (out / "metrics.md").read_text()
    assert "| biharmonic |" in table and "| telea |" in table and "SSIM hole" in table
    for method in ("biharmonic", "telea"):
        for photo in ("astronaut", "coffee"):
            result_image = io.read_image(out / method / f"{photo}.png")
            original = io.read_image(out / "photos" / f"{photo}.png")
            mask = io.read_mask(out / "masks" / f"{photo}.png")
            assert mask.any() and np.array_equal(result_image[~mask], original[~mask])
    scores = {s["method"]: s for s in summary["scores"]}
    # Whole-image scores include the untouched known pixels, so they beat the hole-only ones.
    assert scores["biharmonic"]["psnr"] > scores["biharmonic"]["psnr_hole"]
    assert 0 < scores["telea"]["ssim_hole"] < scores["telea"]["ssim"] <= 1


def test_demo_default_run_uses_every_available_method(cli, tmp_path):
    from inpaint.demo import available_methods

    result = cli("demo", "-o", tmp_path / "d", "--size", "32", "--photo", "rocket")
    assert result.code == 0, result
    for method in available_methods():
        assert f"{method}" in result.out
    assert (tmp_path / "d" / "grid.png").exists()


def test_a_method_without_its_weights_is_refused_with_how_to_run_it_on_others(cli, tmp_path):
    from inpaint import models
    from inpaint.models.base import MethodOptions

    reason = models.get_method("ddpm").why_unavailable(MethodOptions())
    assert reason.kind == "weights" and reason.method == "ddpm"
    result = cli("demo", "-o", tmp_path / "d", "--size", "32", "--model", "ddpm")
    assert result.code == 2 and "--model ddpm: needs fine-tuned weights" in result.err
    assert "inpaint complete -m ddpm --weights" in result.err and not (tmp_path / "d").exists()
    result = cli("demo", "-o", tmp_path / "d", "--photo", "moon")
    assert result.code == 2 and "--photo 'moon': unknown demo photo" in result.err
    # What the options name is theirs to fix: no advice about the demo's default weights.
    named = models.get_method("ddpm").why_unavailable(MethodOptions(weights=str(tmp_path / "nowhere")))
    assert named.kind == "options" and str(named) == named.message
