"""Who needs which package, in one place: setup.py reads these lists, `noisystudent dataflow` stages
WORKER_REQUIRES only (a plain module: setup.py executes this file without importing the package).

- WORKER_REQUIRES: what the Beam jobs import on Dataflow workers (beam_pipelines/ and the
  noisystudent/ library): no trainer, launcher or plotting packages (~3 GB less per worker).
- LAUNCHER_REQUIRES: the rest of what the CLI runs on your machine or in the trainer image: the
  demo's data and plots (driver side), TensorBoard logs, Vertex AI submission, tfx-bsl.
- TRAINER_REQUIRES: what `python -m trainer.task` imports (the trainer image installs these and the
  project with --no-deps: no Beam, Vertex AI SDK, tfx-bsl or plotting stack).
- JAX_VERSION, JAX_TPU, JAX_GPU: the tested JAX, for the TPU and GPU images (setup.py extras tpu, gpu).

    python deploy/requirements.py WORKER_REQUIRES   # one requirement a line (what the Dockerfiles install)
"""

WORKER_REQUIRES = [
    # Known to resolve together (tfx-bsl pins tensorflow and beam ranges).
    "apache-beam[gcp]>=2.77,<2.78",
    "tensorflow>=2.21,<2.22",
    "keras>=3.15,<4",
    "tensorflow-datasets>=4.9.10,<4.10",  # ingest-svhn from a tfds data_dir
    "importlib_resources",  # tfds imports it but does not declare it
    "numpy>=1.26",
    "scipy>=1.11",  # SVHN .mat files
    "pillow>=10",  # decoding and checking user images
    # The ImageNet-C corruptions (noisystudent/corruptions.py): tfds' functions import both lazily.
    "opencv-python-headless>=4.8",
    "scikit-image>=0.22",
]
LAUNCHER_REQUIRES = [
    "tfx-bsl>=1.21,<1.22",
    "scikit-learn>=1.4",  # the bundled digits data of the demo
    "matplotlib>=3.8",  # selection plots (written by the job's driver)
    "tensorboard>=2.20",  # training logs (tensorflow 2.21 no longer pulls it in)
    "google-cloud-aiplatform>=1.165,<2",
]
TRAINER_REQUIRES = [
    "tensorflow>=2.21,<2.22",  # tf.data input, the SavedModel export
    "keras>=3.15,<4",
    "numpy>=1.26",
    "tensorboard>=2.20",  # training logs
]
JAX_VERSION = "0.10.2"  # jax[tpu] pins libtpu 0.0.42.*
JAX_TPU = [f"jax[tpu]=={JAX_VERSION}"]
JAX_GPU = [f"jax[cuda12]=={JAX_VERSION}"]

if __name__ == "__main__":
    import sys

    print("\n".join(globals()[sys.argv[1]]))
