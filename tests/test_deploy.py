"""deploy/: the exact Vertex AI request and Dataflow job, built offline; bad cloud configs refused early."""

import json
import os
import re
import shlex

import pytest

from deploy import dataflow, vertex

CLOUD = ["--project", "my-project", "--region", "us-central1", "--staging_bucket", "gs://my-bucket",
         "--base_output_dir", "gs://my-bucket/runs/student1"]
TRAINER = ["--", "--preset", "svhn", "--mode", "offline", "--labeled_data", "gs://my-bucket/svhn",
           "--unlabeled_data", "gs://my-bucket/pseudo"]


def test_vertex_dry_run_request_is_the_sdks_custom_job(capsys):
    from google.cloud.aiplatform.compat.types import custom_job as gca_custom_job

    request = vertex.run(CLOUD + ["--tpu", "v5e-4", "--image", "us-docker.pkg.dev/my-project/ns/trainer:1",
                                  "--spot", "--timeout_s", "86400", "--dry-run"]
                         + TRAINER)
    printed = json.loads(capsys.readouterr().out)
    assert printed == request
    assert request["parent"] == "projects/my-project/locations/us-central1"
    job = gca_custom_job.CustomJob.from_json(json.dumps(request["custom_job"]))
    pool = job.job_spec.worker_pool_specs[0]
    assert (pool.machine_spec.machine_type, pool.machine_spec.tpu_topology) == ("ct5lp-hightpu-4t", "2x2")
    assert pool.container_spec.image_uri == "us-docker.pkg.dev/my-project/ns/trainer:1"
    assert list(pool.container_spec.command) == ["python", "-m", "trainer.task"]
    assert list(pool.container_spec.args) == TRAINER[1:]
    # --tpu means Keras on JAX (TensorFlow 2.21 has no TPU-VM build): no --keras_backend needed
    assert {e.name: e.value for e in pool.container_spec.env} == {"KERAS_BACKEND": "jax"}
    assert job.job_spec.base_output_directory.output_uri_prefix == "gs://my-bucket/runs/student1"
    assert job.job_spec.scheduling.restart_job_on_worker_restart
    assert job.job_spec.scheduling.strategy == gca_custom_job.Scheduling.Strategy.SPOT
    assert job.job_spec.scheduling.timeout.total_seconds() == 86400


def test_vertex_gpu_and_python_package_variants():
    spec, _ = vertex.parse_spec(CLOUD + ["--gpu", "NVIDIA_TESLA_A100:2", "--machine_type", "a2-highgpu-2g",
                                         "--python_package_uri", "gs://my-bucket/dist/noisystudent-0.1.0.tar.gz",
                                         "--executor_image", "us-docker.pkg.dev/vertex-ai/training/tf-gpu:latest"]
                                + TRAINER)
    request = vertex.dry_run_request(spec)
    pool = request["custom_job"]["job_spec"]["worker_pool_specs"][0]
    assert pool["machine_spec"]["accelerator_type"] == "NVIDIA_TESLA_A100"
    assert pool["machine_spec"]["accelerator_count"] == 2
    assert pool["python_package_spec"]["python_module"] == "trainer.task"
    assert pool["python_package_spec"]["env"] == [{"name": "KERAS_BACKEND", "value": "tensorflow"}]  # prebuilt: TF
    # Our GPU trainer image is built for Keras on JAX (jax[cuda12]; its TensorFlow has no CUDA).
    spec, _ = vertex.parse_spec(CLOUD + ["--gpu", "NVIDIA_L4:1", "--image", "us-docker.pkg.dev/p/r/trainer:1"]
                                + TRAINER)
    pool = vertex.dry_run_request(spec)["custom_job"]["job_spec"]["worker_pool_specs"][0]
    assert pool["container_spec"]["env"] == [{"name": "KERAS_BACKEND", "value": "jax"}]
    assert pool["machine_spec"]["machine_type"] == "g2-standard-8"


# DESIGN.md, "Vertex AI custom training on TPU slices": one worker pool, replica_count 1, the machine and topology.
VERTEX_TPU_TABLE = [("v5e-1", "ct5lp-hightpu-1t", "1x1", "", 0, 1), ("v5e-8", "ct5lp-hightpu-8t", "2x4", "", 0, 1),
                    ("v5e-16", "ct5lp-hightpu-4t", "4x4", "", 0, 4), ("v5e-256", "ct5lp-hightpu-4t", "16x16", "", 0, 64),
                    ("v6e-4", "ct6e-standard-4t", "2x2", "", 0, 1), ("v6e-64", "ct6e-standard-4t", "8x8", "", 0, 16),
                    ("v2-32", "cloud-tpu", "", "TPU_V2", 32, 4), ("v3-2048", "cloud-tpu", "", "TPU_V3", 2048, 256)]


@pytest.mark.parametrize("tpu, machine, topology, accelerator, count, hosts", VERTEX_TPU_TABLE)
def test_vertex_tpu_slices_parse_strictly_into_the_custom_job(tpu, machine, topology, accelerator, count, hosts):
    from google.cloud.aiplatform.compat.types import accelerator_type
    from google.cloud.aiplatform.compat.types import custom_job as gca_custom_job

    spec, _ = vertex.parse_spec(CLOUD + ["--tpu", tpu, "--image", "us-docker.pkg.dev/my-project/ns/trainer:1",
                                         "--restart_on_preemption"] + TRAINER)
    request = vertex.dry_run_request(spec)
    job = gca_custom_job.CustomJob.from_json(json.dumps(request["custom_job"]), ignore_unknown_fields=False)
    (pool,) = job.job_spec.worker_pool_specs
    assert pool.replica_count == 1  # a multi-host slice is still one replica: every host runs the trainer
    spec_ = pool.machine_spec
    assert (spec_.machine_type, spec_.tpu_topology, spec_.accelerator_count) == (machine, topology, count)
    assert (accelerator_type.AcceleratorType(spec_.accelerator_type).name if accelerator else "") == accelerator
    env = {e.name: e.value for e in pool.container_spec.env}
    assert env == ({"KERAS_BACKEND": "jax", "NOISYSTUDENT_HOSTS": str(hosts)} if hosts > 1 else
                   {"KERAS_BACKEND": "jax"})


def gpu_job(gpu: str, machine_type: str) -> "vertex.TrainingJobSpec":
    return vertex.TrainingJobSpec(project="my-project", region="us-central1", staging_bucket="gs://b",
                                  base_output_dir="gs://b/o", trainer_args=[], image="img", gpu=gpu,
                                  machine_type=machine_type)


@pytest.mark.parametrize("gpu, machine_type, message", [
    ("NVIDIA_L4:2", "g2-standard-8", "--machine_type g2-standard-8 carries 1 GPU(s), not 2; for 2: g2-standard-24"),
    ("NVIDIA_TESLA_V100:1", "n1-standard-16", "1 of these GPUs allow at most 12 vCPUs, and --machine_type "
                                              "n1-standard-16 has 16"),
    ("NVIDIA_TESLA_T4:1", "n1-standard-64", "at most 48 vCPUs"),
    ("NVIDIA_TESLA_A100:4", "a2-highgpu-2g", "carries 2 GPU(s), not 4"),
    ("NVIDIA_TESLA_T4:3", "n1-standard-8", "N1 machines take [1, 2, 4] of these GPUs"),
])
def test_gpu_counts_the_machine_cannot_carry_are_refused_for_vertex_and_dataflow(gpu, machine_type, message):
    spec = gpu_job(gpu, machine_type)
    with pytest.raises(ValueError, match=re.escape(message)):
        vertex.validate(spec)
    with pytest.raises(ValueError, match=re.escape(message)):
        dataflow.run(["predict", "--project", "my-project", "--region", "us-central1", "--bucket", "gs://b",
                      "--gpu", gpu.lower().replace("_", "-"), "--machine_type", machine_type, "--image", "i",
                      "--dry-run", "--", "--input", "gs://b/i", "--model", "gs://b/m.keras", "--output_dir", "gs://b/o"])


@pytest.mark.parametrize("change, message", [
    ({"project": "p"}, "--project 'p'"),
    ({"region": "middle-earth"}, "--region"),
    ({"staging_bucket": "/tmp/bucket"}, "--staging_bucket '/tmp/bucket': Vertex AI needs a gs:// path"),
    ({"tpu": "v9-1024"}, "--tpu 'v9-1024': not a slice Vertex AI's custom training lists"),
    ({"keras_backend": "tensorflow"}, "--tpu with --keras_backend tensorflow: TensorFlow 2.21 has no"),
    ({"tpu": "v5e-12"}, "known: v5e-1, v5e-4, v5e-8, v5e-16, v5e-32, v5e-64, v5e-128, v5e-256, v6e-1"),
    ({"tpu": "v5e-16", "spot": True}, "--spot with --tpu v5e-16 (4 hosts): Vertex AI offers no Spot VMs for TPU pod"),
    ({"image": "", "python_package_uri": "gs://b/p.tar.gz", "executor_image": "us-docker.pkg.dev/vertex-ai/x:1"},
     "--tpu with --python_package_uri: Vertex AI has no prebuilt training container for TPU"),
    ({"tensorboard": "projects/p/locations/us-central1/tensorboards/1"}, "--tensorboard needs --service_account"),
    ({"trainer_args": ["--init_checkpoint", "/home/me/b7/model.ckpt"]}, "--init_checkpoint '/home/me/b7"),
    ({"image": ""}, "exactly one of --image"),
    ({"trainer_args": ["--labeled_data", "/home/me/svhn"]}, "--labeled_data '/home/me/svhn'"),
])
def test_bad_vertex_configs_fail_before_any_network_call(change, message):
    spec = vertex.TrainingJobSpec(project="my-project", region="us-central1", staging_bucket="gs://b",
                                  base_output_dir="gs://b/o", trainer_args=[], image="img", tpu="v5e-4")
    for key, value in change.items():
        setattr(spec, key, value)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        vertex.validate(spec)


def test_dataflow_dry_run_builds_the_job_with_its_stages_and_options(capsys):
    description = dataflow.run(["predict", "--project", "my-project", "--region", "us-central1",
                                "--bucket", "gs://my-bucket", "--max_workers", "50", "--dry-run", "--",
                                "--input", "gs://my-bucket/jft", "--split", "unlabeled",
                                "--model", "gs://my-bucket/teacher/model.keras", "--output_dir", "gs://my-bucket/p"])
    for stage in ("ReadImageChunks", "PredictWithTeacher", "EncodeOutput", "WriteRecords", "WriteDeadLetters"):
        assert stage in description["stages"]
    options = description["options"]
    assert options["runner"] == "DataflowRunner" and options["project"] == "my-project"
    assert options["max_num_workers"] == 50 and options["temp_location"] == "gs://my-bucket/tmp"
    assert options["setup_file"].endswith("setup.py")
    assert description["dataflow_job"]["transforms"] > 20


def test_the_evaluate_job_dry_runs_on_dataflow_with_its_fan_out_and_one_scorer_per_model():
    description = dataflow.run(["evaluate", "--project", "my-project", "--region", "us-central1",
                                "--bucket", "gs://my-bucket", "--dry-run", "--",
                                "--data", "gs://my-bucket/imagenet", "--split", "validation",
                                "--model", "gs://my-bucket/student/model.keras",
                                "--reference", "gs://my-bucket/teacher/model.keras", "--output_dir", "gs://my-bucket/e"])
    for stage in ("ReadImageChunks", "Decode", "FanOut", "SpreadConditions", "Corrupt", "FGSM[model]",
                  "FGSM[reference]", "Score[model]", "Score[reference]", "Tally[model]", "WriteDeadLetters"):
        assert stage in description["stages"], stage
    assert description["options"]["runner"] == "DataflowRunner"
    with pytest.raises(ValueError, match="cannot read local paths"):
        dataflow.run(["evaluate", "--project", "my-project", "--region", "us-central1", "--bucket", "gs://b", "--",
                      "--data", "gs://b/d", "--model", "gs://b/m.keras", "--reference", "/local/teacher.keras",
                      "--output_dir", "gs://b/e"])


def _source_tree_state():
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    skip = {".venv", ".git", "__pycache__", ".pytest_cache"}
    state = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in dirs + files:
            path = os.path.join(folder, name)
            state[path] = os.stat(path).st_mtime_ns
    return state


def test_a_dataflow_dry_run_writes_nothing_into_the_source_tree():
    before = _source_tree_state()
    description = dataflow.run(["select", "--project", "my-project", "--region", "us-central1",
                                "--bucket", "gs://my-bucket", "--dry-run", "--",
                                "--predictions", "gs://my-bucket/p", "--num_image", "5", "--num_classes", "3",
                                "--output_dir", "gs://my-bucket/s"])
    assert description["options"]["setup_file"].endswith("setup.py")  # staged from a copy
    assert _source_tree_state() == before


@pytest.mark.parametrize("argv, message", [
    (["--bucket", "/tmp/b"], "Dataflow needs a gs:// bucket"),
    (["--bucket", "gs://b", "--gpu", "nvidia-l4:1"], "--gpu needs --image"),
    (["--bucket", "gs://b", "--", "--output_dir", "/tmp/out"], "cannot read local paths"),
    (["--bucket", "gs://b", "--gpu", "nvidia-l4:1", "--machine_type", "n2-standard-8", "--image", "i"],
     "--gpu 'nvidia-l4:1' needs a G2 machine"),
    (["--bucket", "gs://b", "--gpu", "nvidia-tesla-a100x:1", "--image", "i"],
     "TYPE one of nvidia-a100-80gb, nvidia-h100-80gb, nvidia-l4"),
])
def test_bad_dataflow_configs_fail_before_any_network_call(argv, message):
    base = ["select", "--project", "my-project", "--region", "us-central1"]
    with pytest.raises(ValueError, match=message):
        dataflow.run(base + argv)


@pytest.mark.parametrize("job, args", [
    ("beam_pipelines.ingest_digits", ["--output_dir", "OUT"]),
    ("beam_pipelines.ingest_svhn", ["--mat_dir", "gs://b/svhn", "--output_dir", "OUT"]),
    ("beam_pipelines.ingest_folder", ["--labeled_dir", "gs://b/l", "--class_names", "a,b", "--output_dir", "OUT"]),
    ("beam_pipelines.select", ["--predictions", "gs://b/p", "--num_image", "5", "--num_classes", "3",
                               "--output_dir", "OUT"]),
    ("beam_pipelines.evaluate", ["--model", "gs://b/m.keras", "--data", "gs://b/d", "--max_images", "10",
                                 "--output_dir", "OUT"]),
])
def test_every_beam_job_dry_runs_locally_without_touching_data(job, args, tmp_path, monkeypatch):
    import importlib
    import tempfile
    out = tmp_path / "never-written"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    description = importlib.import_module(job).run([a.replace("OUT", str(out)) for a in args] + ["--dry-run"])
    assert description["stages"] and not out.exists()
    # Nor does it leave Beam's per-pipeline temp dir behind (a pipeline never run keeps it).
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("gpu, machine", [
    ("nvidia-l4:1", "g2-standard-8"), ("nvidia-tesla-t4:1", "n1-standard-8"),
    ("nvidia-tesla-a100:2", "a2-highgpu-2g"), ("nvidia-h100-80gb:8", "a3-highgpu-8g"),
])
def test_dataflow_gpu_workers_get_a_machine_of_the_gpus_family(gpu, machine):
    description = dataflow.run(["predict", "--project", "my-project", "--region", "us-central1",
                                "--bucket", "gs://my-bucket", "--gpu", gpu, "--image", "us-docker.pkg.dev/p/r/w:1",
                                "--dry-run", "--", "--input", "gs://my-bucket/jft", "--model",
                                "gs://my-bucket/t/model.keras", "--output_dir", "gs://my-bucket/p"])
    options = description["options"]
    assert options["machine_type"] == machine
    kind, count = gpu.split(":")
    assert options["dataflow_service_options"] == [
        f"worker_accelerator=type:{kind};count:{count};install-nvidia-driver"]
    # One SDK process per worker, its threads sharing one teacher: not one TensorFlow per vCPU on the GPU.
    assert "no_use_multiple_sdk_containers" in options["experiments"]


# DESIGN.md, "Dataflow with TPU workers": each single-host slice and the one machine type Dataflow takes with it.
DATAFLOW_TPU_TABLE = [("v5e-1", "tpu-v5-lite-podslice", "1x1", "ct5lp-hightpu-1t"),
                      ("v5e-4", "tpu-v5-lite-podslice", "2x2", "ct5lp-hightpu-4t"),
                      ("v5e-8", "tpu-v5-lite-podslice", "2x4", "ct5lp-hightpu-8t"),
                      ("v6e-1", "tpu-v6e-slice", "1x1", "ct6e-standard-1t"),
                      ("v6e-4", "tpu-v6e-slice", "2x2", "ct6e-standard-4t"),
                      ("v6e-8", "tpu-v6e-slice", "2x4", "ct6e-standard-8t"),
                      ("v5p-8", "tpu-v5p-slice", "2x2x1", "ct5p-hightpu-4t")]


@pytest.mark.parametrize("tpu, kind, topology, machine", DATAFLOW_TPU_TABLE)
def test_dataflow_tpu_workers_get_the_accelerator_and_machine_pair_dataflow_accepts(tpu, kind, topology, machine):
    image = "us-docker.pkg.dev/my-project/ns/dataflow-tpu:1"
    description = dataflow.run(["predict", "--project", "my-project", "--region", "us-central1",
                                "--bucket", "gs://my-bucket", "--tpu", tpu, "--image", image, "--dry-run", "--",
                                "--input", "gs://my-bucket/jft", "--model", "gs://my-bucket/t/model.keras",
                                "--output_dir", "gs://my-bucket/p", "--precision", "bfloat16"])
    options = description["options"]
    assert options["machine_type"] == machine and options["sdk_container_image"] == image
    assert options["dataflow_service_options"] == [f"worker_accelerator=type:{kind};topology:{topology}"]
    assert {"no_use_multiple_sdk_containers", "use_runner_v2"} <= set(options["experiments"])
    assert options["number_of_worker_harness_threads"] == 50
    assert description["dataflow_job"]["transforms"] > 20


@pytest.mark.parametrize("extra, message", [
    (["--tpu", "v5e-1"], "--tpu needs --image"),
    (["--tpu", "v4-8", "--image", "i"], "choose one of v5e-1, v5e-4, v5e-8, v6e-1, v6e-4, v6e-8, v5p-8"),
    (["--tpu", "v5e-1", "--image", "i", "--machine_type", "ct5lp-hightpu-4t"],
     "--tpu v5e-1 (tpu-v5-lite-podslice, topology 1x1) needs --machine_type ct5lp-hightpu-1t"),
    (["--tpu", "v5e-1", "--gpu", "nvidia-l4:1", "--image", "i"], "one kind of accelerator"),
])
def test_bad_dataflow_tpu_requests_are_refused_with_the_valid_choices(extra, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        dataflow.run(["predict", "--project", "my-project", "--region", "us-central1", "--bucket", "gs://my-bucket",
                      *extra, "--dry-run", "--", "--input", "gs://b/i", "--model", "gs://b/m.keras",
                      "--output_dir", "gs://b/o"])


@pytest.mark.parametrize("gpu, machine_type, expected", [
    ("NVIDIA_L4:1", "", "g2-standard-8"),
    ("NVIDIA_TESLA_A100:1", "", "a2-highgpu-1g"),
    ("NVIDIA_TESLA_T4:2", "n1-highmem-16", "n1-highmem-16"),
    ("NVIDIA_L4:1", "a2-highgpu-1g", "needs a G2 machine"),
    ("NVIDIA_TESLA_A100X:1", "", "TYPE one of NVIDIA_A100_80GB, NVIDIA_H100_80GB, NVIDIA_L4"),
])
def test_vertex_gpu_machine_pairs(gpu, machine_type, expected):
    spec = gpu_job(gpu, machine_type)
    if "-" in expected and " " not in expected:
        machine = vertex.dry_run_request(spec)["custom_job"]["job_spec"]["worker_pool_specs"][0]["machine_spec"]
        assert machine["machine_type"] == expected
        assert machine["accelerator_type"] == gpu.split(":")[0]
    else:
        with pytest.raises(ValueError, match=expected):
            vertex.validate(spec)


def test_dataflow_workers_install_only_what_the_beam_jobs_import(tmp_path):
    import ast
    import os
    import subprocess
    import sys

    from deploy.requirements import LAUNCHER_REQUIRES, WORKER_REQUIRES

    description = dataflow.run(["select", "--project", "my-project", "--region", "us-central1",
                                "--bucket", "gs://my-bucket", "--dry-run", "--",
                                "--predictions", "gs://my-bucket/p", "--num_image", "5", "--num_classes", "3",
                                "--output_dir", "gs://my-bucket/s"])
    setup_file = description["options"]["setup_file"]
    staged = os.path.dirname(setup_file)
    assert sorted(d for d in os.listdir(staged) if not d.endswith((".py", ".egg-info"))) == [
        "beam_pipelines", "model", "noisystudent"]
    setup_call = next(n for n in ast.walk(ast.parse(open(setup_file).read())) if isinstance(n, ast.Call)
                      and getattr(n.func, "id", "") == "setup")
    requires = ast.literal_eval(next(k.value for k in setup_call.keywords if k.arg == "install_requires"))
    assert requires == WORKER_REQUIRES
    heavy = ("google-cloud-aiplatform", "matplotlib", "scikit-learn", "tfx-bsl", "tensorboard")
    assert not [r for r in requires if r.startswith(heavy)]
    assert [r for r in LAUNCHER_REQUIRES if r.startswith(heavy)]  # they exist: the launcher installs them
    # The staged code runs each Beam job's module on its own (what a worker unpickles into).
    env = dict(os.environ, PYTHONPATH=staged)
    code = ("import sys; import beam_pipelines.predict, beam_pipelines.select, beam_pipelines.ingest_folder, "
            "beam_pipelines.ingest_svhn, beam_pipelines.ingest_digits, noisystudent.teacher; "
            "assert all(m.__file__.startswith(sys.argv[1]) for m in (beam_pipelines.predict,)), 'not the copy'; "
            "assert 'trainer' not in sys.modules and 'deploy' not in sys.modules, 'a worker module imports them'")
    result = subprocess.run([sys.executable, "-c", code, staged], env=env, cwd=str(tmp_path), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_beam_sdk_worker_image_must_match_the_launchers_python_and_beam():
    import sys

    import apache_beam

    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    dataflow.check_worker_image(f"apache/beam_python{here}_sdk:{apache_beam.__version__}")
    dataflow.check_worker_image("europe-docker.pkg.dev/p/r/dataflow:v3")  # ours: built FROM the same versions
    with pytest.raises(ValueError, match=r"Python 3\.9 / Beam .* on the workers"):
        dataflow.check_worker_image(f"apache/beam_python3.9_sdk:{apache_beam.__version__}")
    with pytest.raises(ValueError, match="Beam 2.60.0 on the workers"):
        dataflow.check_worker_image(f"apache/beam_python{here}_sdk:2.60.0")


def test_the_worker_image_check_passes_on_each_backend_it_is_built_for():
    import os
    import subprocess
    import sys

    for backend, engine in (("tensorflow", "TensorFlow"), ("jax", "JAX")):
        env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu")
        result = subprocess.run([sys.executable, "-m", "deploy.worker_image_check"], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0 and f"on {engine}" in result.stdout, result.stderr[-2000:]
    env = dict(os.environ, KERAS_BACKEND="torch")  # not installed: the build must fail, saying why
    result = subprocess.run([sys.executable, "-m", "deploy.worker_image_check"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1 and "worker image check failed" in result.stderr


def test_the_dataflow_image_stages_set_the_backend_and_the_tpu_environment_of_the_docs():
    """deploy/Dockerfile.dataflow: one stage per ACCELERATOR, chosen by the build arg; the TPU stage runs
    Keras on JAX with Dataflow's TPU troubleshooting environment (v5e 1x1 by default); the image's
    check is its last step."""
    import pathlib

    text = (pathlib.Path(__file__).parent.parent / "deploy" / "Dockerfile.dataflow").read_text()
    stages = {name: base for base, name in re.findall(r"^FROM (\S+) AS (\w+)$", text, re.M)}
    assert stages == {"common": "apache/beam_python3.11_sdk:2.77.0", "cpu": "common", "gpu": "common",
                      "tpu": "common", "worker": "${ACCELERATOR}"}
    tpu = text.split("FROM common AS tpu", 1)[1].split("FROM ", 1)[0]
    for setting in ("KERAS_BACKEND=jax", "TPU_SKIP_MDS_QUERY=1", "TPU_HOST_BOUNDS=1,1,1",
                    "TPU_CHIPS_PER_HOST_BOUNDS=${TPU_CHIPS_PER_HOST_BOUNDS}", "TPU_WORKER_HOSTNAMES=localhost",
                    "TPU_WORKER_ID=0", "TPU_ACCELERATOR_TYPE=${TPU_ACCELERATOR_TYPE}", "requirements.py JAX_TPU"):
        assert setting in tpu, setting
    assert "ARG TPU_ACCELERATOR_TYPE=v5litepod-1" in tpu and "ARG TPU_CHIPS_PER_HOST_BOUNDS=1,1,1" in tpu
    gpu = text.split("FROM common AS gpu", 1)[1].split("FROM ", 1)[0]
    assert "tensorflow[and-cuda]" in gpu and "requirements.py JAX_GPU" in gpu and "ENV KERAS_BACKEND=${KERAS_BACKEND}" in gpu
    assert text.rstrip().splitlines()[-1] == "RUN python -m deploy.worker_image_check"


def test_the_trainer_image_needs_only_the_trainers_requirements():
    """deploy/Dockerfile.trainer installs TRAINER_REQUIRES and the project with --no-deps: the trainer must not
    import Beam, the Vertex AI SDK, tfx-bsl, tfds or the plotting stack (blocked here as if not installed)."""
    import os
    import subprocess
    import sys

    from deploy.requirements import TRAINER_REQUIRES

    assert [r.split(">")[0].split("=")[0] for r in TRAINER_REQUIRES] == ["tensorflow", "keras", "numpy", "tensorboard"]
    code = ("import importlib.abc, sys\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('apache_beam', 'tfx_bsl', 'sklearn', 'matplotlib', "
            "'tensorflow_datasets', 'scipy', 'pyarrow') or name.startswith('google.cloud.aiplatform'):\n"
            "            raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import trainer.task, trainer.export\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_dockerfiles_build_from_the_pinned_python_and_beam():
    import pathlib

    from deploy.requirements import WORKER_REQUIRES

    root = pathlib.Path(__file__).parent.parent
    beam_pin = next(r for r in WORKER_REQUIRES if r.startswith("apache-beam")).split(">=")[1].split(",")[0]
    python = re.search(r'python_requires=">=(\d+\.\d+),<(\d+\.\d+)"', (root / "setup.py").read_text())
    low, high = (tuple(map(int, v.split("."))) for v in python.groups())
    dataflow_from = re.search(r"^FROM apache/beam_python(\d+\.\d+)_sdk:(\S+) AS common$",
                              (root / "deploy" / "Dockerfile.dataflow").read_text(), re.M)
    trainer_from = re.search(r"^FROM python:(\d+\.\d+)-slim$", (root / "deploy" / "Dockerfile.trainer").read_text(),
                             re.M)
    for version in (dataflow_from.group(1), trainer_from.group(1)):
        assert low <= tuple(map(int, version.split("."))) < high, version
    assert dataflow_from.group(2).startswith(beam_pin)
    for name in ("Dockerfile.dataflow", "Dockerfile.trainer"):  # never the launcher's whole stack
        text = (root / "deploy" / name).read_text()
        assert "--no-deps ." in text and not re.search(r"pip install[^\n]* \.(\[|\s|$)", text.replace("--no-deps .", ""))


def readme_training_commands() -> list[list[str]]:
    """Every whole `noisystudent submit-training` command in the README's code blocks, placeholders filled."""
    readme = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md"), encoding="utf-8").read()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        for command in re.split(r"\n(?=\S)", block.replace("\\\n", " ")):
            if command.startswith("noisystudent submit-training") and " ... " not in command:
                filled = (command.replace("PROJECT", "my-project").replace("REGION", "us-central1")
                          .replace("BUCKET", "my-bucket"))
                commands.append(shlex.split(filled)[2:])
    return commands


def test_every_readme_training_command_builds_the_request_the_design_tables_give():
    commands = readme_training_commands()
    tpus = [argv[argv.index("--tpu") + 1] for argv in commands if "--tpu" in argv]
    assert {"v5e-4", "v5e-16"} <= set(tpus), tpus  # the teacher on one host, the student on a pod slice
    table = {tpu: (machine, topology, hosts) for tpu, machine, topology, _, _, hosts in VERTEX_TPU_TABLE}
    table["v5e-4"] = ("ct5lp-hightpu-4t", "2x2", 1)
    for argv in commands:
        spec, _ = vertex.parse_spec(argv)
        request = vertex.dry_run_request(spec)
        (pool,) = request["custom_job"]["job_spec"]["worker_pool_specs"]
        env = {e["name"]: e["value"] for e in pool["container_spec"]["env"]}
        if spec.tpu:
            machine, topology, hosts = table[spec.tpu]
            assert (pool["machine_spec"]["machine_type"], pool["machine_spec"]["tpu_topology"]) == (machine, topology)
            assert int(pool["replica_count"]) == 1 and env.get("NOISYSTUDENT_HOSTS", "1") == str(hosts)
            assert env["KERAS_BACKEND"] == "jax"
