"""Ingest your own images from folders as image records.

  --labeled_dir DIR     one sub-folder per class (DIR/<class>/.../*.jpg) -> split `labeled`
  --test_dir DIR        same layout and class names as --labeled_dir   -> split `test`
  --unlabeled_dir DIR   any tree of images                            -> split `unlabeled`

Class indices are the sorted class folder names of --labeled_dir (or
--class_names). Hidden entries never become classes or images: any path
component starting with "." (.ipynb_checkpoints, .git, .Trash-1000, .DS_Store)
or named __MACOSX is skipped, and summary.json lists what was ignored. A class
folder without images is an error unless --class_names names the classes.
8-bit gray or RGB PNG and JPEG bytes are stored as they are; every other image
PIL reads (16-bit, palette, alpha, CMYK, float; BMP, GIF, WebP, TIFF, ...) is
converted to 8 bits and re-encoded as PNG (noisystudent/image_codec.py says
how, mode by mode). An image that cannot be decoded, an empty file and one
over --max_image_pixels go to dead_letter.jsonl with its path and the reason,
and the job finishes; summary.json counts them. --output_dir may not be, be
inside or contain an input folder (a re-run would ingest its own output).
Ids are `<dataset_name>/<split>/<path relative to the folder>`: stable
across runs.

    python -m beam_pipelines.ingest_folder --labeled_dir photos/train \\
        --unlabeled_dir photos/raw --output_dir gs://b/photos
"""

from __future__ import annotations

import argparse
import logging
import posixpath
from collections import Counter
from typing import Iterator, NamedTuple, Optional, Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from beam_pipelines import dataset_output as out
from beam_pipelines.job_runner import JobPlan, run_job
from beam_pipelines.pipeline_options import beam_flags_epilog, is_dry_run, split_job_and_beam_args
from noisystudent import records, splits
from noisystudent.image_codec import (DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, BadImageError, is_image_name,
                                      normalize_encoded)

IGNORED_NAMES = ("__MACOSX",)  # besides any name starting with "."
MAX_IGNORED_LISTED = 20
SPLIT_FLAGS = {splits.LABELED: "labeled_dir", splits.TEST: "test_dir", splits.UNLABELED: "unlabeled_dir"}

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="noisystudent ingest-folder",
        description=__doc__.split("\n\n")[0],
        epilog=beam_flags_epilog(),
    )
    parser.add_argument("--labeled_dir", help="Folder with one sub-folder of images per class.")
    parser.add_argument("--test_dir", help="Held-out folder, same class sub-folders.")
    parser.add_argument("--unlabeled_dir", help="Any tree of unlabeled images.")
    parser.add_argument("--output_dir", required=True, help="Where the TFRecords go (gs:// works).")
    parser.add_argument("--class_names",
                        help="Comma-separated class folder names in index order "
                             "(default: sorted sub-folders of --labeled_dir).")
    parser.add_argument("--dataset_name", default="folder", help="Prefix of the image ids.")
    parser.add_argument("--records_per_shard", type=int, default=out.TARGET_RECORDS_PER_SHARD,
                        help="Target records per output shard (default %(default)s).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the shard assignment.")
    parser.add_argument("--max_image_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="Larger images (width x height) are dead letters, not decoded (default: PIL's "
                             "decompression-bomb limit, %(default)s; 0: no limit).")
    parser.add_argument("--overwrite", action="store_true", help=out.DATASET_OVERWRITE_HELP)
    return parser


def hidden_entry(rel: str) -> Optional[str]:
    """The first hidden component of a relative path, as a path prefix ("a/.git"), or None."""
    parts = rel.split("/")
    for i, part in enumerate(parts):
        if part.startswith(".") or part in IGNORED_NAMES:
            return "/".join(parts[: i + 1])
    return None


def is_wanted(path: str, root: str) -> bool:
    """An image file under root with no hidden component: what the job ingests."""
    return is_image_name(path) and hidden_entry(relative_path(root, path)) is None


def relative_path(root: str, path: str) -> str:
    root = root.rstrip("/") + "/"
    if not path.startswith(root):
        raise ValueError(f"{path} is not under {root}")
    return path[len(root):]


class FolderScan(NamedTuple):
    """What a listing of a folder tree found (metadata only, no image is read)."""

    images: int
    images_per_folder: dict[str, int]  # by top-level sub-folder ("" for files at the root)
    ignored_files: int
    ignored_entries: list[str]  # distinct hidden entries, at most MAX_IGNORED_LISTED


def scan_folder(root: str) -> FolderScan:
    """List root's tree once: image files to ingest, per top-level folder, and hidden entries skipped."""
    if not tf.io.gfile.isdir(root):
        raise FileNotFoundError(f"{root} is not a folder")
    root = root.rstrip("/")
    per_folder: Counter = Counter()
    ignored: dict[str, None] = {}
    ignored_files = 0
    for m in FileSystems.match([posixpath.join(root, "**")])[0].metadata_list:
        rel = relative_path(root, m.path)
        hidden = hidden_entry(rel)
        if hidden is not None:
            ignored_files += 1
            if len(ignored) < MAX_IGNORED_LISTED:
                ignored.setdefault(hidden)
        elif is_image_name(m.path):
            per_folder[rel.split("/", 1)[0] if "/" in rel else ""] += 1
    # Hidden sub-folders with nothing inside are not in a file listing: name them too.
    for name in tf.io.gfile.listdir(root):
        name = name.rstrip("/")
        if hidden_entry(name) is not None and len(ignored) < MAX_IGNORED_LISTED:
            ignored.setdefault(name)
    images = sum(per_folder.values())
    if images == 0:
        raise ValueError(f"{root} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return FolderScan(images, dict(sorted(per_folder.items())), ignored_files, sorted(ignored))


def list_class_names(labeled_dir: str) -> list[str]:
    """Sorted names of the class sub-folders, hidden ones skipped."""
    if not tf.io.gfile.isdir(labeled_dir):
        raise FileNotFoundError(f"--labeled_dir {labeled_dir} is not a folder")
    names = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(labeled_dir)
                   if hidden_entry(n.rstrip("/")) is None
                   and tf.io.gfile.isdir(posixpath.join(labeled_dir, n.rstrip("/"))))
    if not names:
        raise ValueError(f"--labeled_dir {labeled_dir} has no class sub-folders")
    return names


def check_class_folders(flag: str, root: str, scan: FolderScan, class_names: list[str],
                        explicit: bool) -> None:
    """Every class folder is a known class, and (unless --class_names says so) holds images."""
    folders = list_class_names(root)
    extra = sorted(set(folders) - set(class_names))
    if extra:
        raise ValueError(f"--{flag} {root}: class folders {extra} are not among the class names {class_names}")
    if not explicit:
        empty = [c for c in folders if not scan.images_per_folder.get(c)]
        if empty:
            raise ValueError(f"--{flag} {root}: class folder(s) {empty} hold no images; remove them, or "
                             "pass --class_names to fix the classes explicitly")


class DecodeImageFiles(beam.DoFn):
    """ReadableFile -> ShardedRecord, or a dead-letter dict on the 'dead_letter' output."""

    DEAD_LETTER = "dead_letter"

    def __init__(self, split: str, root: str, dataset_name: str,
                 class_index: Optional[dict[str, int]], max_pixels: int = DEFAULT_MAX_PIXELS):
        self._max_pixels = max_pixels
        self._split = split
        self._root = root
        self._dataset_name = dataset_name
        self._class_index = class_index
        self._bad = beam.metrics.Metrics.counter("ingest_folder", "bad_images")
        self._good = beam.metrics.Metrics.counter("ingest_folder", "images")

    def _dead(self, path: str, reason: str):
        self._bad.inc()
        return beam.pvalue.TaggedOutput(
            self.DEAD_LETTER, {"path": path, "split": self._split, "reason": reason})

    def process(self, readable: fileio.ReadableFile) -> Iterator:
        path = readable.metadata.path
        rel = relative_path(self._root, path)
        label = records.UNLABELED
        if self._class_index is not None:
            class_name = rel.split("/", 1)[0] if "/" in rel else None
            if class_name is None:
                yield self._dead(path, "image is not inside a class sub-folder")
                return
            if class_name not in self._class_index:
                yield self._dead(path, f"class folder {class_name!r} is not among the class names")
                return
            label = self._class_index[class_name]
        try:
            encoded = normalize_encoded(readable.read(), path, self._max_pixels)
        except (BadImageError, OSError) as e:
            yield self._dead(path, str(e))
            return
        key = f"{self._dataset_name}/{self._split}/{rel}"
        self._good.inc()
        yield out.ShardedRecord(self._split, key, records.encode_image_record(key, encoded, label), label)


def run(argv: Optional[Sequence[str]] = None, save_main_session: bool = True,
        test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """Run the job; returns the summary written to <output_dir>/summary.json."""
    args, beam_args = split_job_and_beam_args(build_parser(), argv)
    roots = {split: getattr(args, flag) for split, flag in SPLIT_FLAGS.items() if getattr(args, flag)}
    if not roots:
        raise ValueError("give at least one of --labeled_dir, --test_dir, --unlabeled_dir")
    if args.records_per_shard < 1:
        raise ValueError(f"--records_per_shard must be >= 1, got {args.records_per_shard}")
    if args.max_image_pixels < 0:
        raise ValueError(f"--max_image_pixels must be >= 0 (0: no limit), got {args.max_image_pixels}")
    if splits.TEST in roots and splits.LABELED not in roots and not args.class_names:
        raise ValueError("--test_dir needs --labeled_dir or --class_names to fix the class order")
    dry_run = is_dry_run(beam_args)
    if dry_run and splits.LABELED in roots and not args.class_names:
        raise ValueError("a dry run reads no folders: pass --class_names")
    if args.class_names:
        class_names = [c.strip() for c in args.class_names.split(",") if c.strip()]
    else:
        class_names = list_class_names(roots[splits.LABELED]) if splits.LABELED in roots else []
    scans = {} if dry_run else {split: scan_folder(root) for split, root in roots.items()}
    for split in (splits.LABELED, splits.TEST):
        if split in scans:
            check_class_folders(SPLIT_FLAGS[split], roots[split], scans[split], class_names,
                                explicit=bool(args.class_names))
    num_shards = {split: 1 if dry_run else out.shards_for(scans[split].images, args.records_per_shard)
                  for split in roots}
    plan = JobPlan(args.output_dir, num_shards, args.overwrite,
                   build=lambda p: _build(p, args, roots, class_names, num_shards),
                   finish=lambda summary, result: _finish(summary, args, roots, class_names, scans),
                   inputs={f"--{SPLIT_FLAGS[split]}": [root] for split, root in roots.items()})
    return run_job(plan, beam_args, save_main_session, test_pipeline)


def _build(p: beam.Pipeline, args: argparse.Namespace, roots: dict[str, str], class_names: list[str],
           num_shards: dict[str, int]) -> None:
    class_index = {name: i for i, name in enumerate(class_names)}
    decoded, dead = [], []
    for split, root in roots.items():
        root = root.rstrip("/")
        results = (
            p
            | f"Match{split.title()}Files" >> fileio.MatchFiles(posixpath.join(root, "**"))
            | f"Keep{split.title()}Images" >> beam.Filter(lambda m, root: is_wanted(m.path, root), root)
            | f"Read{split.title()}Files" >> fileio.ReadMatches()
            | f"Decode{split.title()}Images" >> beam.ParDo(
                DecodeImageFiles(split, root, args.dataset_name, class_index if split != splits.UNLABELED else None,
                                 args.max_image_pixels)
            ).with_outputs(DecodeImageFiles.DEAD_LETTER, main="images")
        )
        decoded.append(results.images)
        dead.append(results[DecodeImageFiles.DEAD_LETTER])
    reports = (decoded | "AllImages" >> beam.Flatten()
               | "WriteImageRecords" >> out.WriteShardedTFRecords(args.output_dir, num_shards, args.seed))
    dead_reports = dead | "AllDeadLetters" >> beam.Flatten() | "WriteDeadLetters" >> out.WriteDeadLetters(
        args.output_dir)
    _ = (reports, dead_reports) | "AllReports" >> beam.Flatten() | "WriteReport" >> out.WriteReport(
        args.output_dir)


def _finish(summary: dict, args: argparse.Namespace, roots: dict[str, str], class_names: list[str],
            scans: dict) -> dict:
    out.check_accounting(args.output_dir, summary, {split: scan.images for split, scan in scans.items()})
    summary.update(dataset=args.dataset_name, num_classes=len(class_names) or None,
                   class_names=class_names, seed=args.seed,
                   sources={split: root for split, root in roots.items()},
                   ignored={split: {"files": scan.ignored_files, "entries": scan.ignored_entries}
                            for split, scan in scans.items() if scan.ignored_entries})
    if summary["dead_letter"]:
        log.warning("%d undecodable images: see %s", summary["dead_letter"],
                    posixpath.join(args.output_dir, out.DEAD_LETTER_FILE))
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run()
