"""The teacher, loaded once for every consumer: Beam's predict job, classify, features, the trainer.

`load_teacher` puts a `.keras` file (safe mode) or a SavedModel written by
trainer/export.py behind one compiled function, string images [N] -> float32
probabilities [N, C], always in inference mode (no noise): decoding and
resizing are noisystudent.image_ops, the same as training and serving.
`check_model_file` refuses a file that cannot load, naming it, before any job
starts; `load_keras_teacher` is the frozen Keras model the trainer's online
mode runs inside its step.

A batch holding an image TensorFlow cannot decode is split in halves until the
bad image stands alone (`LoadedTeacher.label_each`; log2(batch) extra calls per
bad image), so only that image fails: its row carries the error.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np


@dataclasses.dataclass
class ChunkLabels:
    """The teacher's output for a chunk: one row per image; failed rows are NaN with a reason."""

    probabilities: np.ndarray  # float32 [N, C]
    errors: dict[int, str]


class UndecodableImage(ValueError):
    """An image in the batch is not one TensorFlow can decode (pickles across processes)."""


@dataclasses.dataclass
class LoadedTeacher:  # a plain class: Beam's model sharing holds it by weak reference
    predict: Any  # tf.function: string [N] -> float32 [N, C]
    image_size: int
    num_classes: int

    def label(self, encoded: list[bytes]) -> np.ndarray:
        """Encoded images -> float32 [N, C] probabilities; UndecodableImage if any fails."""
        import tensorflow as tf

        try:
            return self.predict(tf.constant(encoded, tf.string)).numpy()
        except tf.errors.InvalidArgumentError as e:
            raise UndecodableImage(e.message.splitlines()[0][:200]) from None

    def label_each(self, encoded: list[bytes]) -> ChunkLabels:
        """Like `label`, but a bad image fails only its own row (halving the batch to find it)."""
        probs = np.full((len(encoded), self.num_classes), np.nan, np.float32)
        errors: dict[int, str] = {}
        pending = [(0, len(encoded))] if encoded else []
        while pending:
            lo, hi = pending.pop()
            try:
                probs[lo:hi] = self.label(encoded[lo:hi])
            except UndecodableImage as e:
                if hi - lo == 1:
                    errors[lo] = f"undecodable image: {e}"
                else:
                    mid = (lo + hi) // 2
                    pending += [(mid, hi), (lo, mid)]
        return ChunkLabels(probs, errors)


KERAS_ARCHIVE_FILES = ("config.json", "model.weights.h5")  # what keras.saving writes into a .keras zip
SAVED_MODEL_SIGNATURES = ("serving_encoded", "serving_images")  # what trainer/export.py writes


def check_model_file(model_path: str, flag: str = "--model") -> None:
    """Refuse a teacher that cannot load, before any pipeline starts; the error names the file.

    Reads only the archive's directory and config (a .keras file) or the
    SavedModel proto's signature names, not the weights.
    """
    import json
    import zipfile

    import tensorflow as tf

    flag = f"{flag} {model_path}"
    if not tf.io.gfile.exists(model_path):
        raise FileNotFoundError(f"{flag} does not exist")
    if model_path.endswith(".keras"):
        try:
            with tf.io.gfile.GFile(model_path, "rb") as f, zipfile.ZipFile(f) as archive:
                missing = [n for n in KERAS_ARCHIVE_FILES if n not in archive.namelist()]
                if missing:
                    raise ValueError(f"{flag}: not a Keras 3 model archive (no {', '.join(missing)} inside)")
                config = json.loads(archive.read("config.json"))
        except zipfile.BadZipFile:
            raise ValueError(f"{flag}: not a Keras model file (a .keras file is a zip archive; this one is "
                             "not: damaged, truncated, or another format renamed)") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{flag}: its config.json is not valid JSON ({e})") from None
        if not isinstance(config, dict) or "class_name" not in config:
            raise ValueError(f"{flag}: its config.json describes no Keras object (no class_name)")
        return
    pb = f"{model_path.rstrip('/')}/saved_model.pb"
    if not tf.io.gfile.isdir(model_path) or not tf.io.gfile.exists(pb):
        raise ValueError(f"{flag}: neither a .keras file nor a SavedModel directory (no saved_model.pb)")
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        with tf.io.gfile.GFile(pb, "rb") as f:
            proto.ParseFromString(f.read())
    except Exception as e:  # protobuf's DecodeError has no stable import path
        raise ValueError(f"{flag}: saved_model.pb is not a SavedModel proto ({type(e).__name__})") from None
    signatures = {name for graph in proto.meta_graphs for name in graph.signature_def}
    missing = [name for name in SAVED_MODEL_SIGNATURES if name not in signatures]
    if missing:
        raise ValueError(f"{flag}: the SavedModel lacks the signature(s) {missing} that trainer/export.py "
                         f"writes (it has: {sorted(signatures) or 'none'})")


def model_num_classes(model_path: str) -> Optional[int]:
    """The classes a model predicts, read from its files without loading it (None where they do not say):
    a .keras file's output layer in config.json, a SavedModel's `probabilities` output."""
    import json
    import zipfile

    import tensorflow as tf

    check_model_file(model_path)
    if model_path.endswith(".keras"):
        with tf.io.gfile.GFile(model_path, "rb") as f, zipfile.ZipFile(f) as archive:
            config = json.loads(archive.read("config.json")).get("config", {})
        outputs = config.get("output_layers") or []
        if isinstance(outputs, list) and outputs and isinstance(outputs[0], str):
            outputs = [outputs]  # one output: [name, node, tensor]
        names = {o[0] for o in outputs if isinstance(o, list) and o}
        units = [layer.get("config", {}).get("units") for layer in config.get("layers", [])
                 if isinstance(layer, dict) and layer.get("config", {}).get("name") in names]
        return int(units[0]) if len(units) == 1 and units[0] else None
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(f"{model_path.rstrip('/')}/saved_model.pb", "rb") as f:
        proto.ParseFromString(f.read())
    for graph in proto.meta_graphs:
        output = graph.signature_def["serving_encoded"].outputs.get("probabilities")
        if output is not None and output.tensor_shape.dim and output.tensor_shape.dim[-1].size > 0:
            return int(output.tensor_shape.dim[-1].size)
    return None


def check_class_count(model_path: str, model_flag: str, data_classes: Optional[int], data: str,
                      data_flag: str) -> Optional[int]:
    """Refuse a model whose class count differs from its data's, naming both numbers and both files;
    returns the model's class count (None where its files do not say)."""
    classes = model_num_classes(model_path)
    if classes and data_classes and classes != data_classes:
        raise ValueError(f"{model_flag} {model_path} predicts {classes} classes, but {data_flag} {data} has "
                         f"{data_classes} (its summary.json): a teacher must be trained on the same classes")
    return classes


PRECISIONS = ("float32", "bfloat16")


def in_precision(model, precision: str):
    """The model computing in `precision`: bfloat16 = Keras mixed precision (float32 weights, and the
    classifier's softmax kept in float32); float32 returns the model itself."""
    import keras

    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    if precision == "float32":
        return model

    def clone(layer):
        config = layer.get_config()
        if layer.name != "predictions":
            config["dtype"] = "mixed_bfloat16"
        return layer.__class__.from_config(config)

    mixed = keras.models.clone_model(model, clone_function=clone)
    mixed.set_weights(model.get_weights())
    return mixed


def load_teacher(model_path: str, image_size: Optional[int] = None, center_crop: bool = False,
                 precision: str = "float32") -> LoadedTeacher:
    """Load a .keras model or an exported SavedModel behind one batched decode+infer function.

    `center_crop`: the original's ImageNet labelling crop (noisystudent.image_ops.center_crop).
    `precision`: bfloat16 runs a .keras teacher in mixed precision (GPU and TPU workers).
    """
    import keras
    import tensorflow as tf

    from noisystudent import image_ops

    check_model_file(model_path)
    if model_path.endswith(".keras"):
        model = in_precision(keras.saving.load_model(model_path, safe_mode=True, compile=False), precision)
        size = image_size or int(model.input_shape[1])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def predict(encoded):
            return model(image_ops.decode_batch(encoded, size, center_crop), training=False)

        return LoadedTeacher(predict, size, int(model.output_shape[-1]))
    if precision != "float32":
        raise ValueError(f"--model {model_path}: --precision {precision} needs the .keras model (a SavedModel's "
                         "graph is fixed in float32)")
    if not tf.io.gfile.exists(f"{model_path.rstrip('/')}/saved_model.pb"):
        raise FileNotFoundError(f"--model {model_path}: neither a .keras file nor a SavedModel directory")
    loaded = tf.saved_model.load(model_path)
    signature = loaded.signatures["serving_encoded"]
    num_classes = int(signature.structured_outputs["probabilities"].shape[-1])
    size = image_size or int(loaded.signatures["serving_images"].structured_input_signature[1]["images"].shape[1])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def predict_saved(encoded):
        if not center_crop:
            return signature(images=encoded)["probabilities"]
        # serving_encoded resizes the whole image: crop here and feed the pixel signature.
        pixels = image_ops.decode_batch(encoded, size, crop=True)
        pixels = tf.cast(tf.clip_by_value(tf.round(pixels), 0.0, 255.0), tf.uint8)
        return loaded.signatures["serving_images"](images=pixels)["probabilities"]

    predict_saved.keep_alive = loaded  # the signature's variables live as long as the function
    return LoadedTeacher(predict_saved, size, num_classes)


def load_keras_model(model_path: str, flag: str = "--model"):
    """A trained .keras model (safe mode, not compiled), checked first (`check_model_file`) so errors name
    the file: what the trainer initialises from and exports."""
    import keras

    check_model_file(model_path, flag)
    if not model_path.endswith(".keras"):
        raise ValueError(f"{flag} {model_path}: needs the .keras file (a SavedModel has no Keras layers "
                         "to train beside, embed with or export from)")
    return keras.saving.load_model(model_path, safe_mode=True, compile=False)


def load_keras_teacher(model_path: str, flag: str = "--teacher"):
    """A trained .keras model, frozen: the online teacher (run inside the training step) and the
    model `features` embeds with."""
    teacher = load_keras_model(model_path, flag)
    teacher.trainable = False
    return teacher
