"""Submit the trainer to Vertex AI as a CustomJob (TPU, GPU or CPU), or print the request (--dry-run).

    noisystudent submit-training --project my-project --region us-central1 \\
        --staging_bucket gs://my-bucket --base_output_dir gs://my-bucket/runs/student1 \\
        --tpu v5e-4 --image us-docker.pkg.dev/my-project/ns/trainer:latest --spot --dry-run \\
        -- --preset svhn --mode offline --labeled_data gs://my-bucket/svhn \\
           --unlabeled_data gs://my-bucket/pseudo1

Everything after `--` goes to `python -m trainer.task`. The service sets
AIP_MODEL_DIR, AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR under
--base_output_dir, which the trainer honours; with --restart_on_preemption
(or --spot) a restarted worker resumes from its last checkpoint.

--dry-run runs the SDK's own submit() with the API call replaced by a recorder:
the JSON printed is exactly the CreateCustomJob request, and no credentials or
network are needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from typing import Optional, Sequence

from deploy.cloud_checks import check_cloud_paths, check_project_and_region, gpu_machine_type

@dataclasses.dataclass(frozen=True)
class TpuSlice:
    machine_type: str
    topology: Optional[str]  # tpu_topology (v5e, v6e); None for v2/v3 (accelerator_type + count)
    accelerator_type: Optional[str]
    accelerator_count: int
    hosts: int  # TPU VMs: every one runs the trainer; Vertex watches the first


def _tpu_slices() -> dict[str, TpuSlice]:
    """Every slice Vertex AI's custom-training docs list ("Configure compute resources", TPU VMs): one
    worker pool with replica_count 1 even when the slice spans hosts."""
    slices: dict[str, TpuSlice] = {}
    for name, prefix in (("v5e", "ct5lp-hightpu-"), ("v6e", "ct6e-standard-")):
        slices[f"{name}-1"] = TpuSlice(f"{prefix}1t", "1x1", None, 0, 1)
        slices[f"{name}-4"] = TpuSlice(f"{prefix}4t", "2x2", None, 0, 1)
        slices[f"{name}-8"] = TpuSlice(f"{prefix}8t", "2x4", None, 0, 1)  # one VM of 8 chips
        for topology, hosts in (("4x4", 4), ("4x8", 8), ("8x8", 16), ("8x16", 32), ("16x16", 64)):
            slices[f"{name}-{4 * hosts}"] = TpuSlice(f"{prefix}4t", topology, None, 0, hosts)  # 4 chips a VM
    for version, cores in (("v2", (8, 32, 64, 128, 256, 512)), ("v3", (8, 32, 64, 128, 256, 512, 1024, 2048))):
        for count in cores:  # cloud-tpu: 8 cores a host; pod slices are 32 cores and multiples
            slices[f"{version}-{count}"] = TpuSlice("cloud-tpu", None, f"TPU_{version.upper()}", count, count // 8)
    return slices


TPU_TYPES = _tpu_slices()
HOSTS_ENV = "NOISYSTUDENT_HOSTS"  # read by trainer/cluster.py
GCS_FLAGS = ("--labeled_data", "--unlabeled_data", "--eval_data", "--teacher", "--output_dir",
             "--checkpoint_dir", "--tensorboard_dir", "--init_checkpoint")
DEFAULT_IMAGE_HINT = "build deploy/Dockerfile.trainer and push it to Artifact Registry"


@dataclasses.dataclass
class TrainingJobSpec:
    project: str
    region: str
    staging_bucket: str
    base_output_dir: str
    trainer_args: list[str]
    display_name: str = "noisystudent-train"
    image: str = ""
    python_package_uri: str = ""
    executor_image: str = ""
    tpu: str = ""
    machine_type: str = ""
    gpu: str = ""  # TYPE:COUNT, e.g. NVIDIA_TESLA_A100:1
    service_account: str = ""
    tensorboard: str = ""
    network: str = ""
    timeout_s: int = 0
    restart_on_preemption: bool = False
    spot: bool = False
    keras_backend: str = ""  # "": jax with --tpu and with --gpu on our image, else tensorflow
    labels: Optional[dict] = None

    def resolved_keras_backend(self) -> str:
        """TPU: JAX (TensorFlow 2.21 has no TPU-VM build). GPU with --image: JAX, what the GPU trainer image
        is built for (deploy/Dockerfile.trainer ACCELERATOR=gpu carries jax[cuda12] and a CPU TensorFlow,
        which would train on the CPU while the GPU is billed). A prebuilt executor image: TensorFlow."""
        if self.keras_backend:
            return self.keras_backend
        return "jax" if self.tpu or (self.gpu and self.image) else "tensorflow"

    def hosts(self) -> int:
        return TPU_TYPES[self.tpu].hosts if self.tpu in TPU_TYPES else 1


def validate(spec: TrainingJobSpec) -> None:
    """Clear errors, before any network call, for configs that cannot work."""
    check_project_and_region(spec.project, spec.region)
    for flag, value in (("--staging_bucket", spec.staging_bucket), ("--base_output_dir", spec.base_output_dir)):
        if not (value or "").startswith("gs://"):
            raise ValueError(f"{flag} {value!r}: Vertex AI needs a gs:// path")
    if bool(spec.image) == bool(spec.python_package_uri):
        raise ValueError(f"give exactly one of --image ({DEFAULT_IMAGE_HINT}) or --python_package_uri")
    if spec.python_package_uri and not spec.python_package_uri.startswith("gs://"):
        raise ValueError(f"--python_package_uri {spec.python_package_uri!r}: needs a gs:// path")
    if spec.python_package_uri and not spec.executor_image:
        raise ValueError("--python_package_uri needs --executor_image (a prebuilt training container)")
    if spec.tpu and spec.tpu not in TPU_TYPES:
        raise ValueError(f"--tpu {spec.tpu!r}: not a slice Vertex AI's custom training lists; known: "
                         f"{', '.join(TPU_TYPES)}")
    if spec.tpu and spec.python_package_uri:
        raise ValueError("--tpu with --python_package_uri: Vertex AI has no prebuilt training container for TPU "
                         f"v5e/v6e or for JAX; pass --image ({DEFAULT_IMAGE_HINT} with ACCELERATOR=tpu)")
    if spec.tpu and spec.spot and spec.hosts() > 1:
        raise ValueError(f"--spot with --tpu {spec.tpu} ({spec.hosts()} hosts): Vertex AI offers no Spot VMs for "
                         "TPU pod slices; drop --spot (--restart_on_preemption still resumes a restarted job)")
    if spec.tpu and spec.gpu:
        raise ValueError("--tpu and --gpu exclude each other")
    if spec.tensorboard and not spec.service_account:
        raise ValueError("--tensorboard needs --service_account: Vertex AI writes TensorBoard logs as that "
                         "account (it needs the Storage Admin and Vertex AI User roles)")
    if spec.tpu and spec.keras_backend == "tensorflow":
        raise ValueError("--tpu with --keras_backend tensorflow: TensorFlow 2.21 has no supported TPU-VM build, "
                         "so TPU jobs run Keras on JAX (the default with --tpu); drop --keras_backend")
    if spec.gpu:
        gpu_machine_type(spec.gpu.upper(), spec.machine_type)
    check_cloud_paths(spec.trainer_args, GCS_FLAGS, "trainer")


def worker_pool_specs(spec: TrainingJobSpec) -> list[dict]:
    """One worker pool: the machine, the accelerator and what to run."""
    if spec.tpu:
        tpu = TPU_TYPES[spec.tpu]
        machine = {"machine_type": tpu.machine_type}
        if tpu.topology:
            machine["tpu_topology"] = tpu.topology
        if tpu.accelerator_type:
            machine.update(accelerator_type=tpu.accelerator_type, accelerator_count=tpu.accelerator_count)
    else:
        machine = {"machine_type": gpu_machine_type(spec.gpu.upper(), spec.machine_type) if spec.gpu
                   else spec.machine_type or "n1-standard-8"}
        if spec.gpu:
            accel, count = spec.gpu.upper().split(":")
            machine.update(accelerator_type=accel, accelerator_count=int(count))
    env = [{"name": "KERAS_BACKEND", "value": spec.resolved_keras_backend()}]
    if spec.hosts() > 1:  # every host runs the trainer; it initialises the cluster first (trainer/cluster.py)
        env.append({"name": HOSTS_ENV, "value": str(spec.hosts())})
    pool = {"machine_spec": machine, "replica_count": 1}
    if spec.image:
        pool["container_spec"] = {"image_uri": spec.image, "command": ["python", "-m", "trainer.task"],
                                  "args": list(spec.trainer_args), "env": env}
    else:
        pool["python_package_spec"] = {"executor_image_uri": spec.executor_image,
                                       "package_uris": [spec.python_package_uri],
                                       "python_module": "trainer.task", "args": list(spec.trainer_args),
                                       "env": env}
    return [pool]


def build_job(spec: TrainingJobSpec, credentials=None):
    """The SDK's CustomJob for the spec (offline: nothing is sent)."""
    from google.cloud import aiplatform

    validate(spec)
    return aiplatform.CustomJob(
        display_name=spec.display_name, worker_pool_specs=worker_pool_specs(spec),
        base_output_dir=spec.base_output_dir, staging_bucket=spec.staging_bucket, project=spec.project,
        location=spec.region, credentials=credentials, labels=spec.labels)


def _submit_kwargs(spec: TrainingJobSpec) -> dict:
    from google.cloud.aiplatform.compat.types import custom_job as gca_custom_job

    kwargs = dict(service_account=spec.service_account or None, network=spec.network or None,
                  timeout=spec.timeout_s or None, tensorboard=spec.tensorboard or None,
                  restart_job_on_worker_restart=spec.restart_on_preemption or spec.spot)
    if spec.spot:
        kwargs["scheduling_strategy"] = gca_custom_job.Scheduling.Strategy.SPOT
    return kwargs


class _RecordingClient:
    """Stands in for the Vertex AI API client: records the request, sends nothing."""

    def __init__(self):
        self.request = None

    def create_custom_job(self, parent, custom_job, timeout=None):
        self.request = {"parent": parent,
                        "custom_job": type(custom_job).to_dict(custom_job, use_integers_for_enums=False)}
        custom_job.name = f"{parent}/customJobs/dry-run"
        return custom_job


def dry_run_request(spec: TrainingJobSpec) -> dict:
    """The exact CreateCustomJob request submit() would send, without credentials."""
    from google.auth.credentials import AnonymousCredentials

    job = build_job(spec, credentials=AnonymousCredentials())
    recorder = _RecordingClient()
    job.api_client = recorder
    sdk_log = logging.getLogger("google.cloud.aiplatform")
    level = sdk_log.level
    sdk_log.setLevel(logging.WARNING)  # its "View Custom Job" links would point nowhere
    try:
        job.submit(**_submit_kwargs(spec))
    finally:
        sdk_log.setLevel(level)
    return recorder.request


def submit(spec: TrainingJobSpec):
    job = build_job(spec)
    job.submit(**_submit_kwargs(spec))
    return job


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noisystudent submit-training", description=__doc__.split("\n\n")[0],
                                     epilog="Trainer flags follow a lone `--`.")
    parser.add_argument("--project", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--staging_bucket", required=True, help="gs:// bucket for the SDK's staging.")
    parser.add_argument("--base_output_dir", required=True, help="gs:// dir: model/, checkpoints/, logs/.")
    parser.add_argument("--display_name", default="noisystudent-train")
    image = parser.add_argument_group("what runs (one of)")
    image.add_argument("--image", default="", help=f"Custom container ({DEFAULT_IMAGE_HINT}).")
    image.add_argument("--python_package_uri", default="", help="gs:// sdist of this project (setup.py sdist).")
    image.add_argument("--executor_image", default="", help="Prebuilt container for --python_package_uri.")
    hw = parser.add_argument_group("hardware")
    hw.add_argument("--tpu", default="", help="TPU slice: v5e-1, -4, -8 (one VM), v5e-16 ... v5e-256 (4 chips per "
                                              "VM), the same for v6e, v2-8 / v3-8 and their pod slices v2-32 ... "
                                              "v2-512, v3-32 ... v3-2048.")
    hw.add_argument("--gpu", default="", help="TYPE:COUNT, e.g. NVIDIA_L4:1 or NVIDIA_TESLA_A100:1.")
    hw.add_argument("--machine_type", default="",
                    help="Machine type (default n1-standard-8; with --gpu, the GPU's family: NVIDIA_L4:1 -> "
                         "g2-standard-8, NVIDIA_TESLA_A100:1 -> a2-highgpu-1g, ...).")
    hw.add_argument("--keras_backend", default="", choices=["tensorflow", "jax"],
                    help="Keras backend of the trainer (default: jax with --tpu, and with --gpu on --image; "
                         "else tensorflow).")
    ops = parser.add_argument_group("operations")
    ops.add_argument("--service_account", default="")
    ops.add_argument("--tensorboard", default="", help="projects/P/locations/R/tensorboards/ID")
    ops.add_argument("--network", default="")
    ops.add_argument("--timeout_s", type=int, default=0)
    ops.add_argument("--restart_on_preemption", action="store_true")
    ops.add_argument("--spot", action="store_true", help="Spot VMs (implies --restart_on_preemption).")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="Print the CreateCustomJob request as JSON and exit; needs no credentials.")
    return parser


def parse_spec(argv: Sequence[str]) -> tuple[TrainingJobSpec, bool]:
    argv = list(argv)
    trainer_args = []
    if "--" in argv:
        cut = argv.index("--")
        argv, trainer_args = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    fields = {f.name for f in dataclasses.fields(TrainingJobSpec)}
    spec = TrainingJobSpec(trainer_args=trainer_args,
                           **{k: v for k, v in vars(args).items() if k in fields})
    return spec, args.dry_run


def run(argv: Optional[Sequence[str]] = None) -> dict:
    spec, dry = parse_spec(sys.argv[1:] if argv is None else argv)
    if dry:
        request = dry_run_request(spec)
        print(json.dumps(request, indent=2))
        return request
    job = submit(spec)
    print(f"submitted {job.resource_name}")
    return {"name": job.resource_name}


if __name__ == "__main__":
    run()
