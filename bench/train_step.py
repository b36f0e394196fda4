"""Trainer throughput: the noisy-student step vs plain supervised fit, and the input pipeline vs the step.

Same model, same images per step (B labeled + unlabel_ratio x B pseudo-labeled),
in one process:
- step ratio   = NoisyStudent (offline labels) images/s / plain `fit` images/s, both fed
                 from cached batches so only the step is timed (target >= 0.9);
- input ratio  = images/s the tf.data pipeline with RandAugment produces alone /
                 images/s the noisy-student step consumes (target >= 2: the step never waits).

    python bench/train_step.py --model cnn-small --size 32 --batch 32 --ratio 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from model import build_model  # noqa: E402
from noisystudent import records  # noqa: E402
from trainer import data  # noqa: E402
from trainer.augment import RandAugment  # noqa: E402
from trainer.noisy_student import NoisyStudent  # noqa: E402


class Timer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())

    def steps_per_s(self, skip=5):
        t = self.times[skip:]
        return (len(t) - 1) / (t[-1] - t[0])


def write_records(path: str, n: int, size: int, pseudo: bool) -> None:
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(path) as w:
        for i in range(n):
            png = tf.io.encode_png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).numpy()
            if pseudo:
                w.write(records.encode_pseudo_labeled(f"u/{i}", png, rng.dirichlet(np.ones(10)), "t"))
            else:
                w.write(records.encode_image_record(f"l/{i}", png, int(rng.integers(0, 10))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn-small")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--ratio", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--magnitude", type=float, default=5)
    args = parser.parse_args()
    per_step = args.batch * (1 + args.ratio)
    with tempfile.TemporaryDirectory() as tmp:
        lab, unl = os.path.join(tmp, "l.tfrecord"), os.path.join(tmp, "u.tfrecord")
        write_records(lab, 512, args.size, False)
        write_records(unl, 2048, args.size, True)
        augment = RandAugment(2, args.magnitude)
        labeled = data.labeled_images([lab], 10, args.size, args.batch, augment, 512)
        unlabeled = data.pseudo_labeled_images([unl], 10, args.size, args.batch * args.ratio, augment)
        train = data.training_batches(labeled, unlabeled, "offline")

        # Input pipeline alone (RandAugment on every image).
        it = iter(train)
        for _ in range(3):
            next(it)
        start, n = time.perf_counter(), 0
        for _ in range(args.steps):
            next(it)
            n += per_step
        input_rate = n / (time.perf_counter() - start)

        cached = train.take(8).cache().repeat()
        ns = NoisyStudent(build_model(args.model, 10, input_shape=(args.size, args.size, 3)))
        ns.compile(keras.optimizers.SGD(0.01, momentum=0.9), unlabeled_weight=args.ratio, label_smoothing=0.1,
                   weight_decay=1e-4)
        t1 = Timer()
        ns.fit(cached, steps_per_epoch=args.steps, epochs=1, verbose=0, callbacks=[t1], shuffle=False)
        ns_rate = t1.steps_per_s() * per_step

        plain_ds = cached.map(lambda x, y: (tf.concat([x["labeled"], x["unlabeled"]], 0),
                                            tf.concat([y["labeled"], tf.cast(tf.argmax(y["unlabeled"], 1),
                                                                             tf.int32)], 0)))
        plain = build_model(args.model, 10, input_shape=(args.size, args.size, 3))
        plain.compile(keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
        t2 = Timer()
        plain.fit(plain_ds, steps_per_epoch=args.steps, epochs=1, verbose=0, callbacks=[t2], shuffle=False)
        plain_rate = t2.steps_per_s() * per_step
    print(json.dumps({
        "model": f"{args.model}@{args.size}", "images_per_step": per_step, "backend": keras.backend.backend(),
        "noisy_student_images_per_s": round(ns_rate), "plain_fit_images_per_s": round(plain_rate),
        "step_ratio": round(ns_rate / plain_rate, 3), "input_pipeline_images_per_s": round(input_rate),
        "input_ratio_to_step": round(input_rate / ns_rate, 2), "cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
