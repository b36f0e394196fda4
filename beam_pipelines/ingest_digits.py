"""Ingest scikit-learn's bundled digits (1,797 real 8x8 images) as image records.

The images are upscaled to 32x32 RGB and split deterministically by seed into
`test` (held out), `labeled` (N per class) and `unlabeled` (the rest, label -1).
This is the project's embedded real data set: it needs no download.

    python -m beam_pipelines.ingest_digits --output_dir runs/digits/data
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Optional, Sequence

import apache_beam as beam
import numpy as np
from PIL import Image

from beam_pipelines import dataset_output as out
from beam_pipelines.job_runner import JobPlan, run_job
from beam_pipelines.pipeline_options import beam_flags_epilog
from noisystudent import records, splits
from noisystudent.image_codec import encode_png
from noisystudent.typed_flags import add_flags, flag, parse

NUM_CLASSES = 10
SPLITS = (splits.LABELED, splits.UNLABELED, splits.TEST)
DEFAULT_IMAGE_SIZE = 32


@dataclasses.dataclass(frozen=True)
class IngestDigitsConfig:
    """The ingest-digits job's knobs (also its flags: noisystudent/typed_flags.py)."""

    output_dir: str = flag(help="Where the TFRecords go (gs:// works).")
    labels_per_class: int = flag(10, help="Labeled images kept per class (0 = every image outside the test "
                                          "split, for a supervised ceiling).")
    test_size: int = flag(500, help="Images held out for testing, drawn at random.")
    image_size: int = flag(DEFAULT_IMAGE_SIZE, help="Side of the square RGB image written.")
    seed: int = flag(0, help="Seed of the split.")
    drop_true_labels: bool = flag(False, help="Do not keep the unlabeled images' true classes as hidden_label "
                                              "(kept by default: select reports pseudo-label precision with them; "
                                              "no training input reads them).")
    overwrite: bool = flag(False, help=out.DATASET_OVERWRITE_HELP)

    def validate(self) -> None:
        if self.labels_per_class < 0:
            raise ValueError(f"--labels_per_class must be >= 0 (0: all), got {self.labels_per_class}")
        if self.image_size < 8:
            raise ValueError(f"--image_size must be >= 8, got {self.image_size}")


def build_parser() -> argparse.ArgumentParser:
    return add_flags(argparse.ArgumentParser(prog="noisystudent ingest-digits",
                                             description=__doc__.split("\n\n")[0], epilog=beam_flags_epilog()),
                     IngestDigitsConfig)


def assign_splits(labels: np.ndarray, labels_per_class: int, test_size: int, seed: int) -> list[str]:
    """Split name for each image: a pure function of (labels, sizes, seed)."""
    n = len(labels)
    if not 0 <= test_size < n:
        raise ValueError(f"--test_size must be in [0, {n}), got {test_size}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    assigned = [splits.UNLABELED] * n
    for i in order[:test_size]:
        assigned[i] = splits.TEST
    taken = {c: 0 for c in range(NUM_CLASSES)}
    for i in order[test_size:]:
        c = int(labels[i])
        if labels_per_class == 0 or taken[c] < labels_per_class:
            assigned[i] = splits.LABELED
            taken[c] += 1
    short = {c: t for c, t in taken.items() if t < labels_per_class} if labels_per_class else {}
    if short:
        raise ValueError(
            f"--labels_per_class {labels_per_class} is more than the data holds outside the "
            f"test split for classes {sorted(short)} (they have {sorted(short.values())})"
        )
    return assigned


def upscale(pixels_8x8: np.ndarray, size: int) -> np.ndarray:
    """0..16 grey 8x8 -> size x size x 3 uint8, bicubic."""
    grey = np.clip(np.round(pixels_8x8.astype(np.float64) * 255.0 / 16.0), 0, 255).astype(np.uint8)
    image = Image.fromarray(grey).resize((size, size), Image.Resampling.BICUBIC)
    return np.repeat(np.asarray(image)[:, :, None], 3, axis=2)


def to_record(element, image_size: int, keep_true_labels: bool = True) -> out.ShardedRecord:
    split, image_id, pixels, label = element
    encoded = encode_png(upscale(np.asarray(pixels, dtype=np.uint8).reshape(8, 8), image_size))
    stored_label = label if split != splits.UNLABELED else records.UNLABELED
    hidden = label if split == splits.UNLABELED and keep_true_labels else None
    return out.ShardedRecord(split, image_id, records.encode_image_record(image_id, encoded, stored_label, hidden),
                             stored_label)


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """The command line: flags -> IngestDigitsConfig -> `run_config`."""
    config, beam_args = parse(IngestDigitsConfig, build_parser(), argv)
    return run_config(config, beam_args, save_main_session, test_pipeline)


def run_config(config: IngestDigitsConfig, beam_args: Sequence[str] = (), save_main_session: bool = True,
               test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """Run the job; returns the summary written to <output_dir>/summary.json."""
    from sklearn.datasets import load_digits

    config.validate()
    digits = load_digits()
    labels = digits.target.astype(np.int64)
    assigned = assign_splits(labels, config.labels_per_class, config.test_size, config.seed)
    elements = [(assigned[i], f"digits/{i:04d}", digits.images[i].astype(np.uint8).tolist(), int(labels[i]))
                for i in range(len(labels))]

    def build(p: beam.Pipeline) -> None:
        reports = (p | "CreateDigits" >> beam.Create(elements, reshuffle=False)
                   | "EncodeImages" >> beam.Map(to_record, config.image_size, not config.drop_true_labels)
                   | "WriteImageRecords" >> out.WriteShardedTFRecords(config.output_dir, {s: 1 for s in SPLITS},
                                                                      config.seed))
        _ = reports | "WriteReport" >> out.WriteReport(config.output_dir)

    def finish(summary: dict, result) -> dict:
        out.check_accounting(config.output_dir, summary, {s: assigned.count(s) for s in SPLITS})
        summary.update(dataset="digits", num_classes=NUM_CLASSES, image_size=config.image_size,
                       class_names=[str(c) for c in range(NUM_CLASSES)], seed=config.seed,
                       labels_per_class=config.labels_per_class,
                       note="unlabeled images carry label -1" + ("" if config.drop_true_labels else
                                                                  " and their true class as hidden_label"))
        return summary

    plan = JobPlan(config.output_dir, {s: 1 for s in SPLITS}, config.overwrite, build, finish)
    return run_job(plan, beam_args, save_main_session, test_pipeline)


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
