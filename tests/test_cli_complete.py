"""``inpaint complete`` on files, folders and pipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from inpaint import io


def test_single_file_keeps_known_pixels_and_reports_json(cli, tmp_path, pair, photo, center_mask):
    image, mask = pair
    out = tmp_path / "out.png"
    result = cli("complete", image, mask, "-o", out, "--json", "--concat")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["method"] == "biharmonic" and summary["seed"] == 0
    assert summary["files"] == [str(tmp_path / "out_concat.png"), str(out)]
    completed = io.read_image(out)
    assert np.array_equal(completed[~center_mask], photo[~center_mask])
    assert not np.array_equal(completed[center_mask], np.full_like(completed[center_mask], 255))
    assert io.read_image(tmp_path / "out_concat.png").shape == (64, 3 * 64 + 4, 3)
    assert "using biharmonic" in result.err  # the default method is announced on stderr


def test_existing_output_needs_overwrite_and_input_is_never_overwritten(cli, tmp_path, pair):
    image, mask = pair
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    result = cli("complete", image, mask, "-o", out, "-m", "telea")
    assert result.code == 2 and "already exists" in result.err and out.read_bytes() == b"keep me"
    assert cli("complete", image, mask, "-o", out, "-m", "telea", "--overwrite").code == 0
    before = image.read_bytes()
    result = cli("complete", image, mask, "-o", image, "-m", "telea", "--overwrite")
    assert result.code == 2 and "would overwrite the input" in result.err and image.read_bytes() == before


def test_mask_size_mismatch_and_resize(cli, tmp_path, pair):
    image, _ = pair
    small = io.save_mask(np.ones((32, 32), bool) & (np.arange(32) > 16), tmp_path / "small.png")
    result = cli("complete", image, small, "-o", tmp_path / "o.png")
    assert result.code == 2 and "is 32x32 but" in result.err and "is 64x64" in result.err
    assert not (tmp_path / "o.png").exists()
    assert cli("complete", image, small, "-o", tmp_path / "o.png", "--resize-mask").code == 0


def test_invert_mask_reads_white_as_keep(cli, tmp_path, pair, photo, center_mask):
    image, _ = pair
    keep = io.save_mask(~center_mask, tmp_path / "keep.png")  # white = keep, RePaint style
    assert cli("complete", image, keep, "-o", tmp_path / "o.png", "--invert-mask", "-m", "telea").code == 0
    assert np.array_equal(io.read_image(tmp_path / "o.png")[~center_mask], photo[~center_mask])


def test_empty_mask_returns_input_with_a_warning(cli, tmp_path, pair, photo):
    image, _ = pair
    empty = io.save_mask(np.zeros((64, 64), bool), tmp_path / "empty.png")
    result = cli("complete", image, empty, "-o", tmp_path / "o.png")
    assert result.code == 0 and "warning:" in result.err and "empty mask" in result.err
    assert np.array_equal(io.read_image(tmp_path / "o.png"), photo)


def _folder(tmp_path, photo, center_mask, n=3):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(n):
        io.save_image(np.roll(photo, 7 * i, axis=1), images / f"img{i}.png")
        io.save_mask(np.roll(center_mask, 5 * i, axis=0), masks / f"img{i}.png")
    return images, masks


def test_folder_matches_by_stem_and_resumes(cli, tmp_path, photo, center_mask):
    images, masks = _folder(tmp_path, photo, center_mask)
    (images / "README.txt").write_text("not an image")
    out = tmp_path / "out"
    result = cli("complete", images, masks, "-o", out, "-m", "telea", "--json")
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["written"] == ["img0", "img1", "img2"] and summary["ignored_files"] == ["README.txt"]
    first = (out / "img1.png").read_bytes()
    (out / "img1.png").unlink()
    result = cli("complete", images, masks, "-o", out, "-m", "telea", "--json")
    summary = json.loads(result.out)
    assert summary["written"] == ["img1"] and summary["skipped_existing"] == ["img0", "img2"]
    assert (out / "img1.png").read_bytes() == first  # same seed, same bytes
    summary = json.loads(cli("complete", images, masks, "-o", out, "-m", "telea", "--json", "--overwrite").out)
    assert summary["written"] == ["img0", "img1", "img2"]


def test_folder_with_lama_style_mask_names_in_one_folder(cli, tmp_path, photo, center_mask):
    folder = tmp_path / "data"
    io.save_image(photo, folder / "face_crop000.png")
    io.save_mask(center_mask, folder / "face_crop000_mask000.png")
    result = cli("complete", folder, folder, "-o", tmp_path / "out", "-m", "telea", "--json")
    assert result.code == 0, result
    assert json.loads(result.out)["written"] == ["face_crop000"]


def test_folder_reports_a_bad_image_and_finishes_the_rest(cli, tmp_path, photo, center_mask):
    images, masks = _folder(tmp_path, photo, center_mask)
    (images / "img1.png").write_bytes(b"\x89PNG broken")
    result = cli("complete", images, masks, "-o", tmp_path / "out", "-m", "telea")
    assert result.code == 1
    assert "img1.png: " in result.err and "1 of 3 images failed" in result.err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["img0.png", "img2.png"]


def test_folder_without_matching_masks_is_refused(cli, tmp_path, photo, center_mask):
    images, masks = _folder(tmp_path, photo, center_mask)
    (masks / "img2.png").unlink()
    result = cli("complete", images, masks, "-o", tmp_path / "out")
    assert result.code == 2 and "no mask for 1 of 3 images (first: img2.png)" in result.err
    assert not (tmp_path / "out").exists()


def test_folder_refuses_output_inside_inputs(cli, tmp_path, photo, center_mask):
    images, masks = _folder(tmp_path, photo, center_mask)
    result = cli("complete", images, masks, "-o", images)
    assert result.code == 2 and "must differ from the input folders" in result.err


def test_pipe_from_stdin_to_stdout(tmp_path, pair, photo, center_mask):
    image, mask = pair
    result = subprocess.run(
        [sys.executable, "-m", "inpaint", "complete", "-", str(mask), "-o", "-", "-m", "telea"],
        input=image.read_bytes(),
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr.decode()
    completed = io.read_image(result.stdout, name="<stdout>")
    assert np.array_equal(completed[~center_mask], photo[~center_mask])
    # Same stem "stdin" seeding; deterministic method: identical to a file run through the CLI.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "inpaint",
            "complete",
            str(image),
            str(mask),
            "-o",
            str(tmp_path / "f.png"),
            "-m",
            "telea",
        ],
        check=True,
        capture_output=True,
    )
    assert np.array_equal(io.read_image(tmp_path / "f.png"), completed)


def test_stdout_output_rejects_json(cli, pair):
    image, mask = pair
    result = cli("complete", image, mask, "-o", "-", "--json")
    assert result.code == 2 and "--json" in result.err


@pytest.mark.parametrize("suffix, fmt", [(".jpg", "JPEG"), (".webp", "WEBP")])
def test_output_format_from_extension(cli, tmp_path, pair, suffix, fmt):
    image, mask = pair
    assert cli("complete", image, mask, "-o", tmp_path / f"o{suffix}", "-m", "telea").code == 0
    assert Image.open(tmp_path / f"o{suffix}").format == fmt


def test_no_paste_back_keeps_the_raw_output(cli, tmp_path, pair, photo, center_mask, monkeypatch):
    from inpaint.models import classical

    def shifted(self, image, mask):  # a method that also changes the known pixels, as a VAE does
        return (image * 0.5).clip(0, 1)

    monkeypatch.setattr(classical.Telea, "fill_one", shifted)
    image, mask = pair
    assert cli("complete", image, mask, "-o", tmp_path / "pasted.png", "-m", "telea").code == 0
    assert cli("complete", image, mask, "-o", tmp_path / "raw.png", "-m", "telea", "--no-paste-back").code == 0
    pasted, raw = io.read_image(tmp_path / "pasted.png"), io.read_image(tmp_path / "raw.png")
    assert np.array_equal(pasted[~center_mask], photo[~center_mask])
    assert not np.array_equal(raw[~center_mask], photo[~center_mask])
    assert np.array_equal(raw[center_mask], pasted[center_mask])


def test_the_concat_file_obeys_the_output_rules(cli, tmp_path, pair):
    image, mask = pair
    out = tmp_path / "out.png"
    side = tmp_path / "out_concat.png"
    side.write_bytes(b"keep me")
    result = cli("complete", image, mask, "-o", out, "-m", "telea", "--concat")
    assert result.code == 2 and f"{side}: already exists (use --overwrite" in result.err
    assert side.read_bytes() == b"keep me" and not out.exists()
    assert cli("complete", image, mask, "-o", out, "-m", "telea", "--concat", "--overwrite").code == 0
    assert io.read_image(side).shape == (64, 3 * 64 + 4, 3)
    # -o in/photo.png puts the side-by-side image on in/photo_concat.png: when that is the IMAGE,
    # it must survive, even with --overwrite.
    victim = image.parent / "photo_concat.png"
    victim.write_bytes(image.read_bytes())
    before = image.read_bytes()
    result = cli("complete", victim, mask, "-o", image, "-m", "telea", "--concat", "--overwrite")
    assert result.code == 2 and f"{victim}: the output would overwrite the input" in result.err
    assert victim.read_bytes() == before and image.read_bytes() == before


def test_folder_concat_never_writes_into_an_input_folder(cli, tmp_path, photo, center_mask):
    out = tmp_path / "out"
    out.mkdir()
    images, masks = _folder(tmp_path, photo, center_mask)
    images = images.rename(out / "concat")  # where --concat writes out/concat/img0.png, ...
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    result = cli("complete", images, masks, "-o", out, "-m", "telea", "--concat")
    assert result.code == 2 and "holds input files" in result.err
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before
    assert not list(out.glob("*.png"))


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_an_unwritable_output_is_refused_before_the_model_loads(
    cli, tmp_path, pair, photo, center_mask, monkeypatch, where
):
    from inpaint import models

    if where == "proc" and not os.path.isdir("/proc/self"):
        pytest.skip("no /proc here")
    loaded = []
    monkeypatch.setattr(models.MethodInfo, "load", lambda info, options: loaded.append(info.name))
    image, mask = pair
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    out = blocker / "o.png" if where == "under-a-file" else "/proc/inpaint-test-output.png"
    result = cli("complete", image, mask, "-o", out, "-m", "telea", "--concat")
    assert result.code == 2 and "cannot write here" in result.err and loaded == [], result
    images, masks = _folder(tmp_path, photo, center_mask)
    out_dir = blocker / "out" if where == "under-a-file" else "/proc/inpaint-test-output"
    result = cli("complete", images, masks, "-o", out_dir, "-m", "telea")
    assert result.code == 2 and "cannot write here" in result.err and loaded == [], result
    assert blocker.read_text() == "a regular file"


def test_options_the_method_does_not_use_are_named_not_silently_dropped(cli, tmp_path, pair):
    import dataclasses

    from inpaint import models
    from inpaint.models.base import MethodOptions

    image, mask = pair
    result = cli("complete", image, mask, "-o", tmp_path / "o.png", "-m", "telea", "--steps", "5", "--prompt", "x")
    assert result.code == 0 and "warning: telea does not use --steps, --prompt: ignored" in result.err
    quiet = cli("complete", image, mask, "-o", tmp_path / "p.png", "-m", "telea", "--device", "cpu")
    assert quiet.code == 0 and "does not use" not in quiet.err
    fields = {f.name for f in dataclasses.fields(MethodOptions)}
    for name in models.method_names():  # every declaration names real options
        assert models.get_method(name).reads <= fields, name
    options = MethodOptions(lora="l", prompt="p", strength=0.5, steps=3, jump_length=2)
    assert models.get_method("sd").ignored_options(options) == ["--jump-length"]
    assert models.get_method("ddpm").ignored_options(options) == ["--jump-length", "--lora", "--prompt", "--strength"]


def test_an_output_name_without_a_suffix_is_written_as_png_under_that_name(cli, tmp_path, pair, photo, center_mask):
    image, mask = pair
    out = tmp_path / "result"
    result = cli("complete", image, mask, "-o", out, "-m", "telea", "--concat", "--json")
    assert result.code == 0, result
    assert json.loads(result.out)["files"] == [str(tmp_path / "result_concat"), str(out)]
    assert Image.open(out).format == "PNG" and Image.open(tmp_path / "result_concat").format == "PNG"
    assert np.array_equal(io.read_image(out)[~center_mask], photo[~center_mask])
    assert not (tmp_path / "result.png").exists()
    result = cli("complete", image, mask, "-o", tmp_path / "result.pgn", "-m", "telea")  # a typo is not guessed at
    assert result.code == 2 and "unknown image suffix '.pgn'" in result.err


@pytest.mark.parametrize(
    "suffix, lossy", [(".jpg", True), (".jpeg", True), (".webp", True), (".png", False), (".tif", False)]
)
def test_a_lossy_output_warns_once_that_known_pixels_change(cli, tmp_path, pair, suffix, lossy):
    image, mask = pair
    result = cli("complete", image, mask, "-o", tmp_path / f"o{suffix}", "-m", "telea", "--concat")
    assert result.code == 0, result
    warnings = [line for line in result.err.splitlines() if "is lossy" in line]
    assert len(warnings) == (1 if lossy else 0), result.err
    if lossy:
        assert warnings[0].startswith("warning: ") and "bit-exactly" in warnings[0] and ".png" in warnings[0]


def test_the_models_steps_show_as_a_progress_bar_for_one_image(cli, tmp_path, pair, tiny_unet7_dir):
    from inpaint import completion

    image, mask = pair
    ddpm = ["-m", "ddpm", "--weights", tiny_unet7_dir, "--steps", "3", "--device", "cpu"]
    result = cli("complete", image, mask, "-o", tmp_path / "o.png", *ddpm)
    assert result.code == 0, result
    assert "3/3" in result.err  # the sampler's steps, on stderr
    quiet = cli("complete", image, mask, "-o", tmp_path / "p.png", *ddpm, "--json")
    assert quiet.code == 0 and json.loads(quiet.out)["method"] == "ddpm" and "3/3" not in quiet.err

    class Recorder:
        def __init__(self):
            self.events = []

        def start(self, description, total):
            self.events.append(("start", total))

        def advance(self, n=1, **info):
            self.events.append(("advance", n))

        def finish(self):
            self.events.append(("finish",))

    from inpaint import models
    from inpaint.models.base import MethodOptions

    inpainter = models.load_inpainter("ddpm", MethodOptions(weights=str(tiny_unet7_dir), steps=3, device="cpu"))
    recorder = Recorder()
    completion.complete_file(inpainter, image, mask, progress=recorder)
    assert recorder.events == [("start", 3), ("advance", 1), ("advance", 1), ("advance", 1), ("finish",)]


def test_piped_stdout_holds_only_the_png_while_the_steps_show(tmp_path, pair, tiny_unet7_dir):
    image, mask = pair
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "inpaint",
            "complete",
            str(image),
            str(mask),
            "-o",
            "-",
            "-m",
            "ddpm",
            "--weights",
            str(tiny_unet7_dir),
            "--steps",
            "2",
            "--device",
            "cpu",
        ],
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.startswith(b"\x89PNG") and io.read_image(result.stdout).shape == (64, 64, 3)
    assert "2/2" in result.stderr.decode()


def test_list_models_as_json(cli):
    from inpaint import models

    for args in (("--list-models", "--json"), ("--json", "--list-models")):
        result = cli("complete", *args)
        assert result.code == 0, result
        listed = json.loads(result.out)
        assert [m["name"] for m in listed] == models.method_names()
        by_name = {m["name"]: m for m in listed}
        assert by_name["telea"]["available"] is True and by_name["telea"]["reason"] is None
        assert all(set(m) == {"name", "available", "reason", "description"} for m in listed)
        assert all(m["available"] == (m["reason"] is None) for m in listed)
    table = cli("complete", "--list-models")
    assert table.code == 0 and "telea" in table.out and not table.out.lstrip().startswith("[")


def test_the_output_checks_are_the_librarys(tmp_path, pair):
    from inpaint import completion
    from inpaint.errors import InputError

    image, mask = pair
    out = tmp_path / "o.png"
    assert completion.check_output_file(out, image, mask, concat=True) == [tmp_path / "o_concat.png", out]
    out.write_bytes(b"x")
    with pytest.raises(InputError, match="already exists"):
        completion.check_output_file(out, image, mask)
    with pytest.raises(InputError, match="would overwrite the input"):
        completion.check_output_file(image, image, mask, overwrite=True)
    with pytest.raises(InputError, match="unknown image suffix"):
        completion.check_output_file(tmp_path / "o.xyz")
    with pytest.raises(InputError, match="is a folder"):
        completion.check_output_file(tmp_path)
    assert out.read_bytes() == b"x"
