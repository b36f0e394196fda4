"""A dataset directory: sharded TFRecords per split plus summary.json, written last.

    <dir>/<split>-00000-of-00004.tfrecord ...
    <dir>/summary.json     counts per split and class, files, class names

The dataset contract lives here, both ways: `write_summary` (the jobs' last act)
and `load_summary`, which reads summary.json once into a typed, validated
`DatasetSummary` for every reader (trainer, Beam jobs, loop). A directory
without summary.json is incomplete and is refused with a clear error; a
malformed one names the file and the field. Local paths and gs:// work.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import time
from typing import Iterable, Optional

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


@dataclasses.dataclass(frozen=True)
class SplitSummary:
    records: int
    files: tuple[str, ...]  # shard names, relative to the directory
    labels: dict[int, int]  # label -> records (-1: unlabeled)


@dataclasses.dataclass(frozen=True)
class DatasetSummary:
    """summary.json of a complete dataset directory, read and validated once."""

    location: str
    splits: dict[str, SplitSummary]
    num_classes: Optional[int]
    class_names: Optional[list[str]]
    prob_format: str  # of prediction / pseudo-labeled records ("float32" for image records)
    fields: dict  # everything as written (job-specific: stats, accounting, teacher, ...)

    def split(self, name: str) -> SplitSummary:
        if name not in self.splits:
            raise KeyError(f"{self.location} has no split {name!r} (it has: {', '.join(self.splits) or 'none'})")
        return self.splits[name]

    def split_files(self, name: str) -> list[str]:
        return [posixpath.join(self.location, f) for f in self.split(name).files]


def write_summary(output_dir: str, summary: dict) -> str:
    """Write summary.json last: its presence means the directory is complete."""
    path = posixpath.join(output_dir, SUMMARY_FILE)
    summary = dict(summary, written_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    return path


def load_summary(dataset_dir: str) -> DatasetSummary:
    """The dataset's summary, typed; a clear error if the directory is incomplete or the file malformed."""
    path = posixpath.join(dataset_dir, SUMMARY_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{dataset_dir} has no {SUMMARY_FILE}: the job that writes it did not finish "
            "(or this is not a dataset directory)"
        )
    with tf.io.gfile.GFile(path) as f:
        try:
            raw = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    try:
        splits = {name: SplitSummary(int(s["records"]), tuple(s["files"]),
                                     {int(k): int(v) for k, v in s.get("labels", {}).items()})
                  for name, s in raw["splits"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: malformed 'splits' ({type(e).__name__}: {e})") from None
    num_classes = raw.get("num_classes")
    return DatasetSummary(dataset_dir, splits, int(num_classes) if num_classes else None, raw.get("class_names"),
                          raw.get("prob_format", "float32"), raw)


def read_summary(dataset_dir: str) -> dict:
    """summary.json as written (validated by `load_summary`)."""
    return load_summary(dataset_dir).fields


def split_files(dataset_dir: str, split: str) -> list[str]:
    """The shard files of a split of a complete dataset directory."""
    return load_summary(dataset_dir).split_files(split)


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
