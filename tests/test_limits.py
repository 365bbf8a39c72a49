"""Ways to lose memory, trust or work, closed: sizes and counts past what the readers accept, colour
profiles, numbers that are not finite, checkpoints whose bytes changed, outputs that cannot be
written, misleading messages, and refused runs that leave folders behind.

Each test here is named by a row of docs/reliability.md.
"""

from __future__ import annotations

import errno
import io as pyio
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import types
import typing
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from inpaint import io, testing
from inpaint.errors import InputError


def assert_one_line_error(result, *needles: str, code: int = 2) -> str:
    """The exit code, no traceback, exactly one ``error:`` line, last on stderr, holding every needle."""
    assert result.code == code, result
    assert "Traceback" not in result.err, result
    lines = result.err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def run_with_little_memory(*args: object, cwd: Path, memory: int = 1 << 30) -> subprocess.CompletedProcess:
    """``python -m inpaint ARGS`` with its address space capped (1 GiB): an allocation that grows
    with a number the user typed fails at once here, instead of taking the machine's memory."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "inpaint", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        preexec_fn=cap,
        timeout=120,
    )


# ---- memory bounded by what the readers accept -------------------------------------------------


def test_make_masks_refuses_a_count_its_manifest_cannot_describe(tmp_path):
    result = run_with_little_memory("make-masks", "--size", "8", "--count", "1000000000", "-o", "masks", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --count 1000000000: at most 100,000 masks")
    assert not (tmp_path / "masks").exists()


def test_make_masks_refuses_a_size_past_the_readers_limit(tmp_path):
    result = run_with_little_memory("make-masks", "--size", "100000", "--count", "1", "-o", "masks", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --size 100000x100000: 10,000,000,000 pixels") and "at most 13377x13377" in last
    assert not (tmp_path / "masks").exists()


def test_demo_refuses_a_size_past_the_readers_limit(cli, tmp_path, monkeypatch):
    from inpaint import demo

    def no_photo(name, size):  # reached only if the size got through: it would allocate size**2 * 3 bytes
        raise AssertionError(f"a {size}x{size} photo was made")

    monkeypatch.setattr(demo, "demo_photo", no_photo)
    out = tmp_path / "demo"
    result = cli("demo", "--size", "100000", "-o", out, "--model", "telea")
    assert_one_line_error(result, "--size 100000: 10,000,000,000 pixels", "at most 13377x13377")
    assert not out.exists()
    # Each photo may be within the limit while the grid of all of them is not.
    result = cli("demo", "--size", "8000", "-o", out, "--model", "telea")
    assert_one_line_error(result, "--size 8000 (a grid of 4 photos by 3 columns)")


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature, IHDR chunk for an 8-bit RGB image of that size, and the start of its IDAT chunk."""
    fields = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + fields
    ihdr = struct.pack(">I", len(fields)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return b"\x89PNG\r\n\x1a\n" + ihdr + struct.pack(">I", 2**31 - 1) + b"IDAT"


class _EndlessStream:
    """A binary stream: ``head`` followed by ``size`` bytes in all; counts what was read."""

    def __init__(self, head: bytes, size: int) -> None:
        self.head, self.size, self.read_bytes = head, size, 0

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.read_bytes
        n = left if n is None or n < 0 else min(n, left)
        start, self.read_bytes = self.read_bytes, self.read_bytes + n
        head = self.head[start : start + n]
        return head + bytes(n - len(head))


@pytest.mark.parametrize("kind", ["small-image-then-junk", "bomb-header", "not-an-image"])
def test_complete_from_stdin_reads_the_header_first_and_caps_the_rest(cli, tmp_path, monkeypatch, pair, photo, kind):
    """``complete -`` reads no more than an image of the header's size can hold: a 64 MiB stream
    behind a 64x64 PNG, a header claiming 10 gigapixels and a stream that is no image are refused
    after a bounded read."""
    _, mask = pair
    head = {
        "small-image-then-junk": io.encode_image(photo, "PNG"),
        "bomb-header": _png_header(100_000, 100_000),
        "not-an-image": b"just some text, and then a lot more of it",
    }[kind]
    stream = _EndlessStream(head, 64 * 2**20)
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=stream))
    result = cli("complete", "-", mask, "-m", "telea", "-o", tmp_path / "out.png")
    needle = {
        "small-image-then-junk": "more than",
        "bomb-header": "decompression bomb",
        "not-an-image": "not an image file this tool can read",
    }[kind]
    assert_one_line_error(result, "<stdin>", needle)
    limit = {"small-image-then-junk": 17 * 2**20, "bomb-header": 2**20, "not-an-image": 2**20}[kind]
    assert stream.read_bytes <= limit, stream.read_bytes
    assert not (tmp_path / "out.png").exists()


def test_complete_from_stdin_still_reads_a_whole_image(cli, tmp_path, monkeypatch, pair, photo):
    _, mask = pair
    data = io.encode_image(photo, "JPEG")
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=pyio.BytesIO(data)))
    result = cli("complete", "-", mask, "-m", "telea", "-o", tmp_path / "out.png")
    assert result.code == 0, result
    assert io.read_image(tmp_path / "out.png").shape == photo.shape


# ---- colour profiles -------------------------------------------------------------------------


@pytest.fixture
def p3_image(tmp_path) -> tuple[Path, np.ndarray]:
    """A 64x64 PNG tagged with a Display P3 profile, and its pixel values as stored."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(30, 220, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / "in" / "p3.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(pixels).save(path, icc_profile=testing.rgb_icc_profile())
    return path, pixels


def _to_srgb(pixels: np.ndarray) -> np.ndarray:
    profile = ImageCms.ImageCmsProfile(pyio.BytesIO(testing.rgb_icc_profile()))
    converted = ImageCms.profileToProfile(
        Image.fromarray(pixels),
        profile,
        ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        outputMode="RGB",
    )
    return np.asarray(converted)


def test_colour_profiles_are_converted_to_srgb_when_read(p3_image, tmp_path, caplog):
    """Every reader but ``complete`` (bench, training, captions) sees sRGB values, with one warning."""
    path, pixels = p3_image
    with caplog.at_level("WARNING", logger="inpaint"):
        read = io.read_image(path)
        io.read_image(path)
    assert np.array_equal(read, _to_srgb(pixels)) and not np.array_equal(read, pixels)
    warnings = [r.getMessage() for r in caplog.records if "colour profile" in r.getMessage()]
    assert len(warnings) == 1 and "'Display P3 (test)'; converted to sRGB" in warnings[0]
    # An untagged image, or one tagged sRGB, is read as it is.
    plain = tmp_path / "plain.png"
    Image.fromarray(pixels).save(plain, icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    assert np.array_equal(io.read_image(plain), pixels)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_complete_writes_the_input_colour_profile_into_its_output(cli, tmp_path, p3_image, center_mask, suffix):
    """A Display P3 photo comes back a Display P3 photo: the profile is embedded, the known pixels
    are the input's values bit for bit (PNG, TIFF), and so is the --concat picture."""
    path, pixels = p3_image
    mask = io.save_mask(center_mask, tmp_path / "in" / "p3_mask.png")
    out = tmp_path / f"out{suffix}"
    result = cli("complete", path, mask, "-m", "telea", "-o", out, "--concat")
    assert result.code == 0, result
    for written in (out, out.with_name(f"out_concat{suffix}")):
        with Image.open(written) as image:
            assert image.info.get("icc_profile") == testing.rgb_icc_profile(), written
    if suffix in (".png", ".tif"):
        assert np.array_equal(np.asarray(Image.open(out).convert("RGB"))[~center_mask], pixels[~center_mask])


def test_complete_folders_keep_each_image_profile(cli, tmp_path, p3_image, photo, center_mask):
    path, pixels = p3_image
    io.save_image(photo, path.parent / "plain.png")
    masks = tmp_path / "masks"
    for name in ("p3", "plain"):
        io.save_mask(center_mask, masks / f"{name}.png")
    result = cli("complete", path.parent, masks, "-m", "telea", "-o", tmp_path / "out", "--batch-size", "2")
    assert result.code == 0, result
    with Image.open(tmp_path / "out" / "p3.png") as image:
        assert image.info.get("icc_profile") == testing.rgb_icc_profile()
        assert np.array_equal(np.asarray(image.convert("RGB"))[~center_mask], pixels[~center_mask])
    with Image.open(tmp_path / "out" / "plain.png") as image:
        assert "icc_profile" not in image.info


def test_an_output_format_without_profiles_gets_srgb_values(cli, tmp_path, p3_image, center_mask):
    path, pixels = p3_image
    mask = io.save_mask(center_mask, tmp_path / "in" / "p3_mask.png")
    result = cli("complete", path, mask, "-m", "telea", "-o", tmp_path / "out.bmp")
    assert result.code == 0, result
    assert "BMP files cannot hold a colour profile" in result.err
    written = np.asarray(Image.open(tmp_path / "out.bmp").convert("RGB"))
    assert np.array_equal(written[~center_mask], _to_srgb(pixels)[~center_mask])


# ---- numbers that are not finite -----------------------------------------------------------------


def _float_options() -> list[tuple[str, str]]:
    """(command, --flag) of every option of every command whose value is a float."""
    import typer

    from inpaint.cli.app import app

    found = []
    for info in app.registered_commands:
        for hint in typing.get_type_hints(info.callback, include_extras=True).values():
            if typing.get_origin(hint) is not typing.Annotated:
                continue
            base, *extras = typing.get_args(hint)
            if base is float or float in typing.get_args(base):
                option = next(e for e in extras if isinstance(e, typer.models.OptionInfo))
                # In Annotated[...], typer takes the first flag as the "default" argument of Option.
                flags = [option.default, *option.param_decls]
                found.append((info.name, next(f for f in flags if isinstance(f, str) and f.startswith("--"))))
    return found


FLOAT_OPTIONS = _float_options()


def test_every_float_option_is_found():
    assert len(FLOAT_OPTIONS) >= 15 and ("train-ddpm", "--hole-weight") in FLOAT_OPTIONS
    assert ("train-lora", "--noise-offset") in FLOAT_OPTIONS and ("complete", "--guidance") in FLOAT_OPTIONS


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("command, flag", FLOAT_OPTIONS)
def test_every_float_option_refuses_nan_and_inf(cli, tmp_path, command, flag, value):
    import typer

    from inpaint.cli.app import app

    params = typer.main.get_command(app).commands[command].params
    output = ["-o", tmp_path / "out"] if any("-o" in param.opts for param in params) else []
    result = cli(command, flag, value, *output)
    assert_one_line_error(result, f"{flag} {value}: must be a finite number")
    assert not (tmp_path / "out").exists()


def test_nan_in_a_config_file_is_refused_too(cli, tmp_path, train_images):
    config = tmp_path / "inpaint.toml"
    config.write_text("hole_weight = nan\n")
    result = cli("train-ddpm", train_images, "-o", tmp_path / "run", "--config", config)
    assert_one_line_error(result, "--hole-weight nan: must be a finite number")
    assert not (tmp_path / "run").exists()


def test_the_training_options_refuse_non_finite_numbers_in_the_library():
    from inpaint.training.ddpm_task import DDPMOptions, DDPMTask
    from inpaint.training.lora_task import LoRAOptions

    with pytest.raises(InputError, match=r"--hole-weight nan: must be a finite number"):
        DDPMTask("base", DDPMOptions(hole_weight=float("nan")))
    with pytest.raises(InputError, match=r"--noise-offset inf: must be a finite number"):
        LoRAOptions(noise_offset=float("inf")).validate()


# ---- checkpoints whose bytes changed ----------------------------------------------------------


def _state(step: int):
    import torch

    from inpaint.training import checkpoint as ckpt

    return ckpt.TrainingState(
        step=step,
        model={"w": torch.full((64, 64), float(step))},
        optimizer={"state": {}, "param_groups": []},
        lr_scheduler={"last_epoch": step},
        grad_scaler=None,
        ema=None,
        config={"train": {}},
    )


def _overwrite_tensor_bytes(path: Path) -> None:
    """Change numbers inside a safetensors file, keeping its header: it still loads."""
    data = bytearray(path.read_bytes())
    data[-16:] = bytes(range(16))
    path.write_bytes(bytes(data))


def test_a_checkpoint_whose_bytes_changed_is_refused_naming_the_file_and_the_previous_one(tmp_path):
    from safetensors.torch import load_file

    from inpaint.training import checkpoint as ckpt

    for step in (1, 2):
        ckpt.save_checkpoint(tmp_path, _state(step), keep_last=2)
    latest = ckpt.find_checkpoint(tmp_path)
    marker = json.loads((latest / ckpt.MARKER).read_text())
    assert set(marker["sha256"]) == {"model.safetensors", "optimizer.safetensors", "state.json"}
    _overwrite_tensor_bytes(latest / "model.safetensors")
    load_file(latest / "model.safetensors")  # still loads: only the checksum tells
    with pytest.raises(InputError) as caught:
        ckpt.load_checkpoint(latest)
    message = str(caught.value)
    assert message.startswith(f"{latest / 'model.safetensors'}: damaged checkpoint")
    assert "delete" in message and "step-00000001" in message
    assert ckpt.load_checkpoint(tmp_path / "checkpoints" / "step-00000001").step == 1


def test_checkpoints_without_checksums_still_load(tmp_path):
    from inpaint.training import checkpoint as ckpt

    path = ckpt.save_checkpoint(tmp_path, _state(3), keep_last=1)
    (path / ckpt.MARKER).write_text(json.dumps({"format": ckpt.FORMAT_VERSION}))  # as written before checksums
    assert ckpt.load_checkpoint(path).step == 3


def test_resuming_from_a_changed_checkpoint_is_a_one_line_error(cli, tmp_path, train_images, tiny_ddpm_dir):
    run = tmp_path / "run"
    args = [
        "train-ddpm",
        train_images,
        "-o",
        run,
        "--base",
        tiny_ddpm_dir,
        "--resolution",
        "32",
        "--batch-size",
        "2",
        "--save-every",
        "1",
        "--val-images",
        "0",
        "--device",
        "cpu",
    ]
    assert cli(*args, "--max-steps", "2").code == 0
    latest = run / "checkpoints" / "step-00000002"
    _overwrite_tensor_bytes(latest / "model.safetensors")
    assert_one_line_error(
        cli(*args, "--max-steps", "3"),
        "step-00000002/model.safetensors: damaged checkpoint",
        "resume from the previous checkpoint, step-00000001",
    )


# ---- stdout that cannot take the result ---------------------------------------------------------


class _FullDevice(pyio.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("stdout", ["closed", "full"])
@pytest.mark.parametrize("args", [["--json"], ["-o", "-"]])
def test_a_closed_or_full_stdout_is_one_line(cli, tmp_path, pair, monkeypatch, stdout, args):
    image, mask = pair
    if "--json" in args:
        args = [*args, "-o", tmp_path / "out.png"]
    stream = None if stdout == "closed" else pyio.TextIOWrapper(pyio.BufferedWriter(_FullDevice()), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", stream)
    result = cli("complete", image, mask, "-m", "telea", *args)
    needle = (
        "output closed: cannot write the result to stdout"
        if stdout == "closed"
        else "no space left on device: cannot write the result to stdout"
    )
    assert_one_line_error(result, needle, code=1)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_closed_or_full_stdout_in_a_real_process(tmp_path, pair):
    image, mask = pair
    command = [sys.executable, "-m", "inpaint", "complete", str(image), str(mask), "-m", "telea", "--json", "-o"]
    with open("/dev/full", "w") as full:
        result = subprocess.run([*command, str(tmp_path / "a.png")], stdout=full, stderr=subprocess.PIPE, text=True)
    assert (
        result.returncode == 1
        and result.stderr.strip().splitlines()[-1]
        == "error: no space left on device: cannot write the result to stdout"
    ), result.stderr
    result = subprocess.run(
        [*command, str(tmp_path / "b.png")], stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(1)
    )
    assert result.returncode == 1 and "error: output closed" in result.stderr.strip().splitlines()[-1], result.stderr
    assert "Traceback" not in result.stderr and (tmp_path / "b.png").is_file()


def test_a_full_disk_while_writing_a_file_is_named(cli, tmp_path, pair, monkeypatch):
    from inpaint import atomic

    def full(destination, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "write_bytes", full)
    image, mask = pair
    result = cli("complete", image, mask, "-m", "telea", "-o", tmp_path / "out.png")
    assert_one_line_error(result, "no space left on device while writing an output file", code=1)
    assert "unexpected" not in result.err


def test_running_out_of_memory_is_named(cli, tmp_path, monkeypatch):
    from inpaint import mask_sets

    def too_big(*args, **kwargs):
        raise MemoryError  # as numpy raises it under a memory limit: no text

    monkeypatch.setattr(mask_sets, "make_mask", too_big)
    result = cli("make-masks", "--size", "64", "--count", "1", "-o", tmp_path / "masks")
    assert_one_line_error(result, "out of memory: ", code=1)
    assert "unexpected" not in result.err


# ---- messages that say what is wrong -----------------------------------------------------------


@pytest.mark.parametrize(
    "method, weights",
    [("repaint", "/a/local/path"), ("sd", "./no/such/pipeline"), ("ddpm", "runs/typo"), ("sd", "runs/typo")],
)
def test_a_missing_local_weights_folder_is_no_such_directory_not_a_download(
    cli, tmp_path, monkeypatch, train_images, method, weights
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()  # runs/typo: its first part is a folder here, so it is a path
    result = cli(
        "bench",
        "--models",
        method,
        "-w",
        f"{method}={weights}",
        "--data",
        train_images,
        "--masks",
        "box-center",
        "-o",
        tmp_path / "results",
        "--no-lpips",
        "--no-fid",
    )
    line = assert_one_line_error(result, f"{weights}: no such directory")
    assert "download" not in line
    assert not (tmp_path / "results").exists()


def test_a_hub_id_still_gets_the_download_command():
    from inpaint import models
    from inpaint.models.base import MethodOptions

    reason = models.get_method("repaint").unavailable(MethodOptions(weights="someone/some-model"))
    assert "`hf download someone/some-model`" in reason


def test_images_in_formats_we_do_not_read_are_named_so(cli, tmp_path, photo, center_mask):
    images, masks = tmp_path / "images", tmp_path / "masks"
    io.save_image(photo, images / "a.png")
    Image.fromarray(photo).save(images / "b.gif")
    (images / "notes.txt").write_text("not an image")
    io.save_mask(center_mask, masks / "a.png")
    result = cli("complete", images, masks, "-m", "telea", "-o", tmp_path / "out")
    assert result.code == 0, result
    assert f"warning: {images}: skipped 1 image(s) in an unsupported format (GIF: e.g. b.gif)" in result.err
    assert "skipped 1 non-image file(s), e.g. notes.txt" in result.err
    only_gifs = tmp_path / "gifs"
    only_gifs.mkdir()
    Image.fromarray(photo).save(only_gifs / "c.gif")
    assert_one_line_error(
        cli("make-masks", only_gifs, "-o", tmp_path / "m"),
        "no images found",
        "1 file(s) are in an unsupported format (GIF: e.g. c.gif)",
    )


@pytest.mark.parametrize("command", ["bench", "train-ddpm", "train-lora"])
def test_masks_given_as_a_file_are_called_a_file(
    cli, tmp_path, train_images, tiny_ddpm_dir, tiny_sd_inpaint_dir, command
):
    mask = tmp_path / "mask.png"
    io.save_mask(np.ones((8, 8), bool), mask)
    args = {
        "bench": ["--models", "telea", "--data", train_images, "-o", tmp_path / "out", "--no-lpips", "--no-fid"],
        "train-ddpm": [train_images, "-o", tmp_path / "out", "--base", tiny_ddpm_dir, "--device", "cpu"],
        "train-lora": [
            train_images,
            "-o",
            tmp_path / "out",
            "--base",
            tiny_sd_inpaint_dir,
            "--device",
            "cpu",
            "--captions",
            _captions(tmp_path, train_images),
        ],
    }[command]
    assert_one_line_error(cli(command, *args, "--masks", mask), f"--masks {mask}: is a file")
    assert not (tmp_path / "out").exists()


def _captions(tmp_path: Path, images: Path) -> Path:
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({p.name: "a photo" for p in io.list_images(images)[0]}))
    return path


# ---- refused runs leave nothing behind ------------------------------------------------------------


def _damaged_copy(source: Path, destination: Path, weights: str) -> Path:
    """A copy of a model folder whose weight file ``weights`` is cut short: refused when it loads."""
    shutil.copytree(source, destination)
    path = destination / weights
    path.write_bytes(path.read_bytes()[:100])
    return destination


@pytest.mark.parametrize("command", ["complete", "bench", "train-ddpm", "train-lora", "make-masks", "caption"])
def test_a_refused_run_leaves_no_output_folder(
    cli, tmp_path, train_images, tiny_unet7_dir, tiny_sd_inpaint_dir, tiny_blip_dir, command
):
    """Each command refused as late as it can be (weights that fail to load, a mask no draw can
    make): the output folder it would have created is not there afterwards."""
    out = tmp_path / "out" / "deeper"
    if command in ("complete", "bench", "train-ddpm"):
        unet = _damaged_copy(tiny_unet7_dir, tmp_path / "unet", "diffusion_pytorch_model.safetensors")
    if command == "complete":
        masks = tmp_path / "masks"
        for image in io.list_images(train_images)[0]:
            io.save_mask(np.ones(io.image_size(image)[::-1], bool), masks / image.name)
        args = ["complete", train_images, masks, "-m", "ddpm", "-w", unet, "-o", out]
    elif command == "bench":
        args = [
            "bench",
            "--models",
            "ddpm",
            "-w",
            f"ddpm={unet}",
            "--data",
            train_images,
            "--masks",
            "box-center",
            "-o",
            out,
            "--no-lpips",
            "--no-fid",
            "--device",
            "cpu",
        ]
    elif command == "train-ddpm":
        args = ["train-ddpm", train_images, "-o", out, "--base", unet, "--device", "cpu", "--batch-size", "2"]
    elif command == "train-lora":
        sd = _damaged_copy(tiny_sd_inpaint_dir, tmp_path / "sd", "unet/diffusion_pytorch_model.safetensors")
        args = [
            "train-lora",
            train_images,
            "-o",
            out,
            "--base",
            sd,
            "--device",
            "cpu",
            "--batch-size",
            "2",
            "--captions",
            _captions(tmp_path, train_images),
        ]
    elif command == "make-masks":
        args = [
            "make-masks",
            "--size",
            "64",
            "--count",
            "3",
            "--preset",
            "lama-thin",
            "--min-ratio",
            "0.95",
            "--max-ratio",
            "1",
            "-o",
            out,
        ]
    else:
        blip = _damaged_copy(tiny_blip_dir, tmp_path / "blip", "model.safetensors")
        args = ["caption", train_images, "-o", out / "captions.json", "--model", blip, "--device", "cpu"]
    result = cli(*args)
    assert result.code == 2, result
    assert not (tmp_path / "out").exists(), sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*"))


def test_make_masks_overwrite_removes_the_masks_the_new_manifest_does_not_list(cli, tmp_path, photo):
    out = tmp_path / "masks"
    assert cli("make-masks", "--size", "16", "--count", "5", "-o", out).code == 0
    (out / "notes.txt").write_text("mine")
    io.save_image(photo, out / "mine.png")  # a user's file, never in a manifest
    assert cli("make-masks", "--size", "16", "--count", "2", "-o", out, "--overwrite").code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["mask_00000.png", "mask_00001.png"]
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "mask_00000.png",
        "mask_00001.png",
        "mine.png",
        "notes.txt",
    ]
    # One mask per image: fewer images, fewer masks.
    images = tmp_path / "images"
    for name in ("a", "b", "c"):
        io.save_image(photo, images / f"{name}.png")
    assert cli("make-masks", images, "-o", tmp_path / "per-image").code == 0
    (images / "c.png").unlink()
    assert cli("make-masks", images, "-o", tmp_path / "per-image", "--overwrite").code == 0
    assert sorted(p.name for p in (tmp_path / "per-image").iterdir()) == ["a.png", "b.png", "manifest.json"]
