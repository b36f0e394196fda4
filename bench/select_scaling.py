"""Selection job scaling: time per record and peak memory against N, vs a bare GroupByKey.

For each N, synthetic prediction records (--num_classes, 10 by default;
confidences spread over [0, 1]) point at tiny image records in 64 source shards. In separate
subprocesses (so peak RSS is the job's own), it runs
- the selection job (`beam_pipelines.select`, FnApiRunner, num_image = N/20), and
- a bare GroupByKey of the same records keyed by source (the floor of any
  job that must bring predictions to their source files; DirectRunner keeps
  every shuffle in memory, Dataflow's is external),
and prints per-record microseconds and peak MB for both and their ratios.

    python bench/select_scaling.py --sizes 100000,1000000
    python bench/select_scaling.py --sizes 20000 --num_classes 1000   (ImageNet-sized vectors)
    python bench/select_scaling.py --sizes 50000 --copies 20          (every image written ~20 times)
    python bench/select_scaling.py --sizes 1000 --copies 500 --image_size 32   (3 KB images, 500 copies)

--copies K sets num_image to K x N / num_classes, so each kept image is written about K times:
the shuffle to the shard writers then carries K x N records' worth of copies, or (since copies
travel as one element per image and shard) at most N x min(K, shards) of them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_data(directory: str, n: int, num_classes: int = 10, shards: int = 64, image_size: int = 4) -> str:
    import numpy as np
    import tensorflow as tf

    from noisystudent import records

    rng = np.random.default_rng(0)
    png = tf.io.encode_png(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)).numpy()
    sources = [os.path.join(directory, f"images-{s:03d}.tfrecord") for s in range(shards)]
    image_writers = [tf.io.TFRecordWriter(p) for p in sources]
    pred_writers = [tf.io.TFRecordWriter(os.path.join(directory, f"preds-{s:03d}.tfrecord")) for s in range(16)]
    labels = rng.integers(0, num_classes, n)
    conf = rng.beta(4, 1.5, n).astype(np.float32)
    for i in range(n):
        image_id = f"u/{i:09d}"
        image_writers[i % shards].write(records.encode_image_record(image_id, png))
        probs = np.full(num_classes, (1 - conf[i]) / (num_classes - 1), np.float32)
        probs[labels[i]] = conf[i]
        pred_writers[i % 16].write(records.encode_prediction(image_id, sources[i % shards], probs, "bench"))
    for w in image_writers + pred_writers:
        w.close()
    return os.path.join(directory, "preds-*.tfrecord")


def child_select(pattern: str, out: str, n: int, num_classes: int, copies: float = 0.0) -> None:
    from beam_pipelines import select
    num_image = int(copies * n / num_classes) if copies else max(1, n // (2 * num_classes))
    select.run(["--predictions", pattern, "--output_dir", out, "--num_image", str(num_image),
                "--num_classes", str(num_classes), "--samples_per_class", "0", "--runner=FnApiRunner"]
               + (["--min_threshold", "0"] if copies else []) + (["--allow_large_output"] if copies > 100 else []))


def child_bare_gbk(pattern: str, out: str, n: int, num_classes: int, copies: float = 0.0) -> None:
    import apache_beam as beam

    from noisystudent import records

    def key_by_source(serialized):
        p = records.parse_prediction(serialized)
        return p.source, (p.image_id, 1, serialized)

    with beam.Pipeline(argv=["--runner=FnApiRunner"]) as p:
        _ = (p | beam.io.ReadFromTFRecord(pattern) | beam.Map(key_by_source) | beam.GroupByKey()
             | beam.MapTuple(lambda k, v: sum(1 for _ in v)) | beam.combiners.Count.Globally())


def measure(kind: str, pattern: str, out: str, n: int, num_classes: int, copies: float = 0.0) -> dict:
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", kind, "--pattern", pattern, "--out", out, "--n", str(n),
                    "--num_classes", str(num_classes), "--copies", str(copies)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    with open(out + ".peak_mb") as f:
        peak_mb = float(f.read())
    return {"seconds": round(seconds, 1), "us_per_record": round(1e6 * seconds / n, 1), "peak_mb": round(peak_mb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--child", choices=["select", "gbk"])
    parser.add_argument("--pattern")
    parser.add_argument("--out")
    parser.add_argument("--n", type=int)
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_argument("--copies", type=float, default=0.0, help="Each kept image written about this many times.")
    parser.add_argument("--image_size", type=int, default=4, help="Side of the (random-pixel PNG) images.")
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        child = child_select if args.child == "select" else child_bare_gbk
        child(args.pattern, args.out, args.n, args.num_classes, args.copies)
        with open(args.out + ".peak_mb", "w") as f:  # the child's own peak RSS (Linux: KiB)
            f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            pattern = make_data(tmp, n, args.num_classes, image_size=args.image_size)
            gbk = measure("gbk", pattern, os.path.join(tmp, "gbk"), n, args.num_classes)
            sel = measure("select", pattern, os.path.join(tmp, "sel"), n, args.num_classes, args.copies)
            row = {"n": n, "num_classes": args.num_classes, "copies": args.copies, "image_size": args.image_size,
                   "bare_gbk": gbk, "select": sel,
                   "time_ratio_to_gbk": round(sel["seconds"] / gbk["seconds"], 2),
                   "peak_memory_ratio_to_gbk": round(sel["peak_mb"] / gbk["peak_mb"], 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if len(rows) > 1:
        print(json.dumps({"us_per_record_growth_select": round(rows[-1]["select"]["us_per_record"]
                                                               / rows[0]["select"]["us_per_record"], 2)}))


if __name__ == "__main__":
    main()
