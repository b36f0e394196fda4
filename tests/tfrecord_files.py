"""Writing small TFRecord files in tests."""

import tensorflow as tf


def write_tfrecord(path, records) -> None:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
