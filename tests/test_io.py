"""Images and masks in and out: formats, modes, EXIF, alpha, polarity, bad files, atomic writes."""

from __future__ import annotations

import io as stdio
import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inpaint import io
from inpaint.errors import InputError


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".bmp", ".tif"])
def test_every_format_reads_as_rgb_uint8(tmp_path, photo, suffix):
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(photo).save(path)
    pixels = io.read_image(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (64, 64, 3)
    if suffix in (".png", ".bmp", ".tif"):  # lossless formats come back exactly
        assert np.array_equal(pixels, photo)
    else:
        assert np.abs(pixels.astype(int) - photo).mean() < 8


def test_exif_orientation_is_applied(tmp_path):
    # A 40x20 (w x h) image whose EXIF says "rotate 90 CW to display" (orientation 6).
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=100)
    shown = io.read_image(path)
    assert shown.shape == (40, 20, 3)
    assert io.image_size(path) == (20, 40)
    # Rotating 90 degrees clockwise puts the white left half on top.
    assert shown[:18].mean() > 200 and shown[22:].mean() < 50


def test_grayscale_palette_and_bilevel_become_rgb(tmp_path, photo):
    gray = Image.fromarray(photo).convert("L")
    gray.save(tmp_path / "gray.png")
    pixels = io.read_image(tmp_path / "gray.png")
    assert pixels.shape == (64, 64, 3)
    assert np.array_equal(pixels[..., 0], np.asarray(gray)) and np.array_equal(pixels[..., 0], pixels[..., 2])

    Image.fromarray(photo).convert("P").save(tmp_path / "palette.png")
    assert io.read_image(tmp_path / "palette.png").shape == (64, 64, 3)

    Image.fromarray(photo).convert("1").save(tmp_path / "bilevel.png")
    assert set(np.unique(io.read_image(tmp_path / "bilevel.png"))) <= {0, 255}


def test_cmyk_converts_like_pillow(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 0, 0))  # pure magenta ink
    cmyk.save(tmp_path / "cmyk.tif")
    assert io.read_image(tmp_path / "cmyk.tif")[0, 0].tolist() == [255, 0, 255]


def test_16_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    assert io.read_image(tmp_path / "deep.png")[0, :, 0].tolist() == [0, 1, 128, 255]


def test_32_bit_integer_and_float_images(tmp_path):
    Image.fromarray(np.array([[0, 65535]], dtype=np.int32), mode="I").save(tmp_path / "int.tif")
    assert io.read_image(tmp_path / "int.tif")[0, :, 0].tolist() == [0, 255]

    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F").save(tmp_path / "float.tif")
    assert io.read_image(tmp_path / "float.tif")[0, :, 0].tolist() == [0, 128, 255]

    Image.fromarray(np.array([[0.0, 2.0]], dtype=np.float32), mode="F").save(tmp_path / "hdr.tif")
    with pytest.raises(InputError, match=r"hdr\.tif.*\[0, 1\]"):
        io.read_image(tmp_path / "hdr.tif")


def test_palette_transparency_is_composited_on_white(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0  # index 0 is fully transparent
    palette.save(tmp_path / "p.png", transparency=0)
    assert io.read_image(tmp_path / "p.png").tolist() == [[[255, 255, 255], [200, 100, 50]]]


def test_16_bit_gray_transparency_is_kept_for_images_and_masks(tmp_path):
    # A 16-bit gray PNG marks one exact value transparent (tRNS): 1280 here, while 1279 and 1281,
    # the same 8-bit level, stay opaque.
    values = np.array([[1280, 1279, 1281, 65535, 0]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png", transparency=1280)
    opened = Image.open(tmp_path / "deep.png")
    assert opened.mode == "I;16" and opened.info["transparency"] == 1280
    assert io.read_image(tmp_path / "deep.png")[0, :, 0].tolist() == [255, 5, 5, 255, 0]  # on white
    assert io.read_mask(tmp_path / "deep.png").tolist() == [[False, False, False, True, False]]  # on black
    # A white stroke on a transparent white background: the background is "keep", not "fill".
    strokes = np.array([[65535, 65534]], dtype=np.uint16)
    Image.fromarray(strokes).save(tmp_path / "strokes.png", transparency=65534)
    assert io.read_mask(tmp_path / "strokes.png").tolist() == [[True, False]]


def test_alpha_is_composited_on_white_with_one_warning(tmp_path, caplog):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3] = 0  # fully transparent
    rgba[0, 1, 3] = 255  # opaque
    rgba[0, 2, 3] = 128  # half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    with caplog.at_level(logging.WARNING, logger="inpaint"):
        pixels = io.read_image(tmp_path / "alpha.png")
        io.read_image(tmp_path / "alpha.png")
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[0, 1].tolist() == [200, 0, 0]
    assert 220 < pixels[0, 2, 0] < 235 and 120 < pixels[0, 2, 1] < 135
    assert sum("alpha" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"this is not an image at all", "not an image file"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match=rf"bad\.png: {message}"):
        io.read_image(path)


def test_truncated_file_is_an_error_naming_it(tmp_path, photo):
    buffer = stdio.BytesIO()
    Image.fromarray(photo).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InputError, match=r"cut\.png: cannot decode.*truncated"):
        io.read_image(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        io.read_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="is a directory"):
        io.read_image(tmp_path)


def test_decompression_bomb_limit_stays_on(tmp_path, monkeypatch):
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 px > 2 x 1000: Pillow refuses
    with pytest.raises(InputError, match=r"big\.png: refused as a possible decompression bomb"):
        io.read_image(tmp_path / "big.png")


def test_read_from_bytes_uses_the_given_name(photo):
    data = io.encode_image(photo, "PNG")
    assert np.array_equal(io.read_image(data, name="<stdin>"), photo)
    with pytest.raises(InputError, match="<stdin>"):
        io.read_image(b"junk", name="<stdin>")


# ---- masks -------------------------------------------------------------------------------


def test_mask_white_is_fill_and_invert_flips(tmp_path):
    values = np.array([[0, 255, 0, 255]], np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    assert io.read_mask(tmp_path / "m.png").tolist() == [[False, True, False, True]]
    assert io.read_mask(tmp_path / "m.png", invert=True).tolist() == [[True, False, True, False]]


def test_non_binary_mask_is_thresholded_at_127_with_one_warning(tmp_path, caplog):
    Image.fromarray(np.array([[0, 127, 128, 255]], np.uint8)).save(tmp_path / "soft.png")
    with caplog.at_level(logging.WARNING, logger="inpaint"):
        mask = io.read_mask(tmp_path / "soft.png")
        io.read_mask(tmp_path / "soft.png")
    assert mask.tolist() == [[False, False, True, True]]
    assert sum("not binary" in r.getMessage() for r in caplog.records) == 1


def test_rgb_16bit_and_alpha_masks(tmp_path):
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 1] = 255
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert io.read_mask(tmp_path / "rgb.png").tolist() == [[False, True]]

    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(tmp_path / "deep.png")
    assert io.read_mask(tmp_path / "deep.png").tolist() == [[False, True]]

    # Painted white strokes on a transparent background: transparent means keep.
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (255, 255, 255, 0)
    rgba[0, 1] = (255, 255, 255, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    assert io.read_mask(tmp_path / "alpha.png").tolist() == [[False, True]]


def test_mask_size_mismatch_names_both_sizes_unless_resized():
    mask = np.zeros((10, 20), bool)
    mask[:, 10:] = True
    with pytest.raises(InputError, match=r"m\.png is 20x10 but a\.png is 40x20.*--resize-mask"):
        io.fit_mask(mask, (20, 40, 3), mask_name="m.png", image_name="a.png")
    resized = io.fit_mask(mask, (20, 40, 3), resize=True)
    assert resized.shape == (20, 40) and resized[:, :20].sum() == 0 and resized[:, 20:].all()


# ---- writing -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP"), (".tiff", "TIFF")])
def test_format_follows_the_extension(tmp_path, photo, suffix, fmt):
    path = io.save_image(photo, tmp_path / f"out{suffix}")
    assert Image.open(path).format == fmt


def test_png_output_is_lossless_and_unknown_suffix_refused(tmp_path, photo):
    io.save_image(photo, tmp_path / "out.png")
    assert np.array_equal(io.read_image(tmp_path / "out.png"), photo)
    with pytest.raises(InputError, match="unknown image suffix"):
        io.save_image(photo, tmp_path / "out.xyz")


def test_interrupted_write_leaves_nothing_behind(tmp_path, photo, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")

    def explode(self, data):
        Path.open(self, "wb").write(data[:10])  # half-written...
        raise KeyboardInterrupt  # ...then the user hits Ctrl-C

    monkeypatch.setattr(Path, "write_bytes", explode)
    with pytest.raises(KeyboardInterrupt):
        io.save_image(photo, target)
    monkeypatch.undo()
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_tensor_round_trip_is_exact(photo):
    tensor = io.to_tensor(photo)
    assert tensor.shape == (1, 3, 64, 64) and 0 <= float(tensor.min()) and float(tensor.max()) <= 1
    assert np.array_equal(io.to_uint8(tensor)[0], photo)
    assert np.array_equal(io.to_uint8(io.from_model_range(io.to_model_range(tensor)))[0], photo)
    mask = np.eye(4, dtype=bool)
    assert io.mask_to_tensor(mask).shape == (1, 1, 4, 4)
    assert io.mask_to_tensor(mask)[0, 0].bool().numpy().tolist() == mask.tolist()


def test_list_images_separates_other_files(tmp_path, photo):
    io.save_image(photo, tmp_path / "b.png")
    io.save_image(photo, tmp_path / "a.jpg")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / ".hidden.png").write_bytes(b"")
    images, others = io.list_images(tmp_path)
    assert [p.name for p in images] == ["a.jpg", "b.png"]
    assert [p.name for p in others] == ["notes.txt"]


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_pixel_mode_becomes_8_bit_rgb(tmp_path, mode):
    gray = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (8, 1))
    if mode == "I;16":
        image = Image.fromarray(gray.astype(np.uint16) * 257)
    elif mode == "I":
        image = Image.fromarray(gray.astype(np.int32) * 257, mode="I")
    elif mode == "F":
        image = Image.fromarray(gray.astype(np.float32) / 255, mode="F")
    else:
        image = Image.fromarray(gray).convert(mode)
    suffix = ".tif" if mode in ("I;16", "I", "F", "CMYK") else ".png"
    image.save(tmp_path / f"m{suffix}")
    pixels = io.read_image(tmp_path / f"m{suffix}")
    assert pixels.dtype == np.uint8 and pixels.shape == (8, 16, 3)
    if mode in ("L", "LA", "RGB", "RGBA", "I;16", "I", "F"):  # exact gray levels survive
        assert np.array_equal(pixels[..., 1], gray)
    elif mode == "1":
        assert set(np.unique(pixels)) <= {0, 255}
    else:  # palette and CMYK: Pillow's conversion, close to the original levels
        assert np.abs(pixels[..., 1].astype(int) - gray).max() <= 16


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_undone(tmp_path, orientation):
    # The picture as it should be shown: a white square in the top-left corner of a 30x20 image.
    shown = np.zeros((20, 30, 3), np.uint8)
    shown[:6, :6] = 255
    # What a camera would store so that applying `orientation` shows `shown` (the inverse transform).
    inverse = {
        1: None,
        2: Image.FLIP_LEFT_RIGHT,
        3: Image.ROTATE_180,
        4: Image.FLIP_TOP_BOTTOM,
        5: Image.TRANSPOSE,
        6: Image.ROTATE_90,
        7: Image.TRANSVERSE,
        8: Image.ROTATE_270,
    }[orientation]
    stored = Image.fromarray(shown)
    if inverse is not None:
        stored = stored.transpose(inverse)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "o.png", exif=exif)
    pixels = io.read_image(tmp_path / "o.png")
    assert pixels.shape == shown.shape
    assert np.array_equal(pixels, shown)
    assert io.image_size(tmp_path / "o.png") == (30, 20)


def test_stale_temporaries_of_a_killed_write_are_recognised(tmp_path, photo):
    from inpaint import atomic

    with pytest.raises(RuntimeError):
        with atomic.atomic_path(tmp_path / "out.png") as tmp:
            tmp.write_bytes(b"half")
            leftover = tmp.name
            raise RuntimeError  # atomic_path cleans up after exceptions...
    assert not (tmp_path / leftover).exists()
    # ...but a kill -9 cannot; such files carry our pattern and are removed by a resumed run.
    (tmp_path / leftover).write_bytes(b"half")
    (tmp_path / ".keep.me").write_bytes(b"a user's hidden file")
    io.save_image(photo, tmp_path / "done.png")
    assert atomic.remove_stale_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep.me", "done.png"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_and_folders_get_the_users_usual_modes(tmp_path, photo, umask):
    """Atomic writes go through tempfile, whose files (0600) and folders (0700) are private."""
    import torch
    from safetensors.torch import save_file

    from inpaint import atomic

    previous = os.umask(umask)
    try:
        image = io.save_image(photo, tmp_path / "out.png")
        with atomic.atomic_path(tmp_path / "w.safetensors") as tmp:  # safetensors replaces the file: 0600
            save_file({"w": torch.zeros(2)}, tmp)
        folder = atomic.temporary_folder(".checkpoint.", tmp_path)
        save_file({"w": torch.zeros(2)}, folder / "model.safetensors")
        atomic.give_usual_modes(folder)
        plain_file, plain_folder = tmp_path / "plain", tmp_path / "plain-dir"
        plain_file.write_bytes(b"")
        plain_folder.mkdir()
    finally:
        os.umask(previous)
    assert atomic.process_umask() == previous
    assert stat.S_IMODE(image.stat().st_mode) == stat.S_IMODE(plain_file.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((folder / "model.safetensors").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(folder.stat().st_mode) == stat.S_IMODE(plain_folder.stat().st_mode) == 0o777 & ~umask
