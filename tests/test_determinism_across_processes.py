"""Two separate processes, different hash seeds: ingest, predict and select write the same bytes.

In-process re-runs share Python's string-hash seed, dict orders and cached state; a user's re-run
does not. Every shard, dead-letter file, stats.json and summary.json (but its timestamp) must match.
"""

import json
import os
import subprocess
import sys

import keras

from model import build_model


def _run_chain(work, model_path, hash_seed):
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed), TF_CPP_MIN_LOG_LEVEL="2")
    out = work / "run"  # the same paths both times: records name their source files
    steps = [
        ["ingest-digits", "--output_dir", str(out / "data"), "--labels_per_class", "5", "--overwrite"],
        ["predict", "--input", str(out / "data"), "--model", str(model_path), "--output_dir", str(out / "preds"),
         "--teacher_name", "t", "--num_shards", "3", "--batch_size", "64", "--overwrite"],
        ["select", "--predictions", str(out / "preds"), "--num_image", "150", "--min_threshold", "0.05",
         "--output_dir", str(out / "pseudo"), "--records_per_shard", "400", "--samples_per_class", "0",
         "--overwrite"],
    ]
    # The three steps in one process per hash seed (each a CLI call, as a user types them): one TF start-up.
    script = ("import sys\nfrom noisystudent.app import cli\n"
              f"for step in {steps!r}:\n    code = cli.main(step)\n    if code: sys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def _contents(root):
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if name.endswith(".png"):
                continue  # plots: matplotlib's own bytes, not data
            data = open(path, "rb").read()
            if name == "summary.json":
                summary = json.loads(data)
                summary.pop("written_at")
                data = json.dumps(summary, sort_keys=True).encode()
            files[rel] = data
    return files


def test_ingest_predict_select_write_the_same_bytes_in_two_processes(tmp_path):
    keras.utils.set_random_seed(0)
    model_path = tmp_path / "teacher.keras"
    build_model("cnn-small", 10, input_shape=(32, 32, 3)).save(str(model_path))
    first = _contents(_run_chain(tmp_path, model_path, 1))  # read before the second run overwrites it
    second = _contents(_run_chain(tmp_path, model_path, 2))
    assert sorted(first) == sorted(second)
    assert sum(1 for name in first if name.startswith("pseudo/train-")) >= 2  # several shards
    assert sum(1 for name in first if name.startswith("preds/predictions-")) == 3
    different = [name for name in first if first[name] != second[name]]
    assert not different, different


def _select_in_a_process(predictions, out, hash_seed):
    env = dict(os.environ, PYTHONHASHSEED=str(hash_seed), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "noisystudent.app.cli", "select", "--predictions", predictions, "--num_image", "100",
         "--output_dir", str(out), "--samples_per_class", "0", "--overwrite"],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return _contents(out)


def test_duplicate_predictions_of_an_image_keep_the_most_confident_in_any_process(tmp_path):
    """Two teachers' outputs mixed and a re-run appended: one prediction per image survives, the same
    one whatever order the shuffle delivers them in, and the others are accounted dead letters."""
    import numpy as np
    import tensorflow as tf

    from beam_pipelines.select import DUPLICATE_REASON
    from noisystudent import dataset_dir, records
    from tests.tfrecord_files import write_tfrecord

    source = str(tmp_path / "images.tfrecord")
    pixels = np.random.default_rng(0).integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
    write_tfrecord(source, [records.encode_image_record(f"u{i:02d}", tf.io.encode_png(p).numpy())
                            for i, p in enumerate(pixels)])

    def prediction(i, label, confidence, teacher):
        probs = np.full(2, 1 - confidence, np.float32)
        probs[label] = confidence
        return records.encode_prediction(f"u{i:02d}", source, probs, teacher)

    first = [prediction(i, i % 2, 0.9, "a") for i in range(40)]
    second = ([prediction(i, 1 - i % 2, 0.95, "b") for i in range(10)]     # more confident: wins
              + [prediction(i, 1 - i % 2, 0.9, "b") for i in range(10, 20)]  # a tie: the smaller record
              + first[20:30])                                               # a re-run: the same bytes
    write_tfrecord(tmp_path / "preds-0.tfrecord", first)
    write_tfrecord(tmp_path / "preds-1.tfrecord", second)
    pattern = str(tmp_path / "preds-*.tfrecord")
    one = _select_in_a_process(pattern, tmp_path / "one", 1)
    two = _select_in_a_process(pattern, tmp_path / "two", 2)
    assert one == two

    written = {}
    for r in dataset_dir.iter_split_records(str(tmp_path / "one"), "train"):
        record = records.parse_pseudo_labeled(r)
        written.setdefault(record.image_id, set()).add((int(np.argmax(record.probabilities)), record.teacher))
    assert len(written) == 40 and all(len(v) == 1 for v in written.values())
    for i in range(40):
        label, teacher = next(iter(written[f"u{i:02d}"]))
        if i < 10:
            assert (label, teacher) == (1 - i % 2, "b"), i
        elif i < 20:
            tied = sorted([first[i], second[i]])[0]
            assert label == records.parse_prediction(tied).label, i
        else:
            assert (label, teacher) == (i % 2, "a"), i
    dead = [json.loads(line) for line in (tmp_path / "one" / "dead_letter.jsonl").read_text().splitlines()]
    assert sorted(d["id"] for d in dead) == [f"u{i:02d}" for i in range(30)]
    assert {d["reason"] for d in dead} == {DUPLICATE_REASON}
    stats = json.loads((tmp_path / "one" / "stats.json").read_text())
    assert stats["duplicate_predictions_dropped"] == 30
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["accounting"]["train"]["dead_letter"] == sum(d["copies"] for d in dead)
