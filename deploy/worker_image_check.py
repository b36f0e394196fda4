"""The last step of deploy/Dockerfile.dataflow: a worker image that cannot run the Beam jobs fails its build.

    python -m deploy.worker_image_check

Imports what the jobs import on a worker (Beam, TensorFlow, Keras, the jobs, Pillow for the JAX
teacher's host decoding), checks Beam's version against this project's pin (the pipeline is pickled on the launcher
and unpickled here) and that Keras runs the backend the image sets (KERAS_BACKEND), importing JAX
when that is jax. Prints one line; exit 1 with the reason otherwise.
"""

from __future__ import annotations

import importlib
import os
import sys

JOB_MODULES = ("beam_pipelines.predict", "beam_pipelines.select", "PIL.Image")  # PIL: the JAX teacher's decoding


def check() -> str:
    import apache_beam
    import keras

    from deploy.requirements import WORKER_REQUIRES

    for name in JOB_MODULES:
        importlib.import_module(name)
    pin = next(r for r in WORKER_REQUIRES if r.startswith("apache-beam"))
    wanted = pin.split(">=")[1].split(",")[0]
    if not apache_beam.__version__.startswith(wanted):
        raise RuntimeError(f"Beam {apache_beam.__version__} in the image, the project pins {pin}")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if keras.backend.backend() != backend:
        raise RuntimeError(f"KERAS_BACKEND={backend} but Keras runs {keras.backend.backend()}")
    if backend == "jax":
        import jax

        return f"worker image ok: Beam {apache_beam.__version__}, Keras {keras.__version__} on JAX {jax.__version__}"
    import tensorflow as tf

    return f"worker image ok: Beam {apache_beam.__version__}, Keras {keras.__version__} on TensorFlow {tf.__version__}"


if __name__ == "__main__":
    try:
        print(check())
    except Exception as e:  # the build log's one line
        print(f"worker image check failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
