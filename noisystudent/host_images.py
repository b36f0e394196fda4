"""Stored image bytes -> 8-bit model input on the host, without TensorFlow: what a JAX teacher is fed.

The pixels of noisystudent/image_ops.py (the TensorFlow path the trainer and the TF teacher use),
computed with Pillow and NumPy, so a teacher on a GPU or TPU host that has no TensorFlow labels
what the student trains on, and rounded to 8 bits (4x less host memory and host-to-device traffic
than float32):

- decode: RGB as tf.io.decode_image(channels=3) gives it (gray replicated, alpha dropped, GIF's
  first frame); JPEG through libjpeg's accurate IDCT, where TensorFlow's default is the fast one
  (about one level apart on average: tests/test_host_images.py);
- resize: Pillow's antialiased bilinear resize, the same triangle filter, widened when downscaling,
  as tf.image.resize(bilinear, antialias=True), in Pillow's 8-bit fixed point: within one level of
  TensorFlow's float values (Pillow's float mode matches them to 4e-4, at 1.8x the cost); an image
  already of the target size is not resized;
- center crop: the original's eval crop (image_ops.center_crop: the central size/(size+32) of the
  shorter side, TF1's ResizeBicubic without half-pixel centres, Keys' cubic with a = -0.75, its
  coefficients from a 1,024-entry table) as banded weights, exact, then rounded; its overshoot
  beyond [0, 255], which TensorFlow feeds on unclipped, is clipped.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
from PIL import Image

CROP_PADDING = 32  # the original's preprocessing.py CROP_PADDING (as image_ops)


class HostDecodeError(ValueError):
    """Bytes Pillow cannot decode; the message says why (the caller names the record)."""


def decode_rgb(encoded: bytes) -> np.ndarray:
    """Encoded image -> uint8 [H, W, 3]."""
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            image.load()
            if image.mode == "RGB":
                return np.asarray(image)
            if image.mode in ("L", "1", "I;16", "I"):
                gray = np.asarray(image.convert("L"))
                return np.repeat(gray[..., None], 3, axis=2)
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise HostDecodeError(f"{type(e).__name__}: {str(e)[:200]}") from None


@functools.lru_cache(maxsize=256)
def _bicubic_weights(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of TF1's ResizeBicubic (align_corners=False, half_pixel_centers=False)."""
    a = -0.75
    scale = np.float32(in_size) / np.float32(out_size)  # TensorFlow computes the sample points in float32
    weights = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        x = float(np.float32(i) * scale)
        x0 = math.floor(x)
        t = float(np.rint((x - x0) * 1024)) / 1024  # TensorFlow looks the coefficients up in a 1,024-entry table
        coefficients = (
            ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
            ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
        )
        for offset, c in zip((-1, 0, 1, 2), coefficients):
            weights[i, min(max(x0 + offset, 0), in_size - 1)] += c
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=512)
def _band(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The bicubic weight matrix as its band: (first input index [out], weights [out, 4]). Each output
    pixel reads four neighbouring inputs, so resampling is four gathers, not a matrix product."""
    dense = _bicubic_weights(in_size, out_size)
    nonzero = dense != 0
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), 0)
    last = np.where(nonzero.any(axis=1), in_size - 1 - nonzero[:, ::-1].argmax(axis=1), 0)
    taps = int((last - first).max()) + 1 if out_size else 1
    first = np.minimum(first, in_size - taps).clip(0)
    index = first[:, None] + np.arange(taps)[None, :]
    return first, np.take_along_axis(dense, np.minimum(index, in_size - 1), axis=1) * (index < in_size)


def _resample_rows(pixels: np.ndarray, out_size: int) -> np.ndarray:
    """float32 [H, W, 3] -> [out_size, W, 3] along the first axis."""
    first, weights = _band(pixels.shape[0], out_size)
    out = np.zeros((out_size,) + pixels.shape[1:], np.float32)
    for k in range(weights.shape[1]):
        out += pixels[first + k] * weights[:, k][:, None, None]
    return out


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [size, size, 3]: tf.image.resize(bilinear, antialias=True) within one level."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The original's eval crop and bicubic resize (image_ops.center_crop), float32 [size, size, 3]."""
    height, width = image.shape[:2]
    crop = int(np.float32(size / (size + CROP_PADDING)) * np.float32(min(height, width)))
    top, left = (height - crop + 1) // 2, (width - crop + 1) // 2
    window = image[top:top + crop, left:left + crop].astype(np.float32)
    rows = _resample_rows(window, size)  # then the columns, as rows of the transposed image
    return np.ascontiguousarray(_resample_rows(np.ascontiguousarray(rows.transpose(1, 0, 2)), size)
                                .transpose(1, 0, 2))


def model_input(encoded: bytes, size: int, crop: bool = False) -> np.ndarray:
    """Encoded image -> uint8 [size, size, 3]: decoded, then resized or center-cropped as above."""
    image = decode_rgb(encoded)
    if crop:
        return np.clip(np.rint(center_crop(image, size)), 0, 255).astype(np.uint8)
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return resize(image, size)
