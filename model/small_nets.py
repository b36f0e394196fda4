"""Small networks for SVHN-size images, the digits demo and tests.

- `cnn-small`: a three-stage residual CNN (about 85k parameters at 10 classes),
  fast enough to train in seconds on 2 CPU cores.
- `cnn-medium`: the same network twice as wide (about 336k parameters, 4x
  cnn-small's; 1.6x its step time on 2 CPU cores): the larger student for the
  small-image presets (docs/benchmarks.md).
- `wrn-28-2`: Wide ResNet 28-2 (Zagoruyko & Komodakis, 2016), the standard
  semi-supervised benchmark network for SVHN and CIFAR (about 1.47M parameters).

Both take float RGB pixels in [0, 255], carry stochastic depth on every
residual branch (drop rate linear in the block index) and dropout before the
classifier, and output class probabilities.
"""

from __future__ import annotations

import keras
from keras import layers

# Per-channel statistics of SVHN's train split, used by the original code too;
# close enough to centre any natural RGB data.
PIXEL_MEAN = (0.4377, 0.4438, 0.4728)
PIXEL_STD = (0.198, 0.201, 0.197)


def _normalize(inputs):
    x = layers.Rescaling(1.0 / 255.0, name="rescaling")(inputs)
    return layers.Normalization(mean=list(PIXEL_MEAN), variance=[s * s for s in PIXEL_STD],
                                name="normalization")(x)


def _residual(x, residual, drop_rate: float, name: str):
    if drop_rate > 0:
        residual = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1),
                                  name=name + "_stochastic_depth")(residual)
    return layers.Add(name=name + "_add")([x, residual])


def _classifier(x, num_classes: int, dropout_rate: float):
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout_rate > 0:
        x = layers.Dropout(dropout_rate, name="top_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")(x)


def build_cnn_small(num_classes: int, input_shape=(32, 32, 3), dropout_rate: float = 0.2,
                    stochastic_depth_rate: float = 0.2, bn_momentum: float = 0.9,
                    widths: tuple[int, ...] = (16, 32, 48), name: str = "cnn-small") -> keras.Model:
    """Per stage: a strided conv, then a residual block of two 3x3 convs (32 -> 16 -> 8 -> 4)."""
    bn = lambda name: layers.BatchNormalization(momentum=bn_momentum, name=name)
    inputs = keras.Input(shape=input_shape, name="image")
    x = _normalize(inputs)
    for i, width in enumerate(widths):
        x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False,
                          name=f"stage{i + 1}_conv")(x)
        x = layers.Activation("relu", name=f"stage{i + 1}_relu")(bn(f"stage{i + 1}_bn")(x))
        r = x
        for j in range(2):
            r = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"stage{i + 1}_res{j}_conv")(r)
            r = bn(f"stage{i + 1}_res{j}_bn")(r)
            if j == 0:
                r = layers.Activation("relu", name=f"stage{i + 1}_res{j}_relu")(r)
        drop = stochastic_depth_rate * (i + 1) / len(widths)
        x = layers.Activation("relu", name=f"stage{i + 1}_out")(_residual(x, r, drop, f"stage{i + 1}"))
    return keras.Model(inputs, _classifier(x, num_classes, dropout_rate), name=name)


def build_cnn_medium(num_classes: int, **kwargs) -> keras.Model:
    """cnn-small at twice the width per stage (32, 64, 96)."""
    return build_cnn_small(num_classes, widths=(32, 64, 96), name="cnn-medium", **kwargs)


def build_wide_resnet(num_classes: int, input_shape=(32, 32, 3), depth: int = 28, width: int = 2,
                      dropout_rate: float = 0.2, stochastic_depth_rate: float = 0.2,
                      bn_momentum: float = 0.99) -> keras.Model:
    """Pre-activation Wide ResNet depth-width (WRN-28-2 by default)."""
    if (depth - 4) % 6:
        raise ValueError(f"wide resnet depth must be 6n+4, got {depth}")
    per_group = (depth - 4) // 6
    bn = lambda name: layers.BatchNormalization(momentum=bn_momentum, epsilon=1e-3, name=name)
    conv = lambda f, s, name: layers.Conv2D(f, 3, strides=s, padding="same", use_bias=False, name=name)
    inputs = keras.Input(shape=input_shape, name="image")
    x = conv(16, 1, "stem_conv")(_normalize(inputs))
    total, index = 3 * per_group, 0
    for g, filters in enumerate((16 * width, 32 * width, 64 * width)):
        for b in range(per_group):
            name = f"group{g + 1}_block{b + 1}"
            stride = 2 if (g > 0 and b == 0) else 1
            pre = layers.Activation("relu", name=name + "_relu1")(bn(name + "_bn1")(x))
            r = conv(filters, stride, name + "_conv1")(pre)
            r = layers.Activation("relu", name=name + "_relu2")(bn(name + "_bn2")(r))
            r = conv(filters, 1, name + "_conv2")(r)
            if x.shape[-1] != filters or stride != 1:
                x = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=name + "_shortcut")(pre)
            index += 1
            x = _residual(x, r, stochastic_depth_rate * index / total, name)
    x = layers.Activation("relu", name="final_relu")(bn("final_bn")(x))
    name = f"wrn-{depth}-{width}"
    return keras.Model(inputs, _classifier(x, num_classes, dropout_rate), name=name)
