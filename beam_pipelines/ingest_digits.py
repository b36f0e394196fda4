"""Ingest scikit-learn's bundled digits (1,797 real 8x8 images) as image records.

The images are upscaled to 32x32 RGB and split deterministically by seed into
`test` (held out), `labeled` (N per class) and `unlabeled` (the rest, label -1).
This is the project's embedded real data set: it needs no download.

    python -m beam_pipelines.ingest_digits --output_dir runs/digits/data
"""

from __future__ import annotations

import argparse
import logging
from typing import Optional, Sequence

import apache_beam as beam
import numpy as np
from PIL import Image

from beam_pipelines import dataset_output as out
from beam_pipelines.image_codec import encode_png
from beam_pipelines.pipeline_options import (
    beam_flags_epilog,
    is_dry_run,
    make_pipeline_options,
    run_pipeline,
    split_job_and_beam_args,
)
from noisystudent import records

NUM_CLASSES = 10
SPLITS = ("labeled", "unlabeled", "test")
DEFAULT_IMAGE_SIZE = 32


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="noisystudent ingest-digits",
        description=__doc__.split("\n\n")[0],
        epilog=beam_flags_epilog(),
    )
    parser.add_argument("--output_dir", required=True, help="Where the TFRecords go (gs:// works).")
    parser.add_argument("--labels_per_class", type=int, default=10,
                        help="Labeled images kept per class (default 10; 0 = every image outside the "
                             "test split, for a supervised ceiling).")
    parser.add_argument("--test_size", type=int, default=500,
                        help="Images held out for testing, drawn at random (default 500).")
    parser.add_argument("--image_size", type=int, default=DEFAULT_IMAGE_SIZE,
                        help="Side of the square RGB image written (default 32).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the split (default 0).")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace a complete dataset already in --output_dir.")
    return parser


def assign_splits(labels: np.ndarray, labels_per_class: int, test_size: int, seed: int) -> list[str]:
    """Split name for each image: a pure function of (labels, sizes, seed)."""
    n = len(labels)
    if not 0 <= test_size < n:
        raise ValueError(f"--test_size must be in [0, {n}), got {test_size}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    splits = ["unlabeled"] * n
    for i in order[:test_size]:
        splits[i] = "test"
    taken = {c: 0 for c in range(NUM_CLASSES)}
    for i in order[test_size:]:
        c = int(labels[i])
        if labels_per_class == 0 or taken[c] < labels_per_class:
            splits[i] = "labeled"
            taken[c] += 1
    short = {c: t for c, t in taken.items() if t < labels_per_class} if labels_per_class else {}
    if short:
        raise ValueError(
            f"--labels_per_class {labels_per_class} is more than the data holds outside the "
            f"test split for classes {sorted(short)} (they have {sorted(short.values())})"
        )
    return splits


def upscale(pixels_8x8: np.ndarray, size: int) -> np.ndarray:
    """0..16 grey 8x8 -> size x size x 3 uint8, bicubic."""
    grey = np.clip(np.round(pixels_8x8.astype(np.float64) * 255.0 / 16.0), 0, 255).astype(np.uint8)
    image = Image.fromarray(grey).resize((size, size), Image.Resampling.BICUBIC)
    return np.repeat(np.asarray(image)[:, :, None], 3, axis=2)


def to_record(element, image_size: int) -> out.ShardedRecord:
    split, image_id, pixels, label = element
    encoded = encode_png(upscale(np.asarray(pixels, dtype=np.uint8).reshape(8, 8), image_size))
    stored_label = label if split != "unlabeled" else records.UNLABELED
    return out.ShardedRecord(split, image_id, records.encode_image_record(image_id, encoded, stored_label),
                             stored_label)


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """Run the job; returns the summary written to <output_dir>/summary.json."""
    from sklearn.datasets import load_digits

    args, beam_args = split_job_and_beam_args(build_parser(), argv)
    if args.labels_per_class < 0:
        raise ValueError(f"--labels_per_class must be >= 0 (0: all), got {args.labels_per_class}")
    if args.image_size < 8:
        raise ValueError(f"--image_size must be >= 8, got {args.image_size}")
    digits = load_digits()
    labels = digits.target.astype(np.int64)
    splits = assign_splits(labels, args.labels_per_class, args.test_size, args.seed)
    elements = [
        (splits[i], f"digits/{i:04d}", digits.images[i].astype(np.uint8).tolist(), int(labels[i]))
        for i in range(len(labels))
    ]
    dry_run = is_dry_run(beam_args)
    if not dry_run:
        out.prepare_output_dir(args.output_dir, SPLITS, args.overwrite)

    p = test_pipeline or beam.Pipeline(options=make_pipeline_options(beam_args, save_main_session))
    reports = (
        p
        | "CreateDigits" >> beam.Create(elements, reshuffle=False)
        | "EncodeImages" >> beam.Map(to_record, args.image_size)
        | "WriteImageRecords" >> out.WriteShardedTFRecords(
            args.output_dir, {s: 1 for s in SPLITS}, args.seed)
    )
    _ = reports | "WriteReport" >> out.WriteReport(args.output_dir)
    if dry_run:
        return run_pipeline(p, dry_run)
    run_pipeline(p, dry_run)

    summary = out.summarize_reports(args.output_dir, SPLITS)
    out.check_accounting(args.output_dir, summary, {s: splits.count(s) for s in SPLITS})
    summary.update(
        dataset="digits", num_classes=NUM_CLASSES, image_size=args.image_size,
        class_names=[str(c) for c in range(NUM_CLASSES)], seed=args.seed,
        labels_per_class=args.labels_per_class,
        note="unlabeled images carry label -1; the true labels stay with scikit-learn",
    )
    out.write_summary(args.output_dir, summary)
    logging.info("digits written to %s: %s", args.output_dir,
                 {s: v["records"] for s, v in summary["splits"].items()})
    return summary


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
