"""One image decoder (noisystudent/image_codec.py): every PIL mode and format, pixel by pixel against a
reference computed here from the source values, as the trainer decodes the stored bytes."""

import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from noisystudent.image_codec import DEFAULT_MAX_PIXELS, BadImageError, normalize_encoded

RNG = np.random.default_rng(0)
H, W = 5, 7
GRAY = RNG.integers(0, 256, (H, W), dtype=np.uint8)
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (H, W), dtype=np.uint8)
WIDE = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
PALETTE = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
INDEX = RNG.integers(0, 256, (H, W), dtype=np.uint8)
CMYK = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
FLOAT01 = RNG.random((H, W), dtype=np.float32)


def _palette_image(mode: str = "P") -> Image.Image:
    image = Image.fromarray(INDEX, "L").convert("P")
    image.putpalette(PALETTE.ravel().tolist())
    if mode == "PA":
        image = image.convert("PA")
        image.putalpha(Image.fromarray(ALPHA, "L"))
    return image


def _images():
    """(mode label, PIL image, the 8-bit pixels it must be stored as: HxW gray or HxWx3)."""
    wide_i32 = WIDE.astype(np.int32)
    wide_i32[0, :3] = [-5, 70000, 65535]  # outside 16 bits: clipped
    floats = FLOAT01.copy()
    floats[0, 0] = np.nan
    big_floats = (FLOAT01 * 300).astype(np.float32)  # not in [0, 1]: taken as 0..255, clipped
    yield "1", Image.fromarray(GRAY > 127).convert("1"), np.where(GRAY > 127, 255, 0).astype(np.uint8)
    yield "L", Image.fromarray(GRAY, "L"), GRAY
    yield "LA", Image.fromarray(np.dstack([GRAY, ALPHA]), "LA"), GRAY
    yield "P", _palette_image(), PALETTE[INDEX]
    yield "PA", _palette_image("PA"), PALETTE[INDEX]
    yield "RGB", Image.fromarray(RGB, "RGB"), RGB
    yield "RGBA", Image.fromarray(np.dstack([RGB, ALPHA]), "RGBA"), RGB
    cmyk = CMYK.astype(np.float64)
    yield "CMYK", Image.fromarray(CMYK, "CMYK"), np.round((255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) / 255
                                                        ).astype(np.uint8)
    yield "I;16", Image.fromarray(WIDE, "I;16"), np.round(WIDE / 257).astype(np.uint8)
    yield "I;16B", Image.fromarray(WIDE.astype(">u2"), "I;16B"), np.round(WIDE / 257).astype(np.uint8)
    yield "I", Image.fromarray(wide_i32, "I"), np.round(np.clip(wide_i32, 0, 65535) / 257).astype(np.uint8)
    yield "F [0,1]", Image.fromarray(floats, "F"), np.round(np.nan_to_num(floats) * 255).astype(np.uint8)
    yield "F 0..255", Image.fromarray(big_floats, "F"), np.round(np.clip(big_floats, 0, 255)).astype(np.uint8)


# Lossless formats PIL writes for each mode (JPEG is lossy: its own test below).
FORMATS = {"1": ["PNG", "BMP", "TIFF"], "L": ["PNG", "BMP", "TIFF", "WEBP"], "LA": ["PNG", "TIFF"],
           "P": ["PNG", "BMP", "GIF", "TIFF"], "PA": ["TIFF"], "RGB": ["PNG", "BMP", "TIFF", "WEBP"],
           "RGBA": ["PNG", "TIFF", "WEBP"], "CMYK": ["TIFF"], "I;16": ["PNG", "TIFF"], "I;16B": ["TIFF"],
           "I": ["TIFF"], "F [0,1]": ["TIFF"], "F 0..255": ["TIFF"]}
CASES = [(label, fmt, image, expected) for label, image, expected in _images() for fmt in FORMATS[label]]


def _save(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


def _as_trainer_decodes(encoded: bytes) -> np.ndarray:
    return tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()


def _rgb(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels


@pytest.mark.parametrize("label, fmt, image, expected", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_every_mode_and_format_is_stored_as_its_8_bit_pixels(label, fmt, image, expected):
    encoded = _save(image, fmt)
    reopened = Image.open(io.BytesIO(encoded))
    if fmt == "WEBP" and label == "L":
        assert reopened.mode == "RGB"  # WebP has no gray mode
    stored = normalize_encoded(encoded, f"x.{fmt.lower()}")
    np.testing.assert_array_equal(_as_trainer_decodes(stored), _rgb(expected), err_msg=f"{label} as {fmt}")


def test_8_bit_png_and_jpeg_are_kept_byte_for_byte_and_others_re_encoded_as_png():
    for image in (Image.fromarray(GRAY, "L"), Image.fromarray(RGB, "RGB")):
        for fmt in ("PNG", "JPEG"):
            encoded = _save(image, fmt)
            assert normalize_encoded(encoded) == encoded
    wide_png = _save(Image.fromarray(WIDE, "I;16"), "PNG")
    stored = normalize_encoded(wide_png)
    assert stored != wide_png and stored.startswith(b"\x89PNG") and stored[24] == 8  # 8-bit PNG


def test_a_16_bit_grayscale_png_is_not_stored_white():
    ramp = np.linspace(0, 65535, H * W).astype(np.uint16).reshape(H, W)
    stored = _as_trainer_decodes(normalize_encoded(_save(Image.fromarray(ramp, "I;16"), "PNG")))
    assert stored.min() == 0 and stored.max() == 255 and 120 < stored.mean() < 136  # was 255 everywhere


def test_jpeg_cmyk_converts_its_decoded_ink_to_rgb():
    encoded = _save(Image.fromarray(CMYK, "CMYK"), "JPEG")
    decoded = np.asarray(Image.open(io.BytesIO(encoded))).astype(np.float64)  # what the lossy file holds
    expected = np.round((255 - decoded[..., :3]) * (255 - decoded[..., 3:]) / 255).astype(np.uint8)
    np.testing.assert_array_equal(_as_trainer_decodes(normalize_encoded(encoded)), expected)


def test_an_animated_gif_and_a_multi_page_tiff_keep_their_first_frame():
    frames = [Image.fromarray(RGB, "RGB").convert("P", palette=Image.Palette.ADAPTIVE),
              Image.fromarray(255 - RGB, "RGB").convert("P", palette=Image.Palette.ADAPTIVE)]
    for fmt in ("GIF", "TIFF"):
        buffer = io.BytesIO()
        frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:])
        expected = np.asarray(frames[0].convert("RGB"))
        np.testing.assert_array_equal(_as_trainer_decodes(normalize_encoded(buffer.getvalue())), expected)


def _png_claiming(width: int, height: int) -> bytes:
    """A real PNG whose header claims width x height (a decompression bomb's shape), nothing behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def test_huge_empty_and_unreadable_files_are_refused_naming_the_file():
    with pytest.raises(BadImageError, match=r"bomb.png: 14000x14000 = 196,000,000 pixels, over "
                                            rf"--max_image_pixels {DEFAULT_MAX_PIXELS:,}"):
        normalize_encoded(_png_claiming(14000, 14000), "bomb.png")
    with pytest.raises(BadImageError, match=r"small.png: 40x40 = 1,600 pixels, over --max_image_pixels 1,000"):
        normalize_encoded(_save(Image.new("RGB", (40, 40)), "PNG"), "small.png", max_pixels=1000)
    with pytest.raises(BadImageError, match=r"^empty.jpg: empty file \(0 bytes\)$"):
        normalize_encoded(b"", "empty.jpg")
    with pytest.raises(BadImageError, match=r"^notes.png: undecodable image: not a format PIL reads"):
        normalize_encoded(b"hello, I am text", "notes.png")
    png = _save(Image.fromarray(RGB, "RGB"), "PNG")
    with pytest.raises(BadImageError, match=r"^cut.png: undecodable image"):
        normalize_encoded(png[: len(png) // 2], "cut.png")
