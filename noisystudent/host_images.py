"""Stored image bytes -> model input on the host, without TensorFlow: what a JAX teacher is fed.

The same pixels as noisystudent/image_ops.py (the TensorFlow path the trainer and the TF teacher
use), computed with Pillow and NumPy, so a teacher on a GPU or TPU host that has no TensorFlow
labels what the student trains on:

- decode: RGB as tf.io.decode_image(channels=3) gives it (gray replicated, alpha dropped, GIF's
  first frame);
- resize: tf.image.resize(bilinear, antialias=True), then clipped to [0, 255], as separable weight
  matrices (the triangle kernel of TensorFlow's scale_and_translate, widened when downscaling);
  an image already of the target size is not resized;
- center crop: the original's eval crop (image_ops.center_crop: the central size/(size+32) of the
  shorter side, TF1's ResizeBicubic without half-pixel centres, Keys' cubic with a = -0.75).

Weight matrices are cached per (input size, output size): datasets repeat image sizes.
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
def _bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of TensorFlow's antialiased bilinear resize along one axis."""
    scale = out_size / in_size
    kernel_scale = max(1.0 / scale, 1.0)
    centres = (np.arange(out_size, dtype=np.float64) + 0.5) / scale - 0.5
    distance = np.abs(centres[:, None] - np.arange(in_size, dtype=np.float64)[None, :]) / kernel_scale
    weights = np.maximum(0.0, 1.0 - distance)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.where(np.abs(total) > 1000 * np.finfo(np.float32).eps, weights / np.where(total != 0, total, 1), 0)
    inside = (centres >= -0.5) & (centres <= in_size - 0.5)
    return (weights * inside[:, None]).astype(np.float32)


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


def _resample(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """uint8/float [H, W, 3] -> float32 [out_h, out_w, 3] through separable weight matrices."""
    pixels = image.astype(np.float32)
    out = np.einsum("oh,hwc->owc", rows, pixels)
    return np.einsum("pw,owc->opc", cols, out)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """tf.image.resize(image, [size, size], "bilinear", antialias=True), clipped to [0, 255]."""
    height, width = image.shape[:2]
    out = _resample(image, _bilinear_weights(height, size), _bilinear_weights(width, size))
    return np.clip(out, 0.0, 255.0)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The original's eval crop and bicubic resize (image_ops.center_crop), float32 [size, size, 3]."""
    height, width = image.shape[:2]
    crop = int(np.float32(size / (size + CROP_PADDING)) * np.float32(min(height, width)))
    top, left = (height - crop + 1) // 2, (width - crop + 1) // 2
    window = image[top:top + crop, left:left + crop]
    return _resample(window, _bicubic_weights(crop, size), _bicubic_weights(crop, size))


def model_input(encoded: bytes, size: int, crop: bool = False) -> np.ndarray:
    """Encoded image -> [size, size, 3] pixels in [0, 255]: uint8 when no resampling was needed (as
    decoded), else float32 (image_ops.decode_image's values)."""
    image = decode_rgb(encoded)
    if crop:
        return center_crop(image, size)
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return resize(image, size)
