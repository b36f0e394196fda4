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
import re
import time
from typing import Iterable, Optional

import tensorflow as tf

from noisystudent import records
from noisystudent.errors import DamagedInputError

SUMMARY_FILE = "summary.json"
STATS_FILE = "stats.json"  # select's per-class thresholds and counts, beside its summary
REPORT_FILE = "_report.json"  # a job's shard reports, read and removed by its driver: only in an unfinished dir
SHARD_NAME = re.compile(r"^[A-Za-z0-9_]+-\d{5,}-of-\d{5,}" + re.escape(records.TFRECORD_SUFFIX) + "$")

def is_glob(location: str) -> bool:
    """A file pattern (tf.io.gfile.glob's wildcards) rather than a dataset dir or one file."""
    return any(c in location for c in "*?[")


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
    file_records: dict[str, int] = dataclasses.field(default_factory=dict)  # shard -> records (empty: undeclared)


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
    raw = read_json(path)
    try:
        splits = {name: SplitSummary(int(s["records"]), tuple(s["files"]),
                                     {int(k): int(v) for k, v in s.get("labels", {}).items()},
                                     {str(k): int(v) for k, v in s.get("file_records", {}).items()})
                  for name, s in raw["splits"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: malformed 'splits' ({type(e).__name__}: {e})") from None
    num_classes = raw.get("num_classes")
    return DatasetSummary(dataset_dir, splits, int(num_classes) if num_classes else None, raw.get("class_names"),
                          raw.get("prob_format", "float32"), raw)


def read_json(path: str) -> dict:
    """A JSON file this project wrote (summary, manifest, stats, eval); a damaged one names the file."""
    with tf.io.gfile.GFile(path) as f:
        try:
            return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not valid JSON ({e}): damaged or cut short; re-run the step that "
                             "writes it") from None


def read_summary(dataset_dir: str) -> dict:
    """summary.json as written (validated by `load_summary`)."""
    return load_summary(dataset_dir).fields


def split_files(dataset_dir: str, split: str) -> list[str]:
    """The shard files of a split of a complete dataset directory."""
    return load_summary(dataset_dir).split_files(split)


@dataclasses.dataclass(frozen=True)
class InputFiles:
    """The files a job reads, and how many records their dataset directories declare for them."""

    location: str  # as given: a dataset dir or a glob
    files: list[str]
    declared: Optional[int]  # records declared for all of `files` (None: not declared, e.g. foreign files)
    declared_per_file: dict[str, int]  # path -> records, for the files whose shard counts are declared
    num_classes: Optional[int] = None  # from the (first) summary.json consulted
    class_names: Optional[list[str]] = None

    def count_in(self, read: int, flag: str, what: str = "records") -> int:
        """count(in): what the input declares, else what its reader counted; the two must agree."""
        if self.declared is None:
            return read
        if read != self.declared:
            raise DamagedInputError(f"{flag} {self.location}: {read:,} {what} read of the {self.declared:,} its "
                                    "summary.json declares (a shard shorter than its job wrote it?); summary.json "
                                    "not written")
        return self.declared

    @property
    def guarded(self) -> list[str]:
        """What an output must stay apart from: the dataset dir, or a glob and every file it matched."""
        if not is_glob(self.location):
            return [self.location]
        return [self.location, *self.files]


def resolve_input(location: str, split: str, dry_run: bool = False) -> InputFiles:
    """A dataset dir + split, or a glob of TFRecord files, with the record counts their summaries declare.

    A glob into a complete dataset directory is checked against its summary.json (every file it
    matches must be a shard the summary lists); a glob into a directory without summary.json that
    shows a job's unfinished output (`unfinished_job_trace`) is refused, since it would read a
    partial output; other files (your own TFRecords) declare no count.
    In a dry run nothing is read: the glob (or the split's shard pattern) is returned as is.
    """
    glob_input = is_glob(location)
    if dry_run:
        return InputFiles(location, [location if glob_input else split_pattern(location, split)], None, {})
    if not glob_input:
        summary = load_summary(location)
        entry = summary.split(split)
        files = summary.split_files(split)
        per_file = {posixpath.join(location, f): n for f, n in entry.file_records.items()}
        return InputFiles(location, files, entry.records, per_file if len(per_file) == len(files) else {},
                          summary.num_classes, summary.class_names)
    files = sorted(tf.io.gfile.glob(location))
    if not files:
        raise FileNotFoundError(f"no files match {location}")
    by_dir: dict[str, list[str]] = {}
    for f in files:
        by_dir.setdefault(posixpath.dirname(f), []).append(f)
    declared: Optional[int] = 0
    per_file: dict[str, int] = {}
    summaries = []
    for directory, matched in sorted(by_dir.items()):
        total, counts, summary = _declared_counts(location, directory, matched)
        per_file.update(counts)
        declared = None if declared is None or total is None else declared + total
        summaries += [summary] if summary else []
    first = summaries[0] if summaries else None
    return InputFiles(location, files, declared, per_file, first and first.num_classes, first and first.class_names)


def _declared_counts(glob: str, directory: str, matched: list[str]
                     ) -> tuple[Optional[int], dict[str, int], Optional[DatasetSummary]]:
    """(records declared for the `matched` files of one directory or None, {path: records} per shard,
    the directory's summary).

    Foreign files (no summary.json and not named like our shards) declare nothing.
    """
    names = [posixpath.basename(f) for f in matched]
    if not tf.io.gfile.exists(posixpath.join(directory, SUMMARY_FILE)):
        trace = unfinished_job_trace(directory)
        if trace:
            raise DamagedInputError(
                f"{glob} matches {len(matched)} file(s) of {directory}, which has no {SUMMARY_FILE} and {trace}: "
                "the job writing it did not finish (or was interrupted), so its shards may be partial; re-run "
                "that job, or point at a complete directory")
        return None, {}, None
    summary = load_summary(directory)
    listed = {f: entry for entry in summary.splits.values() for f in entry.files}
    stray = [n for n in names if n not in listed]
    if stray:
        raise DamagedInputError(
            f"{glob} matches {', '.join(stray[:3])} in the complete dataset {directory}, which its "
            f"{SUMMARY_FILE} does not list (a stale or foreign file); remove it, or narrow the glob")
    per_file = {path: listed[name].file_records[name] for path, name in zip(matched, names)
                if name in listed[name].file_records}
    if len(per_file) == len(matched):
        return sum(per_file.values()), per_file, summary
    # A summary written before shard counts were recorded: only whole splits have a known count.
    entries = {id(listed[n]): listed[n] for n in names}.values()
    if sum(len(e.files) for e in entries) == len(matched):
        return sum(e.records for e in entries), per_file, summary
    return None, per_file, summary


def unfinished_job_trace(directory: str) -> Optional[str]:
    """What shows a directory without summary.json to be a job's unfinished output (None: nothing does):
    its shard reports, shards or Beam sink folders still being written, or a shard set with members missing."""
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(directory)]
    if REPORT_FILE in names:
        return f"holds {REPORT_FILE} (shard reports its job never read)"
    temporary = [n for n in names if ".tfrecord.tmp-" in n or n.startswith("beam-temp-")]
    if temporary:
        return f"holds files still being written ({temporary[0]})"
    shard_sets: dict[tuple[str, str], int] = {}
    for n in names:
        if SHARD_NAME.match(n):
            split, rest = n.rsplit("-of-", 1)[0].rsplit("-", 1)[0], n.rsplit("-of-", 1)[1]
            shard_sets[(split, rest)] = shard_sets.get((split, rest), 0) + 1
    for (split, rest), present in sorted(shard_sets.items()):
        expected = int(rest[: -len(records.TFRECORD_SUFFIX)])
        if present < expected:
            return f"holds {present} of the {expected} shards of {split!r}"
    return None


def resolve_files(location: str, split: str, dry_run: bool = False) -> list[str]:
    """The files of `resolve_input` (a dataset dir + split, or a checked glob)."""
    return resolve_input(location, split, dry_run).files


def iter_split_records(dataset_dir: str, split: str) -> Iterable[bytes]:
    """Serialized records of one split, shard by shard (small data and tests; not a hot path)."""
    for path in split_files(dataset_dir, split):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            yield record
