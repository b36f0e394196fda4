"""Export a trained Keras model as a SavedModel that needs no project code to run.

Signatures (all return {"probabilities": float32 [N, classes]}):
- serving_default  (examples: string [N])  serialized image records (tf.train.Example
                   with image/encoded), what TFX BulkInferrer and tfx-bsl's
                   RunInference handler feed;
- serving_encoded  (images: string [N])    PNG/JPEG bytes;
- serving_images   (images: uint8 [N,H,W,3]) pixels at the model's input size.
Plain `tf.saved_model.load(dir).signatures[...]` runs them.

String-input signatures can only be traced by TensorFlow: Keras on JAX fails
with "dtype object is not a valid JAX array type". A model trained on JAX (TPU
jobs) is exported from its saved .keras file by a TensorFlow-backend process:
`export_from_keras_file`, or `python -m trainer.export --model M --export_dir D`.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import subprocess
import sys
from typing import Optional, Sequence

import keras
import tensorflow as tf

from noisystudent import image_ops, records

METADATA_FILE = "noisystudent.json"


def model_image_size(model: keras.Model) -> int:
    shape = model.input_shape
    if shape[1] is None or shape[1] != shape[2]:
        raise ValueError(f"model input {shape} is not a fixed square image")
    return int(shape[1])


def export_saved_model(model: keras.Model, export_dir: str,
                       class_names: Optional[Sequence[str]] = None) -> str:
    """Write the SavedModel (+ noisystudent.json with image size and class names)."""
    size = model_image_size(model)

    def predict(images):
        return {"probabilities": model(images, training=False)}

    def from_encoded(images):
        return predict(image_ops.decode_batch(images, size))

    def from_examples(examples):
        parsed = tf.io.parse_example(examples, {records.IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string)})
        return from_encoded(parsed[records.IMAGE_ENCODED])

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", from_examples,
                         input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    archive.add_endpoint("serving_encoded", from_encoded,
                         input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    archive.add_endpoint("serving_images", lambda images: predict(tf.cast(images, tf.float32)),
                         input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="images")])
    archive.write_out(export_dir, verbose=False)
    metadata = {"image_size": size, "num_classes": int(model.output_shape[-1]),
                "class_names": list(class_names) if class_names else None, "model": model.name}
    with tf.io.gfile.GFile(posixpath.join(export_dir, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=2)
    return export_dir


def export_from_keras_file(keras_path: str, export_dir: str, class_names: Optional[Sequence[str]] = None,
                           timeout_s: int = 3600) -> str:
    """Export a saved .keras model in a TensorFlow-backend process, whatever backend this one runs."""
    command = [sys.executable, "-m", "trainer.export", "--model", keras_path, "--export_dir", export_dir,
               "--class_names", json.dumps(list(class_names) if class_names else None)]
    result = subprocess.run(command, env=dict(os.environ, KERAS_BACKEND="tensorflow"), capture_output=True,
                            text=True, timeout=timeout_s)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"exporting {keras_path} to {export_dir} with TensorFlow failed:\n{tail}")
    return export_dir


def main(argv: Optional[Sequence[str]] = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m trainer.export",
                                     description="A .keras model -> SavedModel with the serving signatures.")
    parser.add_argument("--model", required=True, help="The .keras file.")
    parser.add_argument("--export_dir", required=True, help="Where the SavedModel goes (gs:// works).")
    parser.add_argument("--class_names", default="null", help="JSON list of class names, or null.")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("trainer.export needs KERAS_BACKEND=tensorflow (string signatures are TensorFlow's)")
    from noisystudent.teacher import load_keras_model

    model = load_keras_model(args.model)
    return export_saved_model(model, args.export_dir, json.loads(args.class_names))


if __name__ == "__main__":
    main()
