"""Input noise besides RandAugment, on whole batches, as the original's SVHN recipe applies it.

google-research/noisystudent preprocessing.py:189-224 (`_cifar10_preprocess_for_train`, used for
SVHN): after RandAugment, a cutout square of side 2 * (size // 4) centred at a uniformly drawn
pixel and clipped at the borders, filled with 128 (randaugment.py:80-127), then a random crop of
the image reflect-padded by 4 pixels (`small_image_crop`, preprocessing.py:143-151); no flip for
SVHN. Each image draws its own centre and offset.
"""

from __future__ import annotations

import tensorflow as tf

CUTOUT_FILL = 128.0
PAD = 4


def cutout_at(images: tf.Tensor, centers: tf.Tensor, pad_size: int, fill: float = CUTOUT_FILL) -> tf.Tensor:
    """images [N, H, W, C]; centers int32 [N, 2] (row, col): rows and cols in
    [centre - pad_size, centre + pad_size) take `fill`."""
    shape = tf.shape(images)
    rows = tf.range(shape[1])[None, :]
    cols = tf.range(shape[2])[None, :]
    in_rows = (rows >= centers[:, :1] - pad_size) & (rows < centers[:, :1] + pad_size)  # [N, H]
    in_cols = (cols >= centers[:, 1:] - pad_size) & (cols < centers[:, 1:] + pad_size)  # [N, W]
    mask = in_rows[:, :, None, None] & in_cols[:, None, :, None]
    return tf.where(mask, tf.cast(fill, images.dtype), images)


def reflect_pad_crop_at(images: tf.Tensor, offsets: tf.Tensor, pad: int = PAD) -> tf.Tensor:
    """images [N, H, W, C] reflect-padded by `pad`, then cropped back to H x W at offsets int32 [N, 2]."""
    shape = tf.shape(images)
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    rows = offsets[:, :1] + tf.range(shape[1])[None, :]  # [N, H]
    cols = offsets[:, 1:] + tf.range(shape[2])[None, :]  # [N, W]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)


class SmallImageNoise:
    """The original's SVHN noise after RandAugment: cutout of side size/2, then reflect-pad-4 crop."""

    def __init__(self, image_size: int, seed: int | None = None):
        self._pad_size = image_size // 4  # cutout(image, pad_size=image_size // 4): preprocessing.py:216
        self._rng = (tf.random.Generator.from_seed(seed) if seed is not None
                     else tf.random.Generator.from_non_deterministic_state())

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(images)
        n, height, width = shape[0], shape[1], shape[2]
        centers = tf.stack([self._rng.uniform([n], 0, height, tf.int32),
                            self._rng.uniform([n], 0, width, tf.int32)], axis=1)
        images = cutout_at(images, centers, self._pad_size)
        offsets = self._rng.uniform([n, 2], 0, 2 * PAD + 1, tf.int32)
        return reflect_pad_crop_at(images, offsets)
