"""RandAugment (Cubuk et al., 2019) from Keras preprocessing layers, on the original's scale.

`keras.layers.RandAugment` has one `factor` for every op, and it scales
rotations by a full turn: at 0.5 a digit can turn 180 degrees (a 6 becomes a
9). Here each op gets its own range, mapped from the original
noisystudent/autoaugment.py at magnitude M on its 0..10 scale:

| op            | range at magnitude M (the original's)       |
|---------------|---------------------------------------------|
| rotate        | +-30 * M/10 degrees                         |
| shear x / y   | +-0.3 * M/10                                |
| translate x/y | +-0.3 * M/10 of the side (100 px at 331)     |
| contrast, color, brightness, sharpness | factor in 1 +- 0.9 * M/10 |
| posterize     | 8 - 4 * M/10 bits                            |
| solarize      | threshold 255 * (1 - M/10)                   |
| auto-contrast, equalize, identity | no magnitude                     |

Each image draws `num_ops` ops independently (map it per image, before batching).
"""

from __future__ import annotations

import tensorflow as tf
from keras import layers

MAX_MAGNITUDE = 10.0
VALUE_RANGE = (0, 255)


def _solarize(image: tf.Tensor, threshold: float) -> tf.Tensor:
    return tf.where(image < threshold, image, 255.0 - image)


class RandAugment:
    """Callable on one float32 HxWx3 image in [0, 255] (inside tf.data)."""

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
            layers.AutoContrast(value_range=VALUE_RANGE),
            layers.Equalization(value_range=VALUE_RANGE),
        ]
        self._threshold = 255.0 * (1.0 - m)
        self._seed = seed

    @property
    def num_choices(self) -> int:
        return len(self._layers) + 2  # + solarize, identity

    def _apply(self, image: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
        branches = [lambda layer=layer: tf.cast(layer(image, training=True), tf.float32)
                    for layer in self._layers]
        branches.append(lambda: _solarize(image, self._threshold))
        branches.append(lambda: image)
        out = tf.switch_case(index, branches)
        return tf.ensure_shape(tf.clip_by_value(out, 0.0, 255.0), image.shape)

    def __call__(self, image: tf.Tensor) -> tf.Tensor:
        if self.num_ops == 0:
            return image
        choices = tf.random.uniform([self.num_ops], 0, self.num_choices, dtype=tf.int32, seed=self._seed)
        for i in range(self.num_ops):
            image = self._apply(image, choices[i])
        return image
