"""RandAugment (Cubuk et al., 2019) as the original noisystudent's randaugment.py runs it, on batches.

The original (google-research/noisystudent randaugment.py, commit aac52bf) per image and per
layer picks one of 15 ops uniformly (16 with `--cutout_op`, main.py:278-279, on by default;
randaugment.py:530-535) and always applies it (the drawn `prob` reaches no op) at the fixed
magnitude M; rotate, shear and translate take a random sign (`_randomly_negate_tensor`,
randaugment.py:422-426). Each op's argument at level M (`level_to_arg`, randaugment.py:462-484):

| op                     | argument at M                 | effect                                   |
|------------------------|-------------------------------|------------------------------------------|
| Rotate                 | +-30 * M/10 degrees           | nearest neighbour, empty pixels 128      |
| ShearX / ShearY        | +-0.3 * M/10                  | nearest neighbour, empty pixels 128      |
| TranslateX / Y         | +-M/10 * translate_const px   | nearest neighbour, empty pixels 128      |
| Color, Contrast, Brightness, Sharpness | factor 0.1 + 1.8 * M/10 | PIL-style blend with a degenerate image |
| Posterize              | int(4 * M/10) bits kept       | shift 8 - bits                           |
| Solarize               | threshold int(256 * M/10)     | pixels >= threshold inverted             |
| SolarizeAdd            | + int(110 * M/10) below 128   |                                          |
| Cutout                 | square of side 2 * int(M/10 * cutout_const), 128 |                       |
| AutoContrast, Equalize, Invert | none                  |                                          |

translate_const / cutout_const are 100 / 40 for ImageNet and size // 8 for 32-px images
(preprocessing.py:211-215). Magnitudes above 10 are the original's too (B7: 27).

Kept as TF 1.x computed them, documented in docs/recipes.md: Contrast blends towards the
constant (pixel count / 256), not the mean grey level (randaugment.py:154-168); Posterize and
Solarize take their shift and threshold as uint8 constants, so out-of-range values wrap (NumPy
< 1.24, as TF 1.x converted them) and the shift kernel clamps to [0, 7]: Posterize at M < 2.5
keeps 1 bit, not 0; Solarize at M = 10 inverts every pixel.

Pixels are uint8 values held in float32 (each op truncates as the original's uint8 casts do).
Each image draws its own ops, signs and cutout centre, but the work is batched: per layer the
batch is partitioned by the op each image drew, each op runs once on its images, and the
batch is stitched back (a `switch_case` per image cost ~120 us of dispatch each).
"""

from __future__ import annotations

import math

import tensorflow as tf

from trainer.config import MAX_MAGNITUDE
from trainer.crop_noise import cutout_at

MAX_LEVEL = 10.0
REPLACE = 128.0  # empty pixels after a geometric op (randaugment.py:526, replace_value)
OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
       "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "SolarizeAdd")
CUTOUT = "Cutout"
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale's


def blend(image1: tf.Tensor, image2: tf.Tensor, factor: float) -> tf.Tensor:
    """image1 + factor * (image2 - image1), truncated to uint8 values (randaugment.py:37-77)."""
    if factor == 0.0:
        return image1
    if factor == 1.0:
        return image2
    blended = image1 + factor * (image2 - image1)
    if not 0.0 < factor < 1.0:
        blended = tf.clip_by_value(blended, 0.0, 255.0)
    return tf.floor(blended)


def _grayscale(images: tf.Tensor) -> tf.Tensor:
    """tf.image.rgb_to_grayscale on uint8, batched: [N, H, W, 1] uint8 values."""
    gray = tf.image.rgb_to_grayscale(tf.cast(images, tf.uint8))
    return tf.cast(gray, tf.float32)


def autocontrast(images: tf.Tensor) -> tf.Tensor:
    """Stretch each image's channels to [0, 255] (randaugment.py:242-278), batched."""
    low = tf.reduce_min(images, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
    scale = 255.0 / tf.where(high > low, high - low, 1.0)
    stretched = tf.floor(tf.clip_by_value(images * scale + (-low * scale), 0.0, 255.0))
    return tf.where(high > low, stretched, images)


def equalize(images: tf.Tensor) -> tf.Tensor:
    """Histogram equalisation per image and channel (randaugment.py:310-347), batched."""
    shape = tf.shape(images)
    n, channels = shape[0], shape[3]
    pixels = tf.reshape(tf.transpose(tf.cast(images, tf.int32), [0, 3, 1, 2]), [n * channels, -1])
    rows = n * channels  # one row per (image, channel)
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


def _as_uint8_constant(value: int) -> int:
    """A Python int as TF 1.x made it a uint8 constant: NumPy < 1.24 wrapped it modulo 256."""
    return value % 256


def posterize(images: tf.Tensor, bits: int) -> tf.Tensor:
    """Keep the top `bits` bits (randaugment.py:177-180); TF's shift kernels clamp to [0, 7]."""
    shift = min(_as_uint8_constant(8 - bits), 7)
    step = float(2 ** shift)
    return tf.floor(images / step) * step


def solarize(images: tf.Tensor, threshold: int) -> tf.Tensor:
    """Invert pixels >= threshold (randaugment.py:131-135), the threshold a uint8 constant."""
    return tf.where(images < float(_as_uint8_constant(threshold)), images, 255.0 - images)


def solarize_add(images: tf.Tensor, addition: int, threshold: int = 128) -> tf.Tensor:
    """Add to pixels below threshold, clipped (randaugment.py:137-145)."""
    return tf.where(images < threshold, tf.clip_by_value(images + addition, 0.0, 255.0), images)


def color(images: tf.Tensor, factor: float) -> tf.Tensor:
    return blend(tf.image.grayscale_to_rgb(_grayscale(images)), images, factor)


def contrast(images: tf.Tensor, factor: float) -> tf.Tensor:
    """Blend towards the constant pixels / 256 (the original's histogram sum; randaugment.py:154-168)."""
    shape = tf.shape(images)
    mean = tf.floor(tf.clip_by_value(tf.cast(shape[1] * shape[2], tf.float32) / 256.0, 0.0, 255.0))
    return blend(tf.zeros_like(images) + mean, images, factor)


def brightness(images: tf.Tensor, factor: float) -> tf.Tensor:
    return blend(tf.zeros_like(images), images, factor)


def sharpness(images: tf.Tensor, factor: float) -> tf.Tensor:
    """PIL's SMOOTH kernel inside, the border kept, then blended (randaugment.py:281-307)."""
    kernel = tf.tile(tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32, [3, 3, 1, 1]) / 13.0,
                     [1, 1, 3, 1])
    # SAME, then the border replaced: inside it equals the original's VALID convolution, and an
    # empty batch keeps its shape (a VALID convolution of an empty batch returns the input's).
    smooth = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], padding="SAME")
    smooth = tf.floor(tf.clip_by_value(smooth, 0.0, 255.0))
    shape = tf.shape(images)
    rows, cols = tf.range(shape[1]), tf.range(shape[2])
    inside = (((rows >= 1) & (rows < shape[1] - 1))[:, None] & ((cols >= 1) & (cols < shape[2] - 1))[None, :])
    return blend(tf.where(inside[None, :, :, None], smooth, images), images, factor)


def invert(images: tf.Tensor) -> tf.Tensor:
    return 255.0 - images


def transform(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """Projective transforms [N, 8] (output pixel -> input pixel), nearest neighbour, empty
    pixels 128: the original's wrap / contrib transform / unwrap (randaugment.py:183-239, 356-399)."""
    shape = tf.shape(images)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=shape[1:3], fill_value=REPLACE,
        interpolation="NEAREST", fill_mode="CONSTANT")


def rotation_transforms(degrees: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """tf.contrib.image.angles_to_projective_transforms for angles in degrees [N]."""
    radians = degrees * (math.pi / 180.0)
    cos, sin = tf.cos(radians), tf.sin(radians)
    h, w = tf.cast(height - 1, tf.float32), tf.cast(width - 1, tf.float32)
    x_offset = (w - (cos * w - sin * h)) / 2.0
    y_offset = (h - (sin * w + cos * h)) / 2.0
    zeros = tf.zeros_like(cos)
    return tf.stack([cos, -sin, x_offset, sin, cos, y_offset, zeros, zeros], axis=1)


def affine_transforms(a1: tf.Tensor, a2: tf.Tensor, b0: tf.Tensor, b2: tf.Tensor) -> tf.Tensor:
    """[[1, a1, a2], [b0, 1, b2]] per image: shear x (a1), shear y (b0), translate (a2, b2)."""
    ones, zeros = tf.ones_like(a1), tf.zeros_like(a1)
    return tf.stack([ones, a1, a2, b0, ones, b2, zeros, zeros], axis=1)


class RandAugment:
    """Callable on float32 images in [0, 255]: a batch [B, H, W, 3] (inside tf.data, after
    batching) or one image [H, W, 3]. Pixels are truncated to uint8 values first, as the
    original casts them (preprocessing.py:175-177)."""

    def __init__(self, num_ops: int = 2, magnitude: float = 5.0, *, translate_const: int = 100,
                 cutout_const: int = 40, cutout_op: bool = True, seed: int | None = None):
        if not 0 <= magnitude <= MAX_MAGNITUDE:
            raise ValueError(f"randaugment magnitude must be in [0, {MAX_MAGNITUDE:g}], got {magnitude}")
        if num_ops < 0:
            raise ValueError(f"randaugment num_ops must be >= 0, got {num_ops}")
        self.num_ops = num_ops
        self.ops = OPS + ((CUTOUT,) if cutout_op else ())
        level = float(magnitude) / MAX_LEVEL
        self._enhance = level * 1.8 + 0.1
        self._degrees = level * 30.0
        self._shear = level * 0.3
        self._translate = level * float(translate_const)
        self._bits = int(level * 4)
        self._threshold = int(level * 256)
        self._addition = int(level * 110)
        self._cutout = int(level * cutout_const)
        self._rng = (tf.random.Generator.from_seed(seed) if seed is not None
                     else tf.random.Generator.from_non_deterministic_state())

    def _signed(self, value: float, n: tf.Tensor) -> tf.Tensor:
        """value with a random sign per image (`_randomly_negate_tensor`)."""
        return tf.where(self._rng.uniform([n]) < 0.5, -value, value)

    def apply_op(self, name: str, images: tf.Tensor) -> tf.Tensor:
        """One op at this magnitude on every image of `images` (each its own sign / centre)."""
        shape = tf.shape(images)
        n, height, width = shape[0], shape[1], shape[2]
        zeros = tf.zeros([n])
        if name == "AutoContrast":
            return autocontrast(images)
        if name == "Equalize":
            return equalize(images)
        if name == "Invert":
            return invert(images)
        if name == "Rotate":
            return transform(images, rotation_transforms(self._signed(self._degrees, n), height, width))
        if name == "Posterize":
            return posterize(images, self._bits)
        if name == "Solarize":
            return solarize(images, self._threshold)
        if name == "SolarizeAdd":
            return solarize_add(images, self._addition)
        if name in ("Color", "Contrast", "Brightness", "Sharpness"):
            return {"Color": color, "Contrast": contrast, "Brightness": brightness,
                    "Sharpness": sharpness}[name](images, self._enhance)
        if name == "ShearX":
            return transform(images, affine_transforms(self._signed(self._shear, n), zeros, zeros, zeros))
        if name == "ShearY":
            return transform(images, affine_transforms(zeros, zeros, self._signed(self._shear, n), zeros))
        if name == "TranslateX":  # translate(image, [-pixels, 0]): the transform adds +pixels
            return transform(images, affine_transforms(zeros, self._signed(self._translate, n), zeros, zeros))
        if name == "TranslateY":
            return transform(images, affine_transforms(zeros, zeros, zeros, self._signed(self._translate, n)))
        if name == CUTOUT:
            centers = tf.stack([self._rng.uniform([n], 0, height, tf.int32),
                                self._rng.uniform([n], 0, width, tf.int32)], axis=1)
            return cutout_at(images, centers, self._cutout, REPLACE)
        raise ValueError(f"unknown RandAugment op {name!r}")

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        if self.num_ops == 0:
            return images
        single = images.shape.rank == 3
        batch = images[None] if single else images
        static_shape = batch.shape
        batch = tf.floor(tf.clip_by_value(tf.cast(batch, tf.float32), 0.0, 255.0))
        size = tf.shape(batch)[0]
        positions = tf.range(size)
        for _ in range(self.num_ops):
            choice = self._rng.uniform([size], 0, len(self.ops), dtype=tf.int32)
            parts = tf.dynamic_partition(batch, choice, len(self.ops))
            where = tf.dynamic_partition(positions, choice, len(self.ops))
            out = tf.dynamic_stitch(where, [self.apply_op(name, part) for name, part in zip(self.ops, parts)])
            batch = tf.ensure_shape(out, static_shape)
        return batch[0] if single else batch
