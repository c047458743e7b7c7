"""Tests of classifiers.images: every kind of upload becomes one upright RGB picture or an ImageError.

Every odd or broken file is generated here with Pillow, numpy or raw bytes. No
test loads a model. The draft test builds only the preprocessing transforms.
"""

from __future__ import annotations

import io
import json
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from classifiers.errors import ImageError
from classifiers.images import DRAFT_MIN_SIDE, MAX_PIXELS, decode_image, load_image, to_rgb

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"
SAMPLE_IMAGES = sorted(p for p in ASSETS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
SAMPLE_PNGS = [p for p in SAMPLE_IMAGES if p.suffix.lower() == ".png"]

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


@pytest.fixture(scope="session")
def offline_environment():
    """Replace the conftest fixture of the same name for this file only.

    These tests load no model, so they skip the random-weight checkpoints that
    the conftest fixture writes, which take several seconds to build.
    """
    yield


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """An RGB image of random pixels, which compresses poorly and so gives long JPEG and PNG data."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def png_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(chunk_type + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + chunk_type + payload + struct.pack(">I", crc)


def all_black_1_bit_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit grayscale PNG, compressed in blocks of rows to keep the raw pixels out of memory."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    row = b"\x00" * (1 + (width + 7) // 8)  # filter type 0, then the packed bits
    compressor = zlib.compressobj(9)
    rows_per_block = 1000
    compressed = []
    for first_row in range(0, height, rows_per_block):
        compressed.append(compressor.compress(row * min(rows_per_block, height - first_row)))
    compressed.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(compressed))
        + png_chunk(b"IEND", b"")
    )


def assert_close(actual, expected, tolerance: int, description: str) -> None:
    difference = np.abs(np.asarray(actual, dtype=int) - np.asarray(expected, dtype=int)).max()
    assert difference <= tolerance, f"{description}: got {actual}, expected {expected} within {tolerance}"


# Sample images in assets/


@pytest.mark.parametrize("path", SAMPLE_IMAGES, ids=lambda p: p.name)
def test_sample_image_loads_as_upright_rgb(path):
    source = Image.open(path)
    image = load_image(path)

    assert image.mode == "RGB", f"{path.name}: mode is {image.mode}, expected RGB"
    assert image.size == source.size, f"{path.name}: size is {image.size}, the file is {source.size}"

    # Upright means pixel for pixel the stored picture, neither rotated nor mirrored.
    # Only opaque pixels are compared, because transparent ones are composited over white.
    rgba = np.asarray(source.convert("RGBA"))
    opaque = rgba[..., 3] == 255
    decoded = np.asarray(image)
    assert opaque.any(), f"{path.name}: has no opaque pixel to compare"
    assert np.array_equal(decoded[opaque], rgba[..., :3][opaque]), (
        f"{path.name}: opaque pixels differ from the file, so the picture was rotated, mirrored or recoloured"
    )


@pytest.mark.parametrize("path", SAMPLE_PNGS, ids=lambda p: p.name)
def test_sample_png_transparent_pixel_is_white(path):
    source = Image.open(path)
    if "A" not in source.mode and "transparency" not in source.info:
        pytest.skip(f"{path.name} has no transparency")
    alpha = np.asarray(source.convert("RGBA"))[..., 3]
    transparent = np.argwhere(alpha == 0)
    if len(transparent) == 0:
        pytest.skip(f"{path.name} has no fully transparent pixel")
    row, column = (int(v) for v in transparent[len(transparent) // 2])

    image = load_image(path)

    assert image.getpixel((column, row)) == WHITE, (
        f"{path.name}: transparent pixel at x={column}, y={row} is {image.getpixel((column, row))}, expected white"
    )


# EXIF orientation


def corner_colours(image: Image.Image) -> dict[str, tuple[int, ...]]:
    """Colours 3 px inside each corner, keyed top-left, top-right, bottom-left, bottom-right."""
    right, bottom = image.width - 4, image.height - 4
    return {
        "top-left": image.getpixel((3, 3)),
        "top-right": image.getpixel((right, 3)),
        "bottom-left": image.getpixel((3, bottom)),
        "bottom-right": image.getpixel((right, bottom)),
    }


@pytest.mark.parametrize(
    ("orientation", "expected_size", "red_corner"),
    [
        (3, (60, 40), "bottom-right"),  # rotated 180 degrees
        (6, (40, 60), "top-right"),  # rotated 90 degrees clockwise
        (8, (40, 60), "bottom-left"),  # rotated 90 degrees counter-clockwise
    ],
)
def test_exif_orientation_is_applied(orientation, expected_size, red_corner):
    # A 60x40 blue picture whose top-left corner is red, stored with an orientation tag.
    stored = Image.new("RGB", (60, 40), BLUE)
    stored.paste(RED, (0, 0, 12, 12))
    exif = Image.Exif()
    exif[0x0112] = orientation

    decoded = decode_image(encode(stored, "JPEG", quality=95, exif=exif), "rotated.jpg")

    assert decoded.image.size == expected_size, (
        f"orientation {orientation}: size is {decoded.image.size}, expected {expected_size}"
    )
    for corner, colour in corner_colours(decoded.image).items():
        expected = RED if corner == red_corner else BLUE
        assert_close(colour, expected, 40, f"orientation {orientation}, {corner} corner")


# Pixel modes


def test_cmyk_jpeg_converts_to_rgb():
    data = encode(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK", "setup: the JPEG was not stored as CMYK"

    image = load_image(data, "cmyk.jpg")

    assert image.mode == "RGB", f"mode is {image.mode}, expected RGB"
    assert_close(image.getpixel((20, 20)), RED, 3, "CMYK (0, 255, 255, 0)")


def test_16_bit_grayscale_png_is_scaled_not_clipped():
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16", "setup: the PNG was not stored as 16-bit grayscale"

    image = load_image(data, "scan16.png")

    assert image.mode == "RGB", f"mode is {image.mode}, expected RGB"
    gray = [image.getpixel((x, 0)) for x in range(4)]
    assert gray[0] == (0, 0, 0), f"16-bit 0 became {gray[0]}, expected black"
    assert gray[1] == (1, 1, 1), f"16-bit 257 became {gray[1]}, expected (1, 1, 1)"
    assert_close(gray[2], (128, 128, 128), 1, "16-bit mid-grey 32768")
    assert gray[3] == WHITE, f"16-bit 65535 became {gray[3]}, expected white"


def test_16_bit_grayscale_png_transparent_value_is_white():
    values = np.array([[0, 1000, 40000]], dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG", transparency=1000)
    assert Image.open(io.BytesIO(data)).info.get("transparency") == 1000, "setup: the PNG has no tRNS value 1000"

    image = load_image(data, "transparent16.png")

    assert image.getpixel((1, 0)) == WHITE, f"transparent value became {image.getpixel((1, 0))}, expected white"
    assert image.getpixel((0, 0)) == (0, 0, 0), f"opaque 0 became {image.getpixel((0, 0))}, expected black"
    assert_close(image.getpixel((2, 0)), (156, 156, 156), 1, "opaque 16-bit 40000")


def test_1_bit_png_converts_to_black_and_white():
    bits = Image.new("1", (40, 40), 0)
    bits.paste(1, (0, 0, 20, 40))
    data = encode(bits, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "1", "setup: the PNG was not stored as 1-bit"

    image = load_image(data, "bits.png")

    assert image.mode == "RGB", f"mode is {image.mode}, expected RGB"
    assert image.getpixel((5, 5)) == WHITE, f"set bit became {image.getpixel((5, 5))}, expected white"
    assert image.getpixel((35, 5)) == (0, 0, 0), f"clear bit became {image.getpixel((35, 5))}, expected black"


def test_8_bit_grayscale_png_keeps_values():
    data = encode(Image.new("L", (40, 40), 100), "PNG")

    image = load_image(data, "gray.png")

    assert image.mode == "RGB", f"mode is {image.mode}, expected RGB"
    assert image.getpixel((0, 0)) == (100, 100, 100), f"gray 100 became {image.getpixel((0, 0))}"


def test_palette_png_transparent_index_is_white():
    palette_image = Image.new("P", (40, 40), 0)
    palette_image.putpalette([0, 0, 0, *RED] + [0] * (256 - 2) * 3)
    palette_image.paste(1, (0, 0, 20, 40))  # left half red (index 1), right half index 0
    data = encode(palette_image, "PNG", transparency=0)
    assert Image.open(io.BytesIO(data)).mode == "P", "setup: the PNG was not stored with a palette"

    image = load_image(data, "palette.png")

    assert image.mode == "RGB", f"mode is {image.mode}, expected RGB"
    assert image.getpixel((5, 5)) == RED, f"opaque index became {image.getpixel((5, 5))}, expected red"
    assert image.getpixel((35, 5)) == WHITE, f"transparent index became {image.getpixel((35, 5))}, expected white"


def test_rgba_png_soft_edge_blends_over_white():
    data = encode(Image.new("RGBA", (40, 40), (*RED, 128)), "PNG")

    image = load_image(data, "soft.png")

    assert image.mode == "RGB", f"mode is {image.mode}, expected RGB"
    assert_close(image.getpixel((0, 0)), (255, 127, 127), 1, "red at alpha 128 over white")


def test_la_png_blends_over_white():
    data = encode(Image.new("LA", (40, 40), (0, 128)), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "LA", "setup: the PNG was not stored as LA"

    image = load_image(data, "gray-alpha.png")

    assert image.mode == "RGB", f"mode is {image.mode}, expected RGB"
    assert_close(image.getpixel((0, 0)), (127, 127, 127), 1, "black at alpha 128 over white")


PILLOW_MODES = [
    "1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F",
    "LA", "PA", "RGBX", "RGBa", "La",
]  # fmt: skip


@pytest.mark.parametrize("mode", PILLOW_MODES)
def test_to_rgb_converts_pillow_modes(mode):
    image = to_rgb(Image.new(mode, (4, 4)))

    assert image.mode == "RGB", f"to_rgb of mode {mode} returned mode {image.mode}"
    assert image.size == (4, 4), f"to_rgb of mode {mode} returned size {image.size}"


# Several frames in one file


def test_animated_gif_uses_first_frame_with_note():
    frames = [Image.new("RGB", (40, 40), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)

    decoded = decode_image(data, "animation.gif")

    assert decoded.image.getpixel((20, 20)) == RED, f"pixel is {decoded.image.getpixel((20, 20))}, expected red"
    note = " ".join(decoded.notes)
    assert "first frame" in note, f"no note about the first frame in {decoded.notes}"
    assert "3 frames" in note, f"no note with the frame count in {decoded.notes}"


def test_mpo_jpeg_is_drafted_with_note():
    # Some cameras store stereo or depth pictures as MPO: a JPEG with more JPEGs appended.
    side = 4 * DRAFT_MIN_SIDE
    first, second = Image.new("RGB", (side, side), RED), Image.new("RGB", (side, side), GREEN)
    data = encode(first, "MPO", save_all=True, append_images=[second])

    decoded = decode_image(data, "stereo.jpg")

    assert decoded.format == "MPO", f"setup: Pillow read format {decoded.format}, expected MPO"
    assert_close(decoded.image.getpixel((10, 10)), RED, 3, "first picture of the MPO")
    assert min(decoded.image.size) < side, f"size is {decoded.image.size}: the MPO JPEG was not drafted"
    assert min(decoded.image.size) >= DRAFT_MIN_SIDE, f"size {decoded.image.size} is below DRAFT_MIN_SIDE"
    note = " ".join(decoded.notes)
    assert "2 pictures" in note, f"no note with the picture count in {decoded.notes}"
    assert "animated" not in note, f"an MPO is not an animation: {decoded.notes}"


# Truncated, empty and non-image files


@pytest.mark.parametrize(
    ("file_name", "image_format", "options"),
    [
        ("cut.jpg", "JPEG", {"quality": 90}),
        ("cut-progressive.jpg", "JPEG", {"quality": 90, "progressive": True}),
        ("cut.png", "PNG", {}),
    ],
)
def test_truncated_file_is_rejected(tmp_path, file_name, image_format, options):
    # The last 40% of the data is dropped, as by an interrupted download.
    complete = encode(noise_image(300, 200), image_format, **options)
    path = tmp_path / file_name
    path.write_bytes(complete[: int(len(complete) * 0.6)])
    flag_before = ImageFile.LOAD_TRUNCATED_IMAGES

    with pytest.raises(ImageError) as raised:
        decode_image(path)

    message = str(raised.value)
    assert file_name in message, f"message does not name the file: {message}"
    assert "truncated" in message, f"message does not say truncated: {message}"
    assert ImageFile.LOAD_TRUNCATED_IMAGES == flag_before, "decode_image changed ImageFile.LOAD_TRUNCATED_IMAGES"


@pytest.mark.parametrize(
    ("file_name", "content"),
    [("photo.jpg", b"This is a text file, not a photo.\n" * 20), ("empty.png", b"")],
    ids=["text", "empty"],
)
def test_non_image_file_is_rejected(tmp_path, file_name, content):
    path = tmp_path / file_name
    path.write_bytes(content)

    with pytest.raises(ImageError) as raised:
        decode_image(path)

    message = str(raised.value)
    assert file_name in message, f"message does not name the file: {message}"
    assert "not an image file" in message, f"message does not say 'not an image file': {message}"


# Decompression bombs and the pixel limit


# Runs decode_image in a fresh interpreter, because ru_maxrss is the peak of the
# whole process and this test process may already have peaked higher. The
# classifiers package is stubbed so that only images.py and errors.py are
# imported, not torch.
_BOMB_PROBE = """
import json, resource, sys, time, types

package = types.ModuleType("classifiers")
package.__path__ = [sys.argv[1]]
sys.modules["classifiers"] = package
from classifiers.errors import ImageError
from classifiers.images import decode_image

data = open(sys.argv[2], "rb").read()
peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    decode_image(data, "bomb.png")
    message = None
except ImageError as error:
    message = str(error)
seconds = time.perf_counter() - started
growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kib
print(json.dumps({"message": message, "seconds": seconds, "growth_mib": growth_kib / 1024}))
"""


@pytest.mark.parametrize(
    ("width", "height"),
    [(30000, 30000), (12000, 12000)],
    ids=["above-pillow-limit", "between-our-and-pillow-limit"],
)
def test_decompression_bomb_rejected_without_decoding(tmp_path, width, height):
    # 900 MP trips Pillow's own DecompressionBombError. 144 MP trips only its
    # warning, so there MAX_PIXELS is the check that rejects it. Decoding either
    # would allocate one byte per pixel, so 144 MB or more.
    assert width * height > MAX_PIXELS, "setup: the bomb is within MAX_PIXELS"
    path = tmp_path / "bomb.png"
    path.write_bytes(all_black_1_bit_png(width, height))
    assert path.stat().st_size < 500_000, f"setup: the bomb is {path.stat().st_size} bytes, expected under 500 kB"

    probe = subprocess.run(
        [sys.executable, "-c", _BOMB_PROBE, str(REPO / "classifiers"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, f"probe failed: {probe.stderr}"
    result = json.loads(probe.stdout)

    assert result["message"] is not None, f"the {width}x{height} bomb was decoded instead of rejected"
    assert "pixels" in result["message"], f"message does not mention pixels: {result['message']}"
    assert "limit" in result["message"], f"message does not mention the limit: {result['message']}"
    assert result["seconds"] < 1.0, f"rejection took {result['seconds']:.2f} s, expected under 1 s"
    assert result["growth_mib"] < 100, f"peak memory grew {result['growth_mib']:.0f} MiB, expected under 100 MiB"


def test_pixel_limit_rejects_before_loading_pixels(monkeypatch):
    loads = []
    original_load = ImageFile.ImageFile.load

    def recording_load(self):
        loads.append(self.size)
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    data = encode(Image.new("RGB", (100, 60)), "PNG")

    with pytest.raises(ImageError) as raised:
        decode_image(data, "large.png", max_pixels=5000)

    message = str(raised.value)
    assert "100x60" in message, f"message does not give the size: {message}"
    assert "5,000" in message, f"message does not give the limit: {message}"
    assert loads == [], f"pixels were loaded before the limit check: {loads}"


# Extreme shapes


def test_one_pixel_image_decodes_with_tiny_note():
    decoded = decode_image(encode(Image.new("RGB", (1, 1), GREEN), "PNG"), "dot.png")

    assert decoded.image.mode == "RGB", f"mode is {decoded.image.mode}, expected RGB"
    assert decoded.image.getpixel((0, 0)) == GREEN, f"pixel is {decoded.image.getpixel((0, 0))}, expected green"
    assert any("tiny" in note for note in decoded.notes), f"no note about the tiny size in {decoded.notes}"
    assert not any("aspect ratio" in note for note in decoded.notes), f"a 1x1 image is square: {decoded.notes}"


def test_panorama_decodes_with_aspect_ratio_note():
    decoded = decode_image(encode(Image.new("RGB", (20000, 50), BLUE), "PNG"), "panorama.png")

    assert decoded.image.mode == "RGB", f"mode is {decoded.image.mode}, expected RGB"
    assert decoded.image.size == (20000, 50), f"size is {decoded.image.size}, expected (20000, 50)"
    assert any("aspect ratio" in note for note in decoded.notes), f"no note about the aspect ratio in {decoded.notes}"


# Unsupported formats


@pytest.mark.parametrize(
    ("file_name", "content", "format_name"),
    [
        ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "SVG"),
        (
            "drawing-xml.svg",
            b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
            "SVG",
        ),
        ("phone.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "HEIC"),
        ("scan.pdf", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "PDF"),
    ],
    ids=["svg", "xml-svg", "heic", "pdf"],
)
def test_unsupported_format_names_conversion(file_name, content, format_name):
    with pytest.raises(ImageError) as raised:
        decode_image(content, file_name)

    message = str(raised.value)
    assert message.startswith(file_name), f"message does not start with the file name: {message}"
    assert format_name in message, f"message does not name {format_name}: {message}"
    assert "not supported" in message, f"message does not say 'not supported': {message}"
    assert "PNG" in message or "JPEG" in message, f"message does not say what to convert to: {message}"


# JPEG draft decoding


@pytest.fixture(scope="module")
def large_photo_jpeg() -> bytes:
    photo = Image.open(ASSETS / "astronaut.jpg").convert("RGB")
    return encode(photo.resize((4096, 4096), Image.LANCZOS), "JPEG", quality=92)


def test_jpeg_draft_keeps_min_side(large_photo_jpeg):
    drafted = decode_image(large_photo_jpeg, "large.jpg")
    full = decode_image(large_photo_jpeg, "large.jpg", draft_min_side=None)

    assert full.image.size == (4096, 4096), f"full decode is {full.image.size}, expected (4096, 4096)"
    assert min(drafted.image.size) >= DRAFT_MIN_SIDE, f"draft {drafted.image.size} is below {DRAFT_MIN_SIDE}"
    assert min(drafted.image.size) < 4096, f"draft {drafted.image.size} was not reduced"
    assert drafted.original_size == (4096, 4096), f"original_size is {drafted.original_size}"


def test_jpeg_draft_skips_smaller_image():
    side = 2 * DRAFT_MIN_SIDE - 1
    data = encode(Image.new("RGB", (side, side), RED), "JPEG")

    image = load_image(data, "medium.jpg")

    assert image.size == (side, side), f"a {side}x{side} JPEG was decoded at {image.size}"


def test_jpeg_draft_preprocesses_like_full_decode(large_photo_jpeg):
    import open_clip
    from torchvision.models import ResNeXt50_32X4D_Weights

    drafted = load_image(large_photo_jpeg, "large.jpg")
    full = decode_image(large_photo_jpeg, "large.jpg", draft_min_side=None).image
    # Neither call downloads weights: both build only the preprocessing transforms.
    transforms = {
        "ResNeXt": ResNeXt50_32X4D_Weights.IMAGENET1K_V2.transforms(),
        "CLIP": open_clip.image_transform(
            224, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD
        ),
    }

    # Measured with astronaut.jpg at 4096x4096 (a 512x512 draft), Pillow 13.0,
    # torchvision 0.29 and open_clip 3.3: 0.0055 for ResNeXt and 0.0043 for CLIP.
    tolerance = 0.02
    for model_name, transform in transforms.items():
        difference = (transform(drafted) - transform(full)).abs().mean().item()
        assert difference < tolerance, (
            f"{model_name} input from the draft differs from the full decode by {difference:.4f} "
            f"(mean absolute, normalised units), expected under {tolerance}"
        )


# Paths and file objects


def test_missing_path_is_file_not_found(tmp_path):
    path = tmp_path / "missing.jpg"

    with pytest.raises(ImageError) as raised:
        decode_image(path)

    message = str(raised.value)
    assert "missing.jpg" in message, f"message does not name the file: {message}"
    assert "file not found" in message, f"message does not say 'file not found': {message}"


def test_directory_path_is_rejected(tmp_path):
    folder = tmp_path / "photos.jpg"
    folder.mkdir()

    with pytest.raises(ImageError) as raised:
        decode_image(folder)

    message = str(raised.value)
    assert "photos.jpg" in message, f"message does not name the folder: {message}"
    assert "folder" in message, f"message does not say it is a folder: {message}"


def test_file_object_decodes_and_names_errors():
    upload = io.BytesIO(encode(Image.new("RGB", (40, 40), GREEN), "PNG"))
    upload.name = "upload.png"

    decoded = decode_image(upload)

    assert decoded.name == "upload.png", f"name is {decoded.name!r}, expected the file object's name"
    assert decoded.image.getpixel((0, 0)) == GREEN, f"pixel is {decoded.image.getpixel((0, 0))}, expected green"

    broken = io.BytesIO(b"not an image at all")
    broken.name = "broken-upload.jpg"
    with pytest.raises(ImageError) as raised:
        decode_image(broken)
    message = str(raised.value)
    assert message.startswith("broken-upload.jpg"), f"message does not start with the file name: {message}"


# Corrupt data


def test_corrupt_png_raises_image_error():
    data = b"\x89PNG\r\n\x1a\n" + bytes(random.Random(0).randrange(256) for _ in range(500))

    with pytest.raises(ImageError) as raised:
        decode_image(data, "corrupt.png")

    assert str(raised.value).startswith("corrupt.png"), f"message does not name the file: {raised.value}"


def mutate(data: bytes, rng: random.Random) -> bytes:
    """Overwrite 1 to 8 random bytes, and cut the end off one time in five."""
    mutated = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        mutated[rng.randrange(len(mutated))] = rng.randrange(256)
    if rng.random() < 0.2:
        del mutated[rng.randrange(len(mutated)) :]
    return bytes(mutated)


def fuzz_seed_files() -> dict[str, bytes]:
    frames = [Image.new("RGB", (20, 20), colour) for colour in (RED, GREEN, BLUE)]
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "jpeg": encode(noise_image(60, 40), "JPEG", exif=exif),
        "png": encode(noise_image(60, 40), "PNG"),
        "gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "tiff": encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
    }


# Pillow warns about damaged EXIF and TIFF tags while it reads past them.
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind", ["jpeg", "png", "gif", "tiff"])
def test_mutated_file_decodes_or_raises_image_error(kind):
    seed_file = fuzz_seed_files()[kind]
    rng = random.Random(f"images-fuzz-{kind}")

    for attempt in range(50):
        data = mutate(seed_file, rng)
        try:
            decoded = decode_image(data, f"fuzz-{attempt}.{kind}")
        except ImageError:
            continue
        except Exception as error:  # noqa: BLE001 - any other type is the failure under test
            pytest.fail(f"{kind} mutation {attempt} raised {type(error).__name__}: {error}")
        assert decoded.image.mode == "RGB", f"{kind} mutation {attempt} decoded to mode {decoded.image.mode}"
