"""Teacher inference throughput: our Beam predict job vs raw in-process inference and the peers.

All figures are images/s on the same records and model, in one process, with
pipeline start-up and model loading included for the Beam variants:

- raw:        tf.data reads the shards; one tf.function parses, decodes and infers
              batches of 256 (the limit any pipeline can approach);
- ours:       `beam_pipelines.predict` (RunInference + KerasTeacherHandler), writing
              prediction records, with its local defaults (FnApiRunner, two threads);
- stock:      ReadFromTFRecord, per-element Python parse + decode, RunInference with
              Beam's TFModelHandlerNumpy on the .keras model;
- tfx-bsl:    tfx_bsl's RunInference handler (what TFX BulkInferrer runs) on our
              exported SavedModel's serving_default (serialized tf.Examples in).

    python bench/predict_throughput.py --images 100000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from beam_pipelines import predict  # noqa: E402
from model import build_model  # noqa: E402
from noisystudent import image_ops, records  # noqa: E402
from trainer.export import export_saved_model  # noqa: E402

RUNNER = ["--runner=FnApiRunner"]


def make_records(directory: str, n: int, shards: int, size: int) -> list[str]:
    rng = np.random.default_rng(0)
    pool = [tf.io.encode_png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).numpy() for _ in range(256)]
    paths = [os.path.join(directory, f"images-{s:05d}.tfrecord") for s in range(shards)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    for i in range(n):
        writers[i % shards].write(records.encode_image_record(f"bench/{i:08d}", pool[i % len(pool)]))
    for w in writers:
        w.close()
    return paths


def raw_rate(files, model, size, batch=256) -> float:
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def infer(serialized):
        parsed = tf.io.parse_example(serialized, {records.IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string)})
        return model(image_ops.decode_batch(parsed[records.IMAGE_ENCODED], size), training=False)

    ds = tf.data.TFRecordDataset(files).batch(batch).prefetch(2)
    infer(next(iter(ds)))  # trace once
    best = 0.0
    for _ in range(2):  # the limit: the faster of two passes (this VM's speed drifts)
        n, start = 0, time.perf_counter()
        for b in ds:
            infer(b).numpy()
            n += int(b.shape[0])
        best = max(best, n / (time.perf_counter() - start))
    return best


def ours_rate(files, model_path, out_dir, beam_args=()) -> float:
    start = time.perf_counter()
    summary = predict.run(["--input", os.path.join(os.path.dirname(files[0]), "images-*.tfrecord"),
                           "--model", model_path, "--output_dir", out_dir, "--overwrite",
                           *beam_args])  # the job's defaults, unless --ours_args says otherwise
    return summary["predicted"] / (time.perf_counter() - start)


def stock_rate(files, model_path, size) -> float:
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerNumpy

    def decode(serialized):
        r = records.parse_image_record(serialized)
        image = tf.image.resize(tf.io.decode_image(r.encoded, channels=3, expand_animations=False), [size, size])
        return image.numpy()

    counter = beam.metrics.Metrics.counter("bench", "predicted")
    start = time.perf_counter()
    with beam.Pipeline(argv=RUNNER) as p:
        _ = (p | beam.io.ReadFromTFRecord(os.path.join(os.path.dirname(files[0]), "images-*.tfrecord"))
             | beam.Map(decode)
             | RunInference(TFModelHandlerNumpy(model_path, min_batch_size=256, max_batch_size=256))
             | beam.Map(lambda r: counter.inc()))
    return _count(files) / (time.perf_counter() - start)


def tfx_bsl_rate(files, saved_model_dir) -> float:
    from apache_beam.ml.inference.base import RunInference
    from tfx_bsl.public.beam import run_inference
    from tfx_bsl.public.proto import model_spec_pb2

    spec = model_spec_pb2.InferenceSpecType(saved_model_spec=model_spec_pb2.SavedModelSpec(
        model_path=saved_model_dir, signature_name=["serving_default"]))
    start = time.perf_counter()
    with beam.Pipeline(argv=RUNNER) as p:
        _ = (p | beam.io.ReadFromTFRecord(os.path.join(os.path.dirname(files[0]), "images-*.tfrecord"),
                                          coder=beam.coders.ProtoCoder(tf.train.Example))
             | RunInference(run_inference.CreateModelHandler(spec))
             | beam.combiners.Count.Globally())
    return _count(files) / (time.perf_counter() - start)


def _count(files) -> int:
    return sum(1 for f in files for _ in tf.data.TFRecordDataset(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--model", default="efficientnet-b0")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--ours_args", default="", help="Space-separated Beam flags for our job.")
    parser.add_argument("--skip", default="", help="Comma-separated variants to skip (stock,tfx-bsl).")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        files = make_records(tmp, args.images, args.shards, args.size)
        model = build_model(args.model, 10, input_shape=(args.size, args.size, 3))
        model_path = os.path.join(tmp, "teacher.keras")
        model.save(model_path)
        export_saved_model(model, os.path.join(tmp, "saved_model"))
        result = {"images": args.images, "model": f"{args.model}@{args.size}", "cpus": os.cpu_count(),
                  "ours_args": args.ours_args or "defaults"}
        result["raw_images_per_s"] = round(raw_rate(files, model, args.size))
        print(json.dumps(result), flush=True)
        variants = {"ours": lambda: ours_rate(files, model_path, os.path.join(tmp, "preds"), args.ours_args.split()),
                    "stock": lambda: stock_rate(files, model_path, args.size),
                    "tfx-bsl": lambda: tfx_bsl_rate(files, os.path.join(tmp, "saved_model"))}
        for name, fn in variants.items():
            if name in skip:
                continue
            try:
                rate = fn()
                result[f"{name}_images_per_s"] = round(rate)
                result[f"{name}_ratio_to_raw"] = round(rate / result["raw_images_per_s"], 3)
            except Exception as e:  # a peer that fails to run is reported, not fatal
                result[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
            print(json.dumps({k: v for k, v in result.items() if k.startswith(name)}), flush=True)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
