"""EfficientNet B0-B7 and L2 (Tan & Le, 2019; Xie et al., 2019) with configurable noise.

Built from the compound-scaling table, like the original `efficientnet_builder.py`:
MBConv blocks with squeeze-excitation, stochastic depth whose drop rate grows
linearly with the block index: block i of N drops with `stochastic_depth_rate`
x i / N (the original's efficientnet_model.py:477-479; 0.2, the paper's setting,
so the last block drops a little under 0.2), and dropout before the classifier.
keras.applications' EfficientNets expose neither knob and have no L2.

Inputs are float RGB pixels in [0, 255]; the model normalises them with the
ImageNet mean and standard deviation, as the original and keras.applications do.
Stochastic depth is a stock `Dropout` with noise_shape (batch, 1, 1, 1): it
drops a block's whole residual branch per image and rescales the survivors.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import keras
from keras import layers

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Input normalisation per dataset, on pixels scaled to [0, 1] (the original's task_info.py:22-32
# gives the same numbers times 255, on [0, 255] pixels).
NORMALIZATION = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "svhn": ((0.4376821, 0.4437697, 0.47280442), (0.19803012, 0.20101562, 0.19703614)),
}
BN_EPSILON = 1e-3
# The original's initialisers (efficientnet_model.py:74-116): convolutions (depthwise too) draw from an
# untruncated normal of stddev sqrt(2 / fan_out), fan_out = kernel_h * kernel_w * out_channels; the
# classifier from uniform(+-1 / sqrt(num_classes)).
CONV_INITIALIZER = dict(scale=2.0, mode="fan_out", distribution="untruncated_normal")
DENSE_INITIALIZER = dict(scale=1.0 / 3.0, mode="fan_out", distribution="uniform")


def _conv_init() -> keras.initializers.Initializer:
    return keras.initializers.VarianceScaling(**CONV_INITIALIZER)


@dataclasses.dataclass(frozen=True)
class Scaling:
    width: float
    depth: float
    resolution: int
    dropout: float


# name -> (width, depth, default resolution, dropout), from the EfficientNet and
# Noisy Student papers (L2: width 4.3, depth 5.3, 800 px).
SCALING = {
    "efficientnet-b0": Scaling(1.0, 1.0, 224, 0.2),
    "efficientnet-b1": Scaling(1.0, 1.1, 240, 0.2),
    "efficientnet-b2": Scaling(1.1, 1.2, 260, 0.3),
    "efficientnet-b3": Scaling(1.2, 1.4, 300, 0.3),
    "efficientnet-b4": Scaling(1.4, 1.8, 380, 0.4),
    "efficientnet-b5": Scaling(1.6, 2.2, 456, 0.4),
    "efficientnet-b6": Scaling(1.8, 2.6, 528, 0.5),
    "efficientnet-b7": Scaling(2.0, 3.1, 600, 0.5),
    "efficientnet-l2": Scaling(4.3, 5.3, 800, 0.5),
}


@dataclasses.dataclass(frozen=True)
class BlockArgs:
    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int
    se_ratio: float = 0.25


# The B0 stages (the original's 'r1_k3_s11_e1_i32_o16_se0.25', ...).
B0_BLOCKS = (
    BlockArgs(1, 3, 1, 1, 32, 16),
    BlockArgs(2, 3, 2, 6, 16, 24),
    BlockArgs(2, 5, 2, 6, 24, 40),
    BlockArgs(3, 3, 2, 6, 40, 80),
    BlockArgs(3, 5, 1, 6, 80, 112),
    BlockArgs(4, 5, 2, 6, 112, 192),
    BlockArgs(1, 3, 1, 6, 192, 320),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
# For 32-px images the original sets stride 1 in the second and third stages (efficientnet_builder.py:
# 134-136, small_image_model, which main.py:682 turns on for SVHN): the last feature map is 4x4, not 1x1.
SMALL_IMAGE_STAGES = (1, 2)


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channel count scaled by width, rounded to a multiple of divisor (as the original)."""
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def scaled_blocks(scaling: Scaling, small_image: bool = False) -> list[BlockArgs]:
    """One BlockArgs per block (repeats expanded), widths and depths scaled."""
    blocks = []
    for index, stage in enumerate(B0_BLOCKS):
        if small_image and index in SMALL_IMAGE_STAGES:
            stage = dataclasses.replace(stage, stride=1)
        f_in = round_filters(stage.filters_in, scaling.width)
        f_out = round_filters(stage.filters_out, scaling.width)
        for i in range(round_repeats(stage.repeats, scaling.depth)):
            blocks.append(dataclasses.replace(
                stage, repeats=1, filters_in=f_in if i == 0 else f_out, filters_out=f_out,
                stride=stage.stride if i == 0 else 1))
    return blocks


def count_params(name: str, num_classes: int) -> int:
    """Parameters (trainable and BN statistics) of `build`, by arithmetic: no model built.

    keras.applications counts 7 more: its Normalization layer stores the mean,
    variance and count as weights; ours holds them as constants.
    """
    scaling = SCALING[name]
    bn = lambda c: 4 * c  # gamma, beta, moving mean, moving variance
    stem = round_filters(STEM_FILTERS, scaling.width)
    total = 3 * 3 * 3 * stem + bn(stem)
    for b in scaled_blocks(scaling):
        expanded = b.filters_in * b.expand
        if b.expand != 1:
            total += b.filters_in * expanded + bn(expanded)
        total += b.kernel * b.kernel * expanded + bn(expanded)
        se = max(1, int(b.filters_in * b.se_ratio))
        total += expanded * se + se + se * expanded + expanded
        total += expanded * b.filters_out + bn(b.filters_out)
    head = round_filters(HEAD_FILTERS, scaling.width)
    last = scaled_blocks(scaling)[-1].filters_out
    total += last * head + bn(head) + head * num_classes + num_classes
    return total


def _mbconv(x, b: BlockArgs, drop_rate: float, bn_momentum: float, prefix: str):
    inputs = x
    expanded = b.filters_in * b.expand
    if b.expand != 1:
        x = layers.Conv2D(expanded, 1, padding="same", use_bias=False, kernel_initializer=_conv_init(),
                          name=prefix + "expand_conv")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, epsilon=BN_EPSILON, name=prefix + "expand_bn")(x)
        x = layers.Activation("swish", name=prefix + "expand_activation")(x)
    x = layers.DepthwiseConv2D(b.kernel, strides=b.stride, padding="same", use_bias=False,
                               depthwise_initializer=_conv_init(), name=prefix + "dwconv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, epsilon=BN_EPSILON, name=prefix + "bn")(x)
    x = layers.Activation("swish", name=prefix + "activation")(x)
    se = max(1, int(b.filters_in * b.se_ratio))
    s = layers.GlobalAveragePooling2D(keepdims=True, name=prefix + "se_squeeze")(x)
    s = layers.Conv2D(se, 1, activation="swish", kernel_initializer=_conv_init(), name=prefix + "se_reduce")(s)
    s = layers.Conv2D(expanded, 1, activation="sigmoid", kernel_initializer=_conv_init(),
                      name=prefix + "se_expand")(s)
    x = layers.Multiply(name=prefix + "se_excite")([x, s])
    x = layers.Conv2D(b.filters_out, 1, padding="same", use_bias=False, kernel_initializer=_conv_init(),
                      name=prefix + "project_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, epsilon=BN_EPSILON, name=prefix + "project_bn")(x)
    if b.stride == 1 and b.filters_in == b.filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=prefix + "stochastic_depth")(x)
        x = layers.Add(name=prefix + "add")([x, inputs])
    return x


def build(
    name: str,
    num_classes: int,
    input_shape: Optional[tuple[int, int, int]] = None,
    dropout_rate: Optional[float] = None,
    stochastic_depth_rate: float = 0.2,
    bn_momentum: float = 0.99,
    small_image: bool = False,
    normalization: str = "imagenet",
) -> keras.Model:
    """An EfficientNet from SCALING; input float RGB in [0, 255], output class probabilities.

    `small_image`: the original's strides for 32-px inputs (SMALL_IMAGE_STAGES); same weights.
    `normalization`: the dataset whose mean/std the input is normalised with (NORMALIZATION).
    """
    if normalization not in NORMALIZATION:
        raise ValueError(f"normalization {normalization!r}: choose from {', '.join(NORMALIZATION)}")
    mean, std = NORMALIZATION[normalization]
    scaling = SCALING[name]
    if input_shape is None:
        input_shape = (scaling.resolution, scaling.resolution, 3)
    dropout_rate = scaling.dropout if dropout_rate is None else dropout_rate
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescaling")(inputs)
    x = layers.Normalization(mean=list(mean), variance=[s * s for s in std],
                             name="normalization")(x)
    x = layers.Conv2D(round_filters(STEM_FILTERS, scaling.width), 3, strides=2, padding="same",
                      use_bias=False, kernel_initializer=_conv_init(), name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, epsilon=BN_EPSILON, name="stem_bn")(x)
    x = layers.Activation("swish", name="stem_activation")(x)
    blocks = scaled_blocks(scaling, small_image)
    for i, b in enumerate(blocks):
        # rate * i / N for block i from 0 (the original's efficientnet_model.py:477-479): the first
        # block never drops, the last drops with rate * (N - 1) / N.
        x = _mbconv(x, b, stochastic_depth_rate * i / len(blocks), bn_momentum, f"block{i + 1}_")
    x = layers.Conv2D(round_filters(HEAD_FILTERS, scaling.width), 1, padding="same", use_bias=False,
                      kernel_initializer=_conv_init(), name="top_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, epsilon=BN_EPSILON, name="top_bn")(x)
    x = layers.Activation("swish", name="top_activation")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout_rate > 0:
        x = layers.Dropout(dropout_rate, name="top_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32",
                           kernel_initializer=keras.initializers.VarianceScaling(**DENSE_INITIALIZER))(x)
    return keras.Model(inputs, outputs, name=name)
