"""Accelerator check of model/ and the NoisyStudent loss on Keras-JAX (no TensorFlow needed).

Run on a GPU/TPU host with KERAS_BACKEND=jax:
    KERAS_BACKEND=jax python bench/gpu_check.py --out results.json

Checks and measures, in one process:
- every registered model builds, has the arithmetic parameter count (L2 built for real),
  and is noised only in training;
- jitted inference images/s (EfficientNet-B0 at 224 and 32, B7 at 600) against
  keras.applications' EfficientNetB0 at 224 measured in the same run (ratio);
- NoisyStudent training steps/s (offline labels, batch B + 5B) against a plain
  supervised `fit` of the same student on the same 6B images per step (ratio, target >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from model import MODELS, build_model, count_params  # noqa: E402
from trainer.noisy_student import NoisyStudent  # noqa: E402

RESULTS: dict = {}


def log(key, value):
    RESULTS[key] = value
    print(json.dumps({key: value}), flush=True)


def inference_rate(model, batch, size, seconds=6.0, dtype="float32"):
    x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype(dtype)
    model.compile(jit_compile=True)
    t0 = time.perf_counter()
    model.predict_on_batch(x)
    compile_s = time.perf_counter() - t0
    import jax
    xd = jax.device_put(x)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        model.predict_on_batch(xd)
        n += batch
    return n / (time.perf_counter() - t), compile_s


class StepTimer(keras.callbacks.Callback):
    def __init__(self, skip):
        super().__init__()
        self.skip, self.times = skip, []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())

    def rate(self):
        t = self.times[self.skip:]
        return (len(t) - 1) / (t[-1] - t[0])


def _fake_batches(size, batch, ratio):
    rng = np.random.default_rng(0)
    n_u = batch * ratio
    xl = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    xu = rng.uniform(0, 255, (n_u, size, size, 3)).astype("float32")
    yl = rng.integers(0, 10, batch)
    yu = np.eye(10, dtype="float32")[rng.integers(0, 10, n_u)]
    return xl, xu, yl, yu


def noisy_student_rate(name, size, batch, ratio, steps, weight_decay=1e-4):
    """NoisyStudent optimizer steps/s on a fixed batch of B labeled + ratio*B pseudo-labeled images."""
    xl, xu, yl, yu = _fake_batches(size, batch, ratio)

    def batches_ns():
        while True:
            yield {"labeled": xl, "unlabeled": xu}, {"labeled": yl, "unlabeled": yu}

    ns = NoisyStudent(build_model(name, 10, input_shape=(size, size, 3)))
    ns.compile(keras.optimizers.SGD(0.01, momentum=0.9), unlabeled_weight=ratio, label_smoothing=0.1,
               weight_decay=weight_decay)
    timer = StepTimer(skip=5)
    ns.fit(batches_ns(), steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer])
    return timer.rate()


def training_rates(name, size, batch, ratio, steps, weight_decay=1e-4):
    ns_rate = noisy_student_rate(name, size, batch, ratio, steps, weight_decay)
    xl, xu, yl, yu = _fake_batches(size, batch, ratio)

    plain = build_model(name, 10, input_shape=(size, size, 3))
    plain.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy())
    x_all = np.concatenate([xl, xu])
    y_all = np.concatenate([yl, yu.argmax(1)])

    def batches_plain():
        while True:
            yield x_all, y_all

    timer2 = StepTimer(skip=5)
    plain.fit(batches_plain(), steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer2])
    plain_rate = timer2.rate()
    return ns_rate, plain_rate


def training_comparison(quick: bool) -> None:
    """NoisyStudent steps/s vs plain fit; also without weight decay (plain fit has none)."""
    keras.backend.clear_session()
    train = {}
    cases = (("cnn-small", 32, 8),) if quick else (("efficientnet-b0", 224, 32), ("wrn-28-2", 32, 128))
    for name, size, batch in cases:
        ns_rate, plain_rate = training_rates(name, size, batch, 5, 10 if quick else 40)
        ns_no_wd, _ = training_rates(name, size, batch, 5, 10 if quick else 40, weight_decay=0.0)
        train[f"{name}@{size} B={batch}+5B"] = {"noisy_student_steps_per_s": round(ns_rate, 2),
                                                "plain_fit_steps_per_s": round(plain_rate, 2),
                                                "ratio": round(ns_rate / plain_rate, 3),
                                                "ratio_without_weight_decay": round(ns_no_wd / plain_rate, 3),
                                                "images_per_s": round(ns_rate * batch * 6)}
        keras.backend.clear_session()
    log("training", train)


def precision_comparison(quick: bool) -> None:
    """Inference and NoisyStudent training images/s in float32 and Keras mixed bfloat16, one process."""
    out = {}
    infer_cases = (("efficientnet-b0", 64, 8),) if quick else (("efficientnet-b0", 224, 256),
                                                               ("efficientnet-b7", 600, 32))
    train_cases = (("cnn-small", 32, 8),) if quick else (("efficientnet-b0", 224, 32),)
    for precision, policy in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
        row = {}
        for name, size, batch in infer_cases:
            keras.backend.clear_session()  # resets the global dtype policy too: set it after
            keras.mixed_precision.set_global_policy(policy)
            m = build_model(name, 1000, input_shape=(size, size, 3))
            row["conv compute dtype"] = m.get_layer("stem_conv").compute_dtype
            r, compile_s = inference_rate(m, batch, size, 1 if quick else 6)
            row[f"inference {name}@{size} bs{batch}"] = {"images_per_s": round(r), "compile_s": round(compile_s, 1)}
        for name, size, batch in train_cases:
            keras.backend.clear_session()
            keras.mixed_precision.set_global_policy(policy)
            steps = noisy_student_rate(name, size, batch, 5, 10 if quick else 40)
            row[f"noisy-student training {name}@{size} B={batch}+5B"] = {
                "steps_per_s": round(steps, 2), "images_per_s": round(steps * batch * 6)}
        out[precision] = row
        log(f"precision_{precision}", row)
    keras.mixed_precision.set_global_policy("float32")
    log("precision", out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--skip_l2", action="store_true")
    parser.add_argument("--quick", action="store_true", help="Tiny sizes: a CPU smoke test of this script.")
    parser.add_argument("--train_only", action="store_true", help="Only the training-step comparison.")
    parser.add_argument("--precision_only", action="store_true",
                        help="Only float32 vs bfloat16 inference and training rates.")
    args = parser.parse_args()
    import jax
    log("devices", [str(d) for d in jax.devices()])
    log("keras", keras.__version__ + " / " + keras.backend.backend())

    if args.train_only or args.precision_only:
        (precision_comparison if args.precision_only else training_comparison)(args.quick)
        with open(args.out, "w") as f:
            json.dump(RESULTS, f, indent=2)
        return
    counts = {}
    for name in MODELS:
        if name == "efficientnet-l2" and args.skip_l2:
            continue
        t = time.perf_counter()
        m = build_model(name, 1000, input_shape=(224, 224, 3) if name != "efficientnet-l2" else None)
        if args.quick and name.startswith("efficientnet-b") and name > "efficientnet-b1":
            del m
            continue
        counts[name] = {"built": m.count_params(), "arithmetic": count_params(name, 1000),
                        "build_s": round(time.perf_counter() - t, 1)}
        del m
        keras.backend.clear_session()
    log("param_counts", counts)

    noise = {}
    for name in ("cnn-small", "wrn-28-2", "efficientnet-b0"):
        m = build_model(name, 10, input_shape=(32, 32, 3), dropout_rate=0.5, stochastic_depth_rate=0.5)
        x = np.random.default_rng(1).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
        a, b = np.asarray(m(x, training=True)), np.asarray(m(x, training=True))
        c, d = np.asarray(m(x, training=False)), np.asarray(m(x, training=False))
        noise[name] = {"train_calls_differ": bool(not np.allclose(a, b)), "inference_identical": bool(np.array_equal(c, d))}
    log("noise_only_in_training", noise)

    keras.backend.clear_session()
    q = args.quick
    big = 64 if q else 224
    base = keras.applications.EfficientNetB0(weights=None, input_shape=(big, big, 3), classes=1000)
    base_rate, _ = inference_rate(base, 8 if q else 256, big, 1 if q else 6)
    rates = {f"keras.applications.EfficientNetB0@{big} (baseline)": round(base_rate)}
    cases = ((("efficientnet-b0", 64, 8), ("efficientnet-b7", 64, 4)) if q else
             (("efficientnet-b0", 224, 256), ("efficientnet-b0", 32, 1024), ("efficientnet-b7", 600, 32),
              ("wrn-28-2", 32, 1024)))
    for name, size, batch in cases:
        keras.backend.clear_session()
        m = build_model(name, 1000 if size > 32 else 10, input_shape=(size, size, 3))
        r, compile_s = inference_rate(m, batch, size, 1 if q else 6)
        rates[f"{name}@{size} bs{batch}"] = {"images_per_s": round(r), "compile_s": round(compile_s, 1)}
        if name == "efficientnet-b0" and size == big:
            rates[f"b0@{big} ratio to keras.applications"] = round(r / base_rate, 3)
    log("inference_float32", rates)

    training_comparison(q)
    with open(args.out, "w") as f:
        json.dump(RESULTS, f, indent=2)


if __name__ == "__main__":
    main()
