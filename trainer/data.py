"""tf.data input for the trainer: labeled, pseudo-labeled (offline) and unlabeled (online) batches.

Per step: `batch_size` labeled images and `unlabel_ratio * batch_size` unlabeled
ones, zipped into the dict NoisyStudent expects. Decoding and resizing use
noisystudent.image_ops (the same as inference and serving); RandAugment runs
on whole batches (each image still draws its own ops), batches in parallel.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

import tensorflow as tf

from noisystudent import image_ops, records
from trainer.augment import RandAugment

AUTOTUNE = tf.data.AUTOTUNE
log = logging.getLogger(__name__)
Decoder = Callable[[tf.Tensor], tf.Tensor]  # encoded image -> float32 [S, S, 3]


def resize_decoder(image_size: int, center_crop: bool = False) -> Decoder:
    """The shared decode (image_ops.decode_image): whole-image resize, or the eval center crop."""
    return lambda encoded: image_ops.decode_image(encoded, image_size, center_crop)


Shard = tuple[int, int]  # (this host's index, number of hosts): which part of the files a host reads
ONE_HOST: Shard = (0, 1)


def host_files(files: list[str], shard: Shard) -> list[str]:
    """This host's files (every `count`-th from `index`), or all of them when there are fewer files than
    hosts (then `_records` keeps every `count`-th record instead: each host still reads everything)."""
    index, count = shard
    if count > 1 and index == 0 and len(files) % count:
        log.warning("%d files over %d hosts: %s", len(files), count,
                    "every host reads all of them and keeps every %d-th record (write at least %d shards)"
                    % (count, count) if len(files) < count else
                    "some hosts read one file more, so their records recur more often (write a multiple of %d)"
                    % count)
    return files[index::count] if len(files) >= count else files


def _records(files: list[str], shuffle_buffer: int, seed: int, repeat: bool,
             shard: Shard = ONE_HOST) -> tf.data.Dataset:
    """Serialized records; for training, shuffled (files, then records) and repeated, epoch by epoch.

    The record shuffle comes before `repeat`: every epoch reads every record exactly once. After the
    repeat (as before), a buffer larger than the data mixed epochs and drew with replacement in
    effect: of 1,497 records under the 10,000-record buffer, 497 were unread after one epoch's worth
    of draws and 40 after three. On many hosts (`shard`), each reads its own files (`host_files`), so
    the hosts' records are disjoint and together are every record. The order is deterministic.
    """
    if not files:
        raise ValueError("no TFRecord files to read (an empty split?)")
    index, count = shard
    mine = host_files(files, shard)
    ds = tf.data.Dataset.from_tensor_slices(mine)
    if repeat:
        ds = ds.shuffle(len(mine), seed=seed)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(8, len(mine)), num_parallel_calls=AUTOTUNE)
    if count > 1 and len(files) < count:
        ds = ds.shard(count, index)
    if repeat and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed)
    return ds.repeat() if repeat else ds


def _check_labels(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    tf.debugging.assert_greater_equal(labels, tf.constant(0, labels.dtype),
                                      message="labeled data holds a label < 0 (an unlabeled record?)")
    tf.debugging.assert_less(labels, tf.constant(num_classes, labels.dtype),
                             message=f"labeled data holds a label >= num_classes ({num_classes})")
    return labels


def labeled_images(files: list[str], num_classes: int, image_size: int, batch_size: int,
                   augment: Optional[RandAugment], shuffle_buffer: int = 10000, seed: int = 0,
                   repeat: bool = True, center_crop: bool = False,
                   decode: Optional[Decoder] = None, shard: Shard = ONE_HOST) -> tf.data.Dataset:
    """(images float32 [B, S, S, 3], labels int32 [B]); repeated and shuffled for training.

    `decode` replaces the shared resize (e.g. crop_noise.InceptionCropFlip for ImageNet training).
    """
    decode = decode or resize_decoder(image_size, center_crop)

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, records.image_feature_spec())
        image = decode(parsed[records.IMAGE_ENCODED])
        label = _check_labels(tf.cast(parsed[records.LABEL], tf.int32), num_classes)
        return image, label

    ds = _records(files, shuffle_buffer, seed, repeat, shard).map(parse, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=repeat)
    if augment is not None:
        ds = ds.map(lambda images, labels: (augment(images), labels), num_parallel_calls=AUTOTUNE)
    return ds


def pseudo_labeled_images(files: list[str], num_classes: int, image_size: int, batch_size: int,
                          augment: Optional[RandAugment], prob_format: str = "float32",
                          shuffle_buffer: int = 10000, seed: int = 0,
                          decode: Optional[Decoder] = None, shard: Shard = ONE_HOST) -> tf.data.Dataset:
    """Offline mode: (noised images, teacher probabilities [B, C]) from the selection job's records."""
    decode = decode or resize_decoder(image_size)

    def parse(serialized):
        encoded, _, probs = records.parse_pseudo_labeled_batch(serialized[None], num_classes, prob_format)
        return decode(encoded[0]), probs[0]

    ds = _records(files, shuffle_buffer, seed + 1, True, shard).map(parse, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
    if augment is not None:
        ds = ds.map(lambda images, probs: (augment(images), probs), num_parallel_calls=AUTOTUNE)
    return ds


def unlabeled_image_pairs(files: list[str], image_size: int, batch_size: int,
                          augment: Optional[RandAugment], shuffle_buffer: int = 10000,
                          seed: int = 0, clean_decode: Optional[Decoder] = None,
                          decode: Optional[Decoder] = None, shard: Shard = ONE_HOST) -> tf.data.Dataset:
    """Online mode: (clean images for the teacher, noised images for the student).

    The teacher's image is decoded as for evaluation (`clean_decode`: the resize, or the center
    crop), the student's with `decode` (default: the same image) and then `augment`.
    """
    clean_decode = clean_decode or resize_decoder(image_size)

    def parse(serialized):
        encoded = tf.io.parse_single_example(serialized, records.image_feature_spec())[records.IMAGE_ENCODED]
        clean = clean_decode(encoded)
        return clean, (decode(encoded) if decode is not None else clean)

    ds = _records(files, shuffle_buffer, seed + 1, True, shard).map(parse, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.map(lambda clean, student: (clean, augment(student) if augment is not None else student),
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
