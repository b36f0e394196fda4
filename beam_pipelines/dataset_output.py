"""Deterministic, sharded TFRecord output with a dead-letter file and a summary.

Layout of an output directory written by a job:

    <dir>/<split>-00000-of-00004.tfrecord ...   records, shard = hash(seed, key)
    <dir>/dead_letter.jsonl                     bad inputs with reasons (if any)
    <dir>/summary.json                          written LAST: marks the dir complete

Shard assignment and the order inside a shard are pure functions of
(seed, record key), so a re-run or a retried bundle writes identical files.
A writer holds one shard's records to sort them: size shards moderately
(--num_shards), as TFDS does.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
import posixpath
import uuid
from array import array
from typing import Iterable, Mapping, NamedTuple, Optional

import apache_beam as beam
import numpy as np
import tensorflow as tf

from noisystudent.dataset_dir import REPORT_FILE, SUMMARY_FILE, is_glob, shard_path, split_pattern
from noisystudent.errors import OutputIsInputError, RecordAccountingError
from noisystudent.stable_random import stable_hash64

DEAD_LETTER_FILE = "dead_letter.jsonl"
TARGET_RECORDS_PER_SHARD = 4096

log = logging.getLogger(__name__)


class ShardedRecord(NamedTuple):
    """One record bound for `<dir>/<split>-*.tfrecord`; `key` fixes its shard and order."""

    split: str
    key: str
    serialized: bytes
    label: int


class CopiedRecord(NamedTuple):
    """`copies` identical records (keys `<key>#0` .. `<key>#<copies-1>`), each placed as a ShardedRecord
    of that key would be. The bytes cross the shuffle once per shard the copies land in, not once
    per copy: an image duplicated 130,000 times costs at most the shard count in shuffle bytes."""

    split: str
    key: str
    copies: int
    serialized: bytes
    label: int


def copy_key(key: str, copy: int) -> str:
    return f"{key}#{copy}"


def shards_for(num_records: int, records_per_shard: int = TARGET_RECORDS_PER_SHARD) -> int:
    """A moderate shard count for an expected number of records."""
    return max(1, math.ceil(num_records / records_per_shard))


def group_by_shard(batch: Iterable, seed: int, num_shards: Mapping[str, int]) -> dict[tuple[str, int], list]:
    """ShardedRecords / CopiedRecords -> {(split, shard): [(serialized, label, key, hashes, copies)]}: what
    crosses the shuffle. A record's bytes appear once per shard its copies land in; each copy costs 12
    bytes there (`hashes`: its 64-bit hashes, `copies`: its copy numbers, packed arrays; None for a
    plain record, whose key is used as it is)."""
    groups: dict[tuple[str, int], list] = {}
    for r in batch:
        if r.split not in num_shards:
            raise ValueError(f"record {r.key!r}: no shard count for split {r.split!r}")
        n = num_shards[r.split]
        if isinstance(r, ShardedRecord):
            h = stable_hash64(seed, r.key)  # one hash: the shard, and the order inside it
            groups.setdefault((r.split, h % n), []).append((r.serialized, r.label, r.key, array("Q", [h]).tobytes(),
                                                            None))
            continue
        placed: dict[int, tuple[array, array]] = {}
        for copy in range(r.copies):
            h = stable_hash64(seed, copy_key(r.key, copy))
            hashes, copies = placed.setdefault(h % n, (array("Q"), array("I")))
            hashes.append(h)
            copies.append(copy)
        for shard, (hashes, copies) in placed.items():
            groups.setdefault((r.split, shard), []).append((r.serialized, r.label, r.key, hashes.tobytes(),
                                                            copies.tobytes()))
    return groups


def expand_shard_entries(entries: Iterable) -> list[tuple[int, str, bytes, int]]:
    """group_by_shard's entries for one shard -> (hash, key, serialized, label) of every record it holds."""
    items = []
    for serialized, label, key, packed_hashes, packed_copies in entries:
        hashes = array("Q")
        hashes.frombytes(packed_hashes)
        if packed_copies is None:
            keys = [key]
        else:
            copies = array("I")
            copies.frombytes(packed_copies)
            keys = [copy_key(key, c) for c in copies]
        items.extend((h, k, serialized, label) for h, k in zip(hashes, keys))
    return items


class _WriteShardFn(beam.DoFn):
    def __init__(self, output_dir: str, num_shards: dict[str, int]):
        self._output_dir = output_dir
        self._num_shards = num_shards
        self._written = beam.metrics.Metrics.counter("dataset_output", "records_written")
        self._shuffled = beam.metrics.Metrics.counter("dataset_output", "serialized_records_shuffled")

    def process(self, element):
        (split, shard), groups = element
        entries = [entry for group in groups for entry in group]
        self._shuffled.inc(len(entries))
        items = sorted(expand_shard_entries(entries))  # by (hash, key): deterministic
        path = shard_path(self._output_dir, split, shard, self._num_shards[split])
        tmp_path = f"{path}.tmp-{uuid.uuid4().hex}"
        labels: dict[int, int] = {}
        with tf.io.TFRecordWriter(tmp_path) as writer:
            for _, _, serialized, label in items:
                writer.write(serialized)
                labels[label] = labels.get(label, 0) + 1
        # A retried bundle rewrites identical bytes; rename makes the shard appear whole.
        tf.io.gfile.rename(tmp_path, path, overwrite=True)
        self._written.inc(len(items))
        yield {
            "split": split,
            "file": posixpath.basename(path),
            "records": len(items),
            "labels": {str(k): v for k, v in sorted(labels.items())},
        }


class WriteShardedTFRecords(beam.PTransform):
    """ShardedRecords -> deterministic shards; outputs one report dict per shard.

    With `batched=True` each input element is a list of ShardedRecords or CopiedRecords (e.g. one
    model call's output): they are grouped by shard before the shuffle, so the
    shuffle moves one element per (batch, shard) instead of one per record, and a
    CopiedRecord's bytes once per shard its copies land in.
    """

    def __init__(self, output_dir: str, num_shards: dict[str, int], seed: int, batched: bool = False):
        super().__init__()
        self._output_dir = output_dir
        self._num_shards = dict(num_shards)
        self._seed = seed
        self._batched = batched

    def expand(self, pcoll):
        seed, num_shards = self._seed, self._num_shards

        def by_shard(batch: Iterable):
            return group_by_shard(batch, seed, num_shards).items()

        keyed = (pcoll | "KeyByShard" >> beam.FlatMap(by_shard) if self._batched
                 else pcoll | "KeyByShard" >> beam.FlatMap(lambda r: by_shard([r])))
        return (
            keyed
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(_WriteShardFn(self._output_dir, num_shards))
        )


class WriteDeadLetters(beam.PTransform):
    """Dicts with at least a 'reason' -> dead_letter.jsonl; outputs one count report per split.

    A dead letter's split is its 'split' field, else `split` (the job's one output split); it
    counts as its 'records' field (an unreadable tail of a shard: the records lost), else one.
    """

    def __init__(self, output_dir: str, split: str = ""):
        super().__init__()
        self._output_dir = output_dir
        self._split = split

    def expand(self, pcoll):
        _ = (
            pcoll
            | "ToJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
            | "WriteDeadLetterFile"
            >> beam.io.WriteToText(
                posixpath.join(self._output_dir, DEAD_LETTER_FILE),
                shard_name_template="",
            )
        )
        default = self._split
        return (pcoll | "SplitOfDeadLetter" >> beam.Map(lambda d: (d.get("split", default), d.get("records", 1)))
                | "CountDeadLetters" >> beam.CombinePerKey(sum)
                | "DeadLetterReport" >> beam.MapTuple(lambda split, n: {"dead_letter": {split: n}}))


class WriteReport(beam.PTransform):
    """Report dicts -> one JSON list in <dir>/_report.json (read by the driver)."""

    def __init__(self, output_dir: str):
        super().__init__()
        self._output_dir = output_dir

    def expand(self, pcoll):
        path = posixpath.join(self._output_dir, REPORT_FILE)

        def write(items: list[dict]) -> str:
            items = sorted(items, key=lambda d: json.dumps(d, sort_keys=True))
            with tf.io.gfile.GFile(path, "w") as f:
                json.dump(items, f)
            return path

        return pcoll | "CollectReports" >> beam.combiners.ToList() | "WriteReportFile" >> beam.Map(write)


# ---------------------------------------------------------------- driver side
def check_output_apart(output_dir: str, inputs: Mapping[str, Iterable[str]]) -> None:
    """Refuse an output dir equal to, inside or containing an input, before anything is touched: an
    --overwrite run there would delete or mix with what it reads (or, for ingest-folder, ingest its
    own output). `inputs`: flag -> paths: folders and files, or a glob (the output may then not be a
    folder the glob reads from)."""
    out_path = _comparable(output_dir)
    for flag, paths in inputs.items():
        for path in paths:
            if is_glob(path):
                folder = _comparable(posixpath.dirname(path))
                relation = "is a folder that" if _matches_folder(out_path, folder) else None
            else:
                in_path = _comparable(path)
                relation = ("is" if out_path == in_path else "is inside" if _is_under(out_path, in_path)
                            else "contains" if _is_under(in_path, out_path) else None)
            if relation:
                raise OutputIsInputError(
                    f"--output_dir {output_dir} {relation} the input {flag} {path}"
                    f"{' reads from' if relation.endswith('that') else ''}: a run there would delete or "
                    "overwrite what it reads; choose an output directory apart from every input")


def _matches_folder(path: str, folder_pattern: str) -> bool:
    """Does a glob's folder part (segment by segment, as gfile globs match) match this folder?"""
    parts, pattern = path.split("/"), folder_pattern.split("/")
    return len(parts) == len(pattern) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pattern))


def _comparable(path: str) -> str:
    """A path normalised for comparison: local paths absolute with links resolved, gs:// as written."""
    path = path.rstrip("/") or "/"
    if "://" in path:
        return path
    return os.path.realpath(path)


def _is_under(path: str, parent: str) -> bool:
    return path.startswith(parent.rstrip("/") + "/")


OVERWRITE_HELP = "Replace a complete output directory."
DATASET_OVERWRITE_HELP = "Replace a complete dataset already in --output_dir."


def prepare_output_dir(output_dir: str, splits: Iterable[str], overwrite: bool,
                       other_outputs: Iterable[str] = ()) -> None:
    """Make the dir; refuse to mix with an earlier complete run unless overwrite.

    Removes the completion marker first, so an interrupted run never looks complete,
    then stale shards of the splits about to be written, files matching the job's
    `other_outputs` globs (relative to output_dir), and the `beam-temp-*` folders Beam's
    file sinks leave behind when a run is killed.
    """
    summary = posixpath.join(output_dir, SUMMARY_FILE)
    if tf.io.gfile.exists(summary) and not overwrite:
        raise FileExistsError(
            f"{output_dir} already holds a complete dataset ({SUMMARY_FILE}); "
            "pass --overwrite to replace it"
        )
    tf.io.gfile.makedirs(output_dir)
    stale = [summary, posixpath.join(output_dir, REPORT_FILE),
             posixpath.join(output_dir, DEAD_LETTER_FILE)]
    for split in splits:
        stale += tf.io.gfile.glob(split_pattern(output_dir, split))
        stale += tf.io.gfile.glob(split_pattern(output_dir, split) + ".tmp-*")
    for pattern in other_outputs:
        stale += tf.io.gfile.glob(posixpath.join(output_dir, pattern))
    for path in stale:
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    remove_beam_temp_dirs(output_dir)


def remove_beam_temp_dirs(output_dir: str) -> None:
    """Beam's file sinks write into `<dir>/beam-temp-<name>-<uuid>/` and move files out when done."""
    for path in tf.io.gfile.glob(posixpath.join(output_dir, "beam-temp-*")):
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)


def summarize_reports(output_dir: str, expected_splits: Iterable[str] = ()) -> dict:
    """Fold the pipeline's report into counts per split and class."""
    path = posixpath.join(output_dir, REPORT_FILE)
    with tf.io.gfile.GFile(path) as f:
        reports = json.load(f)
    splits: dict[str, dict] = {
        s: {"records": 0, "labels": {}, "files": []} for s in expected_splits
    }
    dead: dict[str, int] = {}
    totals: dict = {}
    for item in reports:
        if "dead_letter" in item:
            for split, n in item["dead_letter"].items():
                dead[split] = dead.get(split, 0) + n
            continue
        if "totals" in item:
            totals = _merge_totals(totals, item["totals"])
            continue
        split = splits.setdefault(item["split"], {"records": 0, "labels": {}, "files": []})
        split["records"] += item["records"]
        split["files"].append(item["file"])
        split.setdefault("file_records", {})[item["file"]] = item["records"]
        for label, count in item["labels"].items():
            split["labels"][label] = split["labels"].get(label, 0) + count
    for split in splits.values():
        split["files"].sort()
        split["file_records"] = dict(sorted(split.get("file_records", {}).items()))
        split["labels"] = dict(sorted(split["labels"].items(), key=lambda kv: int(kv[0])))
    tf.io.gfile.remove(path)
    summary = {"splits": dict(sorted(splits.items())), "dead_letter": sum(dead.values()),
               "dead_letter_by_split": dict(sorted(dead.items()))}
    if totals:
        summary["totals"] = totals
    return summary


def check_accounting(output_dir: str, summary: dict, inputs: dict[str, int],
                     dead: Optional[dict[str, int]] = None,
                     balances: Iterable[tuple[str, int, dict[str, int]]] = ()) -> dict:
    """Prove count(in) = count(written) + count(dead) per split, from what the job wrote.

    `inputs` are counted where records enter (a listing, a file's size, a read
    counter); written counts are the shard writers' reports after closing their
    files, and every reported shard must be on disk, with no other shard of the
    split beside it. `dead` overrides the dead-letter count of a split (default:
    the dead-letter file's lines of that split); `balances` are further
    (name, count in, {part: count}) equations the job proves. On success the
    proof is stored in summary["accounting"]; otherwise RecordAccountingError
    names the split and the numbers, and the caller writes no summary.json, so
    readers refuse the directory.
    """
    dead = {**summary.get("dead_letter_by_split", {}), **(dead or {})}
    accounting, problems = {}, []
    for split, n_in in sorted(inputs.items()):
        entry = summary["splits"].get(split, {"records": 0, "files": []})
        parts = {"written": entry["records"], "dead_letter": dead.get(split, 0)}
        accounting[split] = {"input": n_in, **parts}
        problems += _unbalanced(f"split {split!r}", n_in, parts)
        on_disk = {posixpath.basename(f) for f in tf.io.gfile.glob(split_pattern(output_dir, split))}
        reported = set(entry["files"])
        if reported - on_disk:
            problems.append(f"split {split!r}: shards reported but not on disk: {sorted(reported - on_disk)[:5]}")
        if on_disk - reported:
            problems.append(f"split {split!r}: shards on disk that no writer reported: "
                            f"{sorted(on_disk - reported)[:5]}")
    for name, n_in, parts in balances:
        accounting[name] = {"input": n_in, **parts}
        problems += _unbalanced(name, n_in, parts)
    if problems:
        raise RecordAccountingError(f"{output_dir}: record accounting failed, summary.json not written: "
                                    + "; ".join(problems))
    summary["accounting"] = accounting
    return summary


def _unbalanced(name: str, n_in: Optional[int], parts: dict[str, int]) -> list[str]:
    if n_in is not None and n_in == sum(parts.values()):
        return []
    shown = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in parts.items())
    if n_in is None:
        return [f"{name}: the input count is missing (the runner reported no counter), {shown}"]
    return [f"{name}: {n_in} records in, {shown} ({n_in - sum(parts.values()):+d} unaccounted for)"]


def _merge_totals(a: dict, b: dict) -> dict:
    """Add numbers (and nested lists of numbers, element-wise); merge nested dicts."""
    merged = dict(a)
    for key, value in b.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict):
            merged[key] = _merge_totals(merged[key], value)
        elif isinstance(value, list):
            merged[key] = (np.asarray(merged[key]) + np.asarray(value)).tolist()
        else:
            merged[key] = merged[key] + value
    return merged
