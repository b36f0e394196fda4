"""A Beam ModelHandler that runs a Keras teacher on whole chunks of encoded images.

The predict job hands RunInference one element per chunk of --batch_size
images of one input file (`ImageChunk`), not one per image: Beam's per-element
cost (~27 us a hop on DirectRunner) would otherwise rival the model's own
(~400 us an image for B0 at 32x32 on 2 cores). One compiled `tf.function` per
worker decodes, resizes and infers a chunk (docs/design.md: per-element Python
decoding and eager model calls cost 2-4x throughput). Loading is
noisystudent/teacher.py's, shared with classify, features and the trainer.

A chunk holding an image TensorFlow cannot decode fails only that image
(`LoadedTeacher.label_each`): its row carries the error, and the pipeline
routes it to the dead-letter output. Beam's own `with_exception_handling()`
would drop the whole batch. Under KERAS_BACKEND=jax the teacher is a
`JaxTeacher` (one jitted call per chunk, host decoding on a thread pool) and the
progress line says how its time splits between decoding and the model.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Iterable, Optional, Union

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from beam_pipelines.progress import Progress
from noisystudent.teacher import JaxTeacher, LoadedTeacher, load_teacher

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ImageChunk:
    """Images of one input file, labelled in one model call: what the handler receives."""

    source: str
    image_ids: list[str]
    encoded: list[bytes]
    hidden_labels: list = dataclasses.field(default_factory=list)  # per image: int or None (research data)
    labels: list = dataclasses.field(default_factory=list)  # per image: the record's label (-1: unlabeled)
    condition: str = ""  # evaluate: what was done to the images (noisystudent/robustness.py's condition keys)
    decoded: Optional[tuple] = None  # JAX teacher: HostDecoder.decode(encoded), done ahead by the reader
    decode_seconds: float = 0.0

    def __len__(self) -> int:  # RunInference's metrics count images, not chunks
        return len(self.image_ids)


class KerasTeacherHandler(ModelHandler[ImageChunk, PredictionResult, Union[LoadedTeacher, JaxTeacher]]):
    """RunInference handler: ImageChunk -> one PredictionResult(chunk, ChunkLabels).

    The elements arrive pre-batched (the reader cuts chunks of --batch_size), so
    RunInference's own BatchElements step is skipped.
    """

    def __init__(self, model_path: str, image_size: Optional[int] = None, large_model: bool = False,
                 log_every_s: float = 30.0, center_crop: bool = False, precision: str = "float32",
                 expected_images: int = 0, batch_size: int = 256, decode_threads: int = 0,
                 what: str = "predict: labelled"):
        super().__init__(large_model=large_model)
        self._model_path = model_path
        self._batch_size, self._decode_threads = batch_size, decode_threads
        self._image_size = image_size
        self._center_crop = center_crop
        self._precision = precision
        self._large_model = large_model
        self._progress = Progress(what, "images", expected_images, log_every_s)
        self._decoded_ahead = 0.0

    def load_model(self) -> LoadedTeacher:
        teacher = load_teacher(self._model_path, self._image_size, self._center_crop, self._precision,
                               self._batch_size, self._decode_threads)
        log.info("teacher %s loaded (%s): %d classes at %dx%d", self._model_path, type(teacher).__name__,
                 teacher.num_classes, teacher.image_size, teacher.image_size)
        return teacher

    def run_inference(self, batch: ImageChunk, model: LoadedTeacher,
                      inference_args: Optional[dict] = None) -> Iterable[PredictionResult]:
        if isinstance(model, JaxTeacher):
            labels = model.label_each(batch.encoded, batch.decoded)
            self._decoded_ahead += batch.decode_seconds
            self._progress.add(len(batch), model.timing(self._decoded_ahead))
        else:
            labels = model.label_each(batch.encoded)
            self._progress.add(len(batch))
        return [PredictionResult(batch, labels)]

    def get_num_bytes(self, batch: ImageChunk) -> int:
        return sum(len(e) for e in batch.encoded)

    def get_metrics_namespace(self) -> str:
        return "teacher_inference"

    def share_model_across_processes(self) -> bool:
        return self._large_model

    def should_skip_batching(self) -> bool:
        return True
