"""Image files -> bytes every reader decodes the same way: the one decoder of ingest, classify and features.

PNG and JPEG images of 8-bit gray or RGB are kept byte for byte (tf.io.decode_image reads them as
they are); every other image PIL reads is converted to 8 bits and re-encoded as PNG:

| PIL mode (file format)                  | stored as                                               |
|-----------------------------------------|---------------------------------------------------------|
| 1 (bilevel)                             | gray, 0 or 255                                          |
| L, LA (gray, + alpha)                   | gray; alpha dropped                                     |
| I;16, I;16B, I;16L (16-bit PNG, TIFF)   | gray, round(v / 257): 0..65535 -> 0..255                |
| I (32-bit integer)                      | gray, as 16-bit data: clipped to 0..65535, then / 257   |
| F (32-bit float)                        | gray: v x 255 when every value is in [0, 1], else v     |
|                                         | clipped to 0..255; NaN -> 0                             |
| P, PA (palette, + alpha)                | RGB through the palette; alpha dropped                  |
| RGB, RGBA, CMYK, YCbCr, ... (PNG 16-bit | RGB (PIL's conversion: alpha dropped, CMYK and YCbCr    |
| RGB too, JPEG CMYK, WebP, TIFF, BMP)    | to RGB; 16-bit RGB to its high byte)                    |

Alpha is dropped, never composited: that is what tf.io.decode_image(channels=3) does to the RGBA
PNGs kept as they are, so both paths give the same pixels. GIF and multi-page TIFF: the first
frame. EXIF orientation is not applied (TensorFlow ignores it too). An image over `max_pixels`
(default: PIL's own limit, 89,478,485), an empty file or one PIL cannot read raises BadImageError
naming the file: PIL's own decompression-bomb error is replaced by this check, so one huge image
is a dead letter, not a crashed job.
"""

from __future__ import annotations

import io
from typing import Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

# File names every command accepts as images (ingest-folder, classify, features).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Formats the trainer and predict job decode with tf.io.decode_image as-is.
PASSTHROUGH_FORMATS = ("PNG", "JPEG")
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
Image.MAX_IMAGE_PIXELS = None  # the limit is ours (max_pixels), checked from the header before decoding


class BadImageError(ValueError):
    """An image that cannot be decoded; the message names the file and says why."""


def is_image_name(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode HxW or HxWx3 uint8 pixels as PNG (deterministic bytes)."""
    if pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {pixels.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def to_uint8(image: Image.Image) -> np.ndarray:
    """A decoded PIL image -> uint8 pixels, HxW (gray) or HxWx3, by the table in the module docstring."""
    mode = image.mode
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"))
    if mode == "LA":
        return np.asarray(image)[..., 0].copy()
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image).astype(np.int64)
        return np.round(np.clip(values, 0, 65535) / 257.0).astype(np.uint8)
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and 0.0 <= values.min() and values.max() <= 1.0:
            values = values * 255.0
        return np.round(np.clip(values, 0.0, 255.0)).astype(np.uint8)
    return np.asarray(image.convert("RGB"))


def _png_bit_depth(encoded: bytes) -> Optional[int]:
    return encoded[24] if encoded[:8] == b"\x89PNG\r\n\x1a\n" and len(encoded) > 24 else None


def normalize_encoded(encoded: bytes, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """Bytes tf.io.decode_image reads as this module's table says: 8-bit gray/RGB PNG and JPEG unchanged,
    everything else converted and re-encoded as PNG. BadImageError names `name` (the file) and the reason;
    the whole image is decoded, not only its header, so a truncated file is caught here."""
    if not encoded:
        raise BadImageError(f"{name}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            width, height = image.size
            if max_pixels and width * height > max_pixels:
                raise BadImageError(f"{name}: {width}x{height} = {width * height:,} pixels, over --max_image_pixels "
                                    f"{max_pixels:,} (raise it to ingest larger images)")
            fmt = image.format
            image.load()
            if (fmt in PASSTHROUGH_FORMATS and image.mode in ("RGB", "L")
                    and _png_bit_depth(encoded) in (None, 8)):
                return encoded
            return encode_png(to_uint8(image))
    except UnidentifiedImageError:
        raise BadImageError(f"{name}: undecodable image: not a format PIL reads (it starts "
                            f"{encoded[:8]!r})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        if isinstance(e, BadImageError):
            raise
        raise BadImageError(f"{name}: undecodable image: {type(e).__name__}: {str(e)[:200]}") from None

