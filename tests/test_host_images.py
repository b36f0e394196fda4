"""Host decoding for the JAX teacher (noisystudent/host_images.py): the TensorFlow path's pixels in 8 bits,
without TensorFlow, for resizes up and down, the original's eval crop, gray and alpha PNGs."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from noisystudent import host_images, image_ops

SIZES = [(20, 24, 16), (16, 16, 16), (37, 50, 32), (8, 9, 32), (224, 300, 224), (500, 375, 224), (31, 64, 48)]


@pytest.mark.parametrize("height, width, size", SIZES)
def test_resize_and_center_crop_match_the_tensorflow_path(height, width, size):
    image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    png = tf.io.encode_png(image).numpy()
    resized = host_images.model_input(png, size)
    expected = image_ops.decode_image(tf.constant(png), size).numpy()
    assert resized.dtype == np.uint8 and resized.shape == (size, size, 3)
    if (height, width) == (size, size):
        np.testing.assert_array_equal(resized, image)  # not resampled: the decoded bytes
    assert np.abs(resized - expected).max() <= 1.01  # Pillow's 8-bit fixed point vs TensorFlow's floats
    crop = image_ops.decode_image(tf.constant(png), size, True).numpy()
    np.testing.assert_allclose(host_images.center_crop(image, size), crop, atol=5e-3)  # exact before rounding
    rounded = host_images.model_input(png, size, crop=True).astype(np.float32)
    assert np.abs(rounded - np.clip(crop, 0, 255)).max() <= 0.5 + 5e-3


def test_gray_and_alpha_pngs_decode_as_tensorflow_decodes_them():
    rng = np.random.default_rng(1)
    for channels in (1, 2, 4):
        png = tf.io.encode_png(rng.integers(0, 256, (10, 12, channels), dtype=np.uint8)).numpy()
        assert host_images.model_input(png, 10, False).shape == (10, 10, 3)
        np.testing.assert_array_equal(host_images.decode_rgb(png),
                                      tf.io.decode_image(png, channels=3).numpy())


def test_jpeg_differs_from_tensorflows_fast_idct_by_about_one_level():
    """TensorFlow decodes JPEG with libjpeg's fast integer IDCT by default, Pillow with the accurate one
    (tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE") gives Pillow's pixels exactly)."""
    y, x = np.mgrid[0:120, 0:160]
    image = np.stack([(x * 1.5) % 256, (y * 2) % 256, (x + y) % 256], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    jpeg = buffer.getvalue()
    host = host_images.decode_rgb(jpeg).astype(int)
    np.testing.assert_array_equal(host, tf.io.decode_jpeg(jpeg, channels=3, dct_method="INTEGER_ACCURATE").numpy())
    fast = tf.io.decode_image(jpeg, channels=3).numpy().astype(int)
    assert np.abs(host - fast).mean() < 1.5 and np.abs(host - fast).max() <= 8


def test_undecodable_bytes_raise_with_the_reason():
    with pytest.raises(host_images.HostDecodeError, match="UnidentifiedImageError|cannot identify"):
        host_images.decode_rgb(b"not an image")
