"""`KERAS_BACKEND=jax noisystudent predict`: the teacher as one jitted function at a fixed batch shape, fed by
host threads, as a GPU or TPU worker runs it. On CPU here: the TensorFlow path's probabilities on every digits
image, the same bytes on a re-run, and a bad image failing only its own row."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from beam_pipelines import predict
from model import build_model
from noisystudent import dataset_dir, records
from tests.tfrecord_files import write_tfrecord

pytest.importorskip("jax")


def _predict_on_jax(*argv: str, command: str = "predict") -> None:
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-m", "noisystudent.app.cli", command, *argv], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(JaxTeacher)" in result.stderr  # the handler loaded the JAX teacher, not TensorFlow's


def _probabilities(directory) -> dict[str, np.ndarray]:
    return {p.image_id: p.probabilities for p in map(records.parse_prediction,
                                                     dataset_dir.iter_split_records(str(directory), "predictions"))}


def _shards(directory) -> dict[str, bytes]:
    return {os.path.basename(p): open(p, "rb").read() for p in dataset_dir.split_files(str(directory), "predictions")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("jax")
    from beam_pipelines import ingest_digits

    ingest_digits.run(["--output_dir", str(root / "data")])
    keras.utils.set_random_seed(0)
    model = build_model("cnn-small", 10, input_shape=(32, 32, 3))  # BatchNorm, dropout, stochastic depth
    kernel = model.get_layer("predictions").kernel
    kernel.assign(kernel * 40.0)  # confident, varied probabilities: a meaningful comparison
    model.save(str(root / "t.keras"))
    predict.run(["--input", str(root / "data"), "--model", str(root / "t.keras"), "--output_dir", str(root / "tf")])
    return root


def test_the_jax_teacher_gives_the_tensorflow_probabilities_and_the_same_bytes_twice(setup):
    root = setup
    for run in ("jax1", "jax2"):  # --batch_size 100: 12 chunks of 1,197 images, the last one padded
        _predict_on_jax("--input", str(root / "data"), "--model", str(root / "t.keras"), "--output_dir",
                        str(root / run), "--batch_size", "100", "--decode_threads", "2")
    expected, got = _probabilities(root / "tf"), _probabilities(root / "jax1")
    assert sorted(got) == sorted(expected) and len(got) == 1197
    worst = max(float(np.abs(got[i] - expected[i]).max()) for i in expected)
    assert worst < 1e-4, worst
    assert np.mean([expected[i].max() for i in expected]) > 0.5  # the teacher is not flat
    for i in expected:
        top = np.sort(expected[i])[-2:]
        assert got[i].argmax() == expected[i].argmax() or top[1] - top[0] < 2e-4
    assert _shards(root / "jax1") == _shards(root / "jax2")


def test_bfloat16_on_jax_and_a_bad_image_fails_only_its_row(setup, tmp_path):
    root = setup
    good = [r for r in dataset_dir.iter_split_records(str(root / "data"), "unlabeled")][:40]
    write_tfrecord(tmp_path / "in.tfrecord", good[:20] + [records.encode_image_record("bad/cut", b"\x89PNG\r\n\x1a\n")]
                   + good[20:])
    _predict_on_jax("--input", str(tmp_path / "*.tfrecord"), "--model", str(root / "t.keras"), "--output_dir",
                    str(tmp_path / "out"), "--precision", "bfloat16", "--batch_size", "16")
    summary = dataset_dir.read_summary(str(tmp_path / "out"))
    assert summary["accounting"]["predictions"] == {"input": 41, "written": 40, "dead_letter": 1}
    assert '"id": "bad/cut"' in (tmp_path / "out" / "dead_letter.jsonl").read_text()
    half, full = _probabilities(tmp_path / "out"), _probabilities(root / "tf")
    for image_id, probs in half.items():
        assert probs.dtype == np.float32 and abs(float(probs.sum()) - 1) < 1e-3
        assert float(np.abs(probs - full[image_id]).max()) < 0.1  # bfloat16 activations, float32 softmax


def test_the_accelerator_bench_runs_where_tensorflow_is_not_installed(tmp_path):
    """bench/gpu_predict_path.py is what a lent GPU runs (JAX, no TensorFlow, no Beam): tiny, on CPU, with
    `import tensorflow` failing, it measures the model alone and the handler's path and writes its rows."""
    import json

    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    out = tmp_path / "rows.json"
    result = subprocess.run([sys.executable, "bench/gpu_predict_path.py", "--teachers", "cnn-small:32:16",
                             "--seconds", "0.5", "--forbid_tensorflow", "--out", str(out)],
                            env=env, capture_output=True, text=True, timeout=600,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(out.read_text())
    assert row["teacher"] == "cnn-small@32" and row["model_alone_images_per_s"] > 0 < row["handler_images_per_s"]
    assert row["float32_layers_under_mixed_bfloat16"] == {"Dense": 1}  # only the classifier keeps float32


def test_evaluate_on_jax_scores_and_attacks_like_tensorflow(setup):
    """A GPU or TPU worker's evaluate: the JAX teacher scores, jax.grad attacks; TensorFlow's figures."""
    import json

    from noisystudent import robustness

    root = setup
    _predict_on_jax("--model", str(root / "t.keras"), "--data", str(root / "data"), "--output_dir",
                    str(root / "eval-jax"), "--corruptions", "contrast", "--severities", "4", "--fgsm_epsilons", "0,8",
                    "--max_images", "120", command="evaluate")
    got = json.loads((root / "eval-jax" / "evaluate.json").read_text())
    images = robustness.read_images(str(root / "data"), "test", 120)
    tally = robustness.score(images, {"model": robustness.Scorer(str(root / "t.keras"), "--model")}, ["contrast"],
                             [4], [0, 8])["model"]
    expected = robustness.scores(tally, ["contrast"], [4], [0, 8])
    assert got["num_images"] == 120 and got["clean"] == expected["clean"]
    assert got["corruptions"] == expected["corruptions"] and got["fgsm"]["0"] == expected["fgsm"]["0"]
    # The attack moves the same pixels (a gradient's sign can differ where it is ~0): within 2 images of 120.
    assert abs(got["fgsm"]["8"]["top1"] - expected["fgsm"]["8"]["top1"]) <= 2 / 120
    assert expected["fgsm"]["8"]["top1"] < expected["clean"]["top1"]
