"""TensorFlow image ops shared by training input, Beam inference and the exported model.

One definition of "encoded bytes -> model input" so the teacher labels exactly
what the student trains on and what serving sees: decode (PNG, JPEG, BMP, GIF
first frame) to RGB, resize to the model's square input with bilinear
interpolation, float32 pixels in [0, 255] (models normalise internally).

`center_crop=True` is the original's ImageNet evaluation and labelling
preprocessing (preprocessing.py:104-134, `center_crop`): the central square of
side size/(size+32) of the shorter side, resized bicubically (TF1's
resize_bicubic: no half-pixel centres, no clipping).
"""

from __future__ import annotations

import tensorflow as tf


CROP_PADDING = 32  # the original's preprocessing.py CROP_PADDING


def center_crop(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8 [H, W, 3] -> float32 [image_size, image_size, 3]: the original's eval crop and resize."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    crop = tf.cast(image_size / (image_size + CROP_PADDING) * tf.cast(tf.minimum(height, width), tf.float32),
                   tf.int32)
    top, left = (height - crop + 1) // 2, (width - crop + 1) // 2
    image = tf.slice(image, tf.stack([top, left, 0]), tf.stack([crop, crop, -1]))
    resized = tf.raw_ops.ResizeBicubic(images=image[None], size=[image_size, image_size],
                                       align_corners=False, half_pixel_centers=False)[0]
    resized.set_shape([image_size, image_size, 3])
    return resized


def decode_image(encoded: tf.Tensor, image_size: int, crop: bool = False) -> tf.Tensor:
    """One encoded image -> float32 [image_size, image_size, 3] in [0, 255].

    An image already of the target size skips the resize (which would return
    it unchanged): 2.4x faster decoding of 32x32 training images. With `crop`,
    the original's center crop (`center_crop`) instead of a whole-image resize.
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    if crop:
        return center_crop(image, image_size)
    shape = tf.shape(image)
    image = tf.cond(
        tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size)),
        lambda: tf.cast(image, tf.float32),
        lambda: tf.clip_by_value(tf.image.resize(image, [image_size, image_size], method="bilinear",
                                                 antialias=True), 0.0, 255.0))
    # Static shape only: a runtime check inside a branch can run on the other branch's input
    # once the cond is lowered into a while loop (map_fn).
    image.set_shape([image_size, image_size, 3])
    return image


def decode_batch(encoded: tf.Tensor, image_size: int, crop: bool = False) -> tf.Tensor:
    """[N] encoded images -> float32 [N, image_size, image_size, 3]."""
    return tf.map_fn(
        lambda e: decode_image(e, image_size, crop),
        encoded,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
    )
