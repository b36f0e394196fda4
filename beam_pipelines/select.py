"""Step 3 of the method: keep confident pseudo labels, balance classes, write student data.

    python -m beam_pipelines.select --predictions runs/demo/predictions \\
        --num_image 120 --output_dir runs/demo/pseudo

One pipeline (the original needed 2 x 128 processes polling each other's files):

1. ParsePredictions: prediction records -> (label, confidence bucket); malformed
   ones (NaN, wrong length, missing fields) -> dead_letter.jsonl.
2. ConfidenceHistograms: a CombineFn, [classes x buckets] counts.
3. Thresholds and expected copies per class, computed once from the histogram
   (beam_pipelines/selection_rules.py) and used as a side input.
4. SelectAndBalance: keep/copy decisions, a pure function of (seed, image id),
   on a second read of the predictions (holding N predictions until the
   thresholds are known would cost memory in N; reading again costs little).
5. FetchSelectedImages: selected predictions grouped by `source` file; each
   source file is read once and its selected images emitted with their copies.
   Image bytes are never shuffled to meet their predictions.
6. WritePseudoLabeled: <output_dir>/train-*.tfrecord, shard and order from a
   hash of (seed, id, copy), so copies of an image are spread out.

Outputs beside the data: summary.json (the dataset contract the trainer reads),
stats.json (per class: histogram, threshold, total above it, kept unique,
written with copies, and the ids of the near misses shown), histograms.png,
samples.png (kept images per class) and near_misses.png (rejected but close:
per class, the most confident of a bounded sample of images within 0.1 below
its threshold, each with its confidence).
--stats_only writes the histograms and thresholds without images.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import posixpath
from typing import Iterator, NamedTuple, Optional, Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf

from beam_pipelines import dataset_output as out
from beam_pipelines import selection_rules
from beam_pipelines.job_runner import JobPlan, run_job
from beam_pipelines.pipeline_options import beam_flags_epilog, counter_value, is_dry_run, normalise_beam_args
from beam_pipelines.progress import Progress, expected_records
from beam_pipelines.tfrecord_reader import (ALLOW_DAMAGED_HELP, DamagedTFRecordFile, damaged_file_dead_letter,
                                            read_tfrecords)
from noisystudent import dataset_dir, records, splits
from noisystudent.errors import SelectionRefused
from noisystudent.stable_random import stable_hash64, stable_uniform
from noisystudent.typed_flags import add_flags, flag, parse

SPLIT = splits.PSEUDO_LABELED
PREDICTIONS = splits.PREDICTIONS  # the input, as named in the dead letters and the accounting
COPIES_SELECTED = beam.metrics.Metrics.counter("select", "copies_selected")  # one object, not one per element
DEAD = "dead_letter"
SAMPLES = "samples"
KEPT = "kept"
RECORDS = "records"
DECISIONS = "decisions"
DECISIONS_PREFIX = "decisions"
TRUTH = "truth"  # "predicted:true" for kept candidates whose image carries a hidden label
STATS_FILE = dataset_dir.STATS_FILE
SAMPLES_FILE = "_samples.tfrecord"
NEAR_MISSES = "near_misses"
NEAR_MISSES_FILE = "_near_misses.tfrecord"
HISTOGRAMS_PLOT, SAMPLES_PLOT, NEAR_MISSES_PLOT = PLOT_FILES = ("histograms.png", "samples.png", "near_misses.png")
MAX_OUTPUT_RATIO = 100  # written / kept unique images above which select refuses (runaway copies)
WARN_COPIES = 10  # copies per kept image above which select warns for the class

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SelectConfig:
    """The select job's knobs (also its flags: noisystudent/typed_flags.py)."""

    predictions: str = flag(help="The predict job's output dir, or a glob of prediction records.")
    output_dir: str = flag(help="Where the pseudo-labeled records go.")
    num_image: int = flag(help="Images per class after balancing (SVHN used 53,113; ImageNet 130,000).")
    num_classes: int = flag(0, help="Classes (0: from the predictions' records).")
    min_threshold: float = flag(0.3, help="Lowest confidence kept.")
    max_prob: float = flag(2.0, help="Highest confidence kept (the original's default 2, filter_unlabel.py:71: "
                                     "none dropped; lower it to drop near-duplicates of the labeled set).")
    num_buckets: int = flag(101, help="Histogram buckets over [0, 1].")
    no_upsample: bool = flag(False, help="Never duplicate images of poor classes (the cap still applies).")
    max_copies: int = flag(0, help="Most copies of one image (0: no cap, the original's behaviour).")
    allow_large_output: bool = flag(False, help=f"Write an output over {MAX_OUTPUT_RATIO}x the kept unique images "
                                                "(refused by default: runaway copies).")
    allow_damaged_input: bool = flag(False, help=ALLOW_DAMAGED_HELP)
    prob_format: str = flag("float32", help="float32 | float16 | top_k:K in the output.")
    stats_only: bool = flag(False, help="Write histograms and thresholds (stats.json, histograms.png) only.")
    no_decision_table: bool = flag(False, help="Skip decisions-*.parquet (one row per prediction: kept or not, "
                                               "and why).")
    samples_per_class: int = flag(8, help="Images per class in samples.png and near_misses.png (0: neither).")
    records_per_shard: int = flag(out.TARGET_RECORDS_PER_SHARD, help="Target records per output shard.")
    seed: int = flag(0, help="Seed of every keep/copy/shard decision.")
    overwrite: bool = flag(False, help=out.OVERWRITE_HELP)

    def validate(self) -> None:
        if self.num_image < 1:
            raise ValueError(f"--num_image must be >= 1, got {self.num_image}")
        if not 0 <= self.min_threshold <= 1:
            raise ValueError(f"--min_threshold must be in [0, 1], got {self.min_threshold}")
        if self.max_prob < self.min_threshold:
            raise ValueError(f"--max_prob ({self.max_prob}) is below --min_threshold ({self.min_threshold})")
        if self.num_buckets < 2:
            raise ValueError(f"--num_buckets must be >= 2, got {self.num_buckets}")
        if self.max_copies < 0:
            raise ValueError(f"--max_copies must be >= 1 (or 0: no cap), got {self.max_copies}")
        if self.records_per_shard < 1:
            raise ValueError(f"--records_per_shard must be >= 1, got {self.records_per_shard}")
        if self.samples_per_class < 0:
            raise ValueError(f"--samples_per_class must be >= 0, got {self.samples_per_class}")
        if self.num_classes < 0:
            raise ValueError(f"--num_classes must be >= 1 (or 0: from the predictions), got {self.num_classes}")
        records.parse_probability_format(self.prob_format)


def build_parser() -> argparse.ArgumentParser:
    return add_flags(argparse.ArgumentParser(prog="noisystudent select", description=__doc__.split("\n\n")[0],
                                             epilog=beam_flags_epilog()), SelectConfig)


class Candidate(NamedTuple):
    """A readable prediction at most --max_prob, as both passes see it (the vector still encoded)."""

    label: int
    bucket: int
    image_id: str
    source: str
    serialized: bytes
    confidence: float
    teacher: str
    hidden_label: Optional[int]


class ParsePredictions(beam.DoFn):
    """Serialized prediction -> Candidate; bad ones -> dead letter; above --max_prob -> a decision row.

    The job reads the predictions twice (histograms, then selection) instead of
    holding them all until the thresholds are known; only the first pass
    (`report=True`) counts and writes dead letters, only the second writes
    decision rows. Both read only the scalars (records.read_prediction_scalars:
    id, source, label, confidence, teacher and the vector's length): the
    probability vector is decoded once, for selected predictions, in
    FetchSelectedImages (a damaged one is a dead letter there).
    """

    def __init__(self, num_classes: int, num_buckets: int, max_prob: float, report: bool = True,
                 decisions: bool = False, expected: int = 0):
        self._num_classes, self._num_buckets, self._max_prob = num_classes, num_buckets, max_prob
        self._report, self._decisions = report, decisions
        self._progress = Progress(f"select: read predictions (pass {1 if report else 2} of 2)", "predictions",
                                  expected)
        self._read = beam.metrics.Metrics.counter("select", "predictions_read")
        self._bad = beam.metrics.Metrics.counter("select", "dead_letter")
        self._above_max = beam.metrics.Metrics.counter("select", "above_max_prob")

    def process(self, serialized: bytes) -> Iterator:
        self._progress.add()
        if self._report:
            self._read.inc()
        try:
            p = records.read_prediction_scalars(serialized, self._num_classes)  # the vector stays encoded
        except records.RecordError as e:
            if self._report:
                self._bad.inc()
                yield beam.pvalue.TaggedOutput(DEAD, {"id": records.peek_image_id(serialized), "split": PREDICTIONS,
                                                      "reason": str(e)})
            return
        if p.confidence > self._max_prob:
            if self._report:
                self._above_max.inc()
            if self._decisions:
                yield beam.pvalue.TaggedOutput(DECISIONS, decision_row(p, None, 0, REASON_ABOVE_MAX))
            return
        yield Candidate(p.label, selection_rules.bucket_of(p.confidence, self._num_buckets), p.image_id, p.source,
                        serialized, p.confidence, p.teacher, p.hidden_label)


# The decision table (docs: README "Select"): one row per readable prediction.
DECISION_SCHEMA_FIELDS = (("image_id", "string"), ("source", "string"), ("teacher", "string"),
                          ("predicted_class", "int64"), ("confidence", "float32"), ("threshold", "float32"),
                          ("kept", "bool_"), ("copies", "int64"), ("reason", "string"), ("true_label", "int64"))
REASON_ABOVE_MAX = "above --max_prob"
REASON_BELOW = "below its class's threshold"
REASON_DRAW = "not drawn: the balance draw gave it 0 copies"


def decision_row(p, threshold: Optional[float], copies: int, reason: str) -> dict:
    return {"image_id": p.image_id, "source": p.source, "teacher": p.teacher, "predicted_class": p.label,
            "confidence": p.confidence, "threshold": threshold, "kept": copies > 0, "copies": copies,
            "reason": reason, "true_label": p.hidden_label}


def decision_schema():
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in DECISION_SCHEMA_FIELDS])


class ConfidenceHistogramFn(beam.CombineFn):
    """(label, bucket) -> [classes, buckets] int64 counts; memory independent of N."""

    def __init__(self, num_classes: int, num_buckets: int):
        self._shape = (num_classes, num_buckets)

    def create_accumulator(self):
        return np.zeros(self._shape, np.int64)

    def add_input(self, acc, element):
        acc[element[0], element[1]] += 1
        return acc

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        total = next(accumulators).copy()
        for acc in accumulators:
            total += acc
        return total

    def extract_output(self, acc):
        return acc


class NearMiss(NamedTuple):
    """A rejected candidate just below its class's threshold, offered to near_misses.png (no copies)."""

    image_id: str
    label: int
    confidence: float


class DecideCopies(beam.DoFn):
    """Keep/copy decision for one Candidate, given the per-class plan (side input: threshold bucket,
    expected copies, threshold, near-miss band's lowest bucket, near-miss sampling rate); selected
    ones and sampled near misses go to their source file; with `decisions`, one decision row per
    candidate on the DECISIONS output."""

    def __init__(self, seed: int, decisions: bool):
        self._seed, self._decisions = seed, decisions

    def process(self, c: Candidate, plan: list) -> Iterator:
        threshold_bucket, expected, threshold, near_bucket, near_rate = plan[c.label]
        copies = 0
        if c.bucket >= threshold_bucket and expected > 0:
            copies = selection_rules.copies_for(self._seed, c.image_id, expected)
        if copies:
            COPIES_SELECTED.inc(copies)
            yield c.source, (c.image_id, copies, c.serialized)
            if c.hidden_label is not None:
                yield beam.pvalue.TaggedOutput(TRUTH, f"{c.label}:{c.hidden_label}")
        elif (near_bucket <= c.bucket < threshold_bucket
              and stable_uniform(self._seed, c.image_id, NEAR_MISSES) < near_rate):
            yield c.source, NearMiss(c.image_id, c.label, c.confidence)
        if self._decisions:
            reason = "" if copies else REASON_BELOW if c.bucket < threshold_bucket else REASON_DRAW
            yield beam.pvalue.TaggedOutput(DECISIONS, decision_row(c, threshold, copies, reason))


DUPLICATE_REASON = ("another prediction for this image id was selected too; kept the most confident "
                    "(ties: the smallest record)")


def one_prediction_per_image(selected) -> tuple[dict, list]:
    """Selected (image_id, copies, serialized prediction) of one source -> ({id: (copies, serialized)},
    the dropped duplicates). Two predictions of one image (a re-run appended to a directory, two
    teachers' outputs mixed) keep the most confident, ties broken by the smaller serialized record:
    the choice depends on the predictions, never on the order a GroupByKey delivers them."""
    by_id: dict[str, list] = {}
    for item in selected:
        by_id.setdefault(item[0], []).append(item)
    wanted, dropped = {}, []
    for image_id, items in by_id.items():
        if len(items) > 1:
            items = sorted(items, key=lambda item: (-records.read_prediction_scalars(item[2]).confidence, item[2]))
            dropped += items[1:]
        wanted[image_id] = items[0][1:]
    return wanted, sorted(dropped, key=lambda item: (item[0], item[2]))


class FetchSelectedImages(beam.DoFn):
    """(source file, selected predictions) -> pseudo-labeled records, each source read once.

    Per source file it emits lists of CopiedRecords (at most ~16 MB each, for
    the batched shard writer; an image's bytes once, whatever its copies), (label, kept count) pairs and at most
    `samples_per_class` sample images and near misses per class: no per-image
    element leaves it. A near miss whose image is missing is only not shown.
    """

    MAX_BATCH_BYTES = 16 << 20

    def __init__(self, prob_format: str, samples_per_class: int, seed: int):
        self._format, self._samples, self._seed = prob_format, samples_per_class, seed
        self._missing = beam.metrics.Metrics.counter("select", "missing_images")
        self._missing_copies = beam.metrics.Metrics.counter("select", "copies_missing")
        self._written = beam.metrics.Metrics.counter("select", "records_written")
        self._duplicates = beam.metrics.Metrics.counter("select", "duplicate_predictions")
        self._duplicate_copies = beam.metrics.Metrics.counter("select", "copies_duplicate")
        self._damaged_copies = beam.metrics.Metrics.counter("select", "copies_damaged")

    def process(self, element) -> Iterator:
        source, items = element
        near = {item.image_id: item for item in items if isinstance(item, NearMiss)}
        wanted, duplicates = one_prediction_per_image([item for item in items if not isinstance(item, NearMiss)])
        for image_id, copies, _ in duplicates:
            self._duplicates.inc()
            self._duplicate_copies.inc(copies)
            yield beam.pvalue.TaggedOutput(DEAD, {"id": image_id, "source": source, "split": SPLIT,
                                                  "copies": copies, "reason": DUPLICATE_REASON})
        found: set[str] = set()
        kept: dict[int, int] = {}
        samples: dict[int, list] = {}
        near_samples: dict[int, list] = {}
        batch, batch_bytes = [], 0
        try:
            for raw in read_tfrecords(source):
                image_id = records.peek_image_id(raw)
                if image_id in near:
                    miss = near.pop(image_id)  # the most confident first, ties by hash
                    key = (-miss.confidence, stable_hash64(self._seed, image_id, NEAR_MISSES))
                    self._sample(near_samples, miss.label,
                                 (key, image_id, records.parse_image_record(raw).encoded, miss.confidence))
                if image_id not in wanted or image_id in found:
                    continue
                found.add(image_id)
                try:
                    selected_records = self._records(raw, *wanted[image_id], kept, samples)
                except records.RecordError as e:  # its probability vector, first decoded here
                    self._damaged_copies.inc(wanted[image_id][0])
                    yield beam.pvalue.TaggedOutput(DEAD, {"id": image_id, "source": source, "split": SPLIT,
                                                          "copies": wanted[image_id][0], "reason": str(e)})
                    continue
                for record in selected_records:
                    batch.append(record)
                    batch_bytes += len(record.serialized)
                if batch_bytes >= self.MAX_BATCH_BYTES:
                    yield self._flush(batch)
                    batch, batch_bytes = [], 0
        except (DamagedTFRecordFile, OSError) as e:  # OSError: missing or unreadable file
            reason = f"source file unreadable: {str(e).splitlines()[0][:200]}"
        else:
            reason = f"no image with this id in its source file {source}"
        if batch:
            yield self._flush(batch)
        for label, n in sorted(kept.items()):
            yield beam.pvalue.TaggedOutput(KEPT, (label, n))
        for tag, pools in ((SAMPLES, samples), (NEAR_MISSES, near_samples)):
            for label, pool in sorted(pools.items()):
                for item in sorted(pool)[: self._samples]:
                    yield beam.pvalue.TaggedOutput(tag, (label, item))
        for image_id in sorted(set(wanted) - found):
            self._missing.inc()
            self._missing_copies.inc(wanted[image_id][0])
            yield beam.pvalue.TaggedOutput(DEAD, {"id": image_id, "source": source, "split": SPLIT,
                                                  "copies": wanted[image_id][0], "reason": reason})

    def _sample(self, pools: dict, label: int, item: tuple) -> None:
        """Keep the `samples_per_class` items (key, image id, encoded, confidence or None) with the
        smallest keys per class (a random sample by hash; near misses: the most confident), in bounded
        memory."""
        if not self._samples:
            return
        pool = pools.setdefault(label, [])
        pool.append(item)
        if len(pool) > 4 * self._samples:
            pool[:] = sorted(pool)[: self._samples]

    def _flush(self, batch: list) -> list:
        self._written.inc(sum(r.copies for r in batch))
        return batch

    def _records(self, raw: bytes, copies: int, serialized_prediction: bytes, kept: dict, samples: dict):
        pred = records.parse_prediction(serialized_prediction)  # first, so a damaged one counts nothing
        image = records.parse_image_record(raw)
        record = records.encode_pseudo_labeled(image.image_id, image.encoded, pred.probabilities,
                                               pred.teacher, self._format)
        label = pred.label
        kept[label] = kept.get(label, 0) + 1
        self._sample(samples, label, (stable_hash64(self._seed, image.image_id, "sample"), image.image_id,
                                      image.encoded, None))
        return [out.CopiedRecord(SPLIT, image.image_id, copies, record, label)]  # one element, not one per copy


def prediction_classes(inputs: dataset_dir.InputFiles) -> int:
    """Class count of the predictions: their summary.json's, else the first readable record's vector."""
    if inputs.num_classes:
        return inputs.num_classes
    for path in inputs.files[:4]:
        try:
            for raw in itertools.islice(read_tfrecords(path), 64):
                try:
                    return int(records.parse_prediction(raw).probabilities.shape[0])
                except records.RecordError:
                    continue
        except DamagedTFRecordFile:
            continue
    raise ValueError(f"--predictions {inputs.location}: no readable prediction record in {inputs.files[:4]} "
                     "to take the class count from: pass --num_classes")


def check_num_classes(config: SelectConfig, inputs: dataset_dir.InputFiles) -> int:
    """--num_classes must match the predictions (both numbers and the file named); 0 takes theirs."""
    found = prediction_classes(inputs)
    if config.num_classes and config.num_classes != found:
        where = "its summary.json" if inputs.num_classes else "the probability vector of its first record"
        raise ValueError(f"--num_classes {config.num_classes}, but --predictions {inputs.location} holds "
                         f"{found}-class predictions ({where}); drop --num_classes or pass {found}")
    return found


def check_output_ratio_bound(config: SelectConfig, inputs: dataset_dir.InputFiles) -> None:
    """Before any pipeline: a class with images above its threshold writes num_image of them from at most
    all the predictions, so num_image / predictions bounds the output ratio from below."""
    if config.allow_large_output or config.no_upsample or inputs.declared is None or not inputs.declared:
        return
    copies = config.max_copies or math.inf
    if min(config.num_image / inputs.declared, copies) > MAX_OUTPUT_RATIO:
        raise SelectionRefused(
            f"--num_image {config.num_image:,} from {inputs.declared:,} predictions: every kept image would be "
            f"written at least {config.num_image / inputs.declared:,.1f} times (over {MAX_OUTPUT_RATIO}x the "
            "kept unique images); lower --num_image, cap copies with --max_copies N, or pass --allow_large_output")


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """The command line: flags -> SelectConfig -> `run_config`."""
    config, beam_args = parse(SelectConfig, build_parser(), argv)
    return run_config(config, beam_args, save_main_session, test_pipeline)


def run_config(config: SelectConfig, beam_args: Sequence[str] = (), save_main_session: bool = True,
               test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """Run the job; returns the summary (with per-class stats) written to <output_dir>."""
    config.validate()
    dry_run = is_dry_run(normalise_beam_args(beam_args))
    if dry_run and not config.num_classes:
        raise ValueError("a dry run reads no predictions: pass --num_classes")
    inputs = dataset_dir.resolve_input(config.predictions, PREDICTIONS, dry_run)
    if not dry_run:
        config = dataclasses.replace(config, num_classes=check_num_classes(config, inputs))
        check_output_ratio_bound(config, inputs)
    num_shards = {SPLIT: out.shards_for(config.num_image * config.num_classes, config.records_per_shard)}
    expected = expected_records(config.predictions, PREDICTIONS, beam_args, dry_run)
    plan = JobPlan(config.output_dir, num_shards, config.overwrite,
                   build=lambda p: _build(p, config, inputs, num_shards, expected),
                   finish=lambda summary, result: _finish(summary, result, config, inputs),
                   summarized_splits=() if config.stats_only else None,
                   other_outputs=[DECISIONS_PREFIX + "-*.parquet", STATS_FILE, SAMPLES_FILE, NEAR_MISSES_FILE,
                                  *PLOT_FILES],
                   inputs={"--predictions": inputs.guarded})
    return run_job(plan, beam_args, save_main_session, test_pipeline)


def writes_decisions(config: SelectConfig) -> bool:
    return not (config.stats_only or config.no_decision_table)


class ReadPredictionFiles(beam.DoFn):
    """A prediction file -> its serialized records. A damaged file (unreadable mid-way, or not holding
    the records its summary.json declares) stops the job, naming it; with `allow_damaged` the first
    pass (`report`) dead-letters its unreadable part, counting as the records lost."""

    def __init__(self, declared: dict[str, int], allow_damaged: bool, report: bool):
        self._declared, self._allow_damaged, self._report = dict(declared), allow_damaged, report
        self._read = beam.metrics.Metrics.counter("select", "predictions_read")
        self._bad = beam.metrics.Metrics.counter("select", "dead_letter")

    def process(self, path: str) -> Iterator:
        try:
            yield from read_tfrecords(path, self._declared.get(path))
        except DamagedTFRecordFile as e:
            dead = damaged_file_dead_letter(e, self._allow_damaged, split=PREDICTIONS)
            if self._report:
                self._read.inc(dead["records"])
                self._bad.inc()
                yield beam.pvalue.TaggedOutput(DEAD, dead)


class ReadPredictions(beam.PTransform):
    """Prediction files -> Candidates, dead letters (first pass) and above-max decision rows (second)."""

    def __init__(self, config: SelectConfig, declared: dict[str, int], report: bool, expected: int = 0):
        super().__init__()
        self._config, self._declared, self._report, self._expected = config, declared, report, expected

    def expand(self, files):
        c = self._config
        parse = ParsePredictions(c.num_classes, c.num_buckets, c.max_prob, self._report,
                                 decisions=writes_decisions(c) and not self._report, expected=self._expected)
        read = (files | "SpreadFiles" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(ReadPredictionFiles(self._declared, c.allow_damaged_input, self._report))
                .with_outputs(DEAD, main="records"))
        parsed = read.records | "Parse" >> beam.ParDo(parse).with_outputs(DEAD, DECISIONS, main=PREDICTIONS)
        dead = (read[DEAD], parsed[DEAD]) | "DeadLetters" >> beam.Flatten()
        return {PREDICTIONS: parsed[PREDICTIONS], DEAD: dead, DECISIONS: parsed[DECISIONS]}  # built here


class SelectPseudoLabels(beam.PTransform):
    """Prediction files + the per-class plan (a side input) -> the keep/copy draw, each source file
    read once: records, kept counts per class, sample images and dead letters."""

    def __init__(self, config: SelectConfig, declared: dict[str, int], plan, expected: int = 0):
        super().__init__()
        self._config, self._declared, self._plan, self._expected = config, declared, plan, expected

    def expand(self, files):
        c = self._config
        parsed = files | "ReadPredictionsAgain" >> ReadPredictions(c, self._declared, report=False,
                                                                   expected=self._expected)
        decided = (parsed[PREDICTIONS] | "SelectAndBalance" >> beam.ParDo(
            DecideCopies(c.seed, writes_decisions(c)), self._plan).with_outputs(DECISIONS, TRUTH, main="selected"))
        fetched = (decided.selected
                   | "GroupBySource" >> beam.GroupByKey()
                   | "FetchSelectedImages" >> beam.ParDo(
                       FetchSelectedImages(c.prob_format, c.samples_per_class, c.seed))
                   .with_outputs(DEAD, KEPT, SAMPLES, NEAR_MISSES, main=RECORDS))
        decisions = (parsed[DECISIONS], decided[DECISIONS]) | "AllDecisions" >> beam.Flatten()
        return {**{tag: fetched[tag] for tag in (RECORDS, KEPT, SAMPLES, NEAR_MISSES, DEAD)}, DECISIONS: decisions,
                TRUTH: decided[TRUTH]}


def _build(p: beam.Pipeline, config: SelectConfig, inputs: dataset_dir.InputFiles, num_shards: dict[str, int],
           expected: int = 0) -> None:
    declared = inputs.declared_per_file
    prediction_files = p | "ListPredictionFiles" >> beam.Create(inputs.files)
    parsed = prediction_files | "ReadPredictions" >> ReadPredictions(config, declared, report=True, expected=expected)
    histogram = (parsed[PREDICTIONS] | "LabelAndBucket" >> beam.Map(lambda e: (e[0], e[1]))
                 | "ConfidenceHistograms" >> beam.CombineGlobally(
                     ConfidenceHistogramFn(config.num_classes, config.num_buckets)))
    reports = [histogram | "HistogramReport" >> beam.Map(lambda h: {"totals": {"histogram": h.tolist()}})]
    dead = [parsed[DEAD]]
    if not config.stats_only:
        plan = histogram | "Thresholds" >> beam.Map(lambda h: selection_plan(h, config))
        fetched = prediction_files | "Select" >> SelectPseudoLabels(config, declared, beam.pvalue.AsSingleton(plan),
                                                                    expected)
        reports.append(fetched[RECORDS] | "WritePseudoLabeled" >> out.WriteShardedTFRecords(
            config.output_dir, num_shards, config.seed, batched=True))
        reports.append(fetched[KEPT] | "CountKeptPerClass" >> beam.CombinePerKey(sum)
                       | "KeptReport" >> beam.MapTuple(lambda label, n: {"totals": {"kept_unique": {str(label): n}}}))
        reports.append(fetched[TRUTH] | "CountKeptVsTruth" >> beam.combiners.Count.PerElement()
                       | "TruthReport" >> beam.MapTuple(lambda pair, n: {"totals": {"kept_vs_truth": {pair: n}}}))
        dead.append(fetched[DEAD])
        if config.samples_per_class:
            _write_samples(fetched[SAMPLES], config, SAMPLES_FILE, "Samples")
            _write_samples(fetched[NEAR_MISSES], config, NEAR_MISSES_FILE, "NearMisses")
        if writes_decisions(config):
            _ = fetched[DECISIONS] | "WriteDecisionTable" >> beam.io.WriteToParquet(
                posixpath.join(config.output_dir, DECISIONS_PREFIX), decision_schema(),
                file_name_suffix=".parquet")
    reports.append(dead | "AllDeadLetters" >> beam.Flatten()
                   | "WriteDeadLetters" >> out.WriteDeadLetters(config.output_dir))
    _ = reports | "AllReports" >> beam.Flatten() | "WriteReport" >> out.WriteReport(config.output_dir)


def selection_plan(histogram: np.ndarray, config: SelectConfig) -> list[tuple]:
    """DecideCopies' side input, per class: threshold bucket, expected copies, threshold, near-miss band.

    Computed once, before any image is fetched: it warns for each class whose kept images are copied
    over WARN_COPIES times, and refuses (SelectionRefused, failing the job before it writes) an
    output over MAX_OUTPUT_RATIO x the kept unique images unless --allow_large_output.
    """
    selection = compute(histogram, config)
    check_output_size(selection, config)
    near = selection_rules.near_miss_sampling(histogram, selection, config.samples_per_class)
    return [(s.threshold_bucket, s.expected_copies, s.threshold, n.lowest_bucket, n.rate)
            for s, n in zip(selection, near)]


def compute(histogram: np.ndarray, config: SelectConfig) -> list[selection_rules.ClassSelection]:
    return selection_rules.compute_selection(histogram, config.num_image, config.min_threshold,
                                             not config.no_upsample, config.max_copies)


def check_output_size(selection: list[selection_rules.ClassSelection], config: SelectConfig) -> None:
    for c, s in enumerate(selection):
        if s.expected_copies > WARN_COPIES:
            log.warning("select: class %d: each of its %s images above its threshold %.2f is written %s times on "
                        "average (--num_image %s / %s)%s", c, f"{s.total:,}", s.threshold,
                        f"{s.expected_copies:,.1f}", f"{config.num_image:,}", f"{s.total:,}",
                        "" if config.max_copies else "; --max_copies N caps it")
    size = selection_rules.expected_output(selection)
    if size.ratio > MAX_OUTPUT_RATIO and not config.allow_large_output:
        poor = sorted(range(len(selection)), key=lambda c: -selection[c].expected_copies)[:3]
        raise SelectionRefused(
            f"select would write about {size.written:,.0f} records from {size.kept_unique:,.0f} kept unique images "
            f"({size.ratio:,.1f}x, over {MAX_OUTPUT_RATIO}x): --num_image {config.num_image:,} per class, and "
            + ", ".join(f"class {c} has {selection[c].total:,} images above its threshold "
                        f"({selection[c].expected_copies:,.1f} copies each)" for c in poor)
            + "; lower --num_image, cap copies with --max_copies N, or pass --allow_large_output")


def _write_samples(samples, config: SelectConfig, file_name: str, label: str) -> None:
    """The `samples_per_class` items with the smallest keys per class -> sample records in one file."""
    _ = (samples
         | f"{label}PerClass" >> beam.combiners.Top.SmallestPerKey(config.samples_per_class)
         | f"{label}Records" >> beam.FlatMap(lambda kv: [records.encode_sample_record(image_id, encoded, kv[0], conf)
                                                         for _, image_id, encoded, conf in kv[1]])
         | f"Write{label}" >> beam.io.WriteToTFRecord(posixpath.join(config.output_dir, file_name),
                                                       shard_name_template=""))


def _finish(summary: dict, result, config: SelectConfig, inputs: dataset_dir.InputFiles) -> dict:
    """Prove the counts, then stats.json, the plots and the summary's fields."""
    totals = summary.pop("totals", {})
    histograms = np.asarray(totals.get("histogram", np.zeros((config.num_classes, config.num_buckets))), np.int64)
    _check_select_accounting(config.output_dir, summary, result, int(histograms.sum()), config.stats_only,
                             decision_rows(config) if writes_decisions(config) else None, inputs)
    plan = compute(histograms, config)
    class_names = _class_names(inputs, config.num_classes)
    written = summary["splits"].get(SPLIT, {}).get("labels", {})
    rows = selection_rules.selection_table(histograms, plan, totals.get("kept_unique", {}), written, class_names)
    add_pseudo_label_precision(rows, totals.get("kept_vs_truth", {}))
    samples, near_misses = (_read_samples(config.output_dir, name) for name in (SAMPLES_FILE, NEAR_MISSES_FILE))
    if config.samples_per_class and not config.stats_only:
        for row in rows:  # the ids in near_misses.png, to look up in the decision table
            row["near_misses"] = [{"image_id": r.image_id, "confidence": conf}
                                  for r, conf in near_misses.get(row["class"], [])]
    stats = _write_stats(config, rows, int(histograms.sum()), counter_value(result, "select", "duplicate_predictions"),
                         totals.get("kept_vs_truth", {}))
    _write_plots(config, rows, class_names, samples, near_misses)
    summary.update(job="select", predictions=config.predictions, num_classes=config.num_classes,
                   class_names=class_names, prob_format=config.prob_format, stats_only=config.stats_only,
                   kept_unique=sum(r["kept_unique"] for r in rows), written=sum(r["written"] for r in rows),
                   # Image records that crossed the shuffle to the shard writers: once per (image, shard), not
                   # once per copy (docs/design.md, "Copies").
                   shuffled_records=counter_value(result, "dataset_output", "serialized_records_shuffled") or 0)
    if config.stats_only:
        summary["splits"] = {}
    for r in rows:
        log.info("class %s: threshold %.2f, %d above, %d kept, %d written", r["name"], r["threshold"],
                 r["total_above_threshold"], r["kept_unique"], r["written"])
    return dict(summary, stats=stats)


def add_pseudo_label_precision(rows: list[dict], kept_vs_truth: dict[str, int]) -> None:
    """Per class: kept pseudo-labels whose image carries a true class, and the share that is right."""
    if not kept_vs_truth:
        return
    for row in rows:
        pairs = {key: n for key, n in kept_vs_truth.items() if key.split(":")[0] == str(row["class"])}
        row["kept_with_truth"] = sum(pairs.values())
        correct = pairs.get(f"{row['class']}:{row['class']}", 0)
        row["pseudo_label_precision"] = correct / row["kept_with_truth"] if row["kept_with_truth"] else None


def _write_stats(config: SelectConfig, rows: list[dict], predictions: int, duplicates: Optional[int],
                 kept_vs_truth: dict[str, int]) -> dict:
    stats = {"num_image": config.num_image, "min_threshold": config.min_threshold, "max_prob": config.max_prob,
             "upsample": not config.no_upsample, "num_buckets": config.num_buckets, "seed": config.seed,
             "predictions": predictions, "duplicate_predictions_dropped": duplicates or 0, "classes": rows}
    if kept_vs_truth:  # "predicted:true" -> kept images (research data with hidden labels)
        stats["kept_vs_truth"] = dict(sorted(kept_vs_truth.items()))
        with_truth = sum(kept_vs_truth.values())
        correct = sum(n for key, n in kept_vs_truth.items() if key.split(":")[0] == key.split(":")[1])
        stats["pseudo_label_precision"] = correct / with_truth
    if stats["duplicate_predictions_dropped"]:
        log.warning("%d selected predictions repeated an image id and were dropped (kept the most confident; "
                    "see %s): were two prediction runs mixed?", stats["duplicate_predictions_dropped"],
                    posixpath.join(config.output_dir, out.DEAD_LETTER_FILE))
    with tf.io.gfile.GFile(posixpath.join(config.output_dir, STATS_FILE), "w") as f:
        json.dump(stats, f, indent=1)
    return stats


def _read_samples(output_dir: str, file_name: str) -> dict[int, list]:
    """A sample file the pipeline wrote -> {class: [(image record, confidence or None)]}; the file is removed.
    Near misses come most confident first."""
    path = posixpath.join(output_dir, file_name)
    by_class: dict[int, list] = {}
    if not tf.io.gfile.exists(path):
        return by_class
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        record, confidence = records.parse_sample_record(raw)
        by_class.setdefault(record.label, []).append((record, confidence))
    tf.io.gfile.remove(path)
    for items in by_class.values():
        items.sort(key=lambda item: (-(item[1] or 0.0), item[0].image_id))
    return by_class


def _write_plots(config: SelectConfig, rows: list[dict], class_names: Optional[list], samples: dict,
                 near_misses: dict) -> None:
    from beam_pipelines import selection_plots

    selection_plots.plot_histograms(rows, config.min_threshold, posixpath.join(config.output_dir, HISTOGRAMS_PLOT))
    names = class_names or [str(c) for c in range(config.num_classes)]
    thresholds = {r["class"]: r["threshold"] for r in rows}
    for by_class, file_name, title in ((samples, SAMPLES_PLOT, "kept samples"),
                                       (near_misses, NEAR_MISSES_PLOT, "rejected but close: confidence just below "
                                                                        "the class's threshold t")):
        images = {c: [(r.encoded, conf) for r, conf in items] for c, items in by_class.items()}
        selection_plots.plot_samples(images, names, posixpath.join(config.output_dir, file_name), title,
                                     thresholds if by_class is near_misses else None)


def decision_rows(config: SelectConfig) -> int:
    """Rows in the decision table's files, from their Parquet footers (Beam's FileSystems: gs:// too)."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    total = 0
    for path in tf.io.gfile.glob(posixpath.join(config.output_dir, DECISIONS_PREFIX + "-*.parquet")):
        with FileSystems.open(path) as f:
            total += pq.read_metadata(f).num_rows
    return total


def _check_select_accounting(output_dir: str, summary: dict, result, selectable: int, stats_only: bool,
                             decisions: Optional[int], inputs: dataset_dir.InputFiles) -> None:
    """Every prediction read is selectable, above --max_prob or a dead letter; every copy the
    balance drew is written or dead (its image missing from its source file, a duplicate, or its
    vector damaged); the decision table has one row per readable prediction."""
    def counter(name: str) -> int:
        return counter_value(result, "select", name) or 0  # a counter never incremented is absent

    read_balance = (PREDICTIONS, inputs.count_in(counter("predictions_read"), "--predictions", PREDICTIONS), {
        "selectable": selectable, "above_max_prob": counter("above_max_prob"),
        "dead_letter": summary["dead_letter_by_split"].get(PREDICTIONS, 0)})
    balances = [read_balance]
    if decisions is not None:
        balances.append(("decision_table", selectable + counter("above_max_prob"), {"rows": decisions}))
    inputs = {} if stats_only else {SPLIT: counter("copies_selected")}
    out.check_accounting(output_dir, summary, inputs,
                         dead={SPLIT: counter("copies_missing") + counter("copies_duplicate")
                               + counter("copies_damaged")},
                         balances=balances)


def _class_names(inputs: dataset_dir.InputFiles, num_classes: int) -> Optional[list]:
    names = inputs.class_names
    return list(names) if names and len(names) == num_classes else None


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run()
