"""A benchmark's supervised references: the ceiling (every training label) and a model on the labels alone.

A research dataset keeps the unlabeled images' true classes as `hidden_label`
(ingest-idx, ingest-digits). `write_ceiling_data` makes a dataset directory
whose `labeled` split is the labeled split plus every unlabeled image with its
hidden class as its label; `train_ceiling` trains on it and evaluates on the
original dataset's eval split. This is the one place a hidden label becomes a
training label, and only for the ceiling row of a benchmark. `train_labeled_only`
trains a model as the teacher was (the labeled split alone): with a student
larger than its teacher it tells the method's gain apart from the model's.

The ceiling gets the students' recipe and as many images per step as a student
sees (batch_size x (1 + unlabel_ratio), all labeled; the LR scales with the
batch as everywhere). With the teacher's batch it saw a quarter of the images:
on MNIST that ceiling stopped at 98.68% where this one reaches 99.39%, and the
share of the gap the method closes looked larger than it is.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import posixpath
import time
from typing import Optional

import tensorflow as tf

from noisystudent import dataset_dir, records, run_layout, splits
from noisystudent.errors import RecordAccountingError

NUM_SHARDS = 4


def write_ceiling_data(data: str, out: str, labeled_split: str = splits.LABELED,
                       unlabeled_split: str = splits.UNLABELED) -> dataset_dir.DatasetSummary:
    """labeled + unlabeled-with-its-true-class as one `labeled` split in `out`; every record accounted.

    Refuses (naming the record) a dataset whose unlabeled images keep no true class."""
    if tf.io.gfile.exists(posixpath.join(out, dataset_dir.SUMMARY_FILE)):
        return dataset_dir.load_summary(out)
    source = dataset_dir.load_summary(data)
    tf.io.gfile.makedirs(out)
    paths = [dataset_dir.shard_path(out, splits.LABELED, i, NUM_SHARDS) for i in range(NUM_SHARDS)]
    counts: collections.Counter = collections.Counter()
    read = 0
    with _Writers(paths) as writers:
        for split in (labeled_split, unlabeled_split):
            for serialized in dataset_dir.iter_split_records(data, split):
                record = records.parse_image_record(serialized)
                label = record.label if split == labeled_split else record.hidden_label
                if label is None or label < 0:
                    raise ValueError(
                        f"--data {data}: {split} record {record.image_id!r} keeps no true class "
                        f"({records.HIDDEN_LABEL}); the supervised ceiling needs them (ingest without "
                        "--drop_true_labels, or skip the ceiling)")
                writers.write(read, records.encode_image_record(record.image_id, record.encoded, label))
                counts[label] += 1
                read += 1
    expected = source.split(labeled_split).records + source.split(unlabeled_split).records
    if read != expected:
        raise RecordAccountingError(
            f"ceiling data from {data}: read {read} records, its summary.json counts {expected}")
    dataset_dir.write_summary(out, {
        "splits": {splits.LABELED: {"records": read, "files": [posixpath.basename(p) for p in paths],
                               "labels": {str(k): v for k, v in sorted(counts.items())}}},
        "num_classes": source.num_classes, "class_names": source.class_names, "derived_from": data,
        "accounting": {splits.LABELED: {"input": expected, "written": read, "dead_letter": 0}},
        "note": f"{labeled_split} + {unlabeled_split} with its hidden true classes: the supervised ceiling"})
    return dataset_dir.load_summary(out)


class _Writers:
    """Round-robin TFRecord shards."""

    def __init__(self, paths: list[str]):
        self.writers = [tf.io.TFRecordWriter(p) for p in paths]

    def write(self, index: int, serialized: bytes) -> None:
        self.writers[index % len(self.writers)].write(serialized)

    def __enter__(self) -> "_Writers":
        return self

    def __exit__(self, *exc) -> None:
        for w in self.writers:
            w.close()


def images_per_student_step(config) -> int:
    """A student's images per step: batch_size labeled + batch_size x unlabel_ratio pseudo-labeled."""
    return config.batch_size * (1 + config.unlabel_ratio)


def _recipe(experiment, data: str, seed: int):
    """The loop's teacher recipe on `data`'s labeled split (the experiment's preset and train section)."""
    from trainer.config import get_config, recipe

    return recipe(experiment.preset, {**experiment.train, "mode": "supervised"}, labeled_data=data,
                  labeled_split=splits.LABELED, eval_split=experiment.eval_split or get_config(experiment.preset).eval_split,
                  seed=seed)


def _train_or_reuse(config) -> dict:
    """Train `config` unless its output_dir holds a finished model; {"top1_accuracy", "seconds"}."""
    import keras

    from trainer import task

    start = time.time()
    report_path = posixpath.join(config.output_dir, run_layout.EVAL_FILE)
    if tf.io.gfile.exists(report_path):
        with tf.io.gfile.GFile(report_path) as f:
            report = json.load(f)
    else:
        keras.backend.clear_session()
        report = task.train(config)
    return {"top1_accuracy": report["top1_accuracy"], "seconds": report.get("train_seconds")
            or _progress_seconds(config.output_dir) or round(time.time() - start, 1)}


def train_ceiling(experiment, data: str, seed_dir: str, seed: int) -> dict:
    """Train (or reuse) the ceiling of the experiment's last student model in seed_dir/ceiling;
    {"top1_accuracy", "labeled", "seconds" (training)}."""
    ceiling_data = write_ceiling_data(data, posixpath.join(seed_dir, run_layout.CEILING_DATA))
    config = _recipe(experiment, data, seed)
    report = _train_or_reuse(dataclasses.replace(
        config, labeled_data=ceiling_data.location, eval_data=config.eval_data or data, model=experiment.models[-1],
        output_dir=posixpath.join(seed_dir, run_layout.CEILING), batch_size=images_per_student_step(config)))
    return {**report, "labeled": ceiling_data.split(splits.LABELED).records}


def train_labeled_only(experiment, data: str, seed_dir: str, seed: int) -> dict:
    """The experiment's last student model as a teacher would be trained: the labeled split alone, in
    seed_dir/labeled_only.

    The reference for a student larger than its teacher: what the larger model gets without pseudo-labels,
    so the method's gain is told apart from the model's."""
    config = _recipe(experiment, data, seed)
    report = _train_or_reuse(dataclasses.replace(config, model=experiment.models[-1],
                                                 output_dir=posixpath.join(seed_dir, run_layout.LABELED_ONLY)))
    return {**report, "labeled": dataset_dir.load_summary(data).split(splits.LABELED).records}


def _progress_seconds(model_dir: str) -> Optional[float]:
    """Training time from the trainer's progress.jsonl (a model trained before eval.json kept it)."""
    path = posixpath.join(model_dir, "progress.jsonl")
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    return json.loads(lines[-1]).get("seconds") if lines else None
