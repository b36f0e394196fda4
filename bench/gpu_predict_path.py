"""The predict handler's own path on an accelerator vs the model alone, in one run (Keras on JAX, no TensorFlow).

Prepared for a lent GPU (or a TPU host), where TensorFlow and Beam are absent:

    KERAS_BACKEND=jax python bench/gpu_predict_path.py --out $OUT/gpu_predict_path.json

For each teacher (default EfficientNet-B0 at 224, batch 512, and B7 at 600, batch 64, bfloat16):
- model alone: the JAX teacher's jitted function (noisystudent/jax_teacher.py JittedModel) on a
  device-resident uint8 batch, images/s;
- handler path: what predict runs per chunk on a JAX worker: real JPEG bytes (500x375, photo-like)
  decoded and resized on the host by the decoding pool on a read-ahead thread (as ReadImageChunks
  does), then `JaxTeacher.label_each` (stack, pad, transfer, jitted call, probabilities back),
  images/s, and its ratio to the model alone (target >= 0.9);
- which layers compute in float32 under mixed bfloat16 (where bfloat16 falls back).
`--forbid_tensorflow` makes `import tensorflow` fail, as on the GPU machine (CI runs it that way on CPU,
tiny: `--teachers cnn-small:32:16 --seconds 1`).
"""

from __future__ import annotations

import argparse
import importlib.abc
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
os.environ.setdefault("KERAS_BACKEND", "jax")


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """`import tensorflow` fails as where it is not installed (unlike a None in sys.modules, which
    Keras' `"tensorflow" in sys.modules` checks would take for an imported TensorFlow)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError(f"No module named {name!r} (--forbid_tensorflow)")
        return None


def float32_layers(model) -> dict[str, int]:
    """Layer classes that compute in float32 inside a mixed-bfloat16 model (count per class)."""
    counts: dict[str, int] = {}
    for layer in model._flatten_layers(include_self=False):
        if getattr(layer.dtype_policy, "compute_dtype", "float32") == "float32" and layer.weights:
            counts[type(layer).__name__] = counts.get(type(layer).__name__, 0) + 1
    return counts


def measure(name: str, size: int, batch: int, precision: str, seconds: float, threads: int) -> dict:
    import jax
    import numpy as np

    from beam_pipelines.read_ahead import read_ahead
    from host_decode import photos
    from model import build_model
    from noisystudent.jax_teacher import HostDecoder, JittedModel, default_decode_threads
    from noisystudent.teacher import JaxTeacher, in_precision

    model = in_precision(build_model(name, 1000 if name.startswith("efficientnet") else 10,
                                     input_shape=(size, size, 3)), precision)
    forward = JittedModel(model, batch)
    pixels = jax.device_put(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
    start = time.perf_counter()
    jax.block_until_ready(forward._forward(forward._trainable, forward._non_trainable, pixels))
    compile_s = time.perf_counter() - start
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        out = forward._forward(forward._trainable, forward._non_trainable, pixels)
        n += batch
    jax.block_until_ready(out)
    alone = n / (time.perf_counter() - start)

    threads = threads or default_decode_threads()
    decoder = HostDecoder(size, False, threads)
    teacher = JaxTeacher(forward, decoder, size, int(model.output_shape[-1]))
    encoded = photos(min(batch, 256))
    chunk = [encoded[i % len(encoded)] for i in range(batch)]

    def chunks():  # the reader: decode ahead of the accelerator, as ReadImageChunks does on a JAX worker
        while True:
            yield chunk, decoder.decode(chunk)

    teacher.label_each(chunk)  # warm the pool and the transfer
    n, start = 0, time.perf_counter()
    for encoded_chunk, decoded in read_ahead(chunks, 2):
        labels = teacher.label_each(encoded_chunk, decoded)
        n += len(encoded_chunk)
        if time.perf_counter() - start >= seconds:
            break
    handler = n / (time.perf_counter() - start)
    assert not labels.errors and np.isfinite(labels.probabilities).all()
    return {"teacher": f"{name}@{size}", "batch": batch, "precision": precision, "device": str(jax.devices()[0]),
            "decode_threads": threads, "compile_s": round(compile_s, 1), "model_alone_images_per_s": round(alone),
            "handler_images_per_s": round(handler), "handler_to_model": round(handler / alone, 2),
            "float32_layers_under_mixed_bfloat16": float32_layers(model) if precision == "bfloat16" else {},
            "timing": teacher.timing()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teachers", default="efficientnet-b0:224:512,efficientnet-b7:600:64",
                        help="model:size:batch, comma-separated")
    parser.add_argument("--precision", default="bfloat16")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--decode_threads", type=int, default=0)
    parser.add_argument("--out", default="")
    parser.add_argument("--forbid_tensorflow", action="store_true")
    args = parser.parse_args()
    if args.forbid_tensorflow:
        sys.meta_path.insert(0, _NoTensorFlow())
    rows = []
    for spec in args.teachers.split(","):
        name, size, batch = spec.split(":")
        rows.append(measure(name, int(size), int(batch), args.precision, args.seconds, args.decode_threads))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
