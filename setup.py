"""One distribution for the whole project; Dataflow workers get a lean copy (deploy/dataflow.py)."""

import os

from setuptools import find_packages, setup

REQUIRES: dict = {}  # deploy/requirements.py: who needs which package (workers, launcher, JAX)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "deploy", "requirements.py")) as f:
    exec(f.read(), REQUIRES)

setup(
    name="noisystudent",
    version="0.1.0",
    description="Noisy Student training (Xie et al., 2019) on Apache Beam and Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.13",  # jax 0.10.2 (the tpu, gpu and test extras) needs 3.11
    packages=find_packages(include=["noisystudent*", "beam_pipelines*", "trainer*", "model*", "deploy*"]),
    include_package_data=True,
    package_data={"noisystudent": ["data/*.tsv"]},  # ImageNet class names (classify)
    install_requires=REQUIRES["WORKER_REQUIRES"] + REQUIRES["LAUNCHER_REQUIRES"],
    extras_require={
        # jax: the trainer's TPU path (KERAS_BACKEND=jax) runs end to end in the tests, on CPU
        "test": ["pytest>=8", f"jax=={REQUIRES['JAX_VERSION']}"],
        "tpu": REQUIRES["JAX_TPU"],  # the TPU images (Keras on JAX)
        "gpu": REQUIRES["JAX_GPU"],  # the GPU images (Keras on JAX)
        "bench": ["tensorflow-hub>=0.16"],  # Beam's stock TF handler imports it (bench/ peers only)
    },
    entry_points={"console_scripts": ["noisystudent=noisystudent.app.cli:main"]},
)
