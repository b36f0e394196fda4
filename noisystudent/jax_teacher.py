"""A Keras model on JAX as one jitted function at a fixed batch shape, fed by host threads.

What a GPU or TPU worker runs (KERAS_BACKEND=jax): TensorFlow 2.21 has no TPU-VM build, and a
TensorFlow teacher per process fights over a GPU's memory. Images are decoded and resized on the
host by a pool of threads (noisystudent/host_images.py: Pillow and NumPy, the TensorFlow path's
pixels in 8 bits), stacked, padded to
`batch_size` rows and run through `model.stateless_call` under `jax.jit`: one compilation, never
one per chunk size. An image that cannot be decoded fails only its row. One decoding pool per
process, shared by every thread of a Dataflow worker (an accelerator worker runs one process with
many threads).
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from typing import Any, Optional, Sequence

import numpy as np

from noisystudent import host_images


def default_decode_threads() -> int:
    """The worker's cores (decoding and resizing release the GIL in Pillow and NumPy)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class JittedModel:
    """keras.Model (JAX backend) -> f(pixels [N, S, S, 3]) -> float32 outputs [N, ...], N padded to
    `batch_size` rows per call."""

    def __init__(self, model: Any, batch_size: int):
        import jax

        self.model, self.batch_size = model, batch_size
        self._trainable = [v.value for v in model.trainable_variables]
        self._non_trainable = [v.value for v in model.non_trainable_variables]

        def forward(trainable, non_trainable, pixels):
            outputs, _ = model.stateless_call(trainable, non_trainable, pixels.astype("float32"), training=False)
            return outputs.astype("float32")

        self._forward = jax.jit(forward)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        rows = len(pixels)
        outputs = []
        for start in range(0, rows, self.batch_size):
            part = pixels[start:start + self.batch_size]
            if len(part) < self.batch_size:  # the last chunk: padded, so the compiled shape is reused
                pad = np.zeros((self.batch_size - len(part),) + part.shape[1:], part.dtype)
                part = np.concatenate([part, pad])
            outputs.append(np.asarray(self._forward(self._trainable, self._non_trainable, part)))
        return np.concatenate(outputs)[:rows] if outputs else np.zeros((0,), np.float32)


_POOLS: dict[int, concurrent.futures.ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _shared_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    with _POOLS_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="decode")
        return _POOLS[threads]


class HostDecoder:
    """Encoded images -> stacked uint8 model input, decoded by the process's thread pool; errors per image."""

    def __init__(self, image_size: int, center_crop: bool = False, threads: int = 0):
        self.image_size, self.center_crop = image_size, center_crop
        self._pool = _shared_pool(threads or default_decode_threads())

    def _one(self, encoded: bytes):
        try:
            return host_images.model_input(encoded, self.image_size, self.center_crop)
        except host_images.HostDecodeError as e:
            return e

    def decode(self, encoded: Sequence[bytes]) -> tuple[Optional[np.ndarray], list[int], dict[int, str]]:
        """(pixels of the decodable images stacked, their rows, {row: error} for the others)."""
        results = list(self._pool.map(self._one, encoded))
        errors = {i: f"undecodable image: {r}" for i, r in enumerate(results) if isinstance(r, Exception)}
        good = [i for i in range(len(results)) if i not in errors]
        if not good:
            return None, good, errors
        return np.stack([results[i] for i in good]), good, errors
