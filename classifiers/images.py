"""Image decoding: any upload, path or byte string to one upright 8-bit RGB picture.

The page shows exactly the picture this module returns, and both models classify
that same picture, so what the user sees is what was classified.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

_logger = logging.getLogger(__name__)

ImageSource = Union[bytes, bytearray, str, os.PathLike, BinaryIO]

# Refuse anything larger before decoding a pixel. 80 megapixels is above the
# default output of phone cameras (12-50 MP) and below Pillow's own
# decompression-bomb warning threshold (about 89.5 MP), so that warning never fires.
MAX_PIXELS = 80_000_000

# JPEG draft decoding keeps the shortest side at least this long: twice the
# 224 px input of every model offered, so resizing down to the model input
# still starts from more pixels than it keeps.
DRAFT_MIN_SIDE = 448

# Formats people drop that Pillow cannot decode, detected by their first bytes.
_UNSUPPORTED_SIGNATURES = {
    "SVG": "SVG vector drawings are not supported; export the drawing as PNG and use that file",
    "HEIC": "HEIC/HEIF photos are not supported; convert the photo to JPEG or PNG and use that file",
    "PDF": "PDF documents are not supported; export the page as PNG or JPEG and use that file",
}

WHITE = (255, 255, 255)

# Exception types that Pillow's format plugins raise on malformed data. Besides
# OSError and the types Image.open itself treats as "not this format"
# (SyntaxError, IndexError, TypeError, struct.error), mutated files made
# Pillow 13.0 raise KeyError (TIFF compression tag), ValueError (APNG fcTL chunk)
# and RuntimeError (AVIF decoder). EOFError is what Pillow raises for a missing frame.
_MALFORMED_DATA_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    EOFError,
    RuntimeError,
    struct.error,
)


@dataclass
class DecodedImage:
    """A decoded picture with what the user should know about how it was read."""

    image: Image.Image
    name: str
    format: str | None
    original_size: tuple[int, int]
    notes: list[str] = field(default_factory=list)


def _read_bytes(source: ImageSource, name: str) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            return Path(source).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"{name}: file not found") from None
        except IsADirectoryError:
            raise ImageError(f"{name}: is a folder, not an image file") from None
        except OSError as e:
            raise ImageError(f"{name}: cannot be read ({e.strerror or e})") from e
    try:
        return source.read()
    except OSError as e:
        raise ImageError(f"{name}: cannot be read ({e})") from e


def _unsupported_format(data: bytes) -> str | None:
    head = data[:512].lstrip()
    if head.startswith(b"%PDF"):
        return "PDF"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avic"):
        return "HEIC"
    lowered = head.lower()
    if lowered.startswith(b"<svg") or (lowered.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "SVG"
    return None


def _high_bit_depth_to_8_bit(image: Image.Image) -> Image.Image:
    """Scale a 16-bit, 32-bit or float grayscale image to mode L, or LA if it has a transparent value."""
    # Pillow's convert("L") clips 16-bit and 32-bit values at 255 instead of
    # scaling them, which turns a 16-bit grayscale scan almost white.
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    else:
        # Pillow 13 opens 16-bit PNG and TIFF files as I;16 and 16-bit PGM files as I.
        # NOTE: values of a 32-bit TIFF (also mode I) above 65535 clip at 255.
        scaled = values / 257.0  # 65535 maps to 255
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)

    # A 16-bit grayscale PNG marks one sample value as transparent in its tRNS
    # chunk. The value is lost once scaled, so it becomes an alpha channel here.
    transparent_value = image.info.get("transparency")
    if isinstance(transparent_value, int) and image.mode != "F":
        alpha = np.where(values == transparent_value, 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([gray, alpha], axis=-1), mode="LA")
    return Image.fromarray(gray, mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency over white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _high_bit_depth_to_8_bit(image)
    if image.mode == "La":
        # Pillow converts premultiplied La only to LA.
        image = image.convert("LA")

    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB", "1") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    return image.convert("RGB")


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Open the image, reading only its header, and raise ImageError for unreadable data or too many pixels."""
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below is lower, so Pillow's bomb warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (the content is not a format Pillow can read)") from None
    except Image.DecompressionBombError:
        # Pillow raises this at open above 2 * Image.MAX_IMAGE_PIXELS (about
        # 179 MP by default), before the check below can run.
        raise ImageError(
            f"{name}: the image has more pixels than the limit of {max_pixels:,}; resize it and try again"
        ) from None
    except _MALFORMED_DATA_ERRORS as e:
        raise ImageError(f"{name}: not a readable image file ({e})") from e

    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: the image is {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,}; resize it and try again"
        )
    return image


def _count_frames(image: Image.Image, name: str) -> int:
    """Count the frames, reading each frame header but no pixels, and raise ImageError if one is damaged."""
    try:
        # Pillow's n_frames seeks back to the first frame when done.
        num_frames = getattr(image, "n_frames", 1)
    except _MALFORMED_DATA_ERRORS as e:
        # A frame header after the first is damaged or cut off. The file is
        # rejected like any other truncated or corrupt file.
        raise ImageError(
            f"{name}: the image data is corrupt or truncated after the first frame ({e or type(e).__name__}); "
            "save or download the file again"
        ) from e
    return num_frames


def _multi_frame_note(image_format: str | None, num_frames: int) -> str:
    if image_format == "MPO":
        return (
            f"the JPEG contains {num_frames} pictures (an MPO file, as some cameras write for stereo "
            "or depth data): the first picture was classified"
        )
    if image_format == "TIFF":
        return f"TIFF file with {num_frames} pages: the first page was classified"
    return f"animated {image_format} with {num_frames} frames: the first frame was classified"


def _load_pixels(image: Image.Image, name: str) -> None:
    """Decode the pixels, and raise ImageError for truncated or corrupt data."""
    # NOTE: Pillow accepts truncated files when another module has set the
    # global PIL.ImageFile.LOAD_TRUNCATED_IMAGES to True, and this code cannot
    # detect them then. This module never sets it.
    try:
        image.load()
    except OSError as e:
        message = str(e)
        if "truncated" in message or "broken data stream" in message or "premature end" in message:
            raise ImageError(
                f"{name}: the file is truncated (the end of the image data is missing, as after an "
                "interrupted download or copy); use the complete file"
            ) from None
        raise ImageError(f"{name}: the image data is corrupt and cannot be decoded ({message})") from e
    except (*_MALFORMED_DATA_ERRORS, Image.DecompressionBombError) as e:
        raise ImageError(f"{name}: the image data is corrupt and cannot be decoded ({e or type(e).__name__})") from e


def _shape_notes(image: Image.Image) -> list[str]:
    notes = []
    aspect = max(image.width, image.height) / max(1, min(image.width, image.height))
    if aspect > 4:
        notes.append(
            f"extreme aspect ratio ({image.width}x{image.height}): both models look at a square centre crop, "
            "so most of the picture is cut off"
        )
    if min(image.width, image.height) < 32:
        notes.append(
            f"tiny image ({image.width}x{image.height}): it is upscaled to the model input, expect poor results"
        )
    return notes


def decode_image(
    source: ImageSource,
    name: str | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    draft_min_side: int | None = DRAFT_MIN_SIDE,
) -> DecodedImage:
    """Decode an image into an upright RGB picture, with notes for the user.

    Args:
        source: raw bytes, a binary file object (such as a Streamlit upload) or a path.
            A file object is read from its current position.
        name: the name used in messages; defaults to the path, the file object's
            ``name`` or ``"image"``.
        max_pixels: images with more pixels are rejected before decoding.
        draft_min_side: a JPEG whose shortest side is at least twice this is
            decoded at a reduced scale (1/2, 1/4 or 1/8) that keeps the
            shortest side at least this long. ``None`` always decodes in full.

    Raises:
        ImageError: the file is missing, empty, not an image, of an unsupported
            format, truncated, corrupt, or larger than ``max_pixels``.
    """
    if name is None:
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "image")
    name = str(name)

    data = _read_bytes(source, name)
    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes); it is not an image file")
    unsupported = _unsupported_format(data)
    if unsupported:
        raise ImageError(f"{name}: {_UNSUPPORTED_SIGNATURES[unsupported]}")

    image = _open(data, name, max_pixels)
    original_size = image.size
    image_format = image.format

    notes: list[str] = []
    num_frames = _count_frames(image, name)
    if num_frames > 1:
        notes.append(_multi_frame_note(image_format, num_frames))

    # MPO is a JPEG with extra pictures appended, decoded by the same plugin.
    if draft_min_side and image_format in ("JPEG", "MPO") and min(original_size) >= 2 * draft_min_side:
        image.draft(image.mode, (draft_min_side, draft_min_side))
    _load_pixels(image, name)

    try:
        image = ImageOps.exif_transpose(image)
    except _MALFORMED_DATA_ERRORS as e:
        # A damaged EXIF block must not cost the user the picture itself.
        _logger.warning("%s: EXIF orientation ignored (%s)", name, e)
        notes.append("the EXIF orientation tag is damaged and was ignored")

    rgb = to_rgb(image)
    notes.extend(_shape_notes(rgb))
    return DecodedImage(image=rgb, name=name, format=image_format, original_size=original_size, notes=notes)


def load_image(source: ImageSource, name: str | None = None) -> Image.Image:
    """Decode an image into an upright 8-bit RGB ``PIL.Image``.

    See :func:`decode_image` for the arguments and the errors it raises.
    """
    return decode_image(source, name).image
