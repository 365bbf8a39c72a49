"""``inpaint make-masks`` from the command line."""

from __future__ import annotations

import json

import numpy as np

from inpaint import io


def test_masks_for_a_folder_of_images(cli, tmp_path, photo):
    images = tmp_path / "images"
    io.save_image(photo, images / "a.png")
    io.save_image(photo[:48], images / "b.jpg")  # 64 wide, 48 high
    out = tmp_path / "masks"
    result = cli("make-masks", images, "--preset", "lama-thick", "--seed", "0", "-o", out, "--json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["count"] == 2 and sum(summary["bins"]) == 2
    assert io.read_mask(out / "a.png").shape == (64, 64)
    assert io.read_mask(out / "b.png").shape == (48, 64)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["presets"] == ["lama-thick"]
    assert set(manifest["files"]) == {"a.png", "b.png"}


def test_standalone_masks_are_reproducible_and_summarised(cli, tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    args = ["make-masks", "--size", "32x24", "--count", "5", "--preset", "box-random", "--seed", "3"]
    result = cli(*args, "-o", first)
    assert result.code == 0, result
    assert "5 masks" in result.err and "LaMa area bins" in result.err
    assert cli(*args, "-o", second).code == 0
    for name in [f"mask_{i:05d}.png" for i in range(5)]:
        assert (first / name).read_bytes() == (second / name).read_bytes()
        assert io.read_mask(first / name).shape == (24, 32)


def test_mixture_and_ratio_bounds(cli, tmp_path):
    out = tmp_path / "mix"
    result = cli(
        "make-masks",
        "--size",
        "64",
        "--count",
        "12",
        "-p",
        "box-center",
        "-p",
        "repaint-genhalf",
        "--min-ratio",
        "0.2",
        "--max-ratio",
        "0.6",
        "-o",
        out,
        "--json",
    )
    assert result.code == 0, result
    manifest = json.loads((out / "manifest.json").read_text())
    used = {entry["preset"] for entry in manifest["files"].values()}
    assert used == {"box-center", "repaint-genhalf"}
    assert all(0.2 <= entry["hole_ratio"] <= 0.6 for entry in manifest["files"].values())
    ratios = [io.read_mask(out / name).mean() for name in manifest["files"]]
    assert np.allclose(sorted(ratios), sorted(e["hole_ratio"] for e in manifest["files"].values()))


def test_bad_requests_are_one_line_errors(cli, tmp_path):
    result = cli("make-masks", "--size", "64", "--count", "2", "--preset", "lama-huge", "-o", tmp_path / "x")
    assert result.code == 2 and "unknown mask preset 'lama-huge'" in result.err
    result = cli("make-masks", "--size", "64", "-o", tmp_path / "x")
    assert result.code == 2 and "--size and --count" in result.err
    result = cli("make-masks", "--size", "big", "--count", "2", "-o", tmp_path / "x")
    assert result.code == 2 and "--size 'big'" in result.err
    result = cli(
        "make-masks", "--size", "64", "--count", "2", "-p", "repaint-nn2", "--max-ratio", "0.5", "-o", tmp_path / "x"
    )
    assert result.code == 2 and "repaint-nn2" in result.err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
    # In a mixture too: nothing is written, rather than the masks drawn before nn2 is first picked.
    result = cli(
        "make-masks",
        "--size",
        "32",
        "--count",
        "20",
        "-p",
        "lama-thick",
        "-p",
        "repaint-nn2",
        "--max-ratio",
        "0.5",
        "-o",
        tmp_path / "mix",
    )
    assert result.code == 2 and "preset repaint-nn2 always fills 0.750 of a 32x32 image" in result.err
    assert not (tmp_path / "mix").exists() or not any((tmp_path / "mix").iterdir())


def test_existing_masks_need_overwrite(cli, tmp_path):
    out = tmp_path / "m"
    assert cli("make-masks", "--size", "32", "--count", "2", "-o", out).code == 0
    result = cli("make-masks", "--size", "32", "--count", "2", "-o", out)
    assert result.code == 2 and "--overwrite" in result.err
    assert cli("make-masks", "--size", "32", "--count", "2", "-o", out, "--overwrite").code == 0


def test_an_overwrite_stopped_part_way_leaves_no_manifest_vouching_for_the_old_set(cli, tmp_path, monkeypatch):
    from inpaint import mask_sets

    out = tmp_path / "m"
    assert cli("make-masks", "--size", "32", "--count", "6", "-o", out).code == 0
    written = []
    save_mask = mask_sets.io.save_mask

    def killed_after_three(mask, path):
        if len(written) == 3:
            raise KeyboardInterrupt  # as a Ctrl-C would
        written.append(path)
        return save_mask(mask, path)

    monkeypatch.setattr(mask_sets.io, "save_mask", killed_after_three)
    result = cli("make-masks", "--size", "32", "--count", "6", "--seed", "3", "-o", out, "--overwrite")
    assert result.code == 130 and len(written) == 3 and not (out / "manifest.json").exists()


def test_list_presets(cli):
    result = cli("make-masks", "--list-presets")
    assert result.code == 0
    for name in ("lama-thin", "lama-medium", "lama-thick", "repaint-ev2li", "box-center"):
        assert name in result.out
