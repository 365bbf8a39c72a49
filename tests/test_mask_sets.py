"""Mask folders: files, manifest, overwrite refusal, image sizes (EXIF), determinism, progress."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from inpaint import __version__, io, mask_sets, masks
from inpaint.errors import InputError


class RecordingProgress:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def start(self, description, total):
        self.events.append(("start", description, total))

    def advance(self, n=1, **info):
        self.events.append(("advance", n))

    def finish(self):
        self.events.append(("finish",))


def make_images(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (width, height) in sizes.items():
        Image.new("RGB", (width, height), (120, 30, 200)).save(folder / name)


def test_standalone_masks_files_and_manifest(tmp_path):
    out = tmp_path / "masks"
    progress = RecordingProgress()
    summary = mask_sets.standalone_masks(
        out, width=48, height=32, count=6, presets=["lama-thin", "box-center"], seed=2, progress=progress
    )
    names = [f"mask_{i:05d}.png" for i in range(6)]
    assert [p.name for p in summary.files] == names and summary.count == 6
    assert summary.manifest == out / "manifest.json"
    assert sum(summary.bins) == 6 and len(summary.bins) == 10 and sum(summary.presets.values()) == 6
    assert progress.events == [("start", "Making masks", 6)] + [("advance", 1)] * 6 + [("finish",)]

    manifest = json.loads(summary.manifest.read_text())
    assert manifest["tool"] == f"inpaint {__version__}" and manifest["kind"] == "masks"
    assert manifest["presets"] == ["lama-thin", "box-center"] and manifest["seed"] == 2
    assert manifest["min_ratio"] is None and manifest["max_ratio"] is None
    assert manifest["polarity"] == "white (255) = fill, black (0) = keep"
    assert manifest["params"]["box-center"] == {"ratio": 0.25}
    assert manifest["params"]["lama-thin"]["irregular_kwargs"]["max_times"] == 50
    assert list(manifest["files"]) == names
    ratios = []
    for name, entry in manifest["files"].items():
        path = out / name
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (entry["width"], entry["height"]) == (48, 32)
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (48, 32)
            assert set(np.unique(np.asarray(image))) <= {0, 255}
        mask = io.read_mask(path)
        assert entry["hole_ratio"] == masks.hole_ratio(mask)
        expected, preset = masks.make_mask(["lama-thin", "box-center"], seed=2, name=name[:-4], height=32, width=48)
        assert np.array_equal(mask, expected) and entry["preset"] == preset
        ratios.append(entry["hole_ratio"])
    assert summary.min == min(ratios) and summary.max == max(ratios)
    assert summary.mean == pytest.approx(sum(ratios) / 6)
    as_dict = summary.to_dict()
    assert json.loads(json.dumps(as_dict))["manifest"] == str(summary.manifest)
    assert as_dict["hole_ratio"]["max"] == summary.max and as_dict["skipped"] == 0


def test_same_arguments_give_identical_bytes(tmp_path):
    kwargs = {"width": 40, "height": 40, "count": 4, "presets": "lama-thick", "seed": 5}
    first = mask_sets.standalone_masks(tmp_path / "a", **kwargs)
    second = mask_sets.standalone_masks(tmp_path / "b", **kwargs)
    for a, b in zip(first.files, second.files):
        assert a.read_bytes() == b.read_bytes()
    other = mask_sets.standalone_masks(tmp_path / "c", **{**kwargs, "seed": 6})
    assert any(a.read_bytes() != c.read_bytes() for a, c in zip(first.files, other.files))


def test_existing_files_are_refused_before_writing(tmp_path):
    out = tmp_path / "masks"
    out.mkdir()
    (out / "mask_00002.png").write_bytes(b"precious")
    with pytest.raises(InputError, match="1 of the output files already exist.*mask_00002.png.*--overwrite"):
        mask_sets.standalone_masks(out, width=16, height=16, count=4, presets="box-random")
    assert [p.name for p in out.iterdir()] == ["mask_00002.png"]
    assert (out / "mask_00002.png").read_bytes() == b"precious"
    summary = mask_sets.standalone_masks(out, width=16, height=16, count=4, presets="box-random", overwrite=True)
    assert summary.count == 4 and io.read_mask(out / "mask_00002.png").shape == (16, 16)


def test_existing_manifest_is_refused(tmp_path):
    mask_sets.standalone_masks(tmp_path, width=16, height=16, count=1, presets="box-center")
    with pytest.raises(InputError, match="manifest.json"):
        mask_sets.standalone_masks(tmp_path, width=16, height=16, count=1, presets="box-center", name_format="other_{}")


def test_masks_for_images_match_sizes_and_skip_other_files(tmp_path):
    images = tmp_path / "images"
    make_images(images, {"a.png": (32, 20), "b.jpg": (24, 40)})
    (images / "notes.txt").write_text("not an image")
    summary = mask_sets.masks_for_images(images, tmp_path / "masks", presets="lama-medium", seed=1)
    assert summary.count == 2 and summary.skipped == 1
    assert [p.name for p in summary.files] == ["a.png", "b.png"]
    assert io.read_mask(tmp_path / "masks" / "a.png").shape == (20, 32)
    assert io.read_mask(tmp_path / "masks" / "b.png").shape == (40, 24)
    manifest = json.loads(summary.manifest.read_text())
    assert manifest["files"]["b.png"]["image"] == "b.jpg"
    assert (manifest["files"]["b.png"]["width"], manifest["files"]["b.png"]["height"]) == (24, 40)
    # The identity is the stem: a standalone mask with the same name and size is the same mask.
    expected, _ = masks.make_mask("lama-medium", seed=1, name="a", height=20, width=32)
    assert np.array_equal(io.read_mask(tmp_path / "masks" / "a.png"), expected)


def test_exif_rotated_image_gets_a_mask_of_the_rotated_size(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: a 40x20 file displays as 20x40
    Image.new("RGB", (40, 20), (10, 20, 30)).save(images / "photo.jpg", exif=exif)
    summary = mask_sets.masks_for_images(images, tmp_path / "masks", presets="box-center")
    mask = io.read_mask(summary.files[0])
    assert mask.shape == io.read_image(images / "photo.jpg").shape[:2] == (40, 20)


def test_bad_folders_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        mask_sets.masks_for_images(tmp_path / "empty", tmp_path / "masks", presets="lama-thin")
    make_images(tmp_path / "twins", {"a.png": (8, 8), "a.jpg": (8, 8)})
    with pytest.raises(InputError, match="a.jpg and a.png would both get the mask a.png"):
        mask_sets.masks_for_images(tmp_path / "twins", tmp_path / "masks", presets="lama-thin")
    with pytest.raises(InputError, match="output folder is the image folder"):
        mask_sets.masks_for_images(tmp_path / "twins", tmp_path / "twins", presets="lama-thin", overwrite=True)
    with pytest.raises(InputError, match="unknown mask preset"):
        mask_sets.masks_for_images(tmp_path / "twins", tmp_path / "masks", presets="nope")
    assert not (tmp_path / "masks").exists()


def test_standalone_argument_errors(tmp_path):
    with pytest.raises(InputError, match="--count"):
        mask_sets.standalone_masks(tmp_path, width=8, height=8, count=0, presets="lama-thin")
    with pytest.raises(InputError, match="different names"):
        mask_sets.standalone_masks(tmp_path, width=8, height=8, count=2, presets="lama-thin", name_format="same")
    with pytest.raises(InputError, match="--min-ratio"):
        mask_sets.standalone_masks(tmp_path, width=8, height=8, count=2, presets="lama-thin", min_ratio=2.0)
    assert list(tmp_path.iterdir()) == []


def test_ratio_bounds_are_recorded_and_honoured(tmp_path):
    summary = mask_sets.standalone_masks(
        tmp_path, width=64, height=64, count=5, presets="lama-thick", min_ratio=0.1, max_ratio=0.3
    )
    assert 0.1 <= summary.min and summary.max <= 0.3
    manifest = json.loads(summary.manifest.read_text())
    assert (manifest["min_ratio"], manifest["max_ratio"]) == (0.1, 0.3)
