"""The on-disk record schemas: the one place feature names and dtypes live.

Every reader and writer of the project imports this module; no feature name
is spelled anywhere else. Records are tf.train.Example protos in TFRecord files.

- Image record:          image/encoded, image/id, label (-1 when unlabeled),
                         hidden_label (optional: an unlabeled image's true class, research setups)
- Prediction record:     image/id, source, probabilities, label, confidence, teacher,
                         hidden_label (copied from the image record when present)
- Pseudo-labeled record: image record fields + probabilities, confidence, teacher

`hidden_label` is for measuring pseudo-label precision (select's stats.json and
decision table); no training input reads it (image_feature_spec leaves it out).

`label` and `confidence` are scalars so a histogram pass never touches the
probability vector. Probabilities are stored in one of three formats:

| format     | features written                                  | bytes / prediction record |
|------------|---------------------------------------------------|---------------------------|
| float32    | probabilities (float list)                        | 4*C + ~200 (C=1000: 4,211)|
| float16    | probabilities/float16 (bytes, little-endian)      | 2*C + ~200 (C=1000: 2,219)|
| top_k:K    | probabilities/top_k_classes, .../top_k_values,    | ~6*K + ~290 (K=5: 323)    |
|            | probabilities/num_classes                         |                           |

(~200 bytes are the id, source path, teacher name and feature keys; measured
with a 22-character id and a 46-character source.) At 300M images and 1,000
classes: 1.26 TB float32, 0.67 TB float16, 97 GB top_k:5.

top-k renormalises nothing: the mass outside the top K is dropped, and a soft
target rebuilt from it sums to less than one (the trainer renormalises).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from noisystudent import example_wire

IMAGE_ENCODED = "image/encoded"
IMAGE_ID = "image/id"
LABEL = "label"
SOURCE = "source"
PROBABILITIES = "probabilities"
PROBABILITIES_FLOAT16 = "probabilities/float16"
TOP_K_CLASSES = "probabilities/top_k_classes"
TOP_K_VALUES = "probabilities/top_k_values"
PROB_NUM_CLASSES = "probabilities/num_classes"
CONFIDENCE = "confidence"
TEACHER = "teacher"
HIDDEN_LABEL = "hidden_label"
EMBEDDING = "embedding"

UNLABELED = -1
TFRECORD_SUFFIX = ".tfrecord"


class RecordError(ValueError):
    """A record that does not follow its schema; the message names the field."""


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    image_id: str
    encoded: bytes
    label: int = UNLABELED
    hidden_label: Optional[int] = None


class _TeacherLabel:
    """label (argmax) and confidence (max) derived from `probabilities`."""

    probabilities: np.ndarray

    @property
    def label(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def confidence(self) -> float:
        return float(np.max(self.probabilities))


@dataclasses.dataclass(frozen=True)
class Prediction(_TeacherLabel):
    image_id: str
    source: str
    probabilities: np.ndarray
    teacher: str


@dataclasses.dataclass(frozen=True)
class PseudoLabeledRecord(_TeacherLabel):
    image_id: str
    encoded: bytes
    probabilities: np.ndarray
    teacher: str


# ---------------------------------------------------------------- features
# Writers build the wire bytes directly (example_wire: byte-identical to protobuf's
# deterministic serialization, ~4x faster); readers parse with protobuf / tf.io.
def _bytes(values: list[bytes]) -> bytes:
    return example_wire.bytes_feature(values)


def _int64(values: list[int]) -> bytes:
    return example_wire.int64_feature(values)


def _float(values) -> bytes:
    return example_wire.float_feature(values)


def parse_probability_format(spec: str) -> tuple[str, int]:
    """'float32' | 'float16' | 'top_k:K' -> (kind, k); raises naming the flag value."""
    if spec in ("float32", "float16"):
        return spec, 0
    if spec.startswith("top_k:"):
        try:
            k = int(spec.split(":", 1)[1])
        except ValueError:
            k = 0
        if k >= 1:
            return "top_k", k
    raise ValueError(
        f"probability format {spec!r} is not one of 'float32', 'float16', 'top_k:K' (K >= 1)"
    )


def _probability_features(probs: np.ndarray, prob_format: str) -> dict[str, bytes]:
    kind, k = parse_probability_format(prob_format)
    probs = np.asarray(probs, dtype=np.float32)
    if kind == "float32":
        return {PROBABILITIES: _float(probs)}
    if kind == "float16":
        return {PROBABILITIES_FLOAT16: _bytes([probs.astype("<f2").tobytes()])}
    k = min(k, probs.shape[0])
    top = np.argsort(-probs, kind="stable")[:k]
    return {
        TOP_K_CLASSES: _int64(top.tolist()),
        TOP_K_VALUES: _float(probs[top]),
        PROB_NUM_CLASSES: _int64([int(probs.shape[0])]),
    }


def _feature_map(serialized: bytes, what: str) -> Mapping[str, tf.train.Feature]:
    try:
        return tf.train.Example.FromString(serialized).features.feature
    except Exception as e:  # protobuf raises DecodeError
        raise RecordError(f"{what}: not a serialized tf.train.Example ({e})") from None


def _require(features: Mapping[str, tf.train.Feature], key: str, kind: str, what: str):
    if key not in features:
        raise RecordError(f"{what}: missing feature {key!r}")
    values = getattr(features[key], kind).value
    if len(values) == 0:
        raise RecordError(f"{what}: feature {key!r} is empty (expected {kind})")
    return values


def _read_probabilities(features: Mapping[str, tf.train.Feature], what: str) -> np.ndarray:
    if PROBABILITIES in features:
        probs = np.asarray(features[PROBABILITIES].float_list.value, dtype=np.float32)
    elif PROBABILITIES_FLOAT16 in features:
        raw = _require(features, PROBABILITIES_FLOAT16, "bytes_list", what)[0]
        if len(raw) % 2:
            raise RecordError(f"{what}: {PROBABILITIES_FLOAT16!r} has an odd byte length")
        probs = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    elif TOP_K_CLASSES in features:
        classes = np.asarray(_require(features, TOP_K_CLASSES, "int64_list", what), np.int64)
        values = np.asarray(_require(features, TOP_K_VALUES, "float_list", what), np.float32)
        n = int(_require(features, PROB_NUM_CLASSES, "int64_list", what)[0])
        if len(classes) != len(values) or n < 1 or classes.min() < 0 or classes.max() >= n:
            raise RecordError(f"{what}: inconsistent top-k probabilities")
        probs = np.zeros(n, np.float32)
        probs[classes] = values
    else:
        raise RecordError(
            f"{what}: missing feature {PROBABILITIES!r} (or its float16 / top-k forms)"
        )
    if probs.size == 0:
        raise RecordError(f"{what}: feature {PROBABILITIES!r} is empty")
    if not np.all(np.isfinite(probs)):
        raise RecordError(f"{what}: probabilities contain NaN or infinity")
    return probs


def _record_name(features: Mapping[str, tf.train.Feature]) -> str:
    if IMAGE_ID in features and features[IMAGE_ID].bytes_list.value:
        return f"record {features[IMAGE_ID].bytes_list.value[0].decode('utf-8', 'replace')!r}"
    return "record without image/id"


def peek_image_id(serialized: bytes) -> str:
    """The record's image/id, or "" when it has none or does not parse (for dead letters)."""
    try:
        features = tf.train.Example.FromString(serialized).features.feature
    except Exception:
        return ""
    if IMAGE_ID in features and features[IMAGE_ID].bytes_list.value:
        return features[IMAGE_ID].bytes_list.value[0].decode("utf-8", "replace")
    return ""


# ---------------------------------------------------------------- image records
def encode_image_record(image_id: str, encoded: bytes, label: int = UNLABELED,
                        hidden_label: Optional[int] = None) -> bytes:
    """Serialize an image record (encoded JPEG/PNG bytes, stable id, 0-based label or -1; an unlabeled
    image's true class as `hidden_label`, which no training input reads)."""
    return example_wire.example(_image_features(image_id, encoded, label, hidden_label))


def _image_features(image_id: str, encoded: bytes, label: int, hidden_label: Optional[int]) -> dict[str, bytes]:
    if not image_id:
        raise RecordError("image record: empty image/id")
    features = {
        IMAGE_ID: _bytes([image_id.encode("utf-8")]),
        IMAGE_ENCODED: _bytes([encoded]),
        LABEL: _int64([int(label)]),
    }
    if hidden_label is not None:
        features[HIDDEN_LABEL] = _int64([int(hidden_label)])
    return features


def _hidden_label(features: Mapping[str, tf.train.Feature]) -> Optional[int]:
    if HIDDEN_LABEL in features and features[HIDDEN_LABEL].int64_list.value:
        return int(features[HIDDEN_LABEL].int64_list.value[0])
    return None


def parse_image_record(serialized: bytes) -> ImageRecord:
    """Parse an image record; RecordError names the record and the field at fault."""
    features = _feature_map(serialized, "image record")
    what = _record_name(features)
    image_id = _require(features, IMAGE_ID, "bytes_list", what)[0].decode("utf-8")
    encoded = _require(features, IMAGE_ENCODED, "bytes_list", what)[0]
    label = UNLABELED
    if LABEL in features and features[LABEL].int64_list.value:
        label = int(features[LABEL].int64_list.value[0])
    return ImageRecord(image_id=image_id, encoded=encoded, label=label, hidden_label=_hidden_label(features))


def encode_sample_record(image_id: str, encoded: bytes, label: int, confidence: Optional[float] = None) -> bytes:
    """An image of a selection's sample pictures: its teacher's class and, for a near miss, confidence."""
    features = _image_features(image_id, encoded, label, None)
    if confidence is not None:
        features[CONFIDENCE] = _float([confidence])
    return example_wire.example(features)


def parse_sample_record(serialized: bytes) -> tuple[ImageRecord, Optional[float]]:
    """(image record, the teacher's confidence or None) of `encode_sample_record`."""
    features = _feature_map(serialized, "sample record")
    confidence = features[CONFIDENCE].float_list.value if CONFIDENCE in features else []
    return parse_image_record(serialized), float(confidence[0]) if confidence else None


# ---------------------------------------------------------------- predictions
def encode_predictions(
    image_ids: Sequence[str],
    source: str,
    probabilities: np.ndarray,
    teacher: str,
    prob_format: str = "float32",
    hidden_labels: Optional[Sequence[Optional[int]]] = None,
) -> list[bytes]:
    """Serialize a teacher's predictions for images of one source file ([N, C] probabilities)."""
    constant = {SOURCE: _bytes([source.encode("utf-8")]), TEACHER: _bytes([teacher.encode("utf-8")])}
    return _encode_labelled(image_ids, None, probabilities, constant, prob_format, hidden_labels)


def encode_prediction(
    image_id: str,
    source: str,
    probabilities: np.ndarray,
    teacher: str,
    prob_format: str = "float32",
) -> bytes:
    """Serialize a teacher's prediction for one image."""
    return encode_predictions([image_id], source, np.asarray(probabilities)[None], teacher, prob_format)[0]


def _encode_labelled(image_ids: Sequence[str], images: Optional[Sequence[bytes]], probabilities: np.ndarray,
                     constant: dict[str, bytes], prob_format: str,
                     hidden_labels: Optional[Sequence[Optional[int]]] = None) -> list[bytes]:
    """Records with a teacher's labels: the batch's scalars computed at once, bytes per record."""
    probs = np.asarray(probabilities, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[0] != len(image_ids):
        raise ValueError(f"probabilities of shape {probs.shape} for {len(image_ids)} images")
    parse_probability_format(prob_format)
    labels, confidence = probs.argmax(axis=1).tolist(), probs.max(axis=1)
    out = []
    for i, image_id in enumerate(image_ids):
        feature = dict(constant)
        feature[IMAGE_ID] = _bytes([image_id.encode("utf-8")])
        if images is not None:
            feature[IMAGE_ENCODED] = _bytes([images[i]])
        feature[LABEL] = _int64([labels[i]])
        feature[CONFIDENCE] = _float(confidence[i:i + 1])
        feature.update(_probability_features(probs[i], prob_format))
        if hidden_labels is not None and hidden_labels[i] is not None:
            feature[HIDDEN_LABEL] = _int64([int(hidden_labels[i])])
        out.append(example_wire.example(feature))
    return out


def parse_prediction(serialized: bytes, num_classes: Optional[int] = None) -> Prediction:
    """Parse a prediction record; checks finiteness and (if given) the class count."""
    features = _feature_map(serialized, "prediction record")
    what = _record_name(features)
    image_id = _require(features, IMAGE_ID, "bytes_list", what)[0].decode("utf-8")
    source = _require(features, SOURCE, "bytes_list", what)[0].decode("utf-8")
    teacher = b""
    if TEACHER in features and features[TEACHER].bytes_list.value:
        teacher = features[TEACHER].bytes_list.value[0]
    probs = _read_probabilities(features, what)
    if num_classes is not None and probs.shape[0] != num_classes:
        raise RecordError(
            f"{what}: {probs.shape[0]} probabilities, expected {num_classes} classes"
        )
    return Prediction(image_id, source, probs, teacher.decode("utf-8"))


@dataclasses.dataclass(frozen=True)
class PredictionScalars:
    image_id: str
    source: str
    label: int
    confidence: float
    teacher: str
    hidden_label: Optional[int] = None


def _probability_count(features: Mapping[str, tf.train.Feature], what: str) -> int:
    """How many classes the probability vector holds, without decoding it."""
    if PROBABILITIES in features:
        return len(features[PROBABILITIES].float_list.value)
    if PROBABILITIES_FLOAT16 in features:
        return len(_require(features, PROBABILITIES_FLOAT16, "bytes_list", what)[0]) // 2
    if TOP_K_CLASSES in features:
        return int(_require(features, PROB_NUM_CLASSES, "int64_list", what)[0])
    raise RecordError(f"{what}: missing feature {PROBABILITIES!r} (or its float16 / top-k forms)")


def read_prediction_scalars(serialized: bytes, num_classes: Optional[int] = None) -> PredictionScalars:
    """A prediction's id, source, label, confidence and teacher, checked, without decoding its probability vector
    (4 us a record at 1,000 classes against 52 us for `parse_prediction`): what selection's passes need.
    The vector's length is checked against `num_classes`; its values are read when the record is used."""
    features = _feature_map(serialized, "prediction record")
    what = _record_name(features)
    image_id = _require(features, IMAGE_ID, "bytes_list", what)[0].decode("utf-8")
    source = _require(features, SOURCE, "bytes_list", what)[0].decode("utf-8")
    label = int(_require(features, LABEL, "int64_list", what)[0])
    confidence = float(_require(features, CONFIDENCE, "float_list", what)[0])
    if not math.isfinite(confidence):
        raise RecordError(f"{what}: confidence is not finite (NaN or infinity in the probabilities)")
    if num_classes is not None:
        count = _probability_count(features, what)
        if count != num_classes:
            raise RecordError(f"{what}: {count} probabilities, expected {num_classes} classes")
        if not 0 <= label < num_classes:
            raise RecordError(f"{what}: label {label} outside 0..{num_classes - 1}")
    teacher = features[TEACHER].bytes_list.value[0].decode("utf-8") if TEACHER in features and \
        features[TEACHER].bytes_list.value else ""
    return PredictionScalars(image_id, source, label, confidence, teacher, _hidden_label(features))


# ---------------------------------------------------------------- pseudo-labeled
def encode_pseudo_labeled_batch(
    image_ids: Sequence[str],
    encoded_images: Sequence[bytes],
    probabilities: np.ndarray,
    teacher: str,
    prob_format: str = "float32",
) -> list[bytes]:
    """Serialize student training records: images plus the teacher's labels ([N, C] probabilities)."""
    if len(encoded_images) != len(image_ids):
        raise ValueError(f"{len(encoded_images)} images for {len(image_ids)} ids")
    constant = {TEACHER: _bytes([teacher.encode("utf-8")])}
    return _encode_labelled(image_ids, encoded_images, probabilities, constant, prob_format)


def encode_pseudo_labeled(
    image_id: str,
    encoded: bytes,
    probabilities: np.ndarray,
    teacher: str,
    prob_format: str = "float32",
) -> bytes:
    """Serialize a student training record: the image plus the teacher's labels."""
    return encode_pseudo_labeled_batch([image_id], [encoded], np.asarray(probabilities)[None], teacher,
                                       prob_format)[0]


def parse_pseudo_labeled(serialized: bytes) -> PseudoLabeledRecord:
    """Parse a pseudo-labeled record."""
    features = _feature_map(serialized, "pseudo-labeled record")
    what = _record_name(features)
    image_id = _require(features, IMAGE_ID, "bytes_list", what)[0].decode("utf-8")
    encoded = _require(features, IMAGE_ENCODED, "bytes_list", what)[0]
    teacher = b""
    if TEACHER in features and features[TEACHER].bytes_list.value:
        teacher = features[TEACHER].bytes_list.value[0]
    return PseudoLabeledRecord(image_id, encoded, _read_probabilities(features, what),
                               teacher.decode("utf-8"))


def encode_embedding(image_id: str, vector: np.ndarray) -> bytes:
    """An image's embedding (features command): image/id + embedding float list."""
    feature = {IMAGE_ID: _bytes([image_id.encode("utf-8")]),
               EMBEDDING: _float(np.asarray(vector, np.float32).ravel())}
    return example_wire.example(feature)


# ---------------------------------------------------------------- tf.data specs
def image_feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """Feature spec for tf.io.parse_example over image records."""
    return {
        IMAGE_ID: tf.io.FixedLenFeature([], tf.string),
        IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
        LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=UNLABELED),
    }


def pseudo_labeled_feature_spec(num_classes: int) -> dict[str, tf.io.FixedLenFeature]:
    """Feature spec for float32 pseudo-labeled records (the selection job's default)."""
    spec = image_feature_spec()
    spec[PROBABILITIES] = tf.io.FixedLenFeature([num_classes], tf.float32)
    spec[CONFIDENCE] = tf.io.FixedLenFeature([], tf.float32)
    return spec


def parse_pseudo_labeled_batch(serialized: tf.Tensor, num_classes: int, prob_format: str = "float32"):
    """[N] serialized pseudo-labeled records -> (encoded [N], label [N], probabilities [N, C])."""
    kind, k = parse_probability_format(prob_format)
    spec = {IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
            LABEL: tf.io.FixedLenFeature([], tf.int64)}
    if kind == "float32":
        spec[PROBABILITIES] = tf.io.FixedLenFeature([num_classes], tf.float32)
    elif kind == "float16":
        spec[PROBABILITIES_FLOAT16] = tf.io.FixedLenFeature([], tf.string)
    else:
        k = min(k, num_classes)
        spec[TOP_K_CLASSES] = tf.io.FixedLenFeature([k], tf.int64)
        spec[TOP_K_VALUES] = tf.io.FixedLenFeature([k], tf.float32)
    parsed = tf.io.parse_example(serialized, spec)
    if kind == "float32":
        probs = parsed[PROBABILITIES]
    elif kind == "float16":
        probs = tf.cast(tf.io.decode_raw(parsed[PROBABILITIES_FLOAT16], tf.float16), tf.float32)
        probs = tf.ensure_shape(probs, [None, num_classes])
    else:
        probs = tf.reduce_sum(tf.one_hot(parsed[TOP_K_CLASSES], num_classes)
                              * parsed[TOP_K_VALUES][..., None], axis=1)
    return parsed[IMAGE_ENCODED], parsed[LABEL], probs
