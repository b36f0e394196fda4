"""tf.data input for the trainer: labeled, pseudo-labeled (offline) and unlabeled (online) batches.

Per step: `batch_size` labeled images and `unlabel_ratio * batch_size` unlabeled
ones, zipped into the dict NoisyStudent expects. Decoding and resizing use
noisystudent.image_ops (the same as inference and serving); RandAugment runs
on whole batches (each image still draws its own ops), batches in parallel.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from noisystudent import image_ops, records
from trainer.augment import RandAugment

AUTOTUNE = tf.data.AUTOTUNE


def _records(files: list[str], shuffle_buffer: int, seed: int, repeat: bool) -> tf.data.Dataset:
    if not files:
        raise ValueError("no TFRecord files to read (an empty split?)")
    ds = tf.data.Dataset.from_tensor_slices(files)
    if repeat:
        ds = ds.shuffle(len(files), seed=seed).repeat()
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(8, len(files)),
                       num_parallel_calls=AUTOTUNE, deterministic=not repeat)
    if repeat and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed)
    return ds


def _check_labels(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    tf.debugging.assert_greater_equal(labels, tf.constant(0, labels.dtype),
                                      message="labeled data holds a label < 0 (an unlabeled record?)")
    tf.debugging.assert_less(labels, tf.constant(num_classes, labels.dtype),
                             message=f"labeled data holds a label >= num_classes ({num_classes})")
    return labels


def labeled_images(files: list[str], num_classes: int, image_size: int, batch_size: int,
                   augment: Optional[RandAugment], shuffle_buffer: int = 10000, seed: int = 0,
                   repeat: bool = True, center_crop: bool = False) -> tf.data.Dataset:
    """(images float32 [B, S, S, 3], labels int32 [B]); repeated and shuffled for training."""
    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, records.image_feature_spec())
        image = image_ops.decode_image(parsed[records.IMAGE_ENCODED], image_size, center_crop)
        label = _check_labels(tf.cast(parsed[records.LABEL], tf.int32), num_classes)
        return image, label

    ds = _records(files, shuffle_buffer, seed, repeat).map(parse, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=repeat)
    if augment is not None:
        ds = ds.map(lambda images, labels: (augment(images), labels), num_parallel_calls=AUTOTUNE)
    return ds


def pseudo_labeled_images(files: list[str], num_classes: int, image_size: int, batch_size: int,
                          augment: Optional[RandAugment], prob_format: str = "float32",
                          shuffle_buffer: int = 10000, seed: int = 0) -> tf.data.Dataset:
    """Offline mode: (noised images, teacher probabilities [B, C]) from the selection job's records."""
    def parse(serialized):
        encoded, _, probs = records.parse_pseudo_labeled_batch(serialized[None], num_classes, prob_format)
        return image_ops.decode_image(encoded[0], image_size), probs[0]

    ds = _records(files, shuffle_buffer, seed + 1, True).map(parse, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
    if augment is not None:
        ds = ds.map(lambda images, probs: (augment(images), probs), num_parallel_calls=AUTOTUNE)
    return ds


def unlabeled_image_pairs(files: list[str], image_size: int, batch_size: int,
                          augment: Optional[RandAugment], shuffle_buffer: int = 10000,
                          seed: int = 0) -> tf.data.Dataset:
    """Online mode: (clean images for the teacher, noised images for the student)."""
    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, records.image_feature_spec())
        return image_ops.decode_image(parsed[records.IMAGE_ENCODED], image_size)

    ds = _records(files, shuffle_buffer, seed + 1, True).map(parse, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.map(lambda clean: (clean, augment(clean) if augment is not None else clean),
                  num_parallel_calls=AUTOTUNE)


def training_batches(labeled: tf.data.Dataset, unlabeled: Optional[tf.data.Dataset],
                     mode: str) -> tf.data.Dataset:
    """Zip labeled and unlabeled batches into NoisyStudent's (x, y) dicts."""
    if mode == "supervised":
        ds = labeled.map(lambda images, labels: ({"labeled": images}, {"labeled": labels}))
    elif mode == "offline":
        ds = tf.data.Dataset.zip(labeled, unlabeled).map(
            lambda l, u: ({"labeled": l[0], "unlabeled": u[0]}, {"labeled": l[1], "unlabeled": u[1]}))
    else:
        ds = tf.data.Dataset.zip(labeled, unlabeled).map(
            lambda l, u: ({"labeled": l[0], "unlabeled": u[1], "unlabeled_clean": u[0]},
                          {"labeled": l[1]}))
    return ds.prefetch(AUTOTUNE)
