"""Ingest SVHN (cropped digits) as image records, from the original .mat files or tfds.

Sources (one of):
  --mat_dir DIR         the original train_32x32.mat, test_32x32.mat, extra_32x32.mat
  --tfds_data_dir DIR   a prepared tensorflow-datasets `svhn_cropped` data_dir

SVHN stores digit 0 as label 10; records carry 0-based labels (10 -> 0). Ids
are `svhn/<split>/<index in the original file>` from either source, so they
are stable across runs and sources. 4,000 train images are held out as split
`validation`, drawn by seed, as the original's proc_svhn.py:164-170 does (so the
svhn preset's schedule counts its 69,257 images); `--validation_size 0` keeps all.

A .mat split is read whole by one worker (scipy cannot stream it: extra_32x32.mat
needs about 1.6 GB); the tfds source streams.

    python -m beam_pipelines.ingest_svhn --mat_dir ~/svhn --output_dir gs://b/svhn
"""

from __future__ import annotations

import argparse
import logging
import posixpath
from typing import Iterator, Optional, Sequence

import apache_beam as beam
import numpy as np

from beam_pipelines import dataset_output as out
from beam_pipelines.job_runner import JobPlan, run_job
from beam_pipelines.pipeline_options import beam_flags_epilog, is_dry_run, split_job_and_beam_args
from noisystudent import records, splits
from noisystudent.image_codec import encode_png

NUM_CLASSES = 10
SPLITS = (splits.TRAIN, splits.TEST, splits.EXTRA)
ORIGINAL_VALIDATION_SIZE = 4000  # proc_svhn.py:164-170: `dev_size = 4000`, taken from the shuffled train split
TFDS_NAME = "svhn_cropped"
IMAGE_SHAPE = (32, 32, 3)
PUBLISHED_SIZES = {splits.TRAIN: 73257, splits.TEST: 26032, splits.EXTRA: 531131}  # shard counts of a dry run



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="noisystudent ingest-svhn",
        description=__doc__.split("\n\n")[0],
        epilog=beam_flags_epilog(),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--mat_dir", help="Folder with the original *_32x32.mat files.")
    source.add_argument("--tfds_data_dir", help="A tfds data_dir with svhn_cropped prepared.")
    parser.add_argument("--output_dir", required=True, help="Where the TFRecords go (gs:// works).")
    parser.add_argument("--splits", default=",".join(SPLITS),
                        help="Comma-separated splits to ingest (default train,test,extra).")
    parser.add_argument("--validation_size", type=int, default=None,
                        help="Train images held out as split 'validation' (default the original's 4000, "
                             "proc_svhn.py:164-170; 0: keep every train image).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the validation draw and shards.")
    parser.add_argument("--overwrite", action="store_true", help=out.DATASET_OVERWRITE_HELP)
    return parser


def mat_path(mat_dir: str, split: str) -> str:
    return posixpath.join(mat_dir, f"{split}_32x32.mat")


def image_id(split: str, index: int) -> str:
    return f"svhn/{split}/{index:06d}"


def validation_indices(num_train: int, validation_size: int, seed: int) -> frozenset[int]:
    """Train indices held out for validation: a pure function of its arguments."""
    rng = np.random.default_rng([seed, num_train])
    return frozenset(int(i) for i in rng.permutation(num_train)[:validation_size])


def output_split(split: str, index: int, held_out: frozenset[int]) -> str:
    return splits.VALIDATION if split == splits.TRAIN and index in held_out else split


def _open_mat(path: str, variable_names=None) -> dict:
    import scipy.io
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:  # seekable locally and on GCS: scipy skips unread variables
        return scipy.io.loadmat(f, variable_names=variable_names)


def check_mat_split(path: str) -> int:
    """Validate one .mat split without reading its images; returns its image count."""
    import scipy.io
    from apache_beam.io.filesystems import FileSystems

    if not FileSystems.exists(path):
        raise FileNotFoundError(f"SVHN split file {path} does not exist")
    with FileSystems.open(path) as f:
        try:
            shapes = {name: shape for name, shape, _ in scipy.io.whosmat(f)}
        except Exception as e:
            raise ValueError(f"{path}: not a readable MATLAB file ({e})") from None
    if "X" not in shapes or "y" not in shapes:
        raise ValueError(f"{path}: expected variables X and y, found {sorted(shapes)}")
    x_shape, y_shape = tuple(shapes["X"]), tuple(shapes["y"])
    if len(x_shape) != 4 or x_shape[:3] != IMAGE_SHAPE:
        raise ValueError(f"{path}: X has shape {x_shape}, expected (32, 32, 3, N)")
    n = x_shape[3]
    if y_shape not in ((n, 1), (n,), (1, n)):
        raise ValueError(f"{path}: y has shape {y_shape}, expected ({n}, 1) to match X")
    y = _open_mat(path, ["y"])["y"].reshape(-1)
    bad = np.flatnonzero((y < 1) | (y > 10))
    if bad.size:
        raise ValueError(
            f"{path}: label {int(y[bad[0]])} at index {int(bad[0])} is outside 1..10 "
            f"({bad.size} such labels)"
        )
    return n


def read_mat_split(element, validation_size: int, seed: int) -> Iterator[out.ShardedRecord]:
    """(split, path) -> one record per image of the .mat file."""
    split, path = element
    data = _open_mat(path)
    images = np.ascontiguousarray(np.moveaxis(data["X"], -1, 0))
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: X has dtype {images.dtype}, expected uint8")
    labels = data["y"].reshape(-1).astype(np.int64) % 10
    held_out = validation_indices(len(labels), validation_size, seed) if split == splits.TRAIN else frozenset()
    for i in range(len(labels)):
        key = image_id(split, i)
        serialized = records.encode_image_record(key, encode_png(images[i]), int(labels[i]))
        yield out.ShardedRecord(output_split(split, i, held_out), key, serialized, int(labels[i]))


def _tfds_builder(data_dir: str):
    import tensorflow_datasets as tfds

    builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"{data_dir} holds no prepared {TFDS_NAME} (expected {builder.data_dir}); "
            f"prepare it with tfds.builder('{TFDS_NAME}', data_dir=...).download_and_prepare()"
        )
    return builder


def read_tfds_split(split: str, data_dir: str, validation_size: int, seed: int
                    ) -> Iterator[out.ShardedRecord]:
    """Stream one tfds split; images keep tfds' PNG bytes, ids its original index."""
    import tensorflow_datasets as tfds

    builder = _tfds_builder(data_dir)
    n = builder.info.splits[split].num_examples
    held_out = validation_indices(n, validation_size, seed) if split == splits.TRAIN else frozenset()
    dataset = builder.as_dataset(split=split, shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    for example in dataset.as_numpy_iterator():
        index = int(example["id"].decode().rsplit("_", 1)[1])  # "train_000123"
        key = image_id(split, index)
        label = int(example["label"])
        serialized = records.encode_image_record(key, example["image"], label)
        yield out.ShardedRecord(output_split(split, index, held_out), key, serialized, label)


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """Run the job; returns the summary written to <output_dir>/summary.json."""
    args, beam_args = split_job_and_beam_args(build_parser(), argv)
    wanted = [s.strip() for s in args.splits.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SPLITS))
    if unknown or not wanted:
        raise ValueError(f"--splits: unknown split(s) {unknown}; choose from {', '.join(SPLITS)}")

    dry_run = is_dry_run(beam_args)
    if dry_run:
        sizes = {s: PUBLISHED_SIZES[s] for s in wanted}
    elif args.mat_dir:
        sizes = {s: check_mat_split(mat_path(args.mat_dir, s)) for s in wanted}
    else:
        info = _tfds_builder(args.tfds_data_dir).info
        sizes = {s: info.splits[s].num_examples for s in wanted}
    if args.validation_size is None:  # the original's hold-out, when the train split is ingested
        args.validation_size = ORIGINAL_VALIDATION_SIZE if splits.TRAIN in wanted else 0
    if args.validation_size:
        if splits.TRAIN not in wanted:
            raise ValueError("--validation_size needs the train split in --splits")
        if args.validation_size < 0:
            raise ValueError(f"--validation_size must be >= 0, got {args.validation_size}")
        if args.validation_size >= sizes[splits.TRAIN]:
            raise ValueError(f"--validation_size {args.validation_size} leaves no train image of the "
                             f"{sizes[splits.TRAIN]} (pass a smaller one, or 0 to hold out none)")
        sizes[splits.VALIDATION] = args.validation_size
        sizes[splits.TRAIN] -= args.validation_size
    num_shards = {s: out.shards_for(n) for s, n in sizes.items()}

    def build(p: beam.Pipeline) -> None:
        if args.mat_dir:
            images = (p | "ListSplitFiles" >> beam.Create([(s, mat_path(args.mat_dir, s)) for s in wanted])
                      | "ReadMatFiles" >> beam.FlatMap(read_mat_split, args.validation_size, args.seed))
        else:
            images = (p | "ListSplits" >> beam.Create(wanted)
                      | "ReadTfdsSplits" >> beam.FlatMap(read_tfds_split, args.tfds_data_dir,
                                                         args.validation_size, args.seed))
        reports = images | "WriteImageRecords" >> out.WriteShardedTFRecords(args.output_dir, num_shards, args.seed)
        _ = reports | "WriteReport" >> out.WriteReport(args.output_dir)

    def finish(summary: dict, result) -> dict:
        out.check_accounting(args.output_dir, summary, sizes)
        summary.update(dataset="svhn", num_classes=NUM_CLASSES, image_size=IMAGE_SHAPE[0],
                       class_names=[str(c) for c in range(NUM_CLASSES)], seed=args.seed,
                       validation_size=args.validation_size, source=args.mat_dir or args.tfds_data_dir,
                       label_convention="0-based: SVHN label 10 (digit 0) is stored as 0")
        return summary

    source = {"--mat_dir": [args.mat_dir]} if args.mat_dir else {"--tfds_data_dir": [args.tfds_data_dir]}
    return run_job(JobPlan(args.output_dir, num_shards, args.overwrite, build, finish, inputs=source), beam_args,
                   save_main_session, test_pipeline)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run()
