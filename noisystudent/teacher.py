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

Under KERAS_BACKEND=jax (GPU and TPU workers) the teacher is a `JaxTeacher`
instead: the .keras model as one jitted function at a fixed batch shape, its
images decoded and resized on the host by a thread pool (noisystudent/jax_teacher.py);
the same interface, and a bad image fails only its row there too. Under
TensorFlow on a GPU, memory growth is switched on before the model loads, so
several processes of a worker can share the card.
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


class JaxTeacher:  # a plain class: Beam's model sharing holds it by weak reference
    """A .keras teacher on JAX: host decoding (a thread pool) -> one jitted call per `batch_size` images."""

    def __init__(self, forward, decoder, image_size: int, num_classes: int):
        self.forward, self.decoder = forward, decoder
        self.image_size, self.num_classes = image_size, num_classes
        self.decode_seconds = self.model_seconds = 0.0

    def label_each(self, encoded: list[bytes], decoded: Optional[tuple] = None) -> ChunkLabels:
        """`decoded`: what `decoder.decode(encoded)` returns, when a reader thread decoded ahead."""
        import time

        probs = np.full((len(encoded), self.num_classes), np.nan, np.float32)
        start = time.perf_counter()
        pixels, rows, errors = decoded if decoded is not None else self.decoder.decode(encoded)
        ready = time.perf_counter()
        if rows:
            probs[rows] = self.forward(pixels)
        self.decode_seconds += ready - start
        self.model_seconds += time.perf_counter() - ready
        return ChunkLabels(probs, errors)

    def label(self, encoded: list[bytes]) -> np.ndarray:
        labels = self.label_each(encoded)
        if labels.errors:
            raise UndecodableImage(next(iter(labels.errors.values())))
        return labels.probabilities

    def timing(self, decoded_ahead_seconds: float = 0.0) -> str:
        """Where the time goes (the progress line): host decoding (here, or on the reader's threads
        ahead of the accelerator) vs the accelerator."""
        total = self.decode_seconds + self.model_seconds
        if not total:
            return ""
        ahead = f"; {decoded_ahead_seconds:.1f} s decoded ahead on the reader" if decoded_ahead_seconds else ""
        return (f"decode in the handler {100 * self.decode_seconds / total:.0f}% / model (transfer, jitted "
                f"call, results back) {100 * self.model_seconds / total:.0f}%{ahead}")


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


def _keras_config(model_path: str) -> dict:
    import json
    import zipfile

    import tensorflow as tf

    with tf.io.gfile.GFile(model_path, "rb") as f, zipfile.ZipFile(f) as archive:
        return json.loads(archive.read("config.json")).get("config", {})


def _named_layers(config: dict, key: str) -> list[dict]:
    """The layer configs a functional model's config names under `key` (input_layers / output_layers)."""
    named = config.get(key) or []
    if isinstance(named, list) and named and isinstance(named[0], str):
        named = [named]  # one layer: [name, node, tensor]
    names = {n[0] for n in named if isinstance(n, list) and n}
    return [layer.get("config", {}) for layer in config.get("layers", [])
            if isinstance(layer, dict) and layer.get("config", {}).get("name") in names]


def model_input_size(model_path: str) -> Optional[int]:
    """A .keras model's square input side, read from config.json without loading it (None if unsaid)."""
    check_model_file(model_path)
    if not model_path.endswith(".keras"):
        return None
    inputs = _named_layers(_keras_config(model_path), "input_layers")
    shape = inputs[0].get("batch_shape") if len(inputs) == 1 else None
    return int(shape[1]) if shape and len(shape) == 4 and shape[1] and shape[1] == shape[2] else None


def model_num_classes(model_path: str) -> Optional[int]:
    """The classes a model predicts, read from its files without loading it (None where they do not say):
    a .keras file's output layer in config.json, a SavedModel's `probabilities` output."""
    import tensorflow as tf

    check_model_file(model_path)
    if model_path.endswith(".keras"):
        units = [layer.get("units") for layer in _named_layers(_keras_config(model_path), "output_layers")]
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
                 precision: str = "float32", batch_size: int = 256, decode_threads: int = 0):
    """Load a .keras model or an exported SavedModel behind one batched decode+infer function.

    `center_crop`: the original's ImageNet labelling crop (noisystudent.image_ops.center_crop).
    `precision`: bfloat16 runs a .keras teacher in mixed precision (GPU and TPU workers).
    Under KERAS_BACKEND=jax: a `JaxTeacher` (.keras only) at a fixed batch of `batch_size` images,
    decoded by `decode_threads` host threads (0: the worker's cores).
    """
    import keras

    check_model_file(model_path)
    if keras.backend.backend() == "jax":
        return _load_jax_teacher(model_path, image_size, center_crop, precision, batch_size, decode_threads)
    import tensorflow as tf

    from noisystudent import image_ops

    allow_gpu_memory_growth()
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


def _load_jax_teacher(model_path: str, image_size: Optional[int], center_crop: bool, precision: str,
                      batch_size: int, decode_threads: int) -> JaxTeacher:
    from noisystudent.jax_teacher import HostDecoder, JittedModel

    if not model_path.endswith(".keras"):
        raise ValueError(f"--model {model_path}: under KERAS_BACKEND=jax the teacher is the .keras file (a "
                         "SavedModel is a TensorFlow graph)")
    model = in_precision(load_keras_model(model_path), precision)
    size = image_size or int(model.input_shape[1])
    return JaxTeacher(JittedModel(model, batch_size), HostDecoder(size, center_crop, decode_threads), size,
                      int(model.output_shape[-1]))


def allow_gpu_memory_growth() -> None:
    """TensorFlow takes a GPU's whole memory by default: with growth on, the processes a Dataflow worker
    starts can share its card. A no-op without GPUs, or once TensorFlow has initialised them."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: the setting no longer applies
            pass


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


def classifier_head(model, what: str = ""):
    """The model's last layer, a Dense with a softmax: training (and the FGSM attack) read its logits."""
    import keras

    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense) or head.activation is not keras.activations.softmax:
        raise ValueError(f"{what or 'the student ' + repr(model.name)} must end in a Dense layer with a softmax "
                         f"activation (got {type(head).__name__} {head.name!r}); the loss is computed from its logits")
    return head
