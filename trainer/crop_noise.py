"""Input noise besides RandAugment, as the original's recipes apply it.

ImageNet (preprocessing.py:81-101, 137-140, 154-186: `_random_crop`, `_flip`): per image, before
RandAugment, an Inception-style crop (`sample_distorted_bounding_box`: area 8-100 %, aspect ratio
3/4-4/3, 10 attempts; the whole image when no attempt fits, in which case the eval center crop
is used instead) resized bicubically to the training size, then a random horizontal flip.

SVHN (google-research/noisystudent preprocessing.py:189-224 (`_cifar10_preprocess_for_train`, used for
SVHN): after RandAugment, a cutout square of side 2 * (size // 4) centred at a uniformly drawn
pixel and clipped at the borders, filled with 128 (randaugment.py:80-127), then a random crop of
the image reflect-padded by 4 pixels (`small_image_crop`, preprocessing.py:143-151); no flip for
SVHN. Each image draws its own centre and offset.
"""

from __future__ import annotations

import tensorflow as tf

from noisystudent import image_ops

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


# preprocessing.py:84-91: _distorted_bounding_box_crop's arguments in _random_crop
MIN_OBJECT_COVERED = 0.1
ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
AREA_RANGE = (0.08, 1.0)
MAX_ATTEMPTS = 10


def inception_crop(image: tf.Tensor, image_size: int, seed: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 3] -> float32 [image_size, image_size, 3]: the original's `_random_crop`.

    `seed`: int32 [2] for the stateless box sampler. A box equal to the whole image (no attempt
    fitted) falls back to the evaluation center crop, as the original does.
    """
    shape = tf.shape(image)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed, min_object_covered=MIN_OBJECT_COVERED,
        aspect_ratio_range=ASPECT_RATIO_RANGE, area_range=AREA_RANGE, max_attempts=MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, size)
    whole = tf.reduce_all(tf.equal(shape[:2], tf.shape(crop)[:2]))  # _at_least_x_are_equal(.., 3)
    resized = tf.cond(
        whole, lambda: image_ops.center_crop(image, image_size),
        lambda: tf.raw_ops.ResizeBicubic(images=crop[None], size=[image_size, image_size], align_corners=False,
                                         half_pixel_centers=False)[0])
    resized.set_shape([image_size, image_size, 3])
    return resized


class InceptionCropFlip:
    """Encoded image -> float32 [size, size, 3]: the original's ImageNet training crop, then a flip."""

    def __init__(self, image_size: int, seed: int | None = None):
        self.image_size = image_size
        self._rng = (tf.random.Generator.from_seed(seed) if seed is not None
                     else tf.random.Generator.from_non_deterministic_state())

    def __call__(self, encoded: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        seed = self._rng.make_seeds(1)[:, 0]
        cropped = inception_crop(image, self.image_size, tf.cast(seed, tf.int32))
        flip = self._rng.uniform([]) < 0.5
        return tf.where(flip, tf.reverse(cropped, [1]), cropped)
