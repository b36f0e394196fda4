"""`python -m trainer.task` under KERAS_BACKEND=jax, as a TPU job runs it: train, evaluate, export.

The SavedModel's string signatures need TensorFlow; on JAX the trainer exports from the saved
.keras file in a TensorFlow-backend process. The export must load in plain TensorFlow and give
the model's predictions.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("jax")


def test_the_trainer_runs_end_to_end_on_jax_and_exports_a_savedmodel_tensorflow_serves(tmp_path):
    import keras

    from beam_pipelines import ingest_digits
    from noisystudent import dataset_dir, records

    data = tmp_path / "data"
    ingest_digits.run(["--output_dir", str(data)])
    out = tmp_path / "run"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-m", "trainer.task", "--preset", "digits", "--labeled_data", str(data),
         "--train_steps", "20", "--steps_per_epoch", "10", "--warmup_steps", "0", "--randaugment_ops", "1",
         "--ema_momentum", "0.99", "--input_noise", "imagenet",  # the EMA and the crop on JAX too
         "--output_dir", str(out), "--verbose", "0"],
        env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "eval.json").read_text())
    assert report["steps"] == 20 and 0.0 <= report["top1_accuracy"] <= 1.0
    assert json.loads((out / "train_config.json").read_text())["model"] == "cnn-small"

    loaded = tf.saved_model.load(str(out / "saved_model"))
    model = keras.saving.load_model(str(out / "model.keras"), compile=False)  # this process: TensorFlow
    serialized = list(dataset_dir.iter_split_records(str(data), "test"))[:16]
    encoded = [records.parse_image_record(r).encoded for r in serialized]
    from_examples = loaded.signatures["serving_default"](examples=tf.constant(serialized))["probabilities"]
    from_encoded = loaded.signatures["serving_encoded"](images=tf.constant(encoded))["probabilities"]
    pixels = tf.stack([tf.image.resize(tf.io.decode_png(e, channels=3), [32, 32]) for e in encoded])
    expected = model(pixels, training=False)
    np.testing.assert_allclose(from_examples.numpy(), np.asarray(expected), atol=1e-5)
    np.testing.assert_allclose(from_encoded.numpy(), np.asarray(expected), atol=1e-5)
