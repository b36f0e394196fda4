"""The record schemas: what a writer encodes, every reader gets back."""

import numpy as np
import pytest
import tensorflow as tf

from noisystudent import example_wire, records


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
    scalars = records.read_prediction_scalars(data, 3)
    assert (scalars.label, scalars.confidence) == (1, pytest.approx(0.7))


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


def _proto_feature(kind: str, values) -> tf.train.Feature:
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).tolist()))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def test_wire_encoder_matches_protobuf():
    rng = np.random.default_rng(0)
    write = {"bytes": example_wire.bytes_feature, "float": example_wire.float_feature,
             "int64": example_wire.int64_feature}
    for trial in range(300):
        features = {}
        for f in range(int(rng.integers(0, 7))):
            kind = ["bytes", "float", "int64"][int(rng.integers(3))]
            n = int(rng.integers(0, 40 if trial % 10 else 400))  # long lists: multi-byte lengths
            if kind == "bytes":
                values = [rng.bytes(int(rng.integers(0, 300))) for _ in range(n)]
            elif kind == "float":
                values = rng.normal(size=n).astype(np.float32) * 10.0 ** float(rng.integers(-30, 30))
            else:
                values = [int(v) for v in rng.integers(-(2 ** 63), 2 ** 63 - 1, size=n, dtype=np.int64)]
            key = "".join(rng.choice(list("ab/_éz9"), size=int(rng.integers(1, 12))))
            features[key] = (kind, values)
        expected = tf.train.Example(features=tf.train.Features(
            feature={k: _proto_feature(kind, v) for k, (kind, v) in features.items()}))
        for key, (kind, values) in features.items():  # each Feature: the same bytes
            assert write[kind](values) == expected.features.feature[key].SerializeToString(), (key, kind)
        got = example_wire.example({k: write[kind](v) for k, (kind, v) in features.items()})
        assert tf.train.Example.FromString(got) == expected and len(got) == expected.ByteSize()
        assert got == example_wire.example(dict(reversed(list(  # insertion order does not matter
            {k: write[kind](v) for k, (kind, v) in features.items()}.items()))))


def test_record_writers_write_valid_examples():
    probs = np.array([0.1, 0.7, 0.2], np.float32)
    data = records.encode_prediction("id/ü", "gs://b/shard-0.tfrecord", probs, "teacher-1", "top_k:2")
    assert len(data) == tf.train.Example.FromString(data).ByteSize()
    data = records.encode_image_record("x/1", b"img")  # label -1: a ten-byte varint
    assert len(data) == tf.train.Example.FromString(data).ByteSize()
    assert tf.train.Example.FromString(data).features.feature[records.LABEL].int64_list.value == [-1]
