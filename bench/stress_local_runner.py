"""Push 200k+ records through each job on the local runner and print counts in / out / dead.

Two parts, for the README's reliability section:

1. beam-only: a plain Beam pipeline, none of our code (Create -> FlatMap that
   emits records like the shard writer's, 50 us of CPU each -> GroupByKey by
   shard -> count), in each local running mode. Shows what the runner itself delivers: Beam 2.77's
   multi_threading mode loses records (its gRPC output streams are flushed by a
   timer thread mid-element), in_memory and multi_processing do not.
2. jobs: ingest-folder on N generated PNGs (plus a few corrupt ones), predict
   with a small teacher, select; each job's own accounting (count in =
   written + dead, from the shard writers' reports) and a count of the
   records actually in the written shards.

    python bench/stress_local_runner.py --images 200000
    python bench/stress_local_runner.py --images 200000 --jobs_args "--direct_num_workers=2 --direct_running_mode=multi_processing"
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from PIL import Image  # noqa: E402

MODES = {
    "in_memory": ["--direct_num_workers=1", "--direct_running_mode=in_memory"],
    "multi_processing": ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
    "multi_threading": ["--direct_num_workers=2", "--direct_running_mode=multi_threading"],
}


def beam_only(records: int, mode: str, files: int = 50, work_us: float = 50.0) -> dict:
    """Plain Beam: `records` elements through a GroupByKey; how many come out.

    Elements look like the shard writer's input ((split, shard), [(hash, id,
    300 bytes, label)]) and each costs `work_us` of CPU to make, as decoding
    an image does: bundles must run for seconds for the 1 s flush timer to
    hit them.
    """
    per_file = records // files
    counted = os.path.join(tempfile.mkdtemp(), "count")

    def emit(f):
        payload = os.urandom(300)
        for i in range(per_file):
            t = time.perf_counter()
            while (time.perf_counter() - t) * 1e6 < work_us:
                pass
            key = f"u/{f}/{i}"
            h = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "little")
            yield ("u", h % 64), [(h, key, payload, -1)]

    start = time.perf_counter()
    row = {"stage": "beam-only GroupByKey", "mode": mode, "in": per_file * files}
    try:
        with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner", *MODES[mode]])) as p:
            _ = (p | beam.Create(range(files)) | beam.Reshuffle() | beam.FlatMap(emit) | beam.GroupByKey()
                 | beam.MapTuple(lambda shard, groups: sum(len(g) for g in groups))
                 | beam.CombineGlobally(sum) | beam.io.WriteToText(counted, shard_name_template=""))
    except Exception as e:  # a corrupted shuffle: reported, not fatal
        row["error"] = f"{type(e).__name__}: {(str(e).strip().splitlines() or [repr(e)])[-1][:200]}"
    else:
        with open(counted) as f:
            row["out"] = int(f.read().strip())
        row["lost"] = row["in"] - row["out"]
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def make_images(root: str, n: int, folders: int = 100) -> int:
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(256):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(buffer, format="PNG")
        pool.append(buffer.getvalue())
    for f in range(folders):
        os.makedirs(os.path.join(root, "unlabeled", f"f{f:03d}"), exist_ok=True)
    for i in range(n):
        with open(os.path.join(root, "unlabeled", f"f{i % folders:03d}", f"{i:07d}.png"), "wb") as fh:
            fh.write(pool[i % len(pool)])
    for j in range(3):  # corrupt images: dead letters, not losses
        with open(os.path.join(root, "unlabeled", f"f{j:03d}", f"broken-{j}.png"), "wb") as fh:
            fh.write(b"\x89PNG broken")
    for c in range(3):
        os.makedirs(os.path.join(root, "labeled", f"c{c}"), exist_ok=True)
        for i in range(20):
            with open(os.path.join(root, "labeled", f"c{c}", f"{i}.png"), "wb") as fh:
                fh.write(pool[(c * 20 + i) % len(pool)])
    return n + 3


def count_records(directory: str, split: str) -> int:
    from noisystudent import dataset_dir

    return sum(1 for _ in dataset_dir.iter_split_records(directory, split))


def jobs(work: str, images: int, jobs_args: list[str]) -> list[dict]:
    import keras

    from beam_pipelines import ingest_folder, predict, select
    from model import build_model

    rows = []
    start = time.perf_counter()
    n_in = make_images(work, images)
    rows.append({"stage": "generate", "files": n_in, "seconds": round(time.perf_counter() - start, 1)})

    def timed(name, fn, split, directory):
        t = time.perf_counter()
        summary = fn()
        row = {"stage": name, "accounting": summary["accounting"],
               "records_in_shards": count_records(directory, split) if split else None,
               "seconds": round(time.perf_counter() - t, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        return summary

    data, preds, pseudo = (os.path.join(work, d) for d in ("data", "preds", "pseudo"))
    timed("ingest-folder", lambda: ingest_folder.run(
        ["--labeled_dir", os.path.join(work, "labeled"), "--unlabeled_dir", os.path.join(work, "unlabeled"),
         "--output_dir", data, *jobs_args]), "unlabeled", data)
    keras.utils.set_random_seed(0)
    build_model("cnn-small", 3, input_shape=(8, 8, 3)).save(os.path.join(work, "teacher.keras"))
    timed("predict", lambda: predict.run(
        ["--input", data, "--model", os.path.join(work, "teacher.keras"), "--output_dir", preds, *jobs_args]),
        "predictions", preds)
    timed("select", lambda: select.run(
        ["--predictions", preds, "--num_image", str(images // 3), "--min_threshold", "0",
         "--samples_per_class", "0", "--output_dir", pseudo, *jobs_args]), "train", pseudo)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--beam_only_modes", default="in_memory,multi_processing,multi_threading",
                        help="Modes for the plain-Beam part ('' to skip it).")
    parser.add_argument("--jobs_args", default="", help="Space-separated Beam flags for our jobs (default: theirs).")
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each beam-only mode (losses are random).")
    parser.add_argument("--skip_jobs", action="store_true")
    args = parser.parse_args()
    result = {"images": args.images, "cpus": os.cpu_count(), "jobs_args": args.jobs_args or "defaults",
              "rows": []}
    for mode in filter(None, args.beam_only_modes.split(",")):
        for _ in range(args.repeats):
            row = beam_only(args.images, mode)
            print(json.dumps(row), flush=True)
            result["rows"].append(row)
    if not args.skip_jobs:
        with tempfile.TemporaryDirectory() as work:
            result["rows"] += jobs(work, args.images, args.jobs_args.split())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
