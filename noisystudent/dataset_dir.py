"""A dataset directory: sharded TFRecords per split plus summary.json, written last.

    <dir>/<split>-00000-of-00004.tfrecord ...
    <dir>/summary.json     counts per split and class, files, class names

Readers (trainer, Beam jobs) go through here: a directory without summary.json
is incomplete and is refused with a clear error. Local paths and gs:// work.
"""

from __future__ import annotations

import json
import posixpath
from typing import Iterable

import tensorflow as tf

from noisystudent import records

SUMMARY_FILE = "summary.json"


class RecordAccountingError(RuntimeError):
    """A job's output does not account for its input (records lost or invented): no summary.json."""


def shard_path(output_dir: str, split: str, shard: int, num_shards: int) -> str:
    return posixpath.join(
        output_dir, f"{split}-{shard:05d}-of-{num_shards:05d}{records.TFRECORD_SUFFIX}"
    )


def split_pattern(output_dir: str, split: str) -> str:
    """Glob matching every shard of a split."""
    return posixpath.join(output_dir, f"{split}-*-of-*{records.TFRECORD_SUFFIX}")


def read_summary(dataset_dir: str) -> dict:
    """Load a complete dataset's summary; a clear error if the dir is incomplete."""
    path = posixpath.join(dataset_dir, SUMMARY_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{dataset_dir} has no {SUMMARY_FILE}: the job that writes it did not finish "
            "(or this is not a dataset directory)"
        )
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def split_files(dataset_dir: str, split: str) -> list[str]:
    """The shard files of a split of a complete dataset directory."""
    summary = read_summary(dataset_dir)
    if split not in summary["splits"]:
        raise KeyError(
            f"{dataset_dir} has no split {split!r} (it has: {', '.join(summary['splits'])})"
        )
    return [posixpath.join(dataset_dir, f) for f in summary["splits"][split]["files"]]


def resolve_files(location: str, split: str, dry_run: bool = False) -> list[str]:
    """A dataset dir + split, or a glob of TFRecord files; errors name what was missing.

    In a dry run nothing is read: the glob (or the split's shard pattern) is returned as is.
    """
    is_glob = any(c in location for c in "*?[")
    if dry_run:
        return [location if is_glob else split_pattern(location, split)]
    if is_glob:
        files = sorted(tf.io.gfile.glob(location))
        if not files:
            raise FileNotFoundError(f"no files match {location}")
        return files
    return split_files(location, split)


def iter_split_records(dataset_dir: str, split: str) -> Iterable[bytes]:
    """Serialized records of one split, shard by shard (small data and tests; not a hot path)."""
    for path in split_files(dataset_dir, split):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            yield record
