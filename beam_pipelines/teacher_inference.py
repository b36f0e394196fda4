"""A Beam ModelHandler that runs a Keras teacher on whole batches of encoded images.

One compiled `tf.function` per worker decodes, resizes and infers a batch of
PNG/JPEG bytes (DESIGN.md: per-element Python decoding and eager model calls
cost 2-4x throughput). The model loads from a `.keras` file (safe mode) or a
SavedModel written by trainer/export.py, always in inference mode (no noise).

A batch holding an image TensorFlow cannot decode is re-run image by image,
so only the bad image fails: its result carries the error instead of
probabilities, and the pipeline routes it to the dead-letter output. Beam's
own `with_exception_handling()` would drop the whole batch.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Iterable, NamedTuple, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

log = logging.getLogger(__name__)


class ImageToLabel(NamedTuple):
    """What the handler receives: the image's id, the file it came from, its bytes."""

    image_id: str
    source: str
    encoded: bytes


@dataclasses.dataclass
class LoadedTeacher:  # a plain class: Beam's model sharing holds it by weak reference
    predict: Any  # tf.function: string [N] -> float32 [N, C]
    image_size: int
    num_classes: int


def load_teacher(model_path: str, image_size: Optional[int] = None) -> LoadedTeacher:
    """Load a .keras model or an exported SavedModel behind one batched decode+infer function."""
    import keras
    import tensorflow as tf

    from noisystudent import image_ops

    if model_path.endswith(".keras"):
        model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
        size = image_size or int(model.input_shape[1])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def predict(encoded):
            return model(image_ops.decode_batch(encoded, size), training=False)

        return LoadedTeacher(predict, size, int(model.output_shape[-1]))
    if not tf.io.gfile.exists(f"{model_path.rstrip('/')}/saved_model.pb"):
        raise FileNotFoundError(f"--model {model_path}: neither a .keras file nor a SavedModel directory")
    loaded = tf.saved_model.load(model_path)
    signature = loaded.signatures["serving_encoded"]
    num_classes = int(signature.structured_outputs["probabilities"].shape[-1])
    size = image_size or int(loaded.signatures["serving_images"].structured_input_signature[1]["images"].shape[1])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def predict_saved(encoded):
        return signature(images=encoded)["probabilities"]

    predict_saved.keep_alive = loaded  # the signature's variables live as long as the function
    return LoadedTeacher(predict_saved, size, num_classes)


class KerasTeacherHandler(ModelHandler[ImageToLabel, PredictionResult, LoadedTeacher]):
    """RunInference handler: batches of ImageToLabel -> PredictionResult(example, probs or error)."""

    def __init__(self, model_path: str, batch_size: int = 256, image_size: Optional[int] = None,
                 large_model: bool = False, log_every_s: float = 30.0):
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size, large_model=large_model)
        self._model_path = model_path
        self._batch_size = batch_size
        self._image_size = image_size
        self._large_model = large_model
        self._log_every_s = log_every_s
        self._done = 0
        self._started = None
        self._last_log = 0.0

    def load_model(self) -> LoadedTeacher:
        teacher = load_teacher(self._model_path, self._image_size)
        log.info("teacher %s loaded: %d classes at %dx%d", self._model_path, teacher.num_classes,
                 teacher.image_size, teacher.image_size)
        return teacher

    def run_inference(self, batch: Sequence[ImageToLabel], model: LoadedTeacher,
                      inference_args: Optional[dict] = None) -> Iterable[PredictionResult]:
        import tensorflow as tf

        encoded = tf.constant([item.encoded for item in batch])
        try:
            probs = model.predict(encoded).numpy()
            results = [PredictionResult(item, p) for item, p in zip(batch, probs)]
        except tf.errors.InvalidArgumentError:
            results = [self._one(item, model) for item in batch]
        self._progress(len(batch))
        return results

    @staticmethod
    def _one(item: ImageToLabel, model: LoadedTeacher) -> PredictionResult:
        import tensorflow as tf

        try:
            return PredictionResult(item, model.predict(tf.constant([item.encoded])).numpy()[0])
        except tf.errors.InvalidArgumentError as e:
            return PredictionResult(item, f"undecodable image: {e.message.splitlines()[0][:200]}")

    def _progress(self, n: int) -> None:
        now = time.time()
        if self._started is None:
            self._started = self._last_log = now
        self._done += n
        if now - self._last_log >= self._log_every_s:
            self._last_log = now
            log.info("labelled %d images on this worker, %.0f images/s", self._done,
                     self._done / max(now - self._started, 1e-9))

    def get_num_bytes(self, batch: Sequence[ImageToLabel]) -> int:
        return sum(len(item.encoded) for item in batch)

    def get_metrics_namespace(self) -> str:
        return "teacher_inference"

    def share_model_across_processes(self) -> bool:
        return self._large_model

    def batch_elements_kwargs(self):
        return {"min_batch_size": self._batch_size, "max_batch_size": self._batch_size}
