"""Images and masks in and out — the one place that converts value ranges and mask polarity.

Conventions used everywhere else in ``inpaint``:

- an image is ``np.uint8`` of shape (H, W, 3), RGB, or a float tensor (N, 3, H, W) in [0, 1];
- a mask is ``np.bool_`` of shape (H, W), or a float tensor (N, 1, H, W) in {0, 1};
  **True / 1 / white = the region to fill**. Files in the opposite convention (RePaint's
  "white = keep") are read with ``invert=True``.

Reading rules (see docs/io.md): EXIF orientation is applied; grayscale, palette, CMYK, 16-bit and
float images become 8-bit RGB (16-bit is scaled by 255/65535, not clipped; float must lie in
[0, 1]); an alpha channel is composited on white (with a warning); an embedded colour profile
other than sRGB is converted to sRGB (with a warning), except where ``inpaint complete`` keeps an
RGB profile and writes it into its output (:func:`read_image_keeping_profile`). Masks are
binarised at 127 after the same conversion to 8 bits; a mask's alpha channel is composited on
black, so a transparent background means "keep". Pillow's decompression-bomb limit stays on, and
what we generate (``make-masks --size``, ``demo --size``) and read from a stream obeys it too.
Every failure is an :class:`~inpaint.errors.InputError` that names the file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from inpaint import atomic
from inpaint.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

#: File name suffixes we read and write as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: Pillow format names by suffix, for writing.
_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
#: Image formats we know by their suffix but do not read in folders, by suffix: files with these
#: suffixes are reported as "unsupported format (GIF)" rather than as non-image files.
UNSUPPORTED_IMAGE_SUFFIXES = {
    ".gif": "GIF",
    ".heic": "HEIC",
    ".heif": "HEIF",
    ".avif": "AVIF",
    ".jxl": "JPEG XL",
    ".jp2": "JPEG 2000",
    ".j2k": "JPEG 2000",
    ".ico": "ICO",
    ".tga": "TGA",
    ".psd": "PSD",
    ".svg": "SVG",
    ".pcx": "PCX",
    ".ppm": "PPM",
    ".pgm": "PGM",
    ".pbm": "PBM",
    ".exr": "OpenEXR",
    ".hdr": "Radiance HDR",
    ".dng": "camera raw",
    ".cr2": "camera raw",
    ".cr3": "camera raw",
    ".nef": "camera raw",
    ".arw": "camera raw",
    ".raf": "camera raw",
    ".orf": "camera raw",
    ".rw2": "camera raw",
}
#: Mask pixels above this 8-bit value are "fill".
MASK_THRESHOLD = 127
#: A stream (``complete -``) must show a recognisable image header within this many bytes.
STREAM_HEADER_BYTES = 16 * 2**20
#: Room for metadata (EXIF, XMP, colour profiles) in the bytes a stream's image may take.
_STREAM_METADATA_BYTES = 16 * 2**20

ImageSource = str | os.PathLike | bytes | IO[bytes]

_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen in this process."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def _describe(source: ImageSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "<stream>"


@contextlib.contextmanager
def _decode_errors(label: str) -> Iterator[None]:
    """Turn Pillow's ways of failing on a bad file into one ``InputError`` line naming ``label``."""
    try:
        yield
    except Image.DecompressionBombError as e:
        raise InputError(f"{label}: refused as a possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise InputError(f"{label}: not an image file this tool can read") from None
    except PermissionError:
        raise InputError(f"{label}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"{label}: cannot decode the image, it may be truncated or corrupt ({e})") from None


def _open(source: ImageSource, label: str) -> Image.Image:
    """Open and fully decode an image, turning every failure into one ``InputError`` line."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise InputError(f"{label}: is a directory, not an image")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{label}: no such file") from None
        except PermissionError:
            raise InputError(f"{label}: permission denied") from None
        except OSError as e:
            raise InputError(f"{label}: cannot read ({e.strerror or e})") from None
    elif isinstance(source, bytes):
        data = source
    else:
        data = read_stream(source, label)
    if not data:
        raise InputError(f"{label}: empty file (0 bytes), not an image")
    with _decode_errors(label):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
        for w in caught:
            _warn_once(f"bomb:{label}", f"{label}: {w.message}")
    try:
        return ImageOps.exif_transpose(image)
    except Exception as e:  # noqa: BLE001 - a malformed EXIF block must not crash the run
        _warn_once(f"exif:{label}", f"{label}: EXIF orientation ignored ({e})")
        return image


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _to_8bit(image: Image.Image, label: str) -> Image.Image:
    """Return an 8-bit image (mode L, LA, RGB, RGBA…); 16-bit and float data are scaled, not clipped.

    A 16-bit gray PNG's transparent value (its tRNS chunk) becomes an explicit alpha channel
    (mode LA): only pixels of exactly that 16-bit value are transparent, not the 257 values that
    share its 8-bit level.
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise InputError(f"{label}: 32-bit integer pixels outside 0..65535 ({values.min()}..{values.max()})")
        # Scale 0..65535 onto 0..255 with rounding (65535 / 255 = 257 exactly).
        gray = ((values + 128) // 257).astype(np.uint8)
        transparent = image.info.get("transparency")
        if isinstance(transparent, int):
            alpha = np.where(values == transparent, 0, 255).astype(np.uint8)
            return Image.fromarray(np.stack([gray, alpha], axis=-1), mode="LA")
        return Image.fromarray(gray, mode="L")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all() or (values.size and (values.min() < 0 or values.max() > 1)):
            raise InputError(
                f"{label}: floating-point pixels must lie in [0, 1] "
                f"(found {np.nanmin(values):.4g}..{np.nanmax(values):.4g})"
            )
        return Image.fromarray(np.rint(values * 255).astype(np.uint8), mode="L")
    return image


def read_image(source: ImageSource, *, name: str | None = None) -> np.ndarray:
    """Read an image file (path, bytes or binary stream) as (H, W, 3) ``uint8`` sRGB.

    ``name`` labels the source in error messages (``"<stdin>"``, say). An embedded colour profile
    other than sRGB (Display P3, Adobe RGB, a CMYK press profile) is converted to sRGB, with a
    warning once per run: metrics, training and captions then see every image in one colour space.
    """
    return _read_rgb(source, name, keep_profile=False)[0]


def read_image_keeping_profile(source: ImageSource, *, name: str | None = None) -> tuple[np.ndarray, bytes | None]:
    """Like :func:`read_image`, but an RGB colour profile is kept rather than converted.

    Returns the pixels as stored in the file and the ICC profile they are in (``None`` for an
    untagged or sRGB-tagged file, whose values are sRGB already). A writer that embeds that profile
    (:func:`save_image` with ``icc_profile``) gives a file that looks like the input, with the
    known pixels bit for bit. A gray or CMYK profile cannot describe the RGB pixels we return,
    so such images are converted to sRGB as :func:`read_image` does.
    """
    return _read_rgb(source, name, keep_profile=True)


def _read_rgb(source: ImageSource, name: str | None, *, keep_profile: bool) -> tuple[np.ndarray, bytes | None]:
    label = _describe(source, name)
    image = _to_8bit(_open(source, label), label)
    image, profile = _colour_managed(image, label, keep_profile)
    if _has_alpha(image):
        _warn_once("alpha", f"{label}: has an alpha channel; transparent pixels are composited on white")
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy(), profile


#: Image modes whose pixels a colour profile can be applied to, and the mode they become in sRGB.
_PROFILE_MODES = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB", "L": "RGB"}


def _profile_info(data: bytes):
    """(ImageCms profile, its description, its colour space: 'RGB', 'GRAY', 'CMYK'…) of ICC bytes."""
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(io.BytesIO(data))
    description = (ImageCms.getProfileDescription(profile) or "").strip() or "unnamed"
    return profile, description, profile.profile.xcolor_space.strip()


def _is_srgb(description: str) -> bool:
    """sRGB profiles (``sRGB IEC61966-2.1``, ``sRGB built-in``…) describe what untagged files hold."""
    return "srgb" in description.lower().replace(" ", "")


def _colour_managed(image: Image.Image, label: str, keep_profile: bool) -> tuple[Image.Image, bytes | None]:
    """Convert an image with a non-sRGB ICC profile to sRGB, or keep an RGB profile (``keep_profile``).

    Returns the image and the profile its pixels are now in (``None``: sRGB). A profile that cannot
    be read or applied is ignored with a warning: the pixels are then used as they are, as before
    profiles were looked at.
    """
    data = image.info.get("icc_profile")
    if not data:
        return image, None
    from PIL import ImageCms

    try:
        profile, description, space = _profile_info(data)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        _warn_once(f"icc:{label}", f"{label}: its colour profile cannot be read and is ignored ({e})")
        return image, None
    if _is_srgb(description):
        return image, None
    if keep_profile and space == "RGB" and image.mode in ("RGB", "RGBA", "P", "PA", "1"):
        return image, bytes(data)
    if image.mode in ("P", "PA", "1"):
        image = image.convert("RGBA" if _has_alpha(image) else "RGB")
    if image.mode not in _PROFILE_MODES:
        _warn_once(
            f"icc:{label}",
            f"{label}: its colour profile ({description}) cannot be applied to {image.mode} pixels and is ignored",
        )
        return image, None
    try:
        converted = ImageCms.profileToProfile(
            image,
            profile,
            ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            outputMode=_PROFILE_MODES[image.mode],
        )
    except (ImageCms.PyCMSError, OSError, ValueError) as e:
        _warn_once(
            f"icc:{label}", f"{label}: its colour profile ({description}) cannot be applied and is ignored ({e})"
        )
        return image, None
    _warn_once(
        "icc",
        f"{label}: has the colour profile {description!r}; converted to sRGB (the values "
        "every method and metric works on); other images with a profile are converted too",
    )
    return converted, None


def read_mask(source: ImageSource, *, name: str | None = None, invert: bool = False) -> np.ndarray:
    """Read a mask file as (H, W) ``bool``, True = fill.

    Any mode is converted to 8-bit gray (alpha composited on black) and binarised at
    ``> 127``; a warning is logged once if the file was not already binary. ``invert=True``
    reads files where white means *keep* (RePaint's convention).
    """
    label = _describe(source, name)
    image = _to_8bit(_open(source, label), label)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, rgba)
    gray = np.asarray(image.convert("L"), dtype=np.uint8)
    if not np.isin(gray, (0, 255)).all():
        _warn_once(
            "nonbinary-mask",
            f"{label}: mask is not binary (values other than 0 and 255); thresholded at {MASK_THRESHOLD}",
        )
    mask = gray > MASK_THRESHOLD
    return ~mask if invert else mask


class ImagePair(NamedTuple):
    """An image and its mask as :func:`read_pair` returns them (unpack as ``image, mask, profile``)."""

    #: (H, W, 3) uint8 RGB.
    image: np.ndarray
    #: (H, W) bool, True = fill.
    mask: np.ndarray
    #: The ICC profile ``image``'s values are in (``keep_profile``), ``None`` for sRGB.
    icc_profile: bytes | None = None


def read_pair(
    image: ImageSource,
    mask: ImageSource,
    *,
    image_name: str | None = None,
    mask_name: str | None = None,
    invert_mask: bool = False,
    resize_mask: bool = False,
    keep_profile: bool = False,
) -> ImagePair:
    """Read an image and its mask and check that they fit: the one way every command reads a pair.

    The image as :func:`read_image` reads it (or :func:`read_image_keeping_profile` with
    ``keep_profile``: ``inpaint complete`` writes the input's profile into its outputs), the mask
    as :func:`read_mask` (``invert_mask``: white = keep), and a mask of another size is an
    :class:`InputError` naming both sizes unless ``resize_mask`` (nearest neighbour,
    :func:`fit_mask`). ``image_name``/``mask_name`` label the sources in messages.
    """
    image_label, mask_label = _describe(image, image_name), _describe(mask, mask_name)
    if keep_profile:
        pixels, profile = read_image_keeping_profile(image, name=image_label)
    else:
        pixels, profile = read_image(image, name=image_label), None
    holes = read_mask(mask, name=mask_label, invert=invert_mask)
    holes = fit_mask(holes, pixels.shape, resize=resize_mask, mask_name=mask_label, image_name=image_label)
    return ImagePair(pixels, holes, profile)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of an image file as :func:`read_image` would return it, EXIF applied.

    Reads only the header, not the pixels.
    """
    label = str(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except Image.DecompressionBombError as e:
        raise InputError(f"{label}: refused as a possible decompression bomb ({e})") from None
    except UnidentifiedImageError:
        if Path(path).is_file() and Path(path).stat().st_size == 0:
            raise InputError(f"{label}: empty file (0 bytes), not an image") from None
        raise InputError(f"{label}: not an image file this tool can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{label}: cannot read the image header ({e})") from None
    # EXIF orientations 5-8 rotate by 90 degrees and swap the sides.
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def max_image_pixels() -> int | None:
    """The most pixels an image may have for the readers to accept it, or ``None`` for no limit.

    Twice Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 179 megapixels): past that Pillow refuses a
    file as a possible decompression bomb. What we generate at a size the user asks for obeys the
    same limit, so every file we write can be read back (and its memory stays bounded).
    """
    limit = Image.MAX_IMAGE_PIXELS
    return 2 * int(limit) if limit else None


def check_image_size(width: int, height: int, label: str) -> None:
    """Refuse, in one line naming ``label`` (an option, say), a size past :func:`max_image_pixels`.

    Called before anything of that size is allocated: ``make-masks --size 100000`` is refused at
    once instead of growing until the system kills it.
    """
    limit = max_image_pixels()
    if limit is not None and width * height > limit:
        side = math.isqrt(limit)
        raise InputError(
            f"{label}: {width * height:,} pixels, more than the {limit:,} an image may have here (larger files "
            f"are refused as possible decompression bombs); a square image can be at most {side}x{side}"
        )


def _claimed_by_a_format(prefix: bytes) -> bool:
    """Whether some image format Pillow knows recognises ``prefix`` as the start of its files."""
    Image.init()
    for _, accept in Image.OPEN.values():
        if accept is not None:
            with contextlib.suppress(Exception):
                if accept(prefix):
                    return True
    return False


def _identify(data: bytes, label: str) -> Image.Image | None:
    """The image ``data`` starts with, opened lazily (header only), or ``None`` if not recognised yet."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise InputError(f"{label}: refused as a possible decompression bomb ({e})") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            return None


def _most_bytes(image: Image.Image) -> int:
    """A generous bound on the bytes a file of ``image``'s size and mode can take: twice its
    pixel data uncompressed (no codec we read expands more), plus room for metadata."""
    bands = len(image.getbands())
    depth = 2 if "16" in image.mode else 4 if image.mode in ("I", "F") else 1
    return 2 * image.width * image.height * bands * depth + _STREAM_METADATA_BYTES


def read_stream(stream: IO[bytes], label: str = "<stream>") -> bytes:
    """Read an image file from ``stream`` (stdin) without letting the stream decide how much memory it takes.

    The header is read first, a little at a time (at most :data:`STREAM_HEADER_BYTES`): a stream
    that no image format recognises is refused after its first block, and an image past the pixel
    limit (:func:`max_image_pixels`) as soon as its size is known. The rest is then read up to the
    most bytes an image of that size can take (:func:`_most_bytes`), and a longer stream is refused:
    a 2 GB stream costs a bounded read, never 2 GB of memory.
    """
    data = bytearray()
    block = 64 * 1024
    while True:
        piece = stream.read(min(block, STREAM_HEADER_BYTES - len(data)))
        data += piece or b""
        image = _identify(bytes(data), label)  # a decompression bomb is refused here, from its header
        if image is not None:
            break
        if not piece:  # the whole stream, and no header: decoding it says what is wrong (or that it is empty)
            return bytes(data)
        if not _claimed_by_a_format(bytes(data[:16])):
            raise InputError(f"{label}: not an image file this tool can read")
        if len(data) >= STREAM_HEADER_BYTES:
            raise InputError(
                f"{label}: no complete image header in the first {len(data):,} bytes; "
                "not an image file this tool can read"
            )
        block = min(2 * block, STREAM_HEADER_BYTES)
    most = _most_bytes(image)
    image.close()
    while len(data) <= most:
        piece = stream.read(min(most + 1 - len(data), 2**24))
        if not piece:
            return bytes(data)
        data += piece
    raise InputError(
        f"{label}: more than {most:,} bytes for a {image.width}x{image.height} {image.mode} image; "
        "refused (more than any file of that size can hold)"
    )


def check_image_file(path: str | os.PathLike[str], *, name: str | None = None) -> None:
    """Raise :class:`InputError` unless the image file at ``path`` decodes, without keeping its pixels.

    Cheaper than :func:`read_image` and as strict for the usual failures: PNG files are checked
    with Pillow's ``verify`` (every chunk's checksum, the whole stream read, nothing decompressed),
    JPEG files are decoded at 1/8 scale (``draft``: every byte is still parsed, so truncation is
    caught), other formats are decoded fully. Used to refuse a data folder before long work starts.
    ``name`` labels the file in the message (default: the path).
    """
    label = name if name is not None else str(path)
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{label}: is a directory, not an image")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    if size == 0:
        raise InputError(f"{label}: empty file (0 bytes), not an image")
    with _decode_errors(label), warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            if image.format == "PNG":
                image.verify()
            else:
                if image.format == "JPEG":
                    image.draft(None, (1, 1))
                image.load()


def fit_mask(
    mask: np.ndarray,
    image_shape: Sequence[int],
    *,
    resize: bool = False,
    mask_name: str = "mask",
    image_name: str = "image",
) -> np.ndarray:
    """Check that ``mask`` (H, W) matches ``image_shape`` (H, W, …), or resize it (nearest).

    Raises :class:`InputError` naming both sizes when they differ and ``resize`` is False.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    if mask.shape == (height, width):
        return mask
    if not resize:
        raise InputError(
            f"{mask_name} is {mask.shape[1]}x{mask.shape[0]} but {image_name} is {width}x{height} "
            "(use --resize-mask to resize the mask, nearest neighbour)"
        )
    resized = Image.fromarray(mask.astype(np.uint8) * 255, mode="L").resize((width, height), Image.NEAREST)
    return np.asarray(resized) > MASK_THRESHOLD


def format_for(path: str | os.PathLike[str]) -> str:
    """Pillow format name for an output path's suffix; ``InputError`` for unknown suffixes.

    A name without a suffix (``-o result``) is written as PNG under that very name: the file goes
    exactly where it was asked to (a script's ``mktemp`` name, say), in the lossless default. An
    unknown suffix is refused rather than guessed at: ``.pgn`` is far more often a typo.
    """
    suffix = Path(path).suffix.lower()
    if not suffix:
        return "PNG"
    try:
        return _FORMATS[suffix]
    except KeyError:
        raise InputError(
            f"{path}: unknown image suffix {suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)} (or none, for PNG)"
        ) from None


#: Formats we write lossily (JPEG and WebP at quality 95): the known pixels do not survive bit for bit.
LOSSY_FORMATS = ("JPEG", "WEBP")


def is_lossy(path: str | os.PathLike[str]) -> bool:
    """Whether :func:`save_image` writes ``path`` in a lossy format (``.jpg``, ``.jpeg``, ``.webp``)."""
    return format_for(path) in LOSSY_FORMATS


#: Formats whose files can carry an ICC colour profile (Pillow's ``icc_profile`` save option).
_PROFILE_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")


def encode_image(image: np.ndarray, format: str = "PNG", *, icc_profile: bytes | None = None) -> bytes:
    """Encode an (H, W, 3) or (H, W) ``uint8`` array; PNG is lossless, JPEG/WebP use quality 95.

    ``icc_profile``: the colour profile the RGB values are in (from
    :func:`read_image_keeping_profile`), embedded so that the file looks like its source. A format
    that cannot hold one (BMP) gets the values converted to sRGB instead, with a warning.
    """
    pil = Image.fromarray(_as_uint8_array(image))
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": 95} if format in ("JPEG", "WEBP") else {}
    if icc_profile:
        if format in _PROFILE_FORMATS:
            options["icc_profile"] = icc_profile
        else:
            pil = _profile_to_srgb(pil, icc_profile, format)
    pil.save(buffer, format=format, **options)
    return buffer.getvalue()


def _profile_to_srgb(image: Image.Image, icc_profile: bytes, format: str) -> Image.Image:
    """``image``'s values converted from ``icc_profile`` to sRGB, for a format without profiles."""
    from PIL import ImageCms

    try:
        profile, description, _ = _profile_info(icc_profile)
        converted = ImageCms.profileToProfile(
            image.convert("RGB"),
            profile,
            ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            outputMode="RGB",
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        _warn_once(
            f"icc-out:{format}",
            f"{format} files cannot hold a colour profile, and converting to sRGB "
            f"failed ({e}); written without it, colours may shift",
        )
        return image
    _warn_once(
        f"icc-out:{format}",
        f"{format} files cannot hold a colour profile: written converted from "
        f"{description!r} to sRGB; use PNG, JPEG, WebP or TIFF to keep the input's values and profile",
    )
    return converted


def save_image(image: np.ndarray, path: str | os.PathLike[str], *, icc_profile: bytes | None = None) -> Path:
    """Write an (H, W, 3) RGB or (H, W) gray ``uint8`` array, format from the suffix, atomically.

    The file is written under a temporary name in the same directory and renamed into place, so
    an interrupted run never leaves a half-written image. ``icc_profile`` is embedded
    (:func:`encode_image`).
    """
    path = Path(path)
    data = encode_image(image, format_for(path), icc_profile=icc_profile)
    atomic.write_bytes(path, data)
    return path


def save_mask(mask: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write a (H, W) bool mask as an 8-bit gray PNG: 255 = fill, 0 = keep."""
    return save_image(mask.astype(np.uint8) * 255, path)


def _as_uint8_array(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array, got {image.dtype}")
    return image


#: ``inpaint complete photo.jpg mask.png`` writes ``photo_inpainted.png`` beside the photo.
COMPLETED_SUFFIX = "_inpainted"


def list_images(folder: str | os.PathLike[str]) -> tuple[list[Path], list[Path]]:
    """Image files directly inside ``folder`` (sorted by name) and the other files skipped.

    Hidden files (``.name``) and our own temporary files are ignored altogether, and so are the
    results ``inpaint complete`` writes beside its input when no ``-o`` is given
    (``NAME_inpainted.png`` next to an image ``NAME.*``): completing a test image must not add a
    test image, nor a training image a training image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        if folder.exists():
            raise InputError(f"{folder}: is a file, not a folder of images")
        raise InputError(f"{folder}: no such directory")
    images, others = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    stems = {path.stem for path in images}
    results = {
        path
        for path in images
        if path.suffix.lower() == ".png"
        and path.stem.endswith(COMPLETED_SUFFIX)
        and path.stem[: -len(COMPLETED_SUFFIX)] in stems
    }
    return [path for path in images if path not in results], others


def unsupported_format(path: str | os.PathLike[str]) -> str | None:
    """The format name of an image file we know but do not read (``"GIF"``), from its suffix, else None."""
    return UNSUPPORTED_IMAGE_SUFFIXES.get(Path(path).suffix.lower())


def split_unsupported(files: Sequence[str | os.PathLike[str]]) -> tuple[list[str], list[str]]:
    """The names of files :func:`list_images` left out, split into (images in a format we do not
    read, the other files): the first are reported as such, not as non-image files."""
    names = [Path(file).name for file in files]
    return (
        [name for name in names if unsupported_format(name)],
        [name for name in names if not unsupported_format(name)],
    )


def unsupported_message(folder: str | os.PathLike[str], names: Sequence[str]) -> str:
    """``DIR: skipped 2 image(s) in an unsupported format (GIF: e.g. a.gif); convert them to PNG``."""
    formats = ", ".join(dict.fromkeys(str(unsupported_format(name)) for name in names))
    return (
        f"{folder}: skipped {len(names)} image(s) in an unsupported format ({formats}: e.g. {names[0]}); "
        "convert them to PNG to use them"
    )


def no_images_message(
    folder: str | os.PathLike[str], others: Sequence[str | os.PathLike[str]] = (), *, purpose: str = ""
) -> str:
    """The error for a folder without images we read (``no training images found`` with a
    ``purpose``), naming the images in unsupported formats it holds."""
    message = f"{folder}: no {purpose + ' ' if purpose else ''}images found (looked for {', '.join(IMAGE_SUFFIXES)})"
    unsupported, _ = split_unsupported(others)
    if unsupported:
        formats = ", ".join(dict.fromkeys(str(unsupported_format(name)) for name in unsupported))
        message += (
            f"; {len(unsupported)} file(s) are in an unsupported format ({formats}: e.g. {unsupported[0]}); "
            "convert them to PNG"
        )
    return message


# ---- tensors: the [0, 255] <-> [0, 1] <-> [-1, 1] conversions -------------------------------


def to_tensor(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 array(s) -> float32 tensor (N, 3, H, W) in [0, 1]."""
    import torch

    batch = np.stack(images) if not isinstance(images, np.ndarray) else images
    if batch.ndim == 3:
        batch = batch[None]
    # np.array copies: arrays from Pillow are read-only, which torch warns about.
    return torch.from_numpy(np.array(batch)).permute(0, 3, 1, 2).float().div(255.0)


def to_uint8_tensor(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """(H, W, 3) uint8 array(s) -> uint8 tensor (N, 3, H, W) (a channels-last view): the metrics' fast path."""
    import torch

    batch = np.stack(images) if not isinstance(images, np.ndarray) else images
    if batch.ndim == 3:
        batch = batch[None]
    return torch.from_numpy(np.array(batch)).permute(0, 3, 1, 2)


def mask_to_tensor(masks: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """(H, W) bool mask(s) -> float32 tensor (N, 1, H, W) in {0, 1}, 1 = fill."""
    import torch

    batch = np.stack(masks) if not isinstance(masks, np.ndarray) else masks
    if batch.ndim == 2:
        batch = batch[None]
    return torch.from_numpy(np.array(batch)).float()[:, None]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float tensor (N, 3, H, W) in [0, 1] -> uint8 array (N, H, W, 3), rounded to nearest."""
    import torch

    quantised = images.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return quantised.permute(0, 2, 3, 1).cpu().numpy()


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], the range diffusion models are trained in."""
    return images * 2.0 - 1.0


def from_model_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)
