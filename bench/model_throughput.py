"""Inference throughput of the registered models: images/s at a fixed batch.

Prints, per model, images/s of a compiled `predict_on_batch` (the limit a Beam
inference stage can approach) and its ratio to keras.applications'
EfficientNetB0 measured in the same process (the baseline). XLA is off by
default: on CPU it made EfficientNet-B0 ten times slower (357 vs 3,080 images/s
at 32x32 here); pass --jit on accelerators.

    python bench/model_throughput.py --models cnn-small,wrn-28-2,efficientnet-b0 --size 32
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from model import build_model, count_params  # noqa: E402


def images_per_second(model: keras.Model, size: int, batch: int, seconds: float, jit: bool) -> float:
    model.compile(jit_compile=jit)
    x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    model.predict_on_batch(x)  # compile
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.predict_on_batch(x)
        done += batch
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="cnn-small,wrn-28-2,efficientnet-b0")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--jit", action="store_true", help="XLA-compile (accelerators).")
    args = parser.parse_args()
    shape = (args.size, args.size, 3)
    baseline = keras.applications.EfficientNetB0(weights=None, input_shape=shape, classes=10)
    base = images_per_second(baseline, args.size, args.batch, args.seconds, args.jit)
    print(json.dumps({"model": "keras.applications.EfficientNetB0 (baseline)",
                      "images_per_s": round(base, 1)}), flush=True)
    for name in args.models.split(","):
        model = build_model(name, 10, input_shape=shape)
        ips = images_per_second(model, args.size, args.batch, args.seconds, args.jit)
        print(json.dumps({"model": name, "params_10_classes": count_params(name, 10),
                          "images_per_s": round(ips, 1), "ratio_to_baseline": round(ips / base, 3)}),
              flush=True)
    print(json.dumps({"backend": keras.backend.backend(), "size": args.size, "batch": args.batch}))


if __name__ == "__main__":
    main()
