"""Run a Beam job of this project on Dataflow with sensible worker settings, or dry-run it.

    noisystudent dataflow predict --project my-project --region us-central1 \\
        --bucket gs://my-bucket --max_workers 50 --dry-run \\
        -- --input gs://my-bucket/jft --split unlabeled \\
           --model gs://my-bucket/teacher/model.keras --output_dir gs://my-bucket/preds

adds the standard Dataflow flags to the job's own (everything after `--`) and
runs it: `--runner=DataflowRunner`, temp/staging under --bucket, a lean copy of
the Beam jobs' code for the workers (only deploy/requirements.py's
WORKER_REQUIRES, not the trainer or launcher stack; or --image, built from
deploy/Dockerfile.dataflow, which starts workers faster: everything
preinstalled; recommended for large jobs), autoscaling, and accelerators:
--gpu TYPE:COUNT or --tpu v5e-1|v5e-4|v5e-8|v6e-1|v6e-4|v6e-8|v5p-8 (Dataflow's
worker_accelerator service option, with the machine type it requires). An
accelerator worker runs one SDK process (--experiments=no_use_multiple_sdk_containers),
its threads sharing one teacher: Runner v2 would otherwise start a process per
vCPU, each taking the GPU's memory, and a TPU cannot be opened by two processes.
A TPU worker runs the teacher on JAX (the image's KERAS_BACKEND=jax: TensorFlow
2.21 has no TPU-VM build); a GPU worker on TensorFlow with memory growth, or on
JAX with an image built with KERAS_BACKEND=jax. A Beam SDK image whose Python or
Beam differs from this launcher's is refused.
--dry-run builds the Dataflow job request and prints the stages and options;
nothing is read, written or submitted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import Optional, Sequence

from beam_pipelines import JOBS
from deploy.cloud_checks import (DATAFLOW_TPUS, check_cloud_paths, check_project_and_region, dataflow_tpu,
                                 gpu_machine_type)

# Job flags that name data: on Dataflow they must be gs:// paths.
PATH_FLAGS = ("--input", "--output_dir", "--model", "--predictions", "--mat_dir", "--tfds_data_dir",
              "--labeled_dir", "--test_dir", "--unlabeled_dir", "--data", "--reference")
DEFAULT_MACHINE = "n2-standard-8"  # CPU inference is decode-bound: cores, not memory
TPU_HARNESS_THREADS = 50
SETUP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noisystudent dataflow", description=__doc__.split("\n\n")[0],
                                     epilog="Job flags follow a lone `--`.")
    parser.add_argument("job", choices=sorted(JOBS))
    parser.add_argument("--project", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--bucket", required=True, help="gs://bucket[/prefix] for temp and staging files.")
    parser.add_argument("--job_name", default="", help="Dataflow job name (default: Beam's).")
    parser.add_argument("--machine_type", default="",
                        help="Worker machine (default n2-standard-8; with --gpu, the GPU's family: "
                             "nvidia-l4 -> g2-standard-8, nvidia-tesla-t4 -> n1-standard-8, ...).")
    parser.add_argument("--max_workers", type=int, default=20, help="Autoscaling ceiling (default 20).")
    parser.add_argument("--gpu", default="", help="TYPE:COUNT per worker, e.g. nvidia-l4:1 (needs --image).")
    parser.add_argument("--tpu", default="", help=f"A single-host TPU per worker: {', '.join(DATAFLOW_TPUS)} "
                                                  "(needs --image built with ACCELERATOR=tpu).")
    parser.add_argument("--image", default="", help="Worker container (deploy/Dockerfile.dataflow).")
    parser.add_argument("--service_account", default="")
    parser.add_argument("--network", default="")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="Build the Dataflow job and print it; submit nothing.")
    return parser


def validate(args: argparse.Namespace, job_args: Sequence[str]) -> None:
    check_project_and_region(args.project, args.region)
    if not args.bucket.startswith("gs://"):
        raise ValueError(f"--bucket {args.bucket!r}: Dataflow needs a gs:// bucket")
    if args.gpu:
        args.machine_type = gpu_machine_type(args.gpu, args.machine_type)
        kind, count = args.gpu.split(":")
        args.gpu = f"{kind.lower().replace('_', '-')}:{count}"  # Dataflow's spelling
    if args.gpu and not args.image:
        raise ValueError("--gpu needs --image: GPU workers need a container with CUDA and TensorFlow")
    if args.tpu:
        if args.gpu:
            raise ValueError("--tpu and --gpu: a Dataflow worker pool has one kind of accelerator")
        if not args.image:
            raise ValueError("--tpu needs --image: TPU workers need a custom container (deploy/Dockerfile.dataflow "
                             "--build-arg ACCELERATOR=tpu: Beam's boot entrypoint, jax[tpu], KERAS_BACKEND=jax)")
        args.machine_type = dataflow_tpu(args.tpu, args.machine_type)[2]
    if args.image:
        check_worker_image(args.image)
    check_cloud_paths(job_args, PATH_FLAGS, "job")


WORKER_PACKAGES = ("noisystudent", "beam_pipelines", "model")  # what the Beam jobs import on workers
WORKER_SETUP = '''"""The Beam jobs' code for Dataflow workers, staged by `noisystudent dataflow` (generated)."""
from setuptools import find_packages, setup

setup(name="noisystudent-beam-worker", version={version!r},
      packages=find_packages(include=["noisystudent*", "beam_pipelines*", "model*"]),
      include_package_data=True, package_data={{"noisystudent": ["data/*.tsv"]}},
      install_requires={requires!r})
'''


def worker_package() -> str:
    """setup.py of a throw-away copy of the Beam jobs' code with a setup.py declaring only what workers
    import (deploy/requirements.py WORKER_REQUIRES): workers pip-install that, not the trainer, Vertex AI
    SDK, tfx-bsl or plotting stack. A copy, also because Beam runs `setup.py sdist` (even in a dry run),
    which writes an egg-info folder beside setup.py: the project's tree stays untouched."""
    import shutil
    import tempfile

    from deploy.requirements import WORKER_REQUIRES

    root = os.path.dirname(SETUP_FILE)
    copy = tempfile.mkdtemp(prefix="noisystudent-worker-")
    for package in WORKER_PACKAGES:
        shutil.copytree(os.path.join(root, package), os.path.join(copy, package),
                        ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(copy, "setup.py"), "w") as f:
        f.write(WORKER_SETUP.format(version=_project_version(), requires=WORKER_REQUIRES))
    return os.path.join(copy, "setup.py")


def _project_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("noisystudent")
    except metadata.PackageNotFoundError:
        return "0.0.0"


BEAM_SDK_IMAGE = re.compile(r"beam_python(?P<python>\d+\.\d+)_sdk:(?P<beam>[\w.]+)$")


def check_worker_image(image: str) -> None:
    """Refuse a worker image whose Python or Beam differs from this launcher's: Dataflow unpickles the
    launcher's pipeline on the workers, which breaks across versions. Checked for Beam's SDK images
    (apache/beam_pythonX.Y_sdk:V); deploy/Dockerfile.dataflow builds FROM the launcher's versions."""
    import apache_beam

    match = BEAM_SDK_IMAGE.search(image)
    if not match:
        return
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if match["python"] != python or match["beam"] != apache_beam.__version__:
        raise ValueError(f"--image {image}: Python {match['python']} / Beam {match['beam']} on the workers, "
                         f"Python {python} / Beam {apache_beam.__version__} here; the pipeline is pickled "
                         "here and unpickled there, so they must match (use the same versions on both sides)")


def dataflow_flags(args: argparse.Namespace) -> list[str]:
    """The standard Beam flags for a Dataflow run of this project."""
    bucket = args.bucket.rstrip("/")
    flags = [
        "--runner=DataflowRunner", f"--project={args.project}", f"--region={args.region}",
        f"--temp_location={bucket}/tmp", f"--staging_location={bucket}/staging",
        f"--machine_type={args.machine_type or DEFAULT_MACHINE}", f"--max_num_workers={args.max_workers}",
        "--autoscaling_algorithm=THROUGHPUT_BASED", "--experiments=use_runner_v2",
    ]
    if args.image:
        flags.append(f"--sdk_container_image={args.image}")
    else:
        flags.append(f"--setup_file={worker_package()}")
    if args.gpu:
        kind, count = args.gpu.split(":")
        flags.append(f"--dataflow_service_options=worker_accelerator=type:{kind};count:{count};"
                     "install-nvidia-driver")
    if args.tpu:
        kind, topology, _ = dataflow_tpu(args.tpu, args.machine_type)
        flags.append(f"--dataflow_service_options=worker_accelerator=type:{kind};topology:{topology}")
        # Many-vCPU TPU VMs can time out waiting for the SDK harness (Dataflow's TPU troubleshooting page).
        flags.append(f"--number_of_worker_harness_threads={TPU_HARNESS_THREADS}")
    if args.gpu or args.tpu:
        flags.append("--experiments=no_use_multiple_sdk_containers")  # one process: one teacher per worker
    if args.job_name:
        flags.append(f"--job_name={args.job_name}")
    if args.service_account:
        flags.append(f"--service_account_email={args.service_account}")
    if args.network:
        flags.append(f"--network={args.network}")
    if args.dry_run:
        flags.append("--dry_run=True")
    return flags


def run(argv: Optional[Sequence[str]] = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    job_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, job_args = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    validate(args, job_args)
    module = importlib.import_module(JOBS[args.job][0])
    return module.run(job_args + dataflow_flags(args))


if __name__ == "__main__":
    run()
