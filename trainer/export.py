"""Export a trained Keras model as a SavedModel that needs no project code to run.

Signatures (all return {"probabilities": float32 [N, classes]}):
- serving_default  (examples: string [N])  serialized image records (tf.train.Example
                   with image/encoded), what TFX BulkInferrer and tfx-bsl's
                   RunInference handler feed;
- serving_encoded  (images: string [N])    PNG/JPEG bytes;
- serving_images   (images: uint8 [N,H,W,3]) pixels at the model's input size.
Plain `tf.saved_model.load(dir).signatures[...]` runs them.
"""

from __future__ import annotations

import json
import posixpath
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
