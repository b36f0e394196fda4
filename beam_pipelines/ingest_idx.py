"""Ingest IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST; raw or .gz) as image records.

    noisystudent ingest-idx --train_images train-images-idx3-ubyte.gz --train_labels train-labels-idx1-ubyte.gz \\
        --test_images t10k-images-idx3-ubyte.gz --test_labels t10k-labels-idx1-ubyte.gz \\
        --labels_per_class 10 --output_dir runs/mnist/data

The training files are split by --seed into `labeled` (--labels_per_class per class, 0 = all) and
`unlabeled` (label -1; its true class kept as `hidden_label` for measuring pseudo-label precision,
which no training input reads; --drop_true_labels to leave it out); the test files become `test`.
Images are stored as grayscale PNGs at their own size (28x28). Workers read their slice of the
files themselves (nothing large travels in the job graph); the counts are proven at the end.

The IDX format (yann.lecun.com/exdb/mnist): a big-endian header, magic 0x00000803 for uint8 images
[N, rows, cols] or 0x00000801 for uint8 labels [N], then the bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import struct
from typing import Iterator, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from beam_pipelines import dataset_output as out
from beam_pipelines.job_runner import JobPlan, run_job
from beam_pipelines.pipeline_options import beam_flags_epilog, is_dry_run, normalise_beam_args
from noisystudent import records, splits
from noisystudent.image_codec import encode_png
from noisystudent.typed_flags import add_flags, flag, parse

SPLITS = (splits.LABELED, splits.UNLABELED, splits.TEST)
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
CHUNK = 10000  # images per work item



@dataclasses.dataclass(frozen=True)
class IngestIdxConfig:
    """The ingest-idx job's knobs (also its flags: noisystudent/typed_flags.py)."""

    train_images: str = flag(help="IDX images of the training set (e.g. train-images-idx3-ubyte[.gz]).")
    train_labels: str = flag(help="IDX labels of the training set.")
    test_images: str = flag(help="IDX images of the test set (t10k-images-idx3-ubyte[.gz]).")
    test_labels: str = flag(help="IDX labels of the test set.")
    output_dir: str = flag(help="Where the TFRecords go (gs:// works).")
    labels_per_class: int = flag(10, help="Labeled training images per class (0 = all: a supervised ceiling).")
    dataset_name: str = flag("mnist", help="Prefix of the image ids and the summary's dataset name.")
    seed: int = flag(0, help="Seed of the labeled/unlabeled split.")
    drop_true_labels: bool = flag(False, help="Do not keep the unlabeled images' true classes as hidden_label.")
    records_per_shard: int = flag(out.TARGET_RECORDS_PER_SHARD, help="Target records per output shard.")
    overwrite: bool = flag(False, help=out.DATASET_OVERWRITE_HELP)

    def validate(self) -> None:
        if self.labels_per_class < 0:
            raise ValueError(f"--labels_per_class must be >= 0 (0: all), got {self.labels_per_class}")


def build_parser() -> argparse.ArgumentParser:
    return add_flags(argparse.ArgumentParser(prog="noisystudent ingest-idx", description=__doc__.split("\n\n")[0],
                                             epilog=beam_flags_epilog()), IngestIdxConfig)


def _open(path: str):
    """The file's bytes, decompressed when it ends in .gz (Beam's FileSystems: local or gs://)."""
    return FileSystems.open(path)  # compression_type AUTO: .gz is decompressed as it is read


def read_header(path: str, flag_name: str) -> tuple[int, tuple[int, ...], int]:
    """(magic, shape, header bytes) of an IDX file; errors name the flag and the file."""
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] != 0x08:
                raise ValueError(f"{flag_name} {path}: not an IDX file of unsigned bytes (magic {head.hex()})")
            dims = head[3]
            shape = struct.unpack(f">{dims}I", f.read(4 * dims))
    except (OSError, EOFError, struct.error, IOError) as e:
        raise ValueError(f"{flag_name} {path}: cannot read an IDX header ({type(e).__name__}: {e})") from None
    return int.from_bytes(head, "big"), tuple(shape), 4 + 4 * dims


def read_slice(path: str, header_bytes: int, item_shape: tuple[int, ...], start: int, stop: int) -> np.ndarray:
    """Items [start, stop) of an IDX file as uint8 [stop - start, *item_shape] (a .gz is read up to them)."""
    size = int(np.prod(item_shape)) if item_shape else 1
    with _open(path) as f:
        f.seek(header_bytes + start * size)
        data = f.read((stop - start) * size)
    if len(data) != (stop - start) * size:
        raise ValueError(f"{path}: truncated: items {start}..{stop} need {(stop - start) * size} bytes, "
                         f"{len(data)} read")
    return np.frombuffer(data, np.uint8).reshape((stop - start, *item_shape))


def check_pair(images: str, labels: str, which: str) -> tuple[tuple[int, ...], int, int, int]:
    """(image shape, count, image header bytes, label header bytes) of a matching images/labels pair."""
    magic, shape, image_header = read_header(images, f"--{which}_images")
    if magic != IMAGES_MAGIC or len(shape) != 3:
        raise ValueError(f"--{which}_images {images}: not IDX images (magic {magic:#010x}, shape {shape})")
    magic, label_shape, label_header = read_header(labels, f"--{which}_labels")
    if magic != LABELS_MAGIC or len(label_shape) != 1:
        raise ValueError(f"--{which}_labels {labels}: not IDX labels (magic {magic:#010x}, shape {label_shape})")
    if label_shape[0] != shape[0]:
        raise ValueError(f"--{which}_images has {shape[0]} images but --{which}_labels {label_shape[0]} labels")
    return shape[1:], shape[0], image_header, label_header


def choose_labeled(labels: np.ndarray, labels_per_class: int, seed: int) -> np.ndarray:
    """Boolean mask of the labeled training images: the first K per class in a seeded order."""
    labeled = np.zeros(len(labels), bool)
    taken: dict[int, int] = {}
    for i in np.random.default_rng(seed).permutation(len(labels)):
        c = int(labels[i])
        if labels_per_class == 0 or taken.get(c, 0) < labels_per_class:
            labeled[i] = True
            taken[c] = taken.get(c, 0) + 1
    short = sorted(c for c, n in taken.items() if n < labels_per_class)
    if labels_per_class and short:
        raise ValueError(f"--labels_per_class {labels_per_class} is more than classes {short} hold")
    return labeled


class ReadIdxChunk(beam.DoFn):
    """(which, start, stop) -> image records of those items, each with its split."""

    def __init__(self, config: IngestIdxConfig, layout: dict, labeled: np.ndarray):
        self._config, self._layout, self._labeled = config, layout, labeled

    def process(self, element) -> Iterator[out.ShardedRecord]:
        which, start, stop = element
        c, (shape, _, image_header, label_header) = self._config, self._layout[which]
        images = read_slice(getattr(c, f"{which}_images"), image_header, shape, start, stop)
        labels = read_slice(getattr(c, f"{which}_labels"), label_header, (), start, stop)
        for offset, (pixels, label) in enumerate(zip(images, labels)):
            index, label = start + offset, int(label)
            split = splits.TEST if which == splits.TEST else splits.LABELED if self._labeled[index] else splits.UNLABELED
            stored = records.UNLABELED if split == splits.UNLABELED else label
            hidden = label if split == splits.UNLABELED and not c.drop_true_labels else None
            image_id = f"{c.dataset_name}/{which}/{index:06d}"
            yield out.ShardedRecord(split, image_id, records.encode_image_record(
                image_id, encode_png(pixels), stored, hidden), stored)


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """The command line: flags -> IngestIdxConfig -> `run_config`."""
    config, beam_args = parse(IngestIdxConfig, build_parser(), argv)
    return run_config(config, beam_args, save_main_session, test_pipeline)


def run_config(config: IngestIdxConfig, beam_args: Sequence[str] = (), save_main_session: bool = True,
               test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """Run the job; returns the summary written to <output_dir>/summary.json."""
    config.validate()
    if is_dry_run(normalise_beam_args(beam_args)):
        raise ValueError("ingest-idx reads the label files to split them: it has no dry run")
    layout = {which: check_pair(getattr(config, f"{which}_images"), getattr(config, f"{which}_labels"), which)
              for which in (splits.TRAIN, splits.TEST)}
    train_labels = read_slice(config.train_labels, layout[splits.TRAIN][3], (), 0, layout[splits.TRAIN][1])
    labeled = choose_labeled(train_labels, config.labels_per_class, config.seed)
    sizes = {splits.LABELED: int(labeled.sum()), splits.UNLABELED: int((~labeled).sum()), splits.TEST: layout[splits.TEST][1]}
    num_shards = {s: out.shards_for(n, config.records_per_shard) for s, n in sizes.items() if n}
    work = [(which, start, min(start + CHUNK, layout[which][1])) for which in (splits.TRAIN, splits.TEST)
            for start in range(0, layout[which][1], CHUNK)]
    num_classes = int(train_labels.max()) + 1

    def build(p: beam.Pipeline) -> None:
        reports = (p | "ListChunks" >> beam.Create(work) | "SpreadChunks" >> beam.Reshuffle()
                   | "ReadIdxChunks" >> beam.ParDo(ReadIdxChunk(config, layout, labeled))
                   | "WriteImageRecords" >> out.WriteShardedTFRecords(config.output_dir, num_shards, config.seed))
        _ = reports | "WriteReport" >> out.WriteReport(config.output_dir)

    def finish(summary: dict, result) -> dict:
        out.check_accounting(config.output_dir, summary, {s: n for s, n in sizes.items() if n})
        summary.update(dataset=config.dataset_name, num_classes=num_classes,
                       class_names=[str(c) for c in range(num_classes)], image_size=layout[splits.TRAIN][0][0],
                       seed=config.seed, labels_per_class=config.labels_per_class,
                       sources={f: getattr(config, f) for f in ("train_images", "train_labels", "test_images",
                                                                 "test_labels")},
                       note="unlabeled images carry label -1" + ("" if config.drop_true_labels else
                                                                  " and their true class as hidden_label"))
        return summary

    files = {f"--{f}": [getattr(config, f)] for f in ("train_images", "train_labels", "test_images", "test_labels")}
    return run_job(JobPlan(config.output_dir, num_shards, config.overwrite, build, finish, inputs=files), beam_args,
                   save_main_session, test_pipeline)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run()
