"""RandAugment (Cubuk et al., 2019) from Keras preprocessing layers, on the original's scale.

`keras.layers.RandAugment` has one `factor` for every op, and it scales
rotations by a full turn: at 0.5 a digit can turn 180 degrees (a 6 becomes a
9). Here each op gets its own range, mapped from the original
noisystudent's randaugment.py (level_to_arg, randaugment.py:462-484) at
magnitude M on its 0..10 scale:

| op            | range at magnitude M (the original's)       |
|---------------|---------------------------------------------|
| rotate        | +-30 * M/10 degrees                         |
| shear x / y   | +-0.3 * M/10                                |
| translate x/y | +-0.3 * M/10 of the side (100 px at 331)     |
| contrast, color, brightness, sharpness | factor in 1 +- 0.9 * M/10 |
| posterize     | 8 - 4 * M/10 bits                            |
| solarize      | threshold 255 * (1 - M/10)                   |
| auto-contrast, equalize, identity | no magnitude                     |

Each image draws its own `num_ops` ops and magnitudes, but the work is done a
batch at a time: per op slot the batch is partitioned by the op each image
drew, each op runs once on its images (Keras' random layers draw per-image
parameters), and the batch is stitched back together. Mapped per image, the
same ops cost ~120 us of graph dispatch each (a `switch_case` per image) and
ran at ~2,600 images/s on 2 cores; batched they run several times faster
(bench/train_step.py). Auto-contrast and equalize are the original's (per
image and channel): Keras' Equalization layer pools the histogram over the
whole batch, and its AutoContrast fails on an empty batch.
"""

from __future__ import annotations

import tensorflow as tf
from keras import layers

MAX_MAGNITUDE = 10.0
VALUE_RANGE = (0, 255)


def _solarize(images: tf.Tensor, threshold: float) -> tf.Tensor:
    return tf.where(images < threshold, images, 255.0 - images)


def autocontrast(images: tf.Tensor) -> tf.Tensor:
    """Stretch each image's channels to [0, 255] (the original's autocontrast), batched."""
    low = tf.reduce_min(images, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
    scale = 255.0 / tf.maximum(high - low, 1e-6)
    return tf.where(high > low, tf.clip_by_value((images - low) * scale, 0.0, 255.0), images)


def equalize(images: tf.Tensor) -> tf.Tensor:
    """Histogram equalisation per image and channel (the original's autoaugment.equalize), batched."""
    shape = tf.shape(images)
    n, channels = shape[0], shape[3]
    pixels = tf.reshape(tf.transpose(tf.cast(tf.clip_by_value(images, 0.0, 255.0), tf.int32), [0, 3, 1, 2]),
                        [n * channels, -1])  # one row per (image, channel)
    rows = n * channels
    offsets = tf.range(rows)[:, None] * 256
    hist = tf.reshape(tf.math.bincount(tf.reshape(pixels + offsets, [-1]), minlength=rows * 256,
                                       maxlength=rows * 256), [rows, 256])
    last_bin = 255 - tf.argmax(tf.cast(tf.reverse(hist, [1]) > 0, tf.int32), axis=1, output_type=tf.int32)
    step = (tf.reduce_sum(hist, axis=1) - tf.gather(hist, last_bin, batch_dims=1)) // 255
    safe_step = tf.maximum(step, 1)[:, None]
    lut = (tf.cumsum(hist, axis=1) + safe_step // 2) // safe_step
    lut = tf.clip_by_value(tf.concat([tf.zeros([rows, 1], lut.dtype), lut[:, :-1]], axis=1), 0, 255)
    equalized = tf.where(step[:, None] == 0, pixels, tf.gather(lut, pixels, batch_dims=1))
    out = tf.transpose(tf.reshape(equalized, [n, channels, shape[1], shape[2]]), [0, 2, 3, 1])
    return tf.cast(out, images.dtype)


class RandAugment:
    """Callable on float32 images in [0, 255]: a batch [B, H, W, 3] (inside tf.data, after
    batching) or one image [H, W, 3]."""

    def __init__(self, num_ops: int = 2, magnitude: float = 5.0, seed: int | None = None):
        if not 0 <= magnitude <= MAX_MAGNITUDE:
            raise ValueError(f"randaugment magnitude must be in [0, 10], got {magnitude}")
        m = magnitude / MAX_MAGNITUDE
        self.num_ops = num_ops
        geometric = dict(fill_mode="constant", fill_value=128.0, seed=seed)
        self._layers = [
            layers.RandomRotation(factor=30.0 * m / 360.0, **geometric),
            layers.RandomShear(x_factor=0.3 * m, y_factor=0.0, **geometric),
            layers.RandomShear(x_factor=0.0, y_factor=0.3 * m, **geometric),
            layers.RandomTranslation(height_factor=0.0, width_factor=0.3 * m, **geometric),
            layers.RandomTranslation(height_factor=0.3 * m, width_factor=0.0, **geometric),
            layers.RandomContrast(factor=0.9 * m, value_range=VALUE_RANGE, seed=seed),
            layers.RandomColorDegeneration(factor=max(0.9 * m, 1e-3), value_range=VALUE_RANGE, seed=seed),
            layers.RandomBrightness(factor=0.45 * m, value_range=VALUE_RANGE, seed=seed),
            layers.RandomSharpness(factor=max(0.9 * m, 1e-3), value_range=VALUE_RANGE, seed=seed),
            layers.RandomPosterization(factor=(max(1, int(round(8 - 4 * m))), 8),
                                       value_range=VALUE_RANGE, seed=seed),
        ]
        self._threshold = 255.0 * (1.0 - m)
        self._seed = seed

    @property
    def num_choices(self) -> int:
        return len(self._layers) + 4  # + autocontrast, equalize, solarize, identity

    def _op(self, index: int, images: tf.Tensor) -> tf.Tensor:
        if index < len(self._layers):
            return tf.cast(self._layers[index](images, training=True), tf.float32)
        own = [autocontrast, equalize, lambda x: _solarize(x, self._threshold), tf.identity]
        return own[index - len(self._layers)](images)

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        if self.num_ops == 0:
            return images
        single = images.shape.rank == 3
        batch = images[None] if single else images
        size = tf.shape(batch)[0]
        positions = tf.range(size)
        for _ in range(self.num_ops):
            choice = tf.random.uniform([size], 0, self.num_choices, dtype=tf.int32, seed=self._seed)
            parts = tf.dynamic_partition(batch, choice, self.num_choices)
            where = tf.dynamic_partition(positions, choice, self.num_choices)
            out = tf.dynamic_stitch(where, [self._op(k, part) for k, part in enumerate(parts)])
            batch = tf.ensure_shape(tf.clip_by_value(out, 0.0, 255.0), batch.shape)
        return batch[0] if single else batch
