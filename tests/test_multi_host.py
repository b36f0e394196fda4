"""The trainer on many hosts, proven with two local processes (`python -m trainer.task` twice, Keras'
KERAS_DISTRIBUTION_* variables, gloo collectives on CPU), as every host of a TPU pod slice runs it.

Each host reads its own files and feeds its share of the global batch; both end with the same weights,
equal to one process fed the same global batches; process 0 alone writes; a run killed on both hosts
resumes from the same checkpoint on both. Under JAX the SavedModel is exported from model.keras in a
TensorFlow process (its string signatures can only be traced by TensorFlow): plain TensorFlow serves it.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.digits_data import make_digits_dataset, make_pseudo_labeled
from tests.tfrecord_files import write_tfrecord

pytest.importorskip("jax")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# No noise: the two-process run and the one-process run then see the same pixels in the same batches.
QUIET = ["--preset", "digits", "--randaugment_ops", "0", "--stochastic_depth_rate", "0", "--dropout_rate", "0",
         "--shuffle_buffer", "1", "--warmup_steps", "0", "--verbose", "0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_trainers(args, num_processes, log_dir, tag):
    """`python -m trainer.task ARGS` as process 0..N-1 of one cluster on this machine."""
    port, procs = free_port(), []
    for i in range(num_processes):
        env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
        if num_processes > 1:
            env.update(KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
                       KERAS_DISTRIBUTION_NUM_PROCESSES=str(num_processes), KERAS_DISTRIBUTION_PROCESS_ID=str(i))
        log = open(os.path.join(log_dir, f"{tag}-{i}.log"), "w")
        procs.append((subprocess.Popen([sys.executable, "-m", "trainer.task", *args], cwd=ROOT, env=env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log))
    return procs


def finish(procs, timeout=600) -> list[str]:
    logs = []
    for proc, log in procs:
        proc.wait(timeout=timeout)
        log.close()
        logs.append(open(log.name).read())
        assert proc.returncode == 0, f"{log.name}:\n{logs[-1][-3000:]}"
    return logs


def fingerprints(logs) -> list[str]:
    found = [re.findall(r"process (\d) of 2: trained weights (\w+)", log) for log in logs]
    assert [f[0][0] for f in found] == ["0", "1"], found
    return [f[0][1] for f in found]


def split_in_two(pattern_dir, records, prefix):
    """Two shards of equal size (an odd record out is dropped): each host reads one."""
    half = len(records) // 2
    os.makedirs(pattern_dir, exist_ok=True)
    for i in range(2):
        write_tfrecord(os.path.join(pattern_dir, f"{prefix}-0000{i}-of-00002.tfrecord"),
                       records[i * half:(i + 1) * half])
    return os.path.join(pattern_dir, f"{prefix}-*.tfrecord")


def read_all(pattern):
    return [r.numpy() for r in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)))]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_host")
    data = make_digits_dataset(root / "data", labels_per_class=10, test_size=200)
    labeled = split_in_two(str(root / "labeled"), read_all(os.path.join(data, "labeled-*")), "labeled")
    pseudo = split_in_two(str(root / "pseudo"),
                          read_all(make_pseudo_labeled(data, root / "pseudo_one", accuracy=0.9)), "train")
    return root, data, labeled, pseudo


def test_two_processes_train_offline_in_step_like_one_process_fed_the_same_global_batches(digits, tmp_path):
    root, data, labeled, pseudo = digits
    args = [*QUIET, "--mode", "offline", "--labeled_data", labeled, "--num_classes", "10",
            "--unlabeled_data", pseudo, "--eval_data", data, "--batch_size", "16", "--unlabel_ratio", "2",
            "--train_steps", "12", "--steps_per_epoch", "6"]
    two = start_trainers([*args, "--output_dir", str(tmp_path / "two")], 2, tmp_path, "two")
    one = start_trainers([*args, "--output_dir", str(tmp_path / "one")], 1, tmp_path, "one")
    logs = finish(two)
    finish(one)

    for log in logs:
        assert "training on 2 processes, 2 cpu devices" in log
        assert "8 labeled images per device per step" in log
    first, second = fingerprints(logs)
    assert first == second  # both hosts hold the same trained weights

    import keras
    two_model = keras.saving.load_model(str(tmp_path / "two" / "model.keras"), compile=False)
    one_model = keras.saving.load_model(str(tmp_path / "one" / "model.keras"), compile=False)
    # The two processes' all-reduce sums the gradients in another order: float32 differences after 12 steps
    # of up to 1.4e-5 absolute on a kernel and 1.4e-4 relative on a batch norm's moving variance (seen on one
    # CPU, varying run to run).
    for a, b in zip(two_model.get_weights(), one_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    # One writer: one line per epoch, one evaluation over every test image once, one set of files.
    progress = [json.loads(l) for l in (tmp_path / "two" / "progress.jsonl").read_text().splitlines()]
    assert [p["epoch"] for p in progress] == [1, 2] and [p["step"] for p in progress] == [6, 12]
    assert progress[1]["loss"] < progress[0]["loss"]  # it trained
    one_progress = [json.loads(l) for l in (tmp_path / "one" / "progress.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([p["loss"] for p in progress], [p["loss"] for p in one_progress], rtol=1e-4)
    report = json.loads((tmp_path / "two" / "eval.json").read_text())
    assert report["num_examples"] == 200 and report["steps"] == 12
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))
    assert sorted(os.listdir(tmp_path / "two" / "checkpoints")) == sorted(os.listdir(tmp_path / "one" / "checkpoints"))

    # The SavedModel process 0 exported (from model.keras, in a TensorFlow process) serves its predictions.
    from noisystudent import dataset_dir, records
    serialized = list(dataset_dir.iter_split_records(data, "test"))[:16]
    encoded = [records.parse_image_record(r).encoded for r in serialized]
    signatures = tf.saved_model.load(str(tmp_path / "two" / "saved_model")).signatures
    pixels = tf.stack([tf.image.resize(tf.io.decode_png(e, channels=3), [32, 32]) for e in encoded])
    expected = np.asarray(two_model(pixels, training=False))
    from_encoded = signatures["serving_encoded"](images=tf.constant(encoded))["probabilities"]
    from_examples = signatures["serving_default"](examples=tf.constant(serialized))["probabilities"]
    np.testing.assert_allclose(from_encoded.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(from_examples.numpy(), expected, atol=1e-5)


def test_killed_on_both_hosts_resumes_from_the_same_checkpoint_on_both(digits, tmp_path):
    root, data, labeled, _ = digits
    out = tmp_path / "run"
    args = [*QUIET, "--labeled_data", labeled, "--num_classes", "10", "--eval_data", data,
            "--train_steps", "30", "--steps_per_epoch", "3", "--saved_model", "false", "--output_dir", str(out)]
    procs = start_trainers(args, 2, tmp_path, "killed")
    metadata = out / "checkpoints" / "training_metadata.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (metadata.exists() and json.loads(metadata.read_text() or "{}")
                                          .get("epoch", 0) >= 1):
        assert all(p.poll() is None for p, _ in procs), "a trainer ended before it was killed"
        time.sleep(0.2)
    for proc, log in procs:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    killed_at = json.loads(metadata.read_text())["epoch"]
    assert 1 <= killed_at < 10

    logs = finish(start_trainers(args, 2, tmp_path, "resumed"))
    resumed = [int(re.search(r"resuming from the checkpoint of epoch (\d+)", log).group(1)) for log in logs]
    assert resumed[0] == resumed[1] >= killed_at
    first, second = fingerprints(logs)
    assert first == second
    epochs = [json.loads(l)["epoch"] for l in (out / "progress.jsonl").read_text().splitlines()]
    assert epochs == sorted(set(epochs)) and epochs[-1] == 10  # no epoch written twice
    assert json.loads((out / "eval.json").read_text())["steps"] == 30
    assert not (out / "saved_model").exists()  # --saved_model false: model.keras only


def test_two_processes_train_online_with_the_teacher_noise_and_ema_on_both(digits, tmp_path):
    import keras

    from model import build_model

    root, data, labeled, pseudo = digits
    teacher = build_model("cnn-small", 10, input_shape=(32, 32, 3))
    teacher.save(str(tmp_path / "teacher.keras"))
    unlabeled = split_in_two(str(tmp_path / "unlabeled"), read_all(os.path.join(data, "unlabeled-*")), "unlabeled")
    args = ["--preset", "digits", "--mode", "online", "--teacher", str(tmp_path / "teacher.keras"),
            "--labeled_data", labeled, "--num_classes", "10", "--unlabeled_data", unlabeled, "--eval_data", data,
            "--train_steps", "4", "--steps_per_epoch", "2", "--warmup_steps", "0", "--randaugment_ops", "1",
            "--ema_momentum", "0.99", "--input_noise", "imagenet",  # host-seeded noise and the EMA, on JAX
            "--saved_model", "false", "--verbose", "0", "--output_dir", str(tmp_path / "online")]
    logs = finish(start_trainers(args, 2, tmp_path, "online"))
    first, second = fingerprints(logs)
    assert first == second
    report = json.loads((tmp_path / "online" / "eval.json").read_text())
    assert report["mode"] == "online" and report["num_examples"] == 200
    assert keras.saving.load_model(str(tmp_path / "online" / "model.keras"), compile=False).count_params() > 0


@pytest.mark.parametrize("num_files", [1, 2, 3])
def test_the_hosts_read_every_record_once_between_them(tmp_path, num_files):
    from trainer import data

    images = [tf.io.encode_png(np.full((4, 4, 3), i, np.uint8)).numpy() for i in range(30)]
    from noisystudent import records
    serialized = [records.encode_image_record(f"img/{i}", images[i], label=i % 10) for i in range(30)]
    for f in range(num_files):
        write_tfrecord(tmp_path / f"part-{f}.tfrecord", serialized[f::num_files])
    files = sorted(str(p) for p in tmp_path.glob("part-*"))
    seen = []
    for host in range(2):
        ds = data.labeled_images(files, 10, 4, 1, None, shuffle_buffer=1, repeat=False, shard=(host, 2))
        seen.append([int(image[0, 0, 0, 0]) for image, _ in ds])
    assert sorted(seen[0] + seen[1]) == list(range(30))  # every record once, no host reads another's
    assert len(seen[0]) > 0 and len(seen[1]) > 0


def test_a_cluster_is_refused_with_its_reason():
    from deploy import vertex
    from trainer import cluster

    assert vertex.HOSTS_ENV == cluster.HOSTS_ENV  # what the request sets is what the trainer reads
    assert cluster.requested_processes({}) == 1
    assert cluster.requested_processes({"NOISYSTUDENT_HOSTS": "4"}) == 4
    assert cluster.requested_processes({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "NOISYSTUDENT_HOSTS": "4"}) == 2
    with pytest.raises(ValueError, match="NOISYSTUDENT_HOSTS='four' is not a process count"):
        cluster.requested_processes({"NOISYSTUDENT_HOSTS": "four"})
    with pytest.raises(ValueError, match="a job over 4 processes needs KERAS_BACKEND=jax"):
        cluster.start({"NOISYSTUDENT_HOSTS": "4"})  # this test process runs TensorFlow
    with pytest.raises(ValueError, match="'batch_size': 128 labeled images per step do not split over 256 devices"):
        cluster.check_global_batch(128, cluster.Cluster(0, 64, 256))
    cluster.check_global_batch(4096, cluster.Cluster(0, 64, 256))
    assert cluster.Cluster(3, 64, 256).local_batch(4096) == 64
