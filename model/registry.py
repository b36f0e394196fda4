"""Models by name: `build_model("efficientnet-b0", num_classes=10, input_shape=(32, 32, 3))`.

| name              | params at 1000 classes | default input | dropout |
|-------------------|------------------------|---------------|---------|
| cnn-small         | 133,528 (85,018 at 10) | 32x32         | 0.2     |
| cnn-medium        | 431,944 (335,914 at 10) | 32x32         | 0.2     |
| wrn-28-2          | 1,598,936 (1,471,226 at 10) | 32x32    | 0.2     |
| efficientnet-b0   | 5,330,564              | 224           | 0.2     |
| efficientnet-b1   | 7,856,232              | 240           | 0.2     |
| efficientnet-b2   | 9,177,562              | 260           | 0.3     |
| efficientnet-b3   | 12,320,528             | 300           | 0.3     |
| efficientnet-b4   | 19,466,816             | 380           | 0.4     |
| efficientnet-b5   | 30,562,520             | 456           | 0.4     |
| efficientnet-b6   | 43,265,136             | 528           | 0.5     |
| efficientnet-b7   | 66,658,680             | 600           | 0.5     |
| efficientnet-l2   | 481,399,996            | 800           | 0.5     |

(keras.applications reports 7 more for B0-B7: its normalisation weights.)
Every model takes float RGB pixels in [0, 255] and returns class probabilities;
noise (dropout, stochastic depth) is active only with training=True.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import keras

from model import efficientnet, small_nets

DEFAULT_STOCHASTIC_DEPTH_RATE = 0.2  # block i of N drops with 0.2 x i / N, the paper's setting


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    resolution: int
    dropout: float
    bn_momentum: float
    builder: Callable[..., keras.Model]


def _efficientnet_spec(name: str) -> ModelSpec:
    s = efficientnet.SCALING[name]
    return ModelSpec(name, s.resolution, s.dropout, 0.99,
                     lambda **kw: efficientnet.build(name, **kw))


MODELS: dict[str, ModelSpec] = {
    "cnn-small": ModelSpec("cnn-small", 32, 0.2, 0.9, small_nets.build_cnn_small),
    "cnn-medium": ModelSpec("cnn-medium", 32, 0.2, 0.9, small_nets.build_cnn_medium),
    "wrn-28-2": ModelSpec("wrn-28-2", 32, 0.2, 0.99, small_nets.build_wide_resnet),
    **{name: _efficientnet_spec(name) for name in efficientnet.SCALING},
}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(
    name: str,
    num_classes: int,
    input_shape: Optional[tuple[int, int, int]] = None,
    dropout_rate: Optional[float] = None,
    stochastic_depth_rate: Optional[float] = None,
    bn_momentum: Optional[float] = None,
    small_image: bool = False,
    normalization: str = "imagenet",
) -> keras.Model:
    """Build a registered model; None arguments take the model's defaults.

    `small_image`: EfficientNets take the original's strides for 32-px images; the
    small nets are built for such images already and ignore it. `normalization`:
    the dataset whose input mean/std an EfficientNet uses (imagenet, svhn).
    """
    spec = get_spec(name)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if input_shape is None:
        input_shape = (spec.resolution, spec.resolution, 3)
    for flag, value in (("dropout_rate", dropout_rate), ("stochastic_depth_rate", stochastic_depth_rate)):
        if value is not None and not 0.0 <= value < 1.0:
            raise ValueError(f"{flag} must be in [0, 1), got {value}")
    return spec.builder(
        num_classes=num_classes,
        input_shape=tuple(input_shape),
        dropout_rate=spec.dropout if dropout_rate is None else dropout_rate,
        stochastic_depth_rate=(DEFAULT_STOCHASTIC_DEPTH_RATE if stochastic_depth_rate is None
                               else stochastic_depth_rate),
        bn_momentum=spec.bn_momentum if bn_momentum is None else bn_momentum,
        **({"small_image": small_image, "normalization": normalization} if name in efficientnet.SCALING else {}),
    )


def count_params(name: str, num_classes: int) -> int:
    """Parameter count of a registered model (EfficientNets by arithmetic, no build)."""
    get_spec(name)
    if name in efficientnet.SCALING:
        return efficientnet.count_params(name, num_classes)
    return build_model(name, num_classes).count_params()


def size_ratio(student: str, teacher: str, num_classes: int) -> float:
    """Student parameters / teacher parameters: < 1 means the student is smaller."""
    return count_params(student, num_classes) / count_params(teacher, num_classes)
