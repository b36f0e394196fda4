"""The record schemas: what a writer encodes, every reader gets back."""

import numpy as np
import pytest
import tensorflow as tf

from noisystudent import records


def test_image_record_round_trip_and_tf_parse():
    data = records.encode_image_record("svhn/train/000001", b"\x89PNG...", 7)
    parsed = records.parse_image_record(data)
    assert parsed == records.ImageRecord("svhn/train/000001", b"\x89PNG...", 7)
    batch = tf.io.parse_example([data], records.image_feature_spec())
    assert batch[records.LABEL].numpy().tolist() == [7]
    assert batch[records.IMAGE_ID].numpy().tolist() == [b"svhn/train/000001"]


def test_unlabeled_image_record_has_label_minus_one():
    data = records.encode_image_record("x/1", b"img")
    assert records.parse_image_record(data).label == records.UNLABELED


@pytest.mark.parametrize("fmt, tolerance", [("float32", 0.0), ("float16", 1e-3)])
def test_prediction_round_trip(fmt, tolerance):
    probs = np.array([0.1, 0.7, 0.2], np.float32)
    data = records.encode_prediction("id/1", "gs://b/shard-0.tfrecord", probs, "teacher-1", fmt)
    p = records.parse_prediction(data, num_classes=3)
    assert (p.image_id, p.source, p.teacher, p.label) == ("id/1", "gs://b/shard-0.tfrecord", "teacher-1", 1)
    np.testing.assert_allclose(p.probabilities, probs, atol=tolerance)
    assert records.read_label_and_confidence(data) == (1, pytest.approx(0.7))


def test_top_k_keeps_the_k_largest_and_the_class_count():
    probs = np.array([0.05, 0.6, 0.05, 0.25, 0.05], np.float32)
    data = records.encode_prediction("id/1", "src", probs, "t", "top_k:2")
    p = records.parse_prediction(data, num_classes=5)
    np.testing.assert_allclose(p.probabilities, [0, 0.6, 0, 0.25, 0], atol=1e-7)


def test_compact_formats_shrink_many_class_records():
    probs = np.random.default_rng(0).dirichlet(np.ones(1000)).astype(np.float32)
    size = {f: len(records.encode_prediction("id/1", "src", probs, "t", f))
            for f in ("float32", "float16", "top_k:5")}
    assert size["float32"] > 4000 and size["float16"] < 0.6 * size["float32"]
    assert size["top_k:5"] < 0.1 * size["float32"]


def test_pseudo_labeled_round_trip_and_tf_spec():
    probs = np.array([0.2, 0.8], np.float32)
    data = records.encode_pseudo_labeled("id/9", b"jpeg", probs, "t0")
    r = records.parse_pseudo_labeled(data)
    assert (r.image_id, r.encoded, r.label, r.teacher) == ("id/9", b"jpeg", 1, "t0")
    batch = tf.io.parse_example([data], records.pseudo_labeled_feature_spec(2))
    np.testing.assert_allclose(batch[records.PROBABILITIES].numpy(), [probs])


def test_errors_name_the_record_and_field():
    no_image = tf.train.Example()
    no_image.features.feature[records.IMAGE_ID].bytes_list.value.append(b"digits/0042")
    with pytest.raises(records.RecordError, match=r"'digits/0042'.*'image/encoded'"):
        records.parse_image_record(no_image.SerializeToString())
    with pytest.raises(records.RecordError, match="not a serialized"):
        records.parse_image_record(b"\x00garbage\xff")
    nan = records.encode_prediction("id/nan", "s", np.array([np.nan, 1.0]), "t")
    with pytest.raises(records.RecordError, match="'id/nan'.*NaN"):
        records.parse_prediction(nan)
    with pytest.raises(records.RecordError, match="3 probabilities, expected 10"):
        records.parse_prediction(records.encode_prediction("i", "s", np.ones(3) / 3, "t"), 10)
    with pytest.raises(ValueError, match="top_k:K"):
        records.parse_probability_format("top_k:zero")
