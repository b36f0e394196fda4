"""Shared test data: the bundled digits as a dataset dir, and pseudo-labeled records made from it."""

import os

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

from beam_pipelines import ingest_digits
from noisystudent import dataset_dir, records


def make_digits_dataset(directory, labels_per_class=10, test_size=200, seed=0) -> str:
    ingest_digits.run(["--output_dir", str(directory), "--labels_per_class", str(labels_per_class),
                       "--test_size", str(test_size), "--seed", str(seed)])
    return str(directory)


def make_pseudo_labeled(data_dir, out_dir, accuracy=0.9, seed=0, prob_format="float32") -> str:
    """Pseudo-labeled records for the 'unlabeled' split: the true label with prob `accuracy`. Record i's
    vector is unique (its next class holds 0.02 + i * 1e-6), so a test can tell which records were read."""
    rng = np.random.default_rng(seed)
    truth = load_digits().target
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(str(out_dir), "train-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i, serialized in enumerate(dataset_dir.iter_split_records(data_dir, "unlabeled")):
            r = records.parse_image_record(serialized)
            label = int(truth[int(r.image_id.split("/")[1])])
            if rng.random() > accuracy:
                label = int(rng.integers(0, 10))
            probs = np.full(10, 0.02, np.float32)
            probs[label] = 0.82
            probs[(label + 1) % 10] += i * 1e-6
            writer.write(records.encode_pseudo_labeled(r.image_id, r.encoded, probs, "test-teacher",
                                                       prob_format))
    return os.path.join(str(out_dir), "train-*.tfrecord")
