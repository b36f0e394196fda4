"""`python -m trainer.task`: teacher and student training on the bundled digits."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from model import build_model
from noisystudent import records
from tests.digits_data import make_digits_dataset, make_pseudo_labeled
from trainer import task
from trainer.config import config_from_args
from trainer.noisy_student import NoisyStudent

FAST = ["--preset", "digits", "--image_size", "16", "--batch_size", "16", "--unlabel_ratio", "2",
        "--steps_per_epoch", "10", "--verbose", "0", "--randaugment_ops", "1"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return make_digits_dataset(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def teacher_dir(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    task.run(FAST + ["--labeled_data", digits, "--output_dir", str(out), "--train_steps", "60"])
    return out


def test_teacher_learns_evaluates_and_exports(teacher_dir):
    history = json.loads((teacher_dir / "history.json").read_text())
    assert history["loss"][-1] < history["loss"][0]
    report = json.loads((teacher_dir / "eval.json").read_text())
    assert report["num_examples"] == 200 and set(report["per_class"]) == {str(c) for c in range(10)}
    assert report["top1_accuracy"] > 0.3  # 60 steps on 100 labels; chance is 0.1
    model = keras.saving.load_model(str(teacher_dir / "model.keras"), safe_mode=True)
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    served = tf.saved_model.load(str(teacher_dir / "saved_model")).signatures["serving_images"]
    np.testing.assert_allclose(served(images=tf.constant(images))["probabilities"].numpy(),
                               model.predict(images.astype("float32"), verbose=0), atol=1e-5)


def test_offline_student_learns_from_pseudo_labels_and_reads_every_one(digits, tmp_path):
    pseudo = make_pseudo_labeled(digits, tmp_path / "pseudo")  # 90% right
    argv = FAST + ["--mode", "offline", "--labeled_data", digits, "--unlabeled_data", pseudo,
                   "--output_dir", str(tmp_path / "s"), "--train_steps", "60"]
    report = task.run(argv)
    history = json.loads((tmp_path / "s" / "history.json").read_text())
    assert history["unlabeled_loss"][-1] < history["unlabeled_loss"][0]
    assert report["mode"] == "offline" and report["top1_accuracy"] > 0.3  # chance is 0.1
    # The trainer's own input: its first epoch of pseudo-labeled images holds every record once.
    config = config_from_args(argv)
    stored = [records.parse_pseudo_labeled(r).probabilities
              for r in tf.data.TFRecordDataset(tf.io.gfile.glob(pseudo)).as_numpy_iterator()]
    per_step = config.batch_size * config.unlabel_ratio
    batches = task.make_training_data(config, task.inspect_labeled_data(config)).take(-(-len(stored) // per_step))
    read = np.concatenate([y["unlabeled"].numpy() for _, y in batches])[: len(stored)]
    assert sorted(v.tobytes() for v in read) == sorted(v.tobytes() for v in stored)


def test_head_only_fine_tune_from_a_keras_checkpoint(digits, teacher_dir, tmp_path):
    task.run(FAST + ["--labeled_data", digits, "--output_dir", str(tmp_path), "--train_steps", "30",
                     "--init_checkpoint", str(teacher_dir / "model.keras"), "--train_head_only", "true"])
    teacher = keras.saving.load_model(str(teacher_dir / "model.keras"))
    tuned = keras.saving.load_model(str(tmp_path / "model.keras"))
    for layer in tuned.layers:
        same = all(np.array_equal(a, b) for a, b in zip(layer.get_weights(),
                                                        teacher.get_layer(layer.name).get_weights()))
        assert same == (layer.name != "predictions"), layer.name


def test_fixres_finetune_exports_the_larger_resolution(digits, tmp_path):
    task.run(FAST + ["--labeled_data", digits, "--output_dir", str(tmp_path), "--train_steps", "30",
                     "--finetune_steps", "5", "--finetune_image_size", "24"])
    model = keras.saving.load_model(str(tmp_path / "model.keras"))
    assert model.input_shape[1:3] == (24, 24)
    assert json.loads((tmp_path / "eval.json").read_text())["num_examples"] == 200


@pytest.mark.parametrize("prob_format", ["float16", "top_k:3"])
def test_offline_reads_compact_probabilities(digits, tmp_path, prob_format):
    from trainer import data
    pseudo = make_pseudo_labeled(digits, tmp_path / "p", prob_format=prob_format)
    ds = data.pseudo_labeled_images(tf.io.gfile.glob(pseudo), 10, 16, 8, None, prob_format)
    _, probs = next(iter(ds))
    assert probs.shape == (8, 10)
    np.testing.assert_allclose(np.sort(probs.numpy(), axis=1)[:, -1], 0.82, atol=1e-3)


def test_online_student_teacher_stays_frozen(digits, teacher_dir, tmp_path):
    report = task.run(FAST + ["--mode", "online", "--labeled_data", digits, "--unlabeled_data", digits,
                              "--unlabeled_split", "unlabeled", "--teacher", str(teacher_dir / "model.keras"),
                              "--output_dir", str(tmp_path / "s"), "--train_steps", "30"])
    assert report["mode"] == "online"
    # In process: the teacher's weights (BatchNorm statistics included) do not move.
    teacher = keras.saving.load_model(str(teacher_dir / "model.keras"))
    before = [w.copy() for w in teacher.get_weights()]
    trainer = NoisyStudent(build_model("cnn-small", 10, input_shape=(16, 16, 3)), teacher)
    trainer.compile("adam", unlabeled_weight=2.0)
    x = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    batch = ({"labeled": x[:4], "unlabeled": x[4:], "unlabeled_clean": x[4:]}, {"labeled": np.arange(4)})
    trainer.fit(tf.data.Dataset.from_tensors(batch).repeat(5), epochs=1, verbose=0)
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_configs_name_the_field(digits, teacher_dir, tmp_path):
    out = ["--output_dir", str(tmp_path / "o")]
    with pytest.raises(ValueError, match="unknown model 'resnet-9000'"):
        task.run(FAST + ["--labeled_data", digits, "--model", "resnet-9000"] + out)
    with pytest.raises(ValueError, match="'num_classes': 7 does not match"):
        task.run(FAST + ["--labeled_data", digits, "--num_classes", "7"] + out)
    with pytest.raises(ValueError, match="'unlabeled_data': is required in offline mode"):
        task.run(FAST + ["--labeled_data", digits, "--mode", "offline"] + out)
    with pytest.raises(ValueError, match="labels \\[-1\\] are outside"):
        task.run(FAST + ["--labeled_data", digits, "--labeled_split", "unlabeled"] + out)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "summary.json").write_text(json.dumps({"splits": {"train": {"records": 0, "labels": {}, "files": []}}}))
    with pytest.raises(ValueError, match="holds no records .*selection keep nothing"):
        task.run(FAST + ["--labeled_data", digits, "--mode", "offline", "--unlabeled_data", str(empty)] + out)
    with pytest.raises(FileNotFoundError, match="no files match"):
        task.run(FAST + ["--labeled_data", str(tmp_path / "none-*.tfrecord"), "--num_classes", "10"] + out)
    big_teacher = tmp_path / "wrn.keras"
    build_model("wrn-28-2", 10, input_shape=(16, 16, 3)).save(str(big_teacher))
    with pytest.raises(ValueError, match="'model': student cnn-small .* is smaller than the teacher"):
        task.run(FAST + ["--labeled_data", digits, "--mode", "online", "--unlabeled_data", digits,
                         "--unlabeled_split", "unlabeled", "--teacher", str(big_teacher)] + out)


def test_killed_training_resumes_from_its_checkpoint(digits, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "trainer.task"] + FAST + [
        "--labeled_data", digits, "--output_dir", str(out), "--train_steps", "400",
        "--steps_per_epoch", "20", "--randaugment_ops", "0"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = out / "progress.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if progress.exists() and len(progress.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epochs_before = [json.loads(l)["epoch"] for l in progress.read_text().splitlines()]
    assert 2 <= len(epochs_before) < 20, "the first run should be killed mid-training"
    # The worst moment to be killed: while the checkpoint is written. Its weights file is then damaged.
    latest = out / "checkpoints" / "latest.weights.h5"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    epochs_after = [json.loads(l)["epoch"] for l in progress.read_text().splitlines()][len(epochs_before):]
    # The second run starts after the previous intact checkpoint, not at epoch 1, and finishes.
    assert epochs_after[0] > 1 and epochs_after[0] <= epochs_before[-1] + 1
    assert epochs_after[-1] == 20
    assert (out / "eval.json").exists()


def test_bfloat16_training_computes_in_bfloat16_and_saves_a_float32_model(digits, tmp_path):
    out = tmp_path / "bf16"
    report = task.run(FAST + ["--labeled_data", digits, "--output_dir", str(out), "--train_steps", "60",
                              "--precision", "bfloat16"])
    assert report["top1_accuracy"] > 0.2  # it learns (chance is 0.1)
    assert keras.mixed_precision.global_policy().name == "float32"  # nothing leaks into the process
    model = keras.saving.load_model(str(out / "model.keras"), safe_mode=True)
    assert {layer.dtype_policy.name for layer in model.layers if layer.weights} == {"float32"}
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = build_model("cnn-small", 10, input_shape=(16, 16, 3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert mixed.get_layer("predictions").compute_dtype == "float32"  # the softmax stays float32
    assert any(layer.compute_dtype == "bfloat16" for layer in mixed.layers)


class _Interrupted(Exception):
    pass


def _state(model):
    """Everything a resumed run must get back: weights (EMA included), optimizer state, LR."""
    optimizer = model.optimizer
    lr = optimizer.learning_rate
    return {"weights": [np.array(v) for v in model.weights],
            "optimizer": [np.array(v) for v in optimizer.variables],
            "iteration": int(optimizer.iterations),
            "lr": float(lr(optimizer.iterations) if callable(lr) else lr)}


class _KillAfter(keras.callbacks.Callback):
    """Records the state each checkpoint holds (BackupAndRestore saved it before this runs), then
    stops training mid-epoch, as a preempted VM would."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.saved = epoch, batch, None
        self._current = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.saved = _state(self.model)

    def on_train_batch_end(self, batch, logs=None):
        if self._current == self.epoch and batch == self.batch:
            raise _Interrupted()


class _RestoredState(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):  # runs after BackupAndRestore's restore
        self.state = _state(self.model)


@pytest.mark.parametrize("mode, kill_epoch, kill_batch", [("supervised", 3, 6), ("offline", 2, 0),
                                                          ("online", 1, 9)])
def test_a_resumed_run_restores_weights_ema_optimizer_and_lr_of_the_last_checkpoint(
        mode, kill_epoch, kill_batch, digits, teacher_dir, tmp_path):
    args = FAST + ["--mode", mode, "--labeled_data", digits, "--output_dir", str(tmp_path / "run"),
                   "--train_steps", "50", "--ema_momentum", "0.9", "--optimizer", "rmsprop",
                   "--warmup_steps", "5"]
    if mode == "offline":
        args += ["--unlabeled_data", make_pseudo_labeled(digits, tmp_path / "pseudo")]
    if mode == "online":
        args += ["--unlabeled_data", digits, "--unlabeled_split", "unlabeled",
                 "--teacher", str(teacher_dir / "model.keras")]
    config = task.config_from_args(args)
    kill = _KillAfter(kill_epoch, kill_batch)
    with pytest.raises(_Interrupted):
        task.train(config, [kill])
    restored = _RestoredState()
    task.train(config, [restored])
    saved, got = kill.saved, restored.state
    assert got["iteration"] == saved["iteration"] == kill_epoch * 10 > 0
    assert got["lr"] == saved["lr"]
    assert len(got["weights"]) == len(saved["weights"]) and len(got["optimizer"]) == len(saved["optimizer"])
    for a, b in zip(got["weights"] + got["optimizer"], saved["weights"] + saved["optimizer"]):
        np.testing.assert_array_equal(a, b)


def test_train_steps_run_exactly_when_the_checkpoint_interval_does_not_divide_them(tmp_path):
    """The original runs max_steps exactly (main.py:76); the last interval is cut short, and the
    schedule ends at train_steps."""
    from tests.digits_data import make_digits_dataset
    from trainer import task

    data = make_digits_dataset(tmp_path / "data", test_size=50)
    out = tmp_path / "run"
    import keras

    from trainer.config import config_from_args

    class CountSteps(keras.callbacks.Callback):
        steps = 0

        def on_train_batch_end(self, batch, logs=None):
            CountSteps.steps += 1

    config = config_from_args(["--preset", "digits", "--labeled_data", data, "--train_steps", "5",
                               "--steps_per_epoch", "2", "--warmup_steps", "0", "--randaugment_ops", "0",
                               "--saved_model", "false", "--output_dir", str(out), "--verbose", "0"])
    report = task.train(config, extra_callbacks=[CountSteps()])
    assert CountSteps.steps == 5  # optimizer steps taken, not 4 (two whole intervals) or 6
    progress = [json.loads(l) for l in (out / "progress.jsonl").read_text().splitlines()]
    assert [p["step"] for p in progress] == [2, 4, 5] and report["steps"] == 5
    assert json.loads((out / "checkpoints" / "training_metadata.json").read_text())["epoch"] == 3
