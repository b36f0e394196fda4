"""Image bytes <-> pixels for ingestion: PNG encoding and validation of encoded images."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

# Formats the trainer and predict job decode with tf.io.decode_image as-is.
PASSTHROUGH_FORMATS = ("PNG", "JPEG")


class BadImageError(ValueError):
    """An image that cannot be decoded; the message says why."""


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode HxW or HxWx3 uint8 pixels as PNG (deterministic bytes)."""
    if pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {pixels.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def normalize_encoded(encoded: bytes) -> bytes:
    """Return bytes tf.io.decode_image reads: PNG/JPEG unchanged, else re-encoded PNG.

    Raises BadImageError for truncated or unreadable data (the whole image is
    decoded, not only its header).
    """
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            fmt = image.format
            image.load()
            if fmt in PASSTHROUGH_FORMATS and image.mode in ("RGB", "L"):
                return encoded
            return encode_png(np.asarray(image.convert("RGB")))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadImageError(f"undecodable image: {e}") from None
