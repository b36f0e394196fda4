"""Step 2 of the method: a teacher labels unlabeled images (Beam RunInference), at any scale.

    python -m beam_pipelines.predict --input runs/demo/data --split unlabeled \\
        --model runs/demo/teacher/model.keras --output_dir runs/demo/predictions

reads image records (a dataset dir + --split, or a glob; gs:// works), runs the
teacher in inference mode on chunks of --batch_size images (one element per
chunk all the way to the shard writer: see teacher_inference.py), and writes prediction
records (image/id, source, probabilities, label, confidence, teacher) to
<output_dir>/predictions-*.tfrecord. Records it cannot label (missing
fields, undecodable images) go to dead_letter.jsonl with their id, source and
reason; summary.json checks count(in) = count(predicted) + count(dead letter)
and gives the predicted class histogram and mean confidence.

--relabel: the input is pseudo-labeled records (the selection job's output);
the output keeps every image and id and replaces the labels with the new
teacher's (the original's "reassign" with a better teacher).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from typing import Iterator, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import PredictionResult, RunInference

from beam_pipelines import dataset_output as out
from beam_pipelines.job_runner import JobPlan, run_job
from beam_pipelines.pipeline_options import beam_flags_epilog, counter_value, is_dry_run, normalise_beam_args
from beam_pipelines.progress import expected_records
from beam_pipelines.read_ahead import read_ahead
from beam_pipelines.teacher_inference import ImageChunk, KerasTeacherHandler
from beam_pipelines.tfrecord_reader import (ALLOW_DAMAGED_HELP, DamagedTFRecordFile, damaged_file_dead_letter,
                                            read_tfrecords)
from noisystudent import dataset_dir, records, splits
from noisystudent.teacher import PRECISIONS, ChunkLabels, check_class_count, model_input_size
from noisystudent.typed_flags import add_flags, flag, parse

PREDICTIONS_SPLIT = splits.PREDICTIONS
RELABELED_SPLIT = splits.PSEUDO_LABELED
DEAD = "dead_letter"
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8", b"GIF87a", b"GIF89a", b"BM")

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """The predict job's knobs (also its flags: noisystudent/typed_flags.py)."""

    input: str = flag(help="Dataset dir (with summary.json) or a glob of records.")
    model: str = flag(help="Teacher: a .keras file or an exported SavedModel dir.")
    output_dir: str = flag(help="Where prediction records go (gs:// works).")
    split: str = flag(splits.UNLABELED, help="Split of a dataset dir.")
    teacher_name: str = flag("", help="Id recorded in every prediction (default: the model path).")
    batch_size: int = flag(256, help="Images per model call.")
    image_size: int = flag(0, help="Resize to this side (0: the model's input).")
    center_crop: bool = flag(False, help="The original's ImageNet labelling crop: the central size/(size+32) "
                                         "of the shorter side, bicubic (default: the whole image, bilinear).")
    precision: str = flag("float32", help="float32 | bfloat16: the teacher in Keras mixed precision, for GPU "
                                          "workers (.keras teachers; softmax in float32).")
    prob_format: str = flag("float32", help="float32 | float16 | top_k:K (bytes per record: "
                                            "noisystudent/records.py).")
    relabel: bool = flag(False, help="Input is pseudo-labeled records: keep images and ids, replace the labels.")
    num_shards: int = flag(0, help="Output shards (0: one per input file).")
    allow_damaged_input: bool = flag(False, help=ALLOW_DAMAGED_HELP)
    large_model: bool = flag(False, help="Share one model across the worker's processes (large teachers).")
    decode_threads: int = flag(0, help="KERAS_BACKEND=jax: host threads decoding images ahead of the "
                                       "accelerator (0: the worker's cores).")
    seed: int = flag(0, help="Seed of the shard assignment.")
    overwrite: bool = flag(False, help=out.OVERWRITE_HELP)

    def validate(self) -> None:
        records.parse_probability_format(self.prob_format)
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {self.batch_size}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.image_size < 0:
            raise ValueError(f"--image_size must be >= 0, got {self.image_size}")
        if self.num_shards < 0:
            raise ValueError(f"--num_shards must be >= 1 (or 0: one per input file), got {self.num_shards}")
        if self.decode_threads < 0:
            raise ValueError(f"--decode_threads must be >= 1 (or 0: the worker's cores), got {self.decode_threads}")


def build_parser() -> argparse.ArgumentParser:
    return add_flags(argparse.ArgumentParser(prog="noisystudent predict", description=__doc__.split("\n\n")[0],
                                             epilog=beam_flags_epilog()), PredictConfig)


class ReadImageChunks(beam.DoFn):
    """An input file -> ImageChunks of up to `chunk_size` images, and dead letters for bad records.

    TFRecord files are not splittable (no sync markers; Beam's own reader reads
    them whole too), so a file is the unit of parallelism: inputs should be
    many moderate shards, as ingestion writes them. Records are read with
    Beam's TFRecord codec (tfrecord_reader.py: local or gs://, ~4 us a record)
    and parsed here, so that no per-image element ever enters the pipeline.
    With `read_ahead_chunks` > 0, reading and parsing run on a thread that many
    chunks ahead (read_ahead.py): they overlap with the teacher's inference on
    the previous chunk inside the same bundle. A file that is truncated, corrupt
    mid-way or shorter than its dataset declares (`declared`: path -> records)
    stops the job, naming it and both counts; with `allow_damaged` it yields
    what was read before the damage and one dead letter for the rest, counting
    as the records lost.
    """

    def __init__(self, chunk_size: int, declared: Optional[dict[str, int]] = None, allow_damaged: bool = False,
                 read_ahead_chunks: int = 2, host_decode: Optional[tuple[int, bool, int]] = None,
                 namespace: str = "predict"):
        self._chunk_size = chunk_size
        self._declared, self._allow_damaged = dict(declared or {}), allow_damaged
        self._read_ahead = read_ahead_chunks
        self._host_decode, self._decoder = host_decode, None
        self._read = beam.metrics.Metrics.counter(namespace, "records_read")
        self._bad = beam.metrics.Metrics.counter(namespace, "dead_letter")

    def setup(self):
        """On a JAX worker (KERAS_BACKEND=jax), images are decoded here, on the reading thread's pool,
        chunks ahead of the accelerator; a TensorFlow teacher decodes inside its own function."""
        import keras

        if self._host_decode and keras.backend.backend() == "jax":
            from noisystudent.jax_teacher import HostDecoder

            self._decoder = HostDecoder(*self._host_decode)

    def process(self, path: str) -> Iterator:
        # Counters are thread-local to the bundle: the reading thread reports, this one counts.
        items = (read_ahead(lambda: self._read_file(path), self._read_ahead) if self._read_ahead
                 else self._read_file(path))
        for kind, item in items:
            if kind == "read":
                self._read.inc(item)
            elif kind == DEAD:
                self._bad.inc()
                yield beam.pvalue.TaggedOutput(DEAD, item)
            else:
                yield item

    def _read_file(self, path: str) -> Iterator[tuple[str, object]]:
        pending: list[bytes] = []
        try:
            for data in read_tfrecords(path, self._declared.get(path)):
                pending.append(data)
                if len(pending) == self._chunk_size:
                    yield "read", len(pending)
                    yield from self._chunk(path, pending)
                    pending = []
        except DamagedTFRecordFile as e:
            dead = damaged_file_dead_letter(e, self._allow_damaged)
            yield "read", len(pending) + dead["records"]  # the unreadable rest counts as the records lost
            yield from self._chunk(path, pending)
            yield DEAD, dead
            return
        if pending:
            yield "read", len(pending)
            yield from self._chunk(path, pending)

    def _chunk(self, path: str, serialized) -> Iterator[tuple[str, object]]:
        chunk = ImageChunk(path, [], [])
        for data in serialized:
            try:
                record = records.parse_image_record(data)
            except records.RecordError as e:
                yield DEAD, {"id": records.peek_image_id(data), "source": path, "reason": str(e)}
                continue
            if not record.encoded.startswith(IMAGE_MAGIC):
                yield DEAD, {"id": record.image_id, "source": path,
                             "reason": "image/encoded is not a PNG, JPEG, GIF or BMP image"}
                continue
            chunk.image_ids.append(record.image_id)
            chunk.encoded.append(record.encoded)
            chunk.hidden_labels.append(record.hidden_label)
            chunk.labels.append(record.label)
        if chunk.image_ids:
            if self._decoder is not None:
                start = time.perf_counter()
                chunk.decoded = self._decoder.decode(chunk.encoded)
                chunk.decode_seconds = time.perf_counter() - start
            yield "chunk", chunk


class EncodeChunk(beam.DoFn):
    """PredictionResult(ImageChunk, ChunkLabels) -> one list of ShardedRecords, and dead letters.

    The output stays one element per chunk up to the shard writer; confidence
    totals leave once per bundle (on the 'totals' output).
    """

    TOTALS = "totals"

    def __init__(self, teacher: str, prob_format: str, relabel: bool):
        self._teacher, self._format, self._relabel = teacher, prob_format, relabel
        self._predicted = beam.metrics.Metrics.counter("predict", "predicted")
        self._bad = beam.metrics.Metrics.counter("predict", "dead_letter")

    def start_bundle(self):
        self._confidence_sum, self._count = 0.0, 0

    def finish_bundle(self):
        if self._count:
            yield beam.pvalue.TaggedOutput(self.TOTALS, beam.transforms.window.GlobalWindows.windowed_value(
                {"totals": {"confidence_sum": self._confidence_sum, "confidence_count": self._count}}))

    def process(self, result: PredictionResult) -> Iterator:
        chunk: ImageChunk = result.example
        labels: ChunkLabels = result.inference
        probs = labels.probabilities  # as predicted: the trainer's --temperature sharpens targets
        good = np.isfinite(probs).all(axis=1)
        for row in np.flatnonzero(~good):
            self._bad.inc()
            reason = labels.errors.get(int(row), "teacher output is not finite")
            yield beam.pvalue.TaggedOutput(DEAD, {"id": chunk.image_ids[row], "source": chunk.source,
                                                  "reason": reason})
        rows = np.flatnonzero(good).tolist()
        if not rows:
            return
        ids, probs = [chunk.image_ids[i] for i in rows], probs[rows]
        if self._relabel:
            serialized = records.encode_pseudo_labeled_batch(ids, [chunk.encoded[i] for i in rows], probs,
                                                             self._teacher, self._format)
            split = RELABELED_SPLIT
        else:
            hidden = [chunk.hidden_labels[i] for i in rows] if any(h is not None for h in chunk.hidden_labels) \
                else None
            serialized = records.encode_predictions(ids, chunk.source, probs, self._teacher, self._format, hidden)
            split = PREDICTIONS_SPLIT
        self._predicted.inc(len(rows))
        self._confidence_sum += float(probs.max(axis=1).sum(dtype=np.float64))
        self._count += len(rows)
        # Duplicated images (relabel input) share an id: their identical bytes sort together.
        yield [out.ShardedRecord(split, i, data, label)
               for i, data, label in zip(ids, serialized, probs.argmax(axis=1).tolist())]


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """The command line: flags -> PredictConfig -> `run_config`."""
    config, beam_args = parse(PredictConfig, build_parser(), argv)
    return run_config(config, beam_args, save_main_session, test_pipeline)


def run_config(config: PredictConfig, beam_args: Sequence[str] = (), save_main_session: bool = True,
               test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """Run the job; returns the summary written to <output_dir>/summary.json."""
    config.validate()
    dry_run = is_dry_run(normalise_beam_args(beam_args))
    input_split = splits.PSEUDO_LABELED if config.relabel and config.split == splits.UNLABELED else config.split
    inputs = dataset_dir.resolve_input(config.input, input_split, dry_run)
    num_classes = decode_size = None
    if not dry_run:
        num_classes = check_class_count(config.model, "--model", inputs.num_classes, config.input, "--input")
        decode_size = model_input_size(config.model)
    split = RELABELED_SPLIT if config.relabel else PREDICTIONS_SPLIT
    num_shards = {split: config.num_shards or max(1, len(inputs.files))}
    expected = expected_records(config.input, input_split, beam_args, dry_run)
    plan = JobPlan(config.output_dir, num_shards, config.overwrite,
                   build=lambda p: _build(p, config, inputs, num_shards, expected, decode_size),
                   finish=lambda summary, result: _finish(summary, result, config, inputs, split, num_classes),
                   inputs={"--input": inputs.guarded})
    return run_job(plan, beam_args, save_main_session, test_pipeline)


def _build(p: beam.Pipeline, config: PredictConfig, inputs: dataset_dir.InputFiles, num_shards: dict[str, int],
           expected: int = 0, decode_size: Optional[int] = None) -> None:
    """The graph; `decode_size`: the teacher's input side, for decoding on the reader's threads (JAX)."""
    split = next(iter(num_shards))
    handler = KerasTeacherHandler(config.model, config.image_size or None, config.large_model,
                                  center_crop=config.center_crop, precision=config.precision,
                                  expected_images=expected, batch_size=config.batch_size,
                                  decode_threads=config.decode_threads)
    size = config.image_size or decode_size
    reader = ReadImageChunks(config.batch_size, inputs.declared_per_file, config.allow_damaged_input,
                             host_decode=(size, config.center_crop, config.decode_threads) if size else None)
    chunks = (p | "ListInputFiles" >> beam.Create(inputs.files)
              | "SpreadFiles" >> beam.Reshuffle()  # one file per element, spread over workers
              | "ReadImageChunks" >> beam.ParDo(reader).with_outputs(DEAD, main="chunks"))
    encoded = (
        chunks.chunks
        | "PredictWithTeacher" >> RunInference(handler)
        | "EncodeOutput" >> beam.ParDo(EncodeChunk(teacher_name(config), config.prob_format, config.relabel))
        .with_outputs(DEAD, EncodeChunk.TOTALS, main="records")
    )
    reports = encoded.records | "WriteRecords" >> out.WriteShardedTFRecords(config.output_dir, num_shards,
                                                                           config.seed, batched=True)
    dead = ((chunks[DEAD], encoded[DEAD]) | "AllDeadLetters" >> beam.Flatten()
            | "WriteDeadLetters" >> out.WriteDeadLetters(config.output_dir, split))
    _ = ((reports, dead, encoded[EncodeChunk.TOTALS]) | "AllReports" >> beam.Flatten()
         | "WriteReport" >> out.WriteReport(config.output_dir))


def teacher_name(config: PredictConfig) -> str:
    return config.teacher_name or config.model


def _finish(summary: dict, result, config: PredictConfig, inputs: dataset_dir.InputFiles, split: str,
            num_classes: Optional[int]) -> dict:
    # count(in) is what the input declares (its summary.json), else what the reader counted.
    input_records = inputs.count_in(counter_value(result, "predict", "records_read") or 0, "--input")
    out.check_accounting(config.output_dir, summary, {split: input_records})
    predicted = summary["splits"][split]["records"]
    totals = summary.pop("totals", {})
    summary.update(
        job="relabel" if config.relabel else "predict", input=config.input, input_files=len(inputs.files),
        input_records=input_records, predicted=predicted,
        mean_confidence=totals["confidence_sum"] / totals["confidence_count"] if predicted else None,
        teacher=teacher_name(config), prob_format=config.prob_format, num_classes=num_classes,
        class_names=inputs.class_names if num_classes and inputs.num_classes == num_classes else None,
        predicted_class_histogram=summary["splits"][split]["labels"],
    )
    log.info("%d records: %d predicted, %d to the dead letter file; mean confidence %.3f",
             summary["input_records"], predicted, summary["dead_letter"], summary["mean_confidence"] or 0)
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run()
