"""One distribution for the whole project; Dataflow workers install it with --setup_file."""

from setuptools import find_packages, setup

setup(
    name="noisystudent",
    version="0.1.0",
    description="Noisy Student training (Xie et al., 2019) on Apache Beam and Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["noisystudent*", "beam_pipelines*", "trainer*", "model*", "deploy*"]),
    include_package_data=True,
    package_data={"noisystudent": ["data/*.tsv"]},  # ImageNet class names (classify)
    install_requires=[
        # Known to resolve together (tfx-bsl pins tensorflow and beam ranges).
        "apache-beam[gcp]>=2.77,<2.78",
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        "tfx-bsl>=1.21,<1.22",
        "tensorflow-datasets>=4.9.10,<4.10",
        "importlib_resources",  # tfds imports it but does not declare it
        "numpy>=1.26",
        "scipy>=1.11",  # SVHN .mat files
        "scikit-learn>=1.4",  # the bundled digits data of the demo
        "pillow>=10",  # decoding and checking user images
        "matplotlib>=3.8",  # selection plots
        "tensorboard>=2.20",  # training logs (tensorflow 2.21 no longer pulls it in)
        "google-cloud-aiplatform>=1.165,<2",
    ],
    extras_require={
        # jax: the trainer's TPU path (KERAS_BACKEND=jax) runs end to end in the tests, on CPU
        "test": ["pytest>=8", "jax>=0.4.34"],
        "bench": ["tensorflow-hub>=0.16"],  # Beam's stock TF handler imports it (bench/ peers only)
    },
    entry_points={"console_scripts": ["noisystudent=noisystudent.app.cli:main"]},
)
