"""Bad input never crashes or corrupts: the rows of docs/reliability.md that no other test file covers.

Every bad input gives one ``error: …`` line naming the file or option (the last line on stderr),
exit code 2, no traceback, and nothing written. Long runs (``bench``, folder ``complete``) report
a bad file, skip it, finish the rest and exit with 1. Tests run in-process on tiny files and tiny
models; nothing here needs the network.
"""

from __future__ import annotations

import ast
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inpaint import io

SRC = Path(__file__).resolve().parents[1] / "src" / "inpaint"


def assert_input_error(result, *needles: str) -> str:
    """Exit 2, no traceback, exactly one ``error:`` line, last on stderr, holding every needle."""
    assert result.code == 2, result
    assert "Traceback" not in result.err, result
    lines = result.err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


# ---- bad image files ---------------------------------------------------------------------------

#: kind -> a needle of the error message
BAD_KINDS = {
    "missing": "no such file",
    "zero-byte": "empty file (0 bytes)",
    "not-an-image": "not an image file this tool can read",
    "truncated-png": "truncated or corrupt",
    "truncated-jpeg": "truncated or corrupt",
    "corrupt-png": "truncated or corrupt",
    "under-a-file": "cannot read",
    "bomb": "decompression bomb",
}


def write_bad(kind: str, path: Path, photo: np.ndarray, monkeypatch) -> Path:
    """Write a bad image file of ``kind`` at ``path`` (.png, or .jpg for JPEG kinds); return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    good = io.encode_image(photo, "PNG")
    if kind == "missing":
        return path
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "not-an-image":
        path.write_text("a text file with an image extension\n")
    elif kind == "truncated-png":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "truncated-jpeg":
        path = path.with_suffix(".jpg")
        data = io.encode_image(photo, "JPEG")
        path.write_bytes(data[: len(data) // 2])
    elif kind == "corrupt-png":  # flip bytes inside the image data: the chunk checksum no longer matches
        start = good.index(b"IDAT") + 40
        path.write_bytes(good[:start] + bytes(b ^ 0xFF for b in good[start : start + 16]) + good[start + 16 :])
    elif kind == "under-a-file":  # unreadable: a path through a regular file (tests run as root: no chmod)
        blocker = path.parent / "blocker"
        blocker.write_text("a file, not a folder")
        return blocker / path.name
    elif kind == "bomb":  # over twice Pillow's pixel limit, which is lowered for the test
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64)
        io.save_image(np.zeros((128, 128, 3), np.uint8), path)
    else:
        raise ValueError(kind)
    return path


@pytest.mark.parametrize("role", ["image", "mask"])
@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_complete_refuses_a_bad_image_or_mask_file(cli, tmp_path, pair, photo, kind, role, monkeypatch):
    image, mask = pair
    bad = write_bad(kind, tmp_path / "bad" / "bad.png", photo, monkeypatch)
    image, mask = (bad, mask) if role == "image" else (image, bad)
    out = tmp_path / "out" / "done.png"
    result = cli("complete", image, mask, "-o", out, "-m", "telea")
    assert_input_error(result, str(bad), BAD_KINDS[kind])
    assert nothing_in(tmp_path / "out")


def test_images_between_one_and_two_times_the_pixel_limit_pass_with_a_warning(cli, tmp_path, pair, monkeypatch):
    image, mask = pair
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 64 x 64 = 4096: above the limit, below twice it
    result = cli("complete", image, mask, "-o", tmp_path / "o.png", "-m", "telea")
    assert result.code == 0 and "warning: " in result.err and "decompression bomb" in result.err, result
    assert (tmp_path / "o.png").is_file()


@pytest.mark.parametrize("kind", ["zero-byte", "not-an-image", "corrupt-header", "bomb"])
def test_make_masks_refuses_an_image_whose_size_cannot_be_read(cli, tmp_path, photo, kind, monkeypatch):
    folder = tmp_path / "images"
    io.save_image(photo, folder / "good.png")
    if kind == "corrupt-header":
        good = io.encode_image(photo, "PNG")
        (folder / "bad.png").write_bytes(good[:16] + b"\x00" * 40 + good[56:])  # IHDR destroyed
    else:
        write_bad(kind, folder / "bad.png", photo, monkeypatch)
    result = cli("make-masks", folder, "-o", tmp_path / "masks")
    assert_input_error(result, "bad.png")
    assert not (tmp_path / "masks").exists()


def test_make_masks_needs_only_the_header(cli, tmp_path, photo):
    """A truncated JPEG still has a readable size: its mask is made (the command that reads the
    pixels, complete or bench, reports it)."""
    folder = tmp_path / "images"
    write_bad("truncated-jpeg", folder / "cut.png", photo, None)
    assert cli("make-masks", folder, "-o", tmp_path / "masks").code == 0
    assert io.read_mask(tmp_path / "masks" / "cut.png").shape == photo.shape[:2]


@pytest.mark.parametrize(
    "kind", ["zero-byte", "not-an-image", "truncated-png", "truncated-jpeg", "corrupt-png", "bomb"]
)
def test_caption_refuses_unreadable_images_before_loading_the_model(
    cli, tmp_path, train_images, photo, kind, monkeypatch
):
    data = tmp_path / "data"
    shutil.copytree(train_images, data)
    write_bad(kind, data / "bad.png", photo, monkeypatch)
    # The model does not exist: the images are checked first, so the error is about them.
    result = cli("caption", data, "--model", tmp_path / "no-model", "--device", "cpu")
    assert_input_error(result, "bad", "cannot be read", "before captioning")
    assert not (data / "captions.json").exists()


@pytest.mark.parametrize(
    "command, kind",
    [("train-ddpm", k) for k in ("zero-byte", "not-an-image", "truncated-jpeg", "corrupt-png", "bomb")]
    + [("train-lora", "truncated-jpeg")],
)
def test_training_refuses_unreadable_images_before_loading_the_model(
    cli, tmp_path, train_images, photo, command, kind, monkeypatch
):
    data = tmp_path / "data"
    shutil.copytree(train_images, data)
    write_bad(kind, data / "bad.png", photo, monkeypatch)
    result = cli(
        command,
        data,
        "-o",
        tmp_path / "run",
        "--base",
        tmp_path / "no-model",
        "--resolution",
        "32",
        "--max-steps",
        "1",
        "--device",
        "cpu",
    )
    assert_input_error(result, "1 of 7 images cannot be read (first: bad.", "before training")
    assert not (tmp_path / "run").exists()


# ---- long runs: a bad file is reported and skipped, the rest finish, exit 1 ------------------------


@pytest.mark.parametrize("masks", ["folder", "preset"])
def test_bench_reports_and_skips_bad_files_and_exits_1(cli, tmp_path, photo, center_mask, masks, no_metric_weights):
    data, mask_dir = tmp_path / "data", tmp_path / "masks"
    for i in range(6):
        io.save_image(np.roll(photo, 5 * i, axis=1), data / f"img{i}.png")
        io.save_mask(np.roll(center_mask, 3 * i, axis=0), mask_dir / f"img{i}.png")
    (data / "img1.png").write_bytes(b"")  # unreadable whatever the masks
    cut = io.encode_image(photo, "PNG")
    (data / "img2.png").write_bytes(cut[: len(cut) // 2])  # its header can be read, its pixels cannot
    io.save_mask(np.zeros((64, 64), bool), mask_dir / "img3.png")  # empty mask: a warning, not a failure
    io.save_mask(np.ones((32, 32), bool), mask_dir / "img4.png")  # wrong size: a failure (folder masks)
    io.save_mask(np.ones((64, 64), bool), mask_dir / "img5.png")  # nothing known: telea refuses it
    (data / "notes.txt").write_text("not an image")  # skipped and counted
    out = tmp_path / "results"
    source = str(mask_dir) if masks == "folder" else "box-center"
    result = cli(
        "bench",
        "--models",
        "telea",
        "--data",
        data,
        "--masks",
        source,
        "-o",
        out,
        "--eval-size",
        "32",
        "--no-lpips",
        "--no-fid",
    )
    failed = {"img1", "img2", "img4", "img5"} if masks == "folder" else {"img1", "img2"}
    assert result.code == 1, result
    lines = result.err.strip().splitlines()
    assert lines[-1].startswith(f"error: {len(failed)} of 6 images failed") and "Traceback" not in result.err
    for name in failed:
        assert any(line.startswith("warning: ") and f"{name}.png" in line for line in lines), name
    assert any("1 non-image file(s) ignored" in line for line in lines)
    results = json.loads((out / "results.json").read_text())
    assert set(results["failed_images"]) == failed
    scored = {"img0", "img3", "img4", "img5"} - failed - ({"img3"} if masks == "folder" else set())
    assert results["n_images"] == len(scored)
    assert {p.stem for p in (out / "outputs" / "telea").glob("*.png")} >= scored
    assert "failed, not scored: img1" in (out / "report.md").read_text()
    if masks == "folder":
        assert results["skipped_empty_masks"] == ["img3"]


def test_folder_complete_reports_and_skips_pairs_it_cannot_use(cli, tmp_path, photo, center_mask):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(5):
        io.save_image(np.roll(photo, 5 * i, axis=1), images / f"img{i}.png")
        io.save_mask(center_mask, masks / f"img{i}.png")
    (images / "img1.png").write_bytes(b"")
    io.save_mask(np.ones((32, 32), bool), masks / "img2.png")  # wrong size
    io.save_mask(np.ones((64, 64), bool), masks / "img3.png")  # nothing known: telea cannot fill it
    result = cli("complete", images, masks, "-o", tmp_path / "out", "-m", "telea", "--json")
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.strip().splitlines()[-1] == "error: 3 of 5 images failed (see the warnings above)"
    summary = json.loads(result.out)
    assert sorted(summary["failed"]) == ["img1", "img2", "img3"] and summary["written"] == ["img0", "img4"]
    assert all(f"{name}.png" in error for name, error in summary["failed"].items())  # each names its file
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [  # and the record of what made them
        ".inpaint-log.jsonl",
        ".inpaint-run.json",
        "img0.png",
        "img4.png",
    ]


# ---- masks, sizes, pixel modes, EXIF ------------------------------------------------------------


def test_full_masks_are_refused_by_methods_that_need_known_pixels(cli, tmp_path, pair, tiny_unet7_dir):
    image, _ = pair
    full = io.save_mask(np.ones((64, 64), bool), tmp_path / "full.png")
    result = cli("complete", image, full, "-o", tmp_path / "out" / "o.png", "-m", "biharmonic")
    assert_input_error(result, "biharmonic needs some known pixels")
    assert nothing_in(tmp_path / "out")
    # A diffusion model generates the whole image instead.
    result = cli(
        "complete",
        image,
        full,
        "-o",
        tmp_path / "g.png",
        "-m",
        "ddpm",
        "-w",
        tiny_unet7_dir,
        "--steps",
        "2",
        "--device",
        "cpu",
    )
    assert result.code == 0 and io.read_image(tmp_path / "g.png").shape == (64, 64, 3)


@pytest.mark.parametrize("size", [(13, 21), (1, 1), (40, 100)])
@pytest.mark.parametrize("method", ["ddpm", "sd", "telea"])
def test_small_and_odd_sized_images_come_back_at_their_size(
    cli, tmp_path, photo, size, method, tiny_unet7_dir, tiny_sd_inpaint_dir
):
    """Smaller than the model's 32 px, not a multiple of 8, not square: resized for the model and back."""
    height, width = size
    pixels = np.asarray(Image.fromarray(photo).resize((width, height)))
    hole = np.zeros((height, width), bool)
    hole[height // 3 : height // 3 + max(1, height // 3), width // 3 : width // 3 + max(1, width // 3)] = True
    image, mask = io.save_image(pixels, tmp_path / "a.png"), io.save_mask(hole, tmp_path / "m.png")
    extra = {
        "ddpm": ["-w", tiny_unet7_dir, "--steps", "2"],
        "sd": ["-w", tiny_sd_inpaint_dir, "--steps", "1"],
        "telea": [],
    }[method]
    result = cli("complete", image, mask, "-o", tmp_path / "o.png", "-m", method, "--device", "cpu", *extra)
    if method == "telea" and hole.all():
        assert_input_error(result, "needs some known pixels")
        return
    assert result.code == 0, result
    out = io.read_image(tmp_path / "o.png")
    assert out.shape == (height, width, 3) and np.array_equal(out[~hole], pixels[~hole])


def _every_mode(folder: Path, photo: np.ndarray) -> dict[str, tuple[int, int]]:
    """One image per Pillow mode, plus an EXIF-rotated JPEG and a non-image file; name -> (H, W) as shown."""
    rgb = Image.fromarray(photo)
    gray = rgb.convert("L")
    folder.mkdir(parents=True)
    pictures = {
        "mode-1.png": rgb.convert("1"),
        "mode-l.png": gray,
        "mode-la.png": rgb.convert("LA"),
        "mode-p.png": rgb.convert("P"),
        "mode-rgba.png": rgb.convert("RGBA"),
        "mode-cmyk.jpg": rgb.convert("CMYK"),
        "mode-i16.png": Image.fromarray(np.asarray(gray, np.uint16) * 257),
        "mode-f.tif": Image.fromarray(np.asarray(gray, np.float32) / 255.0),
    }
    for name, picture in pictures.items():
        picture.save(folder / name)
    tall = Image.fromarray(photo[:, :40])  # stored 40 wide x 64 high; EXIF 6 shows it 64 wide x 40 high
    exif = Image.Exif()
    exif[0x0112] = 6
    tall.save(folder / "rotated.jpg", exif=exif)
    io.save_image(photo[:12, :20], folder / "small.png")  # below the models' 32 px, not a multiple of 8
    (folder / "notes.txt").write_text("not an image: skipped and counted")
    shapes = {Path(name).stem: (64, 64) for name in pictures}
    shapes.update(rotated=(40, 64), small=(12, 20))
    return shapes


def test_every_pixel_mode_and_exif_rotation_through_every_command(
    cli, tmp_path, photo, tiny_blip_dir, tiny_unet7_dir, no_metric_weights
):
    data = tmp_path / "data"
    shapes = _every_mode(data, photo)
    result = cli("make-masks", data, "-o", tmp_path / "masks", "-p", "box-center", "--json")
    assert result.code == 0 and json.loads(result.out)["skipped"] == 1
    for stem, shape in shapes.items():
        assert io.read_mask(tmp_path / "masks" / f"{stem}.png").shape == shape, stem

    result = cli("complete", data, tmp_path / "masks", "-o", tmp_path / "done", "-m", "telea")
    assert result.code == 0 and "skipped 1 non-image file(s)" in result.err, result
    for stem, shape in shapes.items():
        done = Image.open(tmp_path / "done" / f"{stem}.png")
        assert done.mode == "RGB" and done.size == shape[::-1], stem

    result = cli(
        "bench",
        "--models",
        "telea",
        "--data",
        data,
        "--masks",
        tmp_path / "masks",
        "-o",
        tmp_path / "bench",
        "--eval-size",
        "32",
        "--no-lpips",
        "--no-fid",
        "--json",
    )
    assert result.code == 0 and json.loads(result.out)["n_images"] == len(shapes), result
    assert "1 non-image file(s) ignored" in result.err

    result = cli("caption", data, "--model", tiny_blip_dir, "--device", "cpu")
    assert result.code == 0 and "skipped 1 non-image file(s)" in result.err, result
    assert sorted(json.loads((data / "captions.json").read_text())) == sorted(
        p.name for p in data.iterdir() if p.suffix != ".txt" and p.suffix != ".json"
    )

    result = cli(
        "train-ddpm",
        data,
        "-o",
        tmp_path / "run",
        "--base",
        tiny_unet7_dir,
        "--resolution",
        "32",
        "--batch-size",
        "3",
        "--max-steps",
        "1",
        "--val-images",
        "0",
        "--device",
        "cpu",
    )
    assert result.code == 0 and "skipped 1 non-image file(s), e.g. notes.txt" in result.err, result


def test_training_masks_of_another_size_are_fitted_like_their_images(tmp_path, train_images):
    """train --masks DIR: a mask scaled from its image's size (same shape) is resized and
    centre-cropped like its image (nearest neighbour), so it stays binary and the hole stays put;
    a mask of another shape would be cropped differently from its image, and is refused."""
    from inpaint.data import CompletionDataset, MaskSource

    masks = tmp_path / "masks"
    for i, image in enumerate(sorted(train_images.iterdir())):  # the images are 40 x 40
        side = 20 + 7 * i
        hole = np.zeros((side, side), bool)
        hole[side // 4 : side // 2, side // 2 :] = True  # top right
        io.save_mask(hole, masks / image.name)
    dataset = CompletionDataset(train_images, resolution=32, mask_source=MaskSource(presets=(), folder=masks))
    for i in range(len(dataset)):
        item = dataset[(0, i)]
        assert item["masks"].shape == (1, 32, 32) and set(item["masks"].unique().tolist()) == {0.0, 1.0}
        rows, cols = np.nonzero(item["masks"][0].numpy())
        assert 7 <= rows.min() and rows.max() <= 16  # the rows where it was drawn
        assert cols.min() >= 15 or cols.max() <= 16  # the right half, or the left when flipped
    io.save_mask(np.zeros((20, 30), bool), masks / sorted(train_images.iterdir())[0].name)
    from inpaint.errors import InputError

    with pytest.raises(
        InputError, match="is 30x20 but astronaut.png is 40x40; a training mask needs its image's shape"
    ):
        CompletionDataset(train_images, resolution=32, mask_source=MaskSource(presets=(), folder=masks))


# ---- option values out of range ------------------------------------------------------------------


def _option_cases():
    """(command line, needle); {img}, {mask}, {out}, {data}, {u7}, {u3}, {sd} are filled in."""
    complete = ["complete", "{img}", "{mask}", "-o", "{out}/o.png", "--device", "cpu"]
    ddpm, sd = [*complete, "-m", "ddpm", "-w", "{u7}"], [*complete, "-m", "sd", "-w", "{sd}"]
    repaint = [*complete, "-m", "repaint", "-w", "{u3}"]
    bench = ["bench", "--data", "{data}", "--masks", "box-center", "-o", "{out}", "--no-lpips", "--no-fid"]
    train = ["train-ddpm", "{data}", "-o", "{out}", "--base", "{u3}", "--device", "cpu"]
    return [
        ([*ddpm, "--steps", "0"], "--steps 0: must be a positive number"),
        ([*ddpm, "--steps", "-3"], "--steps -3"),
        ([*ddpm, "--sampler", "heun"], "--sampler 'heun': ddpm supports ddpm, ddim, dpmpp, dpmpp-sde"),
        ([*repaint, "--steps", "0"], "--steps 0"),
        ([*repaint, "--jump-length", "0"], "--jump-length 0"),
        ([*repaint, "--sampler", "ddim"], "--sampler 'ddim': repaint supports repaint, fast"),
        ([*sd, "--steps", "0"], "--steps 0: must be at least 1"),
        ([*sd, "--guidance", "nan"], "--guidance nan"),
        ([*sd, "--guidance", "-1"], "--guidance -1.0"),
        ([*sd, "--strength", "0"], "--strength 0.0: must be in (0, 1]"),
        ([*sd, "--sampler", "heun"], "--sampler 'heun': sd supports ddpm, ddim, dpmpp"),
        ([*complete, "-m", "no-such-method"], "unknown method 'no-such-method'"),
        ([*complete, "-m", "telea", "--seed", "x"], "--seed"),
        ([*bench, "--models", "no-such-method"], "unknown method 'no-such-method'"),
        (
            [*bench, "--models", "ddpm", "-w", "ddpm={u7}", "--model-option", "ddpm.steps=0"],
            "steps 0 must be at least 1",
        ),
        ([*bench, "--models", "sd", "-w", "sd={sd}", "--model-option", "sd.guidance=nan"], "guidance nan must be"),
        ([*bench, "--models", "telea", "--eval-size", "0"], "--eval-size 0: must be at least 16"),
        ([*train, "--lr", "nan"], "--lr nan: must be a finite number"),
        ([*train, "--max-steps", "0"], "--max-steps 0: must be at least 1"),
        ([*train, "--ema-decay", "1.5"], "--ema-decay 1.5: must be in [0, 1)"),
        (["make-masks", "--size", "32", "--count", "0", "-o", "{out}"], "--count"),
        (["make-masks", "{data}", "-o", "{out}", "--min-ratio", "0.9", "--max-ratio", "0.1"], "--min-ratio"),
        (["make-masks", "{data}", "-o", "{out}", "-p", "lama-huge"], "unknown mask preset 'lama-huge'"),
        (["caption", "{data}", "-o", "{out}/c.json", "--batch-size", "0"], "--batch-size 0: must be at least 1"),
        (["demo", "-o", "{out}", "--size", "8"], "--size"),
        (["demo", "-o", "{out}", "-m", "no-such-method"], "unknown method 'no-such-method'"),
        (["demo", "-o", "{out}", "-m", "ddpm"], "--model ddpm: needs fine-tuned weights"),
        (["demo", "-o", "{out}", "--photo", "moon", "-m", "telea"], "--photo 'moon': unknown demo photo"),
    ]


def _case_id(value):
    return " ".join(value[:1] + value[-2:]) if isinstance(value, list) else None


@pytest.mark.parametrize("args, needle", _option_cases(), ids=_case_id)
def test_option_values_out_of_range_are_one_line_errors(
    cli, tmp_path, pair, train_images, tiny_unet7_dir, tiny_ddpm_dir, tiny_sd_inpaint_dir, args, needle
):
    image, mask = pair
    values = {
        "img": image,
        "mask": mask,
        "out": tmp_path / "out",
        "data": train_images,
        "u7": tiny_unet7_dir,
        "u3": tiny_ddpm_dir,
        "sd": tiny_sd_inpaint_dir,
    }
    result = cli(*(arg.format(**values) for arg in args))
    assert_input_error(result, needle)
    assert not (tmp_path / "out").exists()


# ---- weights of the wrong kind ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, tiny_unet7_dir, tiny_sd_inpaint_dir, tiny_blip_dir) -> dict[str, Path]:
    """Copies of the tiny models with a damaged safetensors file: garbage, or cut in half."""
    root = tmp_path_factory.mktemp("damaged")

    def copy(source: Path, name: str, file: str, cut: bool) -> Path:
        target = root / name
        shutil.copytree(source, target)
        data = (target / file).read_bytes()
        (target / file).write_bytes(data[: len(data) // 2] if cut else b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
        return target

    return {
        "unet7-garbage": copy(tiny_unet7_dir, "unet7-garbage", "diffusion_pytorch_model.safetensors", False),
        "unet7-cut": copy(tiny_unet7_dir, "unet7-cut", "diffusion_pytorch_model.safetensors", True),
        "sd-unet-cut": copy(tiny_sd_inpaint_dir, "sd-unet-cut", "unet/diffusion_pytorch_model.safetensors", True),
        "sd-vae-garbage": copy(tiny_sd_inpaint_dir, "sd-vae-garbage", "vae/diffusion_pytorch_model.safetensors", False),
        "sd-text-cut": copy(tiny_sd_inpaint_dir, "sd-text-cut", "text_encoder/model.safetensors", True),
        "blip-cut": copy(tiny_blip_dir, "blip-cut", "model.safetensors", True),
    }


def _weights_cases():
    complete = ["complete", "{img}", "{mask}", "-o", "{out}/o.png", "--device", "cpu", "--steps", "1"]
    train = ["--resolution", "32", "--batch-size", "2", "--max-steps", "1", "--val-images", "0", "--device", "cpu"]
    return [
        ([*complete, "-m", "ddpm", "-w", "{u3}"], "is an unconditional 3-channel model; use --model repaint"),
        ([*complete, "-m", "repaint", "-w", "{u7}"], "is a fine-tuned 7-channel completion model; use --model ddpm"),
        ([*complete, "-m", "ddpm", "-w", "{sd}"], "takes 9 input channels, expected 7"),
        ([*complete, "-m", "sd", "-w", "{u7}"], "no model_index.json"),
        ([*complete, "-m", "sd", "-w", "{sd}", "--lora", "{u7}"], "no pytorch_lora_weights.safetensors"),
        ([*complete, "-m", "ddpm", "-w", "{unet7-garbage}"], "cannot load the UNet"),
        ([*complete, "-m", "ddpm", "-w", "{unet7-cut}"], "cannot load the UNet"),
        ([*complete, "-m", "sd", "-w", "{sd-unet-cut}"], "cannot load the pipeline"),
        ([*complete, "-m", "sd", "-w", "{sd-vae-garbage}"], "cannot load the pipeline"),
        (["train-ddpm", "{data}", "-o", "{out}", "--base", "{sd}", *train], "holds a UNet2DConditionModel"),
        (["train-ddpm", "{data}", "-o", "{out}", "--base", "{unet7-cut}", *train], "cannot load the UNet"),
        (["train-lora", "{data}", "-o", "{out}", "--base", "{u3}", *train], "no model_index.json"),
        (["train-lora", "{data}", "-o", "{out}", "--base", "{sd-unet-cut}", *train], "cannot load the pipeline"),
        (
            ["caption", "{data}", "-o", "{out}/c.json", "--model", "{u7}", "--device", "cpu"],
            "expected a BLIP captioning model folder",
        ),
        (["caption", "{data}", "-o", "{out}/c.json", "--model", "{blip-cut}", "--device", "cpu"], "cannot load a BLIP"),
        (
            [
                "bench",
                "--models",
                "ddpm",
                "-w",
                "ddpm={u3}",
                "--data",
                "{data}",
                "--masks",
                "box-center",
                "-o",
                "{out}",
            ],
            "is an unconditional 3-channel model",
        ),
    ]


def _fill(args, values):
    return [arg.format(**values) for arg in args]


@pytest.fixture
def weight_values(tmp_path, pair, train_images, tiny_unet7_dir, tiny_ddpm_dir, tiny_sd_inpaint_dir, damaged):
    image, mask = pair
    return {
        "img": image,
        "mask": mask,
        "out": tmp_path / "out",
        "data": train_images,
        "u7": tiny_unet7_dir,
        "u3": tiny_ddpm_dir,
        "sd": tiny_sd_inpaint_dir,
        **damaged,
    }


@pytest.mark.parametrize("args, needle", _weights_cases(), ids=_case_id)
def test_weights_of_the_wrong_kind_or_damaged_are_one_line_errors(cli, tmp_path, weight_values, args, needle):
    result = cli(*_fill(args, weight_values))
    assert_input_error(result, needle)
    assert nothing_in(tmp_path / "out")


@pytest.mark.parametrize("command", ["complete", "train-lora"])
def test_a_damaged_text_encoder_is_a_one_line_input_error(cli, tmp_path, weight_values, command):
    if command == "complete":
        args = [
            "complete",
            "{img}",
            "{mask}",
            "-o",
            "{out}/o.png",
            "-m",
            "sd",
            "-w",
            "{sd-text-cut}",
            "--device",
            "cpu",
        ]
    else:
        args = [
            "train-lora",
            "{data}",
            "-o",
            "{out}",
            "--base",
            "{sd-text-cut}",
            "--resolution",
            "32",
            "--max-steps",
            "1",
            "--device",
            "cpu",
        ]
    assert_input_error(cli(*_fill(args, weight_values)), "sd-text-cut", "cannot load the pipeline")


# ---- malformed caption files, empty folders -------------------------------------------------------


@pytest.mark.parametrize("text", ["{not json", '{"a.png": 3}', "[1, 2]", "\xff\xfe"])
def test_malformed_caption_json_is_refused_and_never_replaced(
    cli, tmp_path, pair, train_images, tiny_sd_inpaint_dir, text
):
    captions = tmp_path / "captions.json"
    captions.write_bytes(text.encode("latin-1"))
    result = cli("caption", train_images, "-o", captions, "--model", tmp_path / "no-model", "--device", "cpu")
    assert_input_error(result, str(captions), "captions")
    assert captions.read_bytes() == text.encode("latin-1")
    image, mask = pair
    result = cli(
        "complete",
        image,
        mask,
        "-o",
        tmp_path / "out" / "o.png",
        "-m",
        "sd",
        "-w",
        tiny_sd_inpaint_dir,
        "--captions",
        captions,
        "--device",
        "cpu",
    )
    assert_input_error(result, str(captions), "captions")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "command, state",
    [
        (command, state)
        for command in ("complete", "make-masks", "caption", "train-ddpm", "train-lora", "bench")
        for state in ("empty", "missing")
    ],
)
def test_empty_or_missing_data_folders_are_refused(cli, tmp_path, command, state, tiny_ddpm_dir):
    empty = tmp_path / "empty"
    if state == "empty":
        empty.mkdir()
        (empty / "readme.txt").write_text("no images here")
    out = tmp_path / "out"
    args = {
        "complete": ["complete", empty, empty, "-o", out],
        "make-masks": ["make-masks", empty, "-o", out],
        "caption": ["caption", empty, "-o", out / "c.json"],
        "train-ddpm": ["train-ddpm", empty, "-o", out, "--base", tiny_ddpm_dir],
        "train-lora": ["train-lora", empty, "-o", out, "--base", tiny_ddpm_dir],
        "bench": ["bench", "--models", "telea", "--data", empty, "--masks", "box-center", "-o", out],
    }[command]
    needles = ("no ", "images found") if state == "empty" else ("no such",)
    assert_input_error(cli(*args), str(empty), *needles)
    assert not out.exists()


# ---- output paths that cannot be written, or that are an input -------------------------------------


@pytest.mark.parametrize(
    "command", ["complete", "complete-folder", "make-masks", "caption", "train-ddpm", "bench", "demo"]
)
def test_output_paths_under_a_regular_file_are_refused(cli, tmp_path, pair, train_images, tiny_ddpm_dir, command):
    image, mask = pair
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    out = blocker / "sub"
    args = {
        "complete": ["complete", image, mask, "-o", out / "o.png", "-m", "telea"],
        "complete-folder": ["complete", image.parent, mask.parent, "-o", out, "-m", "telea"],
        "make-masks": ["make-masks", train_images, "-o", out],
        "caption": ["caption", train_images, "-o", out / "c.json", "--model", tmp_path / "no-model"],
        "train-ddpm": [
            "train-ddpm",
            train_images,
            "-o",
            out,
            "--base",
            tiny_ddpm_dir,
            "--resolution",
            "32",
            "--batch-size",
            "2",
            "--max-steps",
            "1",
            "--device",
            "cpu",
        ],
        "bench": ["bench", "--models", "telea", "--data", train_images, "--masks", "box-center", "-o", out],
        "demo": ["demo", "-o", out, "-m", "telea", "--size", "32"],
    }[command]
    assert_input_error(cli(*args), f"{blocker} is a file, not a folder")
    assert blocker.read_text() == "a regular file"


def test_outputs_that_are_an_input_are_refused(cli, tmp_path, train_images, photo):
    data = tmp_path / "data"
    shutil.copytree(train_images, data)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    for flags in ([], ["--overwrite"]):
        result = cli("caption", data, "-o", data / "cat.png", "--model", tmp_path / "no-model", *flags)
        assert_input_error(result, "would overwrite the input image")
    result = cli("train-ddpm", data, "-o", data, "--base", tmp_path / "no-model")
    assert_input_error(result, f"-o {data}: is the data folder")
    for masks in ("box-center", str(data)):
        result = cli("bench", "--models", "telea", "--data", data, "--masks", masks, "-o", data)
        assert_input_error(result, "the output folder must differ from the input folders")
    result = cli("make-masks", data, "-o", data)
    assert_input_error(result, "masks would replace images")
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


# ---- no code execution from files ----------------------------------------------------------------


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            yield node, owner, name, keywords


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _unsafe_loads(source: str, where: str) -> list[str]:
    """Every way ``source`` could unpickle a file, or fetch or load weights other than safetensors."""
    problems = []
    unpicklers = {"pickle", "cPickle", "_pickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"}
    weightless = ("Processor", "Tokenizer", "Scheduler", "Config", "FeatureExtractor")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            problems += [f"{where}:{node.lineno}: imports {m}" for m in modules if m.split(".")[0] in unpicklers]
        # Lists of file patterns are what hub downloads fetch: none may name a pickle format.
        if isinstance(node, (ast.List, ast.Tuple)) and any(
            isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value.startswith("*") for e in node.elts
        ):
            problems += [
                f"{where}:{node.lineno}: download pattern {e.value!r}"
                for e in node.elts
                if isinstance(e, ast.Constant)
                and isinstance(e.value, str)
                and (
                    e.value.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"))
                    or e.value in ("*", "**", "**/*")
                )
            ]
    for node, owner, name, keywords in _calls(tree):
        line = f"{where}:{node.lineno}: {owner}.{name}"
        if name == "load" and owner == "torch" and not _is_const(keywords.get("weights_only"), True):
            problems.append(f"{line} without weights_only=True")
        if owner in ("np", "numpy") and name == "load" and not _is_const(keywords.get("allow_pickle"), False):
            problems.append(f"{line} without allow_pickle=False")
        for flag, unsafe in (
            ("use_safetensors", False),
            ("weights_only", False),
            ("allow_pickle", True),
            ("trust_remote_code", True),
        ):
            value = keywords.get(flag)
            if value is not None and not (isinstance(value, ast.Constant) and value.value is not unsafe):
                problems.append(f"{line} with {flag}={ast.unparse(value)}")
        if (
            name == "from_pretrained"
            and not owner.endswith(weightless)
            and not _is_const(keywords.get("use_safetensors"), True)
        ):
            problems.append(f"{line} without use_safetensors=True")
        if (
            name in ("hf_hub_download", "load_state_dict_from_url", "from_single_file", "load_url")
            or (owner == "torch.hub" and name == "load")
            or (name == "snapshot_download" and "allow_patterns" not in keywords)
        ):
            problems.append(f"{line}: fetches files without a safe list")
    return problems


def test_the_source_never_loads_pickles():
    """A grep of src/inpaint by syntax tree: no unpickler, ``torch.load`` only with ``weights_only=True``,
    every model ``from_pretrained`` pinned to safetensors, no download pattern naming a pickle format.

    (A model component published without safetensors has its ``.bin`` fetched through
    ``ModelFiles.pickle_patterns`` and read by torch's weights-only unpickler alone, then loaded as
    converted safetensors: tests/test_hub_weights.py.)"""
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        problems += _unsafe_loads(path.read_text(encoding="utf-8"), str(path.relative_to(SRC.parent)))
    assert problems == []
    # The check itself catches each unsafe form (so an empty list above means something).
    unsafe = """
import pickle
from joblib import load
state = torch.load(path)
state = torch.load(path, weights_only=False)
array = np.load(path)
unet = UNet2DModel.from_pretrained(folder)
pipe = Pipeline.from_pretrained(folder, use_safetensors=False)
snapshot_download(repo)
FILES = ["*.json", "*.bin"]
"""
    assert {int(problem.split(":")[1]) for problem in _unsafe_loads(unsafe, "sample")} == set(range(2, 11))


class _Payload:
    """Unpickling this runs code: it creates the file named in ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickles_from_strangers_are_refused_without_running(tmp_path, tiny_unet7_dir, tiny_sd_inpaint_dir):
    """Malicious pickles in every place a weight file is read: refused with one line, never executed."""
    import torch

    from inpaint.errors import InputError
    from inpaint.metrics.weights import LPIPS_ALEX, load_state_dict
    from inpaint.models import load_inpainter
    from inpaint.models.base import MethodOptions

    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    unet = tmp_path / "unet"
    shutil.copytree(tiny_unet7_dir, unet)
    (unet / "diffusion_pytorch_model.safetensors").unlink()
    (unet / "diffusion_pytorch_model.bin").write_bytes(payload)
    with pytest.raises(InputError, match="refused as unsafe"):
        load_inpainter("ddpm", MethodOptions(weights=str(unet), device="cpu"))
    for name in ("lora.bin", "lora.safetensors"):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(InputError, match=r"only \.safetensors|not a valid safetensors file"):
            load_inpainter(
                "sd", MethodOptions(weights=str(tiny_sd_inpaint_dir), lora=str(tmp_path / name), device="cpu")
            )
    weights = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({"features.0.weight": _Payload(marker)}, weights)  # a real torch file with a code-running object
    with pytest.raises(InputError, match="cannot load as PyTorch weights"):
        load_state_dict(weights, LPIPS_ALEX)
    assert not marker.exists()


def test_bench_method_errors_at_load_leave_nothing_that_blocks_the_corrected_run(
    cli, tmp_path, train_images, tiny_unet7_dir
):
    """A sampler name is checked when its method loads, after the preset masks are written: the
    command fails with one line, and the corrected command then runs (run.json of a method that
    made no output is not held against it)."""
    out = tmp_path / "out"
    args = [
        "bench",
        "--models",
        "ddpm",
        "-w",
        f"ddpm={tiny_unet7_dir}",
        "--data",
        train_images,
        "--masks",
        "box-center",
        "-o",
        out,
        "--eval-size",
        "32",
        "--no-lpips",
        "--no-fid",
        "--device",
        "cpu",
    ]
    assert_input_error(cli(*args, "--model-option", "ddpm.sampler=heun"), "--sampler 'heun'")
    assert not list((out / "outputs" / "ddpm").glob("*.png"))
    result = cli(*args, "--model-option", "ddpm.sampler=ddim", "--model-option", "ddpm.steps=2")
    assert result.code == 0, result


def test_every_row_of_docs_reliability_names_existing_tests():
    """docs/reliability.md: each row of its tables ends with tests, and each named test exists."""
    import re

    doc = (SRC.parents[1] / "docs" / "reliability.md").read_text(encoding="utf-8")
    tests = SRC.parents[1] / "tests"
    defined = {
        path.name: {
            node.name
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef)
        }
        for path in tests.glob("test_*.py")
    }
    rows = [line for line in doc.splitlines() if line.startswith("| ") and "`test_" in line]
    assert len(rows) > 40
    for row in rows:
        current = None
        for file, name in re.findall(r"`(?:(test_\w+\.py))?::(test_\w+)", row):
            current = file or current
            assert current in defined and name in defined[current], (current, name)
    table = doc.split("## Bad input, command by command")[1].split("\n## ")[0]
    body = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| bad input")]
    assert body and all("::test_" in line.rsplit("|", 2)[1] for line in body)
